//! The SQLite store: opening, pragmas, migrations and crash recovery (SPEC §5, §6.4).
//!
//! Every connection, reader or writer, goes through [`open`], so the pragmas and the schema
//! check happen in exactly one place. The run path hands its connection to the writer thread
//! ([`writer`]); query commands read through [`query`].

pub mod capture;
pub mod fts;
pub mod query;
pub mod schema;
pub mod spool;
pub mod writer;

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::event::now_timestamp;

/// How long a connection waits for another writer's lock before giving up. Many wrappers
/// share one file; a batch commit holds the lock for milliseconds.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error(
        "no database at {path} (run an agent with --enable-db to create it, or pass --db PATH)"
    )]
    NotFound { path: PathBuf },
    #[error(
        "database {path} has schema version {found}, newer than this wrapper understands ({supported}); upgrade wrapper"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error(
        "database {path} has schema version {found}, older than this wrapper's ({supported}), and is opened read-only; run `wrapper db migrate` once"
    )]
    TooOld {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("{path} is not a wrapper database (application_id {found:#x})")]
    Foreign { path: PathBuf, found: i64 },
    #[error("cannot create {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// Whether [`open`] may create the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The run path and `db migrate`: create the file (mode 0600) and its directory.
    Create,
    /// Query commands: the file must exist; the schema is still migrated forward.
    Existing,
    /// `wrapper serve`: the file must exist and is never written, so its schema must be
    /// current already (nothing is migrated, nothing recovered).
    ReadOnly,
}

/// Opens (and if asked creates) the database, sets the pragmas, migrates the schema.
pub fn open(path: &Path, mode: OpenMode) -> Result<Connection, StoreError> {
    let sqlite = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    match mode {
        OpenMode::Existing | OpenMode::ReadOnly if !path.exists() => {
            return Err(StoreError::NotFound {
                path: path.to_path_buf(),
            })
        }
        OpenMode::Create => create_file(path)?,
        OpenMode::Existing | OpenMode::ReadOnly => {}
    }
    if mode == OpenMode::ReadOnly {
        return open_read_only(path);
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(sqlite)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
    // journal_mode answers with a row; the rest are plain settings.
    let _: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(sqlite)?;
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
    )
    .map_err(sqlite)?;
    migrate(&conn, path)?;
    Ok(conn)
}

fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    let sqlite = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(sqlite)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
    conn.execute_batch("PRAGMA temp_store = MEMORY;")
        .map_err(sqlite)?;
    let version = user_version(&conn).map_err(sqlite)?;
    check_version(&conn, path, version)?;
    if version < schema::LATEST {
        return Err(StoreError::TooOld {
            path: path.to_path_buf(),
            found: version,
            supported: schema::LATEST,
        });
    }
    Ok(conn)
}

/// Creates the file with mode 0600 (and its directory with 0700) if it does not exist, so the
/// agent's output is never readable by other users, not even for a moment.
fn create_file(path: &Path) -> Result<(), StoreError> {
    let err = |source| StoreError::Create {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(err)?;
        }
    }
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// Brings the schema to [`schema::LATEST`]. Safe when many processes open the same new file
/// at once: the version is re-read inside an immediate (write-locked) transaction.
pub fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let sqlite = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let version = user_version(conn).map_err(sqlite)?;
    check_version(conn, path, version)?;
    if version == schema::LATEST {
        return Ok(());
    }
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
        .map_err(sqlite)?;
    let version = user_version(&tx).map_err(sqlite)?;
    check_version(&tx, path, version)?;
    for (v, sql) in schema::MIGRATIONS {
        if *v > version {
            tx.execute_batch(sql).map_err(sqlite)?;
        }
    }
    tx.execute_batch(&format!(
        "PRAGMA user_version = {}; PRAGMA application_id = {};",
        schema::LATEST,
        schema::APPLICATION_ID
    ))
    .map_err(sqlite)?;
    tx.commit().map_err(sqlite)
}

fn check_version(conn: &Connection, path: &Path, version: i64) -> Result<(), StoreError> {
    if version > schema::LATEST {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported: schema::LATEST,
        });
    }
    let app: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
    if app != 0 && app != schema::APPLICATION_ID {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
            found: app,
        });
    }
    Ok(())
}

pub fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// The default database path: `$WRAPPER_DB` is handled by the caller; this is
/// `$XDG_DATA_HOME/wrapper/wrapper.db` (or `~/.local/share/wrapper/wrapper.db`).
pub fn default_path() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("wrapper")
        .join("wrapper.db")
}

/// This machine's name, as stored on sessions and compared by crash recovery.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

/// Marks `abandoned` every session of this host still `started`/`running` whose wrapper
/// process is gone (SPEC §6.4). Sessions of other hosts are never touched: their pids mean
/// nothing here. Returns how many were marked.
pub fn recover_abandoned(conn: &Connection) -> rusqlite::Result<usize> {
    let host = hostname();
    let mut stmt = conn.prepare(
        "SELECT session_id, COALESCE(wrapper_pid, pid) FROM process_sessions \
         WHERE state IN ('started', 'running') AND hostname = ?1",
    )?;
    let candidates: Vec<(String, Option<i64>)> = stmt
        .query_map([&host], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let dead: Vec<(String, Option<i64>)> = candidates
        .into_iter()
        .filter(|(_, pid)| !pid.is_some_and(pid_alive))
        .collect();
    if dead.is_empty() {
        return Ok(0);
    }
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let now = now_timestamp();
    let mut n = 0;
    for (sid, pid) in &dead {
        // Re-check inside the write lock: another wrapper may have recovered it already.
        let state: Option<String> = tx
            .query_row(
                "SELECT state FROM process_sessions WHERE session_id = ?1",
                [sid],
                |r| r.get(0),
            )
            .optional()?;
        if !matches!(state.as_deref(), Some("started" | "running")) {
            continue;
        }
        let meta = serde_json::json!({ "reason": "wrapper process gone", "wrapper_pid": pid });
        tx.execute(
            "INSERT INTO process_state_changes (session_id, timestamp, state, metadata_json) \
             VALUES (?1, ?2, 'abandoned', ?3)",
            params![sid, now, meta.to_string()],
        )?;
        tx.execute(
            "UPDATE process_sessions SET state = 'abandoned', ended_at = COALESCE(ended_at, ?2) \
             WHERE session_id = ?1",
            params![sid, now],
        )?;
        n += 1;
    }
    tx.commit()?;
    Ok(n)
}

/// Fails when the database file this connection has open is no longer the file at its path
/// (removed, or replaced by another file). SQLite would go on writing to the orphaned file
/// without an error and the events would be lost with it; the writer spools instead (§6.5).
pub fn check_not_moved(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::ffi;
    let mut moved: std::ffi::c_int = 0;
    // SAFETY: the handle is valid for the life of `conn`; SQLITE_FCNTL_HAS_MOVED writes one
    // int through the pointer, which points at a live local.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_HAS_MOVED,
            (&mut moved as *mut std::ffi::c_int).cast(),
        )
    };
    if rc == ffi::SQLITE_OK && moved != 0 {
        return Err(rusqlite::Error::SqliteFailure(
            ffi::Error::new(ffi::SQLITE_READONLY_DBMOVED),
            Some("the database file was removed or replaced".into()),
        ));
    }
    Ok(())
}

/// Whether a process with this pid exists on this host.
pub fn pid_alive(pid: i64) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}
