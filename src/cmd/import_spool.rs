//! `wrapper import-spool PATH`: load a spool written when the database failed mid-run
//! (SPEC §6.5) back into the database, in one transaction.

use anyhow::anyhow;

use crate::cli::ImportSpoolArgs;
use crate::config::db_path;
use crate::error::{CliError, CliResult};
use crate::store::{self, spool, OpenMode};

pub fn run(args: ImportSpoolArgs) -> CliResult<i32> {
    let path = db_path(&args.db)?;
    if !args.path.is_file() {
        return Err(CliError::usage(anyhow!(
            "no spool file at {}",
            args.path.display()
        )));
    }
    let conn = store::open(&path, OpenMode::Create).map_err(CliError::usage)?;
    let report = spool::import(&conn, &args.path).map_err(CliError::usage)?;
    crate::outln!(
        "imported {}, {}, {} ({}) into {}",
        crate::cmd::view::counted(report.events, "event"),
        crate::cmd::view::counted(report.code_blocks, "code block"),
        crate::cmd::view::counted(report.states, "state change"),
        crate::cmd::view::counted(report.sessions_created, "new session"),
        path.display()
    )?;
    if let Some(moved) = report.moved_to {
        crate::outln!(
            "the spool was renamed to {} so it is not imported twice",
            moved.display()
        )?;
    }
    Ok(0)
}
