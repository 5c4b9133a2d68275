//! The writer's VFS: SQLite's own unix VFS, except that a transaction's WAL frames reach the
//! file in a few large writes rather than two per page.
//!
//! SQLite appends each WAL frame as two writes, its 24-byte header and then its page, so a
//! batch of 500 events (~128 frames) cost ~256 system calls, and each of them went through
//! ext4's write path for the one or two pages of the page cache it touched: a quarter of the
//! writer thread's time in the profile of the database pipeline (issue 17). Here the appends
//! of a transaction are gathered in a buffer and written out when its commit frame is
//! complete, before SQLite publishes the commit in the WAL index, so a reader (the
//! checkpointer, `wrapper events`, `wrapper serve`, another process) that sees a commit finds
//! every frame of it in the file, and a failed write fails the commit as it did before.
//!
//! Only appends are held back. Any other access to the WAL through this connection (a read, a
//! sync, a size or truncate, a file control, a write elsewhere, closing) first writes out what
//! is held ([`flushed`]), so the file always reads as if every write had gone straight through.
//! A transaction larger than [`BUFFER_CAP`] (SQLite spilling pages mid-transaction) is
//! written out each time that much is held. The database file itself and everything else are the unix VFS's
//! own calls, unchanged: locking and the shared-memory WAL index are shared with the other
//! connections, which use the default VFS.
//!
//! Written here rather than taken from a crate: the VFS crates found (`sqlite-vfs`,
//! `rsqlite-vfs`) implement a VFS from scratch over their own file trait; what is wanted is
//! the unix VFS with one behaviour changed, which is a shim over its methods.

use std::ffi::{c_int, c_void, CStr};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name connections open the VFS by.
pub const NAME: &str = "wrapper-wal";
const NAME_C: &CStr = c"wrapper-wal";

/// Bytes of appends held before they are written out whatever else happens: a batch of 500
/// events is ~530 KiB of frames.
const BUFFER_CAP: usize = 1 << 20;

/// Bytes per write into the unix VFS: its `unixWrite` writes at most 128 KiB − 1 per system
/// call and reports a larger request as a full disk, so the held appends go out in pieces of
/// 124 KiB (five calls for a batch of 500 events instead of ~256).
const WRITE_PIECE: usize = 124 << 10;

/// Size of a WAL frame header, and of the WAL file header.
const FRAME_HEADER: usize = 24;
const WAL_HEADER: usize = 32;

/// Times a commit was published with appends still held (found at the next memory barrier on
/// the WAL index). Always 0 while SQLite writes frames as this module expects; tests check.
static LATE_FLUSHES: AtomicU64 = AtomicU64::new(0);

/// Our file object: SQLite allocates `szOsFile` bytes for it, the unix VFS's own file object
/// follows ours in the same allocation.
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    /// The buffer of a WAL file; null for every other file.
    wal: *mut Appends,
    /// For a database file: its WAL's file object while the WAL is open (for the barrier).
    db_wal: *mut File,
    /// For a WAL file: the database file whose `db_wal` points at this one.
    db: *mut File,
}

/// Offset of the inner file object: ours, rounded up to its alignment.
const INNER_OFFSET: usize = std::mem::size_of::<File>().next_multiple_of(16);

/// The held appends of one WAL file.
struct Appends {
    /// File offset of `data[0]`.
    start: i64,
    data: Vec<u8>,
    /// Offsets below this belong to frames already written out; a write there (SQLite
    /// rewriting a header's checksum at commit) goes straight through.
    written_to: i64,
    /// End of the last write if it was a commit frame's header: the page that follows it
    /// completes the commit.
    commit_header_end: Option<i64>,
}

impl Appends {
    fn end(&self) -> i64 {
        self.start + self.data.len() as i64
    }
}

/// Registers the VFS (once; not as the default). False if SQLite has no default VFS to wrap
/// or refused it: connections then open with the default VFS, as before.
pub fn register() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS or null; the VFS we make is
        // leaked (SQLite keeps the pointer for the life of the process) and copies every
        // method but xOpen from it, passing it in pAppData for xOpen to call.
        unsafe {
            let base = ffi::sqlite3_vfs_find(ptr::null());
            if base.is_null() || (*base).xOpen.is_none() {
                return false;
            }
            let mut vfs: ffi::sqlite3_vfs = *base;
            let Ok(size) = c_int::try_from(INNER_OFFSET + (*base).szOsFile.max(0) as usize) else {
                return false;
            };
            vfs.szOsFile = size;
            vfs.pNext = ptr::null_mut();
            vfs.zName = NAME_C.as_ptr();
            vfs.pAppData = base.cast();
            vfs.xOpen = Some(x_open);
            let vfs = Box::into_raw(Box::new(vfs));
            ffi::sqlite3_vfs_register(vfs, 0) == ffi::SQLITE_OK
        }
    })
}

/// How many commits were published with appends still held (see [`LATE_FLUSHES`]).
#[cfg(test)]
pub fn late_flushes() -> u64 {
    LATE_FLUSHES.load(Ordering::Relaxed)
}

unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let base = (*vfs).pAppData as *mut ffi::sqlite3_vfs;
    let Some(open) = (*base).xOpen else {
        return ffi::SQLITE_CANTOPEN;
    };
    let f = file as *mut File;
    let inner = (file as *mut u8).add(INNER_OFFSET) as *mut ffi::sqlite3_file;
    ptr::write(
        f,
        File {
            base: ffi::sqlite3_file {
                pMethods: ptr::null(),
            },
            inner,
            wal: ptr::null_mut(),
            db_wal: ptr::null_mut(),
            db: ptr::null_mut(),
        },
    );
    (*inner).pMethods = ptr::null();
    let rc = open(base, name, inner, flags, out_flags);
    if rc != ffi::SQLITE_OK || (*inner).pMethods.is_null() {
        return if rc == ffi::SQLITE_OK {
            ffi::SQLITE_CANTOPEN
        } else {
            rc
        };
    }
    if flags & ffi::SQLITE_OPEN_WAL != 0 {
        let appends = Box::into_raw(Box::new(Appends {
            start: 0,
            data: Vec::new(),
            written_to: 0,
            commit_header_end: None,
        }));
        (*f).wal = appends;
        // The database file of this WAL, if this VFS opened it: its barrier checks the buffer.
        let db = ffi::sqlite3_database_file_object(name);
        if !db.is_null() && ptr::eq((*db).pMethods, &IO_METHODS) {
            let db = db as *mut File;
            (*db).db_wal = f;
            (*f).db = db;
        }
    }
    (*f).base.pMethods = &IO_METHODS;
    rc
}

static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: Some(x_fetch),
    xUnfetch: Some(x_unfetch),
};

/// The inner file and its methods.
unsafe fn inner(
    file: *mut ffi::sqlite3_file,
) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    let inner = (*(file as *mut File)).inner;
    (inner, &*(*inner).pMethods)
}

/// Writes out the held appends of `file` (a no-op for any other file). On failure what was
/// held is dropped: the transaction it belonged to fails with the error.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    let f = file as *mut File;
    let Some(a) = (*f).wal.as_mut() else {
        return ffi::SQLITE_OK;
    };
    if a.data.is_empty() {
        return ffi::SQLITE_OK;
    }
    let (inner, m) = inner(file);
    let Some(write) = m.xWrite else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let mut rc = ffi::SQLITE_OK;
    let mut at = a.start;
    for piece in a.data.chunks(WRITE_PIECE) {
        // WRITE_PIECE fits a c_int.
        rc = write(inner, piece.as_ptr().cast(), piece.len() as c_int, at);
        if rc != ffi::SQLITE_OK {
            break;
        }
        at += piece.len() as i64;
    }
    if rc == ffi::SQLITE_OK {
        a.written_to = a.written_to.max(a.end());
    }
    a.data.clear();
    rc
}

/// Writes out what `file` holds, then makes the call `op` on its inner file: how every method
/// that looks at the file's contents or size sees it as if each write had reached it.
unsafe fn flushed(
    file: *mut ffi::sqlite3_file,
    op: impl FnOnce(*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) -> c_int,
) -> c_int {
    let rc = flush(file);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    let (inner, m) = inner(file);
    op(inner, m)
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    let f = file as *mut File;
    let flushed = flush(file);
    if !(*f).wal.is_null() {
        if let Some(db) = (*f).db.as_mut() {
            if ptr::eq(db.db_wal, f) {
                db.db_wal = ptr::null_mut();
            }
        }
        drop(Box::from_raw((*f).wal));
        (*f).wal = ptr::null_mut();
    }
    let (inner, m) = inner(file);
    let rc = match m.xClose {
        Some(close) => close(inner),
        None => ffi::SQLITE_OK,
    };
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        rc
    }
}

unsafe extern "C" fn x_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    flushed(file, |inner, m| {
        m.xRead
            .map_or(ffi::SQLITE_IOERR_READ, |f| f(inner, buf, amount, offset))
    })
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    let f = file as *mut File;
    let (inner, m) = inner(file);
    let Some(write) = m.xWrite else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let Some(a) = (*f).wal.as_mut() else {
        return write(inner, buf, amount, offset);
    };
    let n = usize::try_from(amount).unwrap_or(0);
    if buf.is_null() || n == 0 {
        return write(inner, buf, amount, offset);
    }
    let bytes = std::slice::from_raw_parts(buf as *const u8, n);
    let completes_commit = a.commit_header_end.take() == Some(offset);
    if offset == 0 && n == WAL_HEADER {
        // A new WAL header: the log starts again from its beginning.
        let rc = flush(file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        a.written_to = 0;
        return write(inner, buf, amount, offset);
    }
    let append = offset >= a.written_to
        && n <= BUFFER_CAP
        && (a.data.is_empty() || (offset == a.end() && a.data.len() + n <= BUFFER_CAP));
    if !append {
        let rc = flush(file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        if offset < a.written_to || n > BUFFER_CAP {
            return write(inner, buf, amount, offset);
        }
    }
    if a.data.is_empty() {
        a.start = offset;
    }
    a.data.extend_from_slice(bytes);
    if n == FRAME_HEADER && bytes[4..8] != [0, 0, 0, 0] {
        // A commit frame's header (its "database size after commit" is set).
        a.commit_header_end = Some(offset + FRAME_HEADER as i64);
    } else if completes_commit {
        return flush(file);
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    flushed(file, |inner, m| {
        // What was written out beyond the new end is gone.
        if let Some(a) = (*(file as *mut File)).wal.as_mut() {
            a.written_to = a.written_to.min(size);
        }
        m.xTruncate
            .map_or(ffi::SQLITE_IOERR_TRUNCATE, |f| f(inner, size))
    })
}

unsafe extern "C" fn x_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    flushed(file, |inner, m| {
        m.xSync.map_or(ffi::SQLITE_IOERR_FSYNC, |f| f(inner, flags))
    })
}

unsafe extern "C" fn x_file_size(
    file: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    flushed(file, |inner, m| {
        m.xFileSize
            .map_or(ffi::SQLITE_IOERR_FSTAT, |f| f(inner, size))
    })
}

unsafe extern "C" fn x_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let (inner, m) = inner(file);
    m.xLock.map_or(ffi::SQLITE_OK, |f| f(inner, level))
}

unsafe extern "C" fn x_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let (inner, m) = inner(file);
    m.xUnlock.map_or(ffi::SQLITE_OK, |f| f(inner, level))
}

unsafe extern "C" fn x_check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    let (inner, m) = inner(file);
    match m.xCheckReservedLock {
        Some(f) => f(inner, out),
        None => {
            *out = 0;
            ffi::SQLITE_OK
        }
    }
}

unsafe extern "C" fn x_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    // Whatever the control does (size hints, chunk size, "has the file moved"), it sees the
    // file as if every write had reached it.
    flushed(file, |inner, m| {
        m.xFileControl
            .map_or(ffi::SQLITE_NOTFOUND, |f| f(inner, op, arg))
    })
}

unsafe extern "C" fn x_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    let (inner, m) = inner(file);
    m.xSectorSize.map_or(4096, |f| f(inner))
}

unsafe extern "C" fn x_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    let (inner, m) = inner(file);
    m.xDeviceCharacteristics.map_or(0, |f| f(inner))
}

unsafe extern "C" fn x_shm_map(
    file: *mut ffi::sqlite3_file,
    page: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    let (inner, m) = inner(file);
    match m.xShmMap {
        Some(f) if m.iVersion >= 2 => f(inner, page, size, extend, out),
        _ => ffi::SQLITE_IOERR_SHMMAP,
    }
}

unsafe extern "C" fn x_shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    let (inner, m) = inner(file);
    match m.xShmLock {
        Some(f) if m.iVersion >= 2 => f(inner, offset, n, flags),
        _ => ffi::SQLITE_IOERR_SHMLOCK,
    }
}

/// SQLite's memory barrier on the WAL index, called on the database file while it publishes a
/// commit. The commit's frames were written out when its last frame was complete; if any are
/// still held here (SQLite wrote its frames in a way this module does not know), they are
/// written now, before the commit is visible, and counted.
unsafe extern "C" fn x_shm_barrier(file: *mut ffi::sqlite3_file) {
    let wal = (*(file as *mut File)).db_wal;
    if let Some(a) = wal.as_ref().and_then(|w| w.wal.as_ref()) {
        if !a.data.is_empty() {
            LATE_FLUSHES.fetch_add(1, Ordering::Relaxed);
            // Nothing can report an error from here; a failed write leaves the frames out of
            // the file, which SQLite then finds short or invalid, as after a failed write.
            let _ = flush(wal as *mut ffi::sqlite3_file);
        }
    }
    let (inner, m) = inner(file);
    if m.iVersion >= 2 {
        if let Some(barrier) = m.xShmBarrier {
            barrier(inner);
        }
    }
}

unsafe extern "C" fn x_shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    let (inner, m) = inner(file);
    match m.xShmUnmap {
        Some(f) if m.iVersion >= 2 => f(inner, delete),
        _ => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn x_fetch(
    file: *mut ffi::sqlite3_file,
    offset: ffi::sqlite3_int64,
    amount: c_int,
    out: *mut *mut c_void,
) -> c_int {
    flushed(file, |inner, m| match m.xFetch {
        Some(f) if m.iVersion >= 3 => f(inner, offset, amount, out),
        _ => {
            *out = ptr::null_mut();
            ffi::SQLITE_OK
        }
    })
}

unsafe extern "C" fn x_unfetch(
    file: *mut ffi::sqlite3_file,
    offset: ffi::sqlite3_int64,
    p: *mut c_void,
) -> c_int {
    let (inner, m) = inner(file);
    match m.xUnfetch {
        Some(f) if m.iVersion >= 3 => f(inner, offset, p),
        _ => ffi::SQLITE_OK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{Connection, OpenFlags};

    /// Commits through the VFS are whole in the file the moment they return: another
    /// connection on the default VFS reads every row of each, the appends went out at the
    /// commit frame (never at the barrier), and a large transaction written in pieces and a
    /// WAL started again after a checkpoint read back intact.
    #[test]
    fn every_commit_is_in_the_file_when_it_returns() {
        assert!(register());
        let dir = std::env::temp_dir().join(format!("wrapper-vfs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("t.db");
        let _ = std::fs::remove_file(&path);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        let w = Connection::open_with_flags_and_vfs(&path, flags, NAME).expect("open writer");
        w.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);
             CREATE INDEX t_v ON t(v);",
        )
        .expect("schema");
        let r = Connection::open(&path).expect("open reader");
        let before = late_flushes();
        let mut n = 0i64;
        for round in 0..60 {
            // Every tenth transaction is far larger than the buffer.
            let rows = if round % 10 == 9 { 6000 } else { 50 };
            w.execute_batch("BEGIN").expect("begin");
            for _ in 0..rows {
                n += 1;
                w.execute(
                    "INSERT INTO t (v) VALUES (?1)",
                    [format!("{n:08}-{}", "x".repeat(90))],
                )
                .expect("insert");
            }
            w.execute_batch("COMMIT").expect("commit");
            let seen: i64 = r
                .query_row("SELECT count(*) FROM t", [], |x| x.get(0))
                .expect("count");
            assert_eq!(seen, n, "round {round}");
            if round % 20 == 19 {
                // A complete checkpoint: the next commit writes the WAL from its start.
                let _: (i64, i64, i64) = r
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |x| {
                        Ok((x.get(0)?, x.get(1)?, x.get(2)?))
                    })
                    .expect("checkpoint");
            }
        }
        assert_eq!(
            late_flushes(),
            before,
            "a commit was published with frames held"
        );
        drop(w);
        let ok: String = r
            .query_row("PRAGMA integrity_check", [], |x| x.get(0))
            .expect("check");
        assert_eq!(ok, "ok");
        let last: String = r
            .query_row("SELECT v FROM t ORDER BY id DESC LIMIT 1", [], |x| x.get(0))
            .expect("last");
        assert!(last.starts_with(&format!("{n:08}-")));
        drop(r);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
