//! The SQLite store: opening, pragmas, migrations and crash recovery (SPEC §5, §6.4).
//!
//! Every connection, reader or writer, goes through [`open`], so the pragmas and the schema
//! check happen in exactly one place. The run path hands its connection to the writer thread
//! ([`writer`]); query commands read through [`query`].

pub mod capture;
pub mod fts;
pub mod git;
mod inplace;
mod probe;
pub mod query;
pub mod schema;
pub mod session_spans;
pub mod spans;
pub mod spool;
pub mod usage;
mod vfs;
pub mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::event::now_timestamp;

/// How long a connection waits for another writer's lock before giving up. Many wrappers
/// share one file; a batch commit holds the lock for milliseconds.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a database cannot be used. Each says it once, in one line: the path, the cause in
/// words, and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error(
        "no database at {path} (run an agent with --enable-db to create it, or pass --db PATH)"
    )]
    NotFound { path: PathBuf },
    #[error(
        "database {path} has schema version {found}, newer than this wrapper understands ({supported}); it was left untouched: upgrade wrapper, or pass --db with another path"
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
    #[error("{path} is not a wrapper database ({why}); it was left untouched: pass --db with another path")]
    Foreign { path: PathBuf, why: String },
    #[error("cannot create database {path}: {why}; choose a --db in a directory you can write")]
    Create { path: PathBuf, why: String },
    /// The path is something that cannot be a database (a directory, a device, another file).
    #[error("database {path} {why}; {hint}")]
    Refused {
        path: PathBuf,
        why: String,
        hint: String,
    },
    #[error("database {path}: {}", sqlite_in_words(error))]
    Sqlite {
        path: PathBuf,
        // Not a `source`: the message says it already, and the chain would repeat it.
        error: rusqlite::Error,
    },
}

impl StoreError {
    /// Whether the database could not be opened for writing only (a read-only file, mount or
    /// directory), where reading it may still work.
    pub fn is_not_writable(&self) -> bool {
        match self {
            StoreError::Sqlite { error, .. } => matches!(
                error.sqlite_error_code(),
                Some(
                    rusqlite::ErrorCode::ReadOnly
                        | rusqlite::ErrorCode::CannotOpen
                        | rusqlite::ErrorCode::PermissionDenied
                )
            ),
            _ => false,
        }
    }
}

/// A SQLite error as one sentence with what to do, without SQLite's repeated code text.
fn sqlite_in_words(e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode as C;
    let what = match e.sqlite_error_code() {
        Some(C::DatabaseBusy | C::DatabaseLocked) => {
            "it stayed locked by another process for too long; try again when it is done"
        }
        Some(C::ReadOnly) => "it cannot be written (read-only file or directory); check its permissions",
        Some(C::CannotOpen) => "it cannot be opened; check the path and its permissions",
        Some(C::NotADatabase) => "it is not a SQLite database; pass --db with another path",
        Some(C::DatabaseCorrupt) => {
            "it is damaged; run `wrapper db check` and restore a backup, or pass --db with another path"
        }
        Some(C::DiskFull) => "the disk is full; free some space",
        Some(C::SystemIoFailure) => "an I/O error; check the disk",
        Some(C::PermissionDenied) => "permission denied; check its permissions",
        _ => "",
    };
    if what.is_empty() {
        e.to_string()
    } else {
        what.to_string()
    }
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

/// Turns SQLite's memory statistics off, once, before its first connection (it can be
/// configured only before it initialises). With them on — the default of the bundled build —
/// every allocation SQLite makes (each bound text value of each event row is copied into
/// one) takes a process-wide mutex to count it; wrapper never reads the counts.
fn configure_sqlite() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: SQLITE_CONFIG_MEMSTATUS takes one int; SQLite refuses the call (returns
        // SQLITE_MISUSE, changing nothing) if it has already initialised.
        unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS,
                0 as std::ffi::c_int,
            );
        }
    });
}

/// Opens (and if asked creates) the database, sets the pragmas, migrates the schema.
pub fn open(path: &Path, mode: OpenMode) -> Result<Connection, StoreError> {
    let sqlite = |error| StoreError::Sqlite {
        path: path.to_path_buf(),
        error,
    };
    probe::inspect(path, mode)?;
    configure_sqlite();
    if mode == OpenMode::ReadOnly {
        return open_read_only(path);
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    // The run path's connection is the one writer: its WAL appends go out one write per
    // commit (`vfs`). Query commands read, and keep the default VFS.
    let conn = if mode == OpenMode::Create && vfs::register() {
        Connection::open_with_flags_and_vfs(path, flags, vfs::NAME)
    } else {
        Connection::open_with_flags(path, flags)
    }
    .map_err(sqlite)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
    // Many wrappers may open a file that does not exist yet at the same moment. Switching to
    // WAL and the first migration each need the write lock, and SQLite answers SQLITE_BUSY at
    // once, without waiting in the busy handler, where two connections would otherwise
    // deadlock (both reading, both wanting to write). Such a refusal is not a fault: wait a
    // moment and try the whole setup again, until the busy timeout.
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match setup(&conn, path) {
            Err(StoreError::Sqlite { error, .. })
                if is_busy(&error) && std::time::Instant::now() < deadline =>
            {
                // Jittered, so that processes that collided do not collide again in step.
                let jitter = u64::from(std::process::id() % 7) * 100;
                std::thread::sleep(pause + Duration::from_micros(jitter));
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other.map(|()| conn),
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// WAL mode, the connection's pragmas, the schema. Only a file [`probe::inspect`] accepted
/// gets here; the version checks are repeated inside the migration's write lock.
fn setup(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let sqlite = |error| StoreError::Sqlite {
        path: path.to_path_buf(),
        error,
    };
    // journal_mode answers with a row; the rest are plain settings. A database already in
    // WAL mode (every wrapper database after its first open) is not switched again.
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(sqlite)?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Before the switch writes the header: the file must be wrapper's (or empty).
        check_version(conn, path)?;
        let _: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(sqlite)?;
    }
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
    )
    .map_err(sqlite)?;
    migrate(conn, path)
}

/// `wrapper serve`'s connection, and a query's on a database it cannot write: never writes,
/// so the schema must be current already.
///
/// A reader of a WAL database needs its `-shm` file, and creates it when it is missing
/// (a writer that closed cleanly removes it). In a directory the reader cannot write (a
/// read-only mount, another user's directory) that fails; with no `-wal` file there either,
/// no writer is at work (a writer creates both), so the file is opened as immutable: read as
/// it stands, without the shared memory.
fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    match open_read_only_with(path, false) {
        Err(StoreError::Sqlite { error, .. })
            if matches!(
                error.sqlite_error_code(),
                Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly)
            ) && !wal_path(path).exists() =>
        {
            open_read_only_with(path, true)
        }
        other => other,
    }
}

/// A query's connection to a database this user cannot write (see `cmd/view.rs`): with no
/// `-wal` beside it no writer is at work, and it is read as it stands (`immutable`), creating
/// nothing. A `-shm` this user made beside another user's database in a directory both may
/// write (`/tmp`) would be theirs, and the owner's next session could not open it for
/// writing. With a `-wal`, a writer is at work: read through it, read-only.
pub fn open_snapshot(path: &Path) -> Result<Connection, StoreError> {
    probe::inspect(path, OpenMode::ReadOnly)?;
    configure_sqlite();
    if wal_path(path).exists() {
        open_read_only(path)
    } else {
        open_read_only_with(path, true)
    }
}

fn wal_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

/// `path` as a `file:` URI opened read-only and `immutable`: SQLite reads the main file as
/// it is, takes no lock and never looks for a WAL, a journal or shared memory. Every byte but
/// a few safe ones percent-encoded (`%`, `?` and `#` mean something in a URI).
pub(super) fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'-' | b'_' | b'~' => {
                uri.push(*b as char)
            }
            _ => uri.push_str(&format!("%{b:02X}")),
        }
    }
    uri.push_str("?mode=ro&immutable=1");
    uri
}

fn open_read_only_with(path: &Path, immutable: bool) -> Result<Connection, StoreError> {
    let sqlite = |error| StoreError::Sqlite {
        path: path.to_path_buf(),
        error,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = if immutable {
        Connection::open_with_flags(immutable_uri(path), flags)
    } else {
        Connection::open_with_flags(path, flags)
    }
    .map_err(sqlite)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
    conn.execute_batch("PRAGMA temp_store = MEMORY;")
        .map_err(sqlite)?;
    let version = check_version(&conn, path)?;
    if version < schema::LATEST {
        return Err(StoreError::TooOld {
            path: path.to_path_buf(),
            found: version,
            supported: schema::LATEST,
        });
    }
    Ok(conn)
}

/// The transaction a retention command (`prune`, `prune --captures-older-than`) runs in: a
/// dry run only reads, so it takes no write lock; a real one takes it up front, so the rows it
/// counts are the rows it deletes.
pub fn retention_transaction(
    conn: &Connection,
    dry_run: bool,
) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    let behavior = if dry_run {
        TransactionBehavior::Deferred
    } else {
        TransactionBehavior::Immediate
    };
    rusqlite::Transaction::new_unchecked(conn, behavior)
}

/// Brings the schema to [`schema::LATEST`]. Safe when many processes open the same new file
/// at once: the version is re-read inside an immediate (write-locked) transaction.
pub fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let sqlite = |error| StoreError::Sqlite {
        path: path.to_path_buf(),
        error,
    };
    let version = check_version(conn, path)?;
    if version == schema::LATEST {
        return Ok(());
    }
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
        .map_err(sqlite)?;
    let version = check_version(&tx, path)?;
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

/// Refuses a database that is not wrapper's or is newer than this wrapper; returns its schema
/// version. The three facts are read in one statement, so they come from one snapshot even
/// while another wrapper creates the same file (read one by one, a version from before its
/// first commit and tables from after it would look like someone else's database).
fn check_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let (version, app, tables): (i64, i64, i64) = conn
        .query_row(
            "SELECT (SELECT user_version FROM pragma_user_version), \
                    (SELECT application_id FROM pragma_application_id), \
                    (SELECT count(*) FROM sqlite_schema WHERE type = 'table')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(|error| StoreError::Sqlite {
            path: path.to_path_buf(),
            error,
        })?;
    if app != 0 && app != schema::APPLICATION_ID {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
            why: format!(
                "its application_id is {app:#x}, wrapper's is {:#x}",
                schema::APPLICATION_ID
            ),
        });
    }
    if app == 0 && tables > 0 {
        // No application id: only a database with nothing in it is wrapper's to take.
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
            why: format!("it holds {tables} table(s) but not wrapper's application_id"),
        });
    }
    if version > schema::LATEST {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported: schema::LATEST,
        });
    }
    Ok(version)
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
