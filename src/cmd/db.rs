//! `wrapper db path|check|migrate`: where the database is, whether it is sound, and bringing
//! its schema up to date.

use anyhow::anyhow;

use crate::cli::{DbArgs, DbCommand};
use crate::config::db_path;
use crate::error::{CliError, CliResult};
use crate::store::{self, schema, OpenMode};

pub fn run(args: DbArgs) -> CliResult<i32> {
    match args.command {
        DbCommand::Path(opt) => {
            crate::outln!("{}", db_path(&opt)?.display())?;
            Ok(0)
        }
        DbCommand::Migrate(opt) => {
            let path = db_path(&opt)?;
            let conn = store::open(&path, OpenMode::Create).map_err(CliError::usage)?;
            let v = store::user_version(&conn).map_err(|e| CliError::usage(anyhow!(e)))?;
            crate::outln!(
                "{}: schema version {v} (latest {})",
                path.display(),
                schema::LATEST
            )?;
            Ok(0)
        }
        DbCommand::Check(opt) => {
            let path = db_path(&opt)?;
            let conn = store::open(&path, OpenMode::Existing).map_err(CliError::usage)?;
            let check: Vec<String> = conn
                .prepare("PRAGMA integrity_check")
                .and_then(|mut s| {
                    s.query_map([], |r| r.get::<_, String>(0))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(|e| CliError::usage(anyhow!("{}: {e}", path.display())))?;
            let v = store::user_version(&conn).map_err(|e| CliError::usage(anyhow!(e)))?;
            let abandoned = store::recover_abandoned(&conn)
                .map_err(|e| CliError::usage(anyhow!("{}: {e}", path.display())))?;
            if check == ["ok"] {
                crate::outln!("{}: ok (schema version {v})", path.display())?;
                if let Ok(c) = store::capture::sizes(&conn) {
                    crate::outln!("{}", crate::cmd::stats::capture_line(&c))?;
                }
                if abandoned > 0 {
                    crate::outln!(
                        "marked {abandoned} session(s) whose wrapper is gone as abandoned"
                    )?;
                }
                Ok(0)
            } else {
                for line in &check {
                    crate::outln!("{line}")?;
                }
                Err(CliError::usage(anyhow!(
                    "{}: integrity check failed ({} problems)",
                    path.display(),
                    check.len()
                )))
            }
        }
    }
}
