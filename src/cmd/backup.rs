//! `wrapper backup DEST`: a consistent copy of a live database through SQLite's online
//! backup API. In WAL mode the copy reads one snapshot while wrappers keep writing; copying
//! the file with `cp` could catch it half-written or miss the WAL.
//!
//! The copy is written to a temporary file next to DEST (mode 0600, like the database: it
//! holds agent output) and renamed into place, so DEST is never a half-finished backup.

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, MAIN_DB};

use crate::cli::DbOpt;
use crate::cmd::view;
use crate::error::{CliError, CliResult};

/// Copy the database, safely, while wrappers may be writing to it
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write the copy
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
    /// Replace DEST if it exists
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub db: DbOpt,
}

pub fn run(args: BackupArgs) -> CliResult<i32> {
    let dest = &args.dest;
    if dest.is_dir() {
        return Err(CliError::usage(anyhow!(
            "{} is a directory; name the backup file",
            dest.display()
        )));
    }
    if dest.exists() && !args.force {
        return Err(CliError::usage(anyhow!(
            "{} exists; pass --force to replace it",
            dest.display()
        )));
    }
    let (conn, src) = view::open_db(&args.db)?;
    if same_file(&src, dest) {
        return Err(CliError::usage(anyhow!(
            "{} is the database itself",
            dest.display()
        )));
    }
    let tmp = temp_path(dest);
    let result = copy(&conn, &tmp);
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(CliError::usage(anyhow!(
            "backup of {} to {} failed: {e}",
            src.display(),
            dest.display()
        )));
    }
    fs::rename(&tmp, dest).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        CliError::usage(anyhow!("cannot move the backup to {}: {e}", dest.display()))
    })?;
    let size = fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    view::line(format!(
        "backed up {} to {} ({:.1} MiB)",
        src.display(),
        dest.display(),
        size as f64 / (1024.0 * 1024.0)
    ))?;
    Ok(0)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn temp_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    dest.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Copies every page in one step: one read snapshot, so writers are never blocked (WAL) and
/// the copy never restarts because they wrote meanwhile. Busy answers are retried briefly.
fn copy(src: &Connection, tmp: &Path) -> anyhow::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    let mut dst = Connection::open(tmp)?;
    {
        let backup = Backup::new_with_names(src, MAIN_DB, &mut dst, MAIN_DB)?;
        let mut tries = 0;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More => continue,
                StepResult::Busy | StepResult::Locked if tries < 100 => {
                    tries += 1;
                    thread::sleep(Duration::from_millis(50));
                }
                other => return Err(anyhow!("database stayed busy ({other:?})")),
            }
        }
    }
    let check: String = dst.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(anyhow!("the copy fails its check: {check}"));
    }
    dst.close().map_err(|(_, e)| e)?;
    Ok(())
}
