//! Looking at a database path before anything writes to it (issue 10 part 6).
//!
//! SQLite changes a file as soon as it is opened for writing: `PRAGMA journal_mode = WAL`
//! rewrites its header, a rollback journal is created beside it (`/dev/full-journal`), and the
//! migrations add tables. Letting SQLite find out that a path is wrong would leave someone
//! else's file modified. So every check that can refuse a path runs here first, reading only:
//! what kind of file it is, its 100-byte SQLite header (`application_id`, `user_version`), and,
//! for a database without an application id, whether it holds tables — through an `immutable`
//! read-only connection, which takes no lock and creates no `-wal`, `-shm` or journal.
//!
//! The checks are repeated inside the write transaction of [`super::migrate`], where they see
//! what is committed (a header can lag behind a WAL that was not checkpointed yet); this pass
//! is what keeps a file that is refused exactly as it was.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::{schema, OpenMode, StoreError};

/// The first 16 bytes of every SQLite database file.
const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Checks `path` without writing to it and, in [`OpenMode::Create`], creates a missing file
/// (mode 0600, its directory 0700). Returns once SQLite may open the path read-write.
pub fn inspect(path: &Path, mode: OpenMode) -> Result<(), StoreError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return match mode {
                OpenMode::Existing | OpenMode::ReadOnly => Err(StoreError::NotFound {
                    path: path.to_path_buf(),
                }),
                OpenMode::Create => create_file(path),
            };
        }
        Err(e) => return Err(cannot_read(path, &e)),
    };
    let ft = meta.file_type();
    if ft.is_dir() {
        return Err(StoreError::Refused {
            path: path.to_path_buf(),
            why: "is a directory".into(),
            hint: format!(
                "name a file inside it, e.g. --db {}",
                path.join("wrapper.db").display()
            ),
        });
    }
    if !ft.is_file() {
        let kind = if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(StoreError::Refused {
            path: path.to_path_buf(),
            why: format!("is {kind}, not a database file"),
            hint: "pass --db with the path of a regular file".into(),
        });
    }
    if meta.len() == 0 {
        // An empty file is an empty database: wrapper's own, just created, or a placeholder.
        return Ok(());
    }
    let mut header = [0u8; 100];
    let n = fs::File::open(path)
        .and_then(|mut f| read_up_to(&mut f, &mut header))
        .map_err(|e| cannot_read(path, &e))?;
    if n < header.len() || &header[..16] != MAGIC {
        return Err(not_sqlite(path));
    }
    let be = |at: usize| {
        i64::from(
            u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]) as i32,
        )
    };
    let user_version = be(60);
    let application_id = be(68);
    if application_id != 0 && application_id != schema::APPLICATION_ID {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
            why: format!(
                "its application_id is {application_id:#x}, wrapper's is {:#x}",
                schema::APPLICATION_ID
            ),
        });
    }
    if application_id == schema::APPLICATION_ID {
        if user_version > schema::LATEST {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found: user_version,
                supported: schema::LATEST,
            });
        }
        return Ok(());
    }
    // No application id. In WAL mode this may be wrapper's own database read while another
    // wrapper creates or checkpoints it (its first transaction sets the id, but the main file
    // catches up with the WAL page by page): the check inside the migration's write lock
    // decides, and refuses before anything is written. In rollback mode no wrapper ever wrote
    // it, so what it holds now is final: anything in it makes it someone else's.
    let wal_mode = header[18] == 2;
    if wal_mode {
        return Ok(());
    }
    if user_version != 0 {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
            why: format!("it has user_version {user_version} but not wrapper's application_id"),
        });
    }
    let tables = count_tables_readonly(path).map_err(|e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => not_sqlite(path),
        _ => StoreError::Sqlite {
            path: path.to_path_buf(),
            error: e,
        },
    })?;
    if tables > 0 {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
            why: format!("it holds {tables} table(s) but not wrapper's application_id"),
        });
    }
    Ok(())
}

/// Counts the schema's tables through a connection that can neither write nor lock: with
/// `immutable=1` SQLite reads the main file as it is and never looks for a WAL or journal.
fn count_tables_readonly(path: &Path) -> rusqlite::Result<i64> {
    let conn = Connection::open_with_flags(
        super::immutable_uri(path),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
        [],
        |r| r.get(0),
    )
}

fn read_up_to(f: &mut fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn not_sqlite(path: &Path) -> StoreError {
    StoreError::Refused {
        path: path.to_path_buf(),
        why: "is not a SQLite database (it does not start with the SQLite header); it was left untouched".into(),
        hint: "pass --db with a new path or a wrapper database".into(),
    }
}

fn cannot_read(path: &Path, e: &io::Error) -> StoreError {
    StoreError::Refused {
        path: path.to_path_buf(),
        why: format!("cannot be read: {}", in_words(e)),
        hint: "check the path and its permissions, or pass --db with another path".into(),
    }
}

/// Creates the file with mode 0600 (and its directory with 0700) if it does not exist, so the
/// agent's output is never readable by other users, not even for a moment.
fn create_file(path: &Path) -> Result<(), StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            if let Err(e) = fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
            {
                return Err(StoreError::Create {
                    path: path.to_path_buf(),
                    why: format!(
                        "the parent directory {} does not exist and cannot be created ({})",
                        dir.display(),
                        match e.raw_os_error() {
                            Some(libc::ENOENT) => "the file system does not allow it".into(),
                            _ => in_words(&e),
                        }
                    ),
                });
            }
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
        Err(e) => {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            Err(StoreError::Create {
                path: path.to_path_buf(),
                why: format!("{} in its directory {}", in_words(&e), dir.display()),
            })
        }
    }
}

/// An I/O error as words, without the `(os error N)` tail.
pub fn in_words(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => "it does not exist".into(),
        Some(libc::EACCES | libc::EPERM) => "permission denied".into(),
        Some(libc::EROFS) => "the file system is read-only".into(),
        Some(libc::ENOTDIR) => "a part of the path is not a directory".into(),
        Some(libc::ENOSPC) => "no space left on the device".into(),
        Some(libc::EDQUOT) => "the disk quota is exceeded".into(),
        Some(libc::ENAMETOOLONG) => "the name is too long".into(),
        Some(libc::ELOOP) => "too many symbolic links".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
    }
}
