//! A statement whose text parameters SQLite reads where they are, not from a copy.
//!
//! rusqlite binds every text value with `SQLITE_TRANSIENT`: SQLite allocates a buffer, copies
//! the text into it, and frees it when the parameter is bound again. For the writer's
//! multi-row event inserts that was ~400 instructions per text value — six or seven per event
//! row, ~2,900 instructions an event and a fifth of the writer thread (callgrind,
//! docs/PERFORMANCE.md). Bound with `SQLITE_STATIC`, SQLite keeps a pointer instead, which is
//! sound only while the text outlives the statement's use of it; [`InPlace::execute`] makes
//! that so by binding, stepping, resetting and clearing every binding within one call, so no
//! pointer into the caller's values is left in the statement when it returns.
//!
//! Preparing the writer's 64-row statement costs about 1.2 M instructions, so it is prepared
//! once per connection and kept ([`WriteConn`]). No crate offers this: rusqlite does not expose
//! the raw statement of a `Statement`, so the statement here is prepared with SQLite's own
//! API on the connection's handle, owned together with the connection, and finalised before
//! it closes.

use std::ffi::{c_char, c_int, CStr};
use std::ptr::NonNull;

use rusqlite::{ffi, Connection};

/// One parameter value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Param<'a> {
    Null,
    Int(i64),
    Text(&'a str),
}

/// For statements run through rusqlite (a spool's import), which copies the texts.
impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Param::Null => ValueRef::Null,
            Param::Int(v) => ValueRef::Integer(v),
            Param::Text(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(v: Option<&'a str>) -> Param<'a> {
        v.map_or(Param::Null, Param::Text)
    }
}

/// A connection and the statements prepared on it once and kept for its life
/// ([`KeptRef::statement`]). The statements are finalised before the connection closes: this
/// type's `Drop` runs before its fields', and nothing can take the connection or the
/// statements out of it.
pub struct WriteConn {
    kept: Kept,
    conn: Connection,
}

impl WriteConn {
    pub fn new(conn: Connection) -> WriteConn {
        // SAFETY: only the pointer is read; it is used while `conn` is owned here.
        let db = unsafe { conn.handle() };
        WriteConn {
            kept: Kept {
                db,
                stmts: Vec::new(),
            },
            conn,
        }
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The connection, and its kept statements.
    pub fn parts(&mut self) -> (&Connection, KeptRef<'_>) {
        (&self.conn, KeptRef(&mut self.kept))
    }
}

impl Drop for WriteConn {
    fn drop(&mut self) {
        self.kept.stmts.clear();
    }
}

/// The statements a [`WriteConn`] keeps, by SQL text.
pub struct Kept {
    db: *mut ffi::sqlite3,
    stmts: Vec<(&'static str, InPlace)>,
}

/// A [`WriteConn`]'s statements, borrowed (they cannot be moved out of it).
pub struct KeptRef<'a>(&'a mut Kept);

impl KeptRef<'_> {
    /// The statement for `sql` (one statement), prepared on first use.
    pub(crate) fn statement(&mut self, sql: &'static str) -> rusqlite::Result<&mut InPlace> {
        let kept = &mut *self.0;
        let at = match kept
            .stmts
            .iter()
            .position(|(s, _)| std::ptr::eq(*s, sql) || *s == sql)
        {
            Some(i) => i,
            None => {
                // SAFETY: `db` is the owning WriteConn's open connection; the statement is
                // kept in it and finalised before the connection closes.
                let stmt = unsafe { InPlace::prepare(kept.db, sql)? };
                kept.stmts.push((sql, stmt));
                kept.stmts.len() - 1
            }
        };
        Ok(&mut kept.stmts[at].1)
    }
}

/// Runs `sql` (no result rows) with `params`: on the writer, through its kept statement with
/// the texts bound in place; without one (a spool's import, a row at a time), through
/// rusqlite's cached statement.
pub(crate) fn execute(
    conn: &Connection,
    kept: Option<&mut KeptRef<'_>>,
    sql: &'static str,
    params: &[Param<'_>],
) -> rusqlite::Result<()> {
    match kept {
        Some(kept) => kept.statement(sql)?.execute(params),
        None => conn
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(params))
            .map(drop),
    }
}

/// A prepared statement, finalised when dropped — which must happen while its connection
/// is open: only [`Kept`] makes and holds them.
pub(crate) struct InPlace {
    db: *mut ffi::sqlite3,
    stmt: NonNull<ffi::sqlite3_stmt>,
    params: usize,
}

impl InPlace {
    /// Prepares `sql` (one statement) on `db`.
    ///
    /// # Safety
    /// `db` is an open connection that stays open until the statement is dropped.
    unsafe fn prepare(db: *mut ffi::sqlite3, sql: &str) -> rusqlite::Result<InPlace> {
        let len = c_int::try_from(sql.len()).map_err(|_| rusqlite::Error::InvalidQuery)?;
        let mut stmt: *mut ffi::sqlite3_stmt = std::ptr::null_mut();
        // SAFETY: `sql` is valid for `len` bytes (it need not be NUL-terminated with an
        // explicit length); `stmt` receives the new statement or NULL.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                db,
                sql.as_ptr().cast::<c_char>(),
                len,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                std::ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(error(db, rc));
        }
        let stmt = NonNull::new(stmt).ok_or(rusqlite::Error::InvalidQuery)?;
        // SAFETY: `stmt` is a statement just prepared.
        let params = unsafe { ffi::sqlite3_bind_parameter_count(stmt.as_ptr()) };
        Ok(InPlace {
            db,
            stmt,
            params: usize::try_from(params).unwrap_or(0),
        })
    }

    /// Binds `params` to parameters `1..=params.len()` (all of the statement's), runs the
    /// statement to completion and resets it with its bindings cleared.
    pub(crate) fn execute(&mut self, params: &[Param<'_>]) -> rusqlite::Result<()> {
        if params.len() != self.params {
            return Err(rusqlite::Error::InvalidParameterCount(
                params.len(),
                self.params,
            ));
        }
        let stmt = self.stmt.as_ptr();
        let mut rc = ffi::SQLITE_OK;
        for (i, p) in params.iter().enumerate() {
            let n = (i + 1) as c_int; // at most `self.params`, which SQLite counted as an int
                                      // SAFETY: `stmt` is live; a text is valid for its length until the bindings are
                                      // cleared below, before this borrow of it ends.
            rc = unsafe {
                match *p {
                    Param::Null => ffi::sqlite3_bind_null(stmt, n),
                    Param::Int(v) => ffi::sqlite3_bind_int64(stmt, n, v),
                    Param::Text(s) => ffi::sqlite3_bind_text64(
                        stmt,
                        n,
                        s.as_ptr().cast::<c_char>(),
                        s.len() as ffi::sqlite3_uint64,
                        ffi::SQLITE_STATIC(),
                        ffi::SQLITE_UTF8 as u8,
                    ),
                }
            };
            if rc != ffi::SQLITE_OK {
                break;
            }
        }
        if rc == ffi::SQLITE_OK {
            // SAFETY: every parameter is bound.
            rc = match unsafe { ffi::sqlite3_step(stmt) } {
                ffi::SQLITE_DONE | ffi::SQLITE_ROW => ffi::SQLITE_OK,
                other => other,
            };
        }
        let result = if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(error(self.db, rc))
        };
        // SAFETY: resetting and clearing a live statement; after this it holds no pointer
        // into `params`.
        unsafe {
            ffi::sqlite3_reset(stmt);
            ffi::sqlite3_clear_bindings(stmt);
        }
        result
    }
}

impl Drop for InPlace {
    fn drop(&mut self) {
        // SAFETY: finalised once, while the connection is open (see `prepare`).
        unsafe {
            ffi::sqlite3_finalize(self.stmt.as_ptr());
        }
    }
}

/// The error SQLite reports for `rc` on `db`, as rusqlite reports its own.
fn error(db: *mut ffi::sqlite3, rc: c_int) -> rusqlite::Error {
    // SAFETY: `db` is a live handle; the message is copied before any other call on it.
    let msg = unsafe {
        let p = ffi::sqlite3_errmsg(db);
        (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
    };
    // The extended code, so callers see e.g. SQLITE_CONSTRAINT_NOTNULL as rusqlite gives it.
    // SAFETY: as above.
    let code = unsafe { ffi::sqlite3_extended_errcode(db) };
    let code = if code & 0xff == rc & 0xff { code } else { rc };
    rusqlite::Error::SqliteFailure(ffi::Error::new(code), msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().expect("open");
        c.execute_batch("CREATE TABLE t (a INTEGER, b TEXT NOT NULL, c TEXT)")
            .expect("schema");
        c
    }

    #[test]
    fn texts_are_stored_and_outlive_the_values_they_were_bound_from() {
        let mut w = WriteConn::new(db());
        {
            let (_, mut kept) = w.parts();
            let s = kept
                .statement("INSERT INTO t VALUES (?1, ?2, ?3), (?4, ?5, ?6)")
                .expect("prepare");
            for round in 0..3 {
                // Fresh strings each round, dropped after the call: a pointer kept past it
                // would read freed memory (and differ from what was meant).
                let b = format!("b{round}\u{e9}\0x");
                let c2 = "c".repeat(round + 1);
                s.execute(&[
                    Param::Int(round as i64),
                    Param::Text(&b),
                    Param::Null,
                    Param::Int(10 + round as i64),
                    Param::Text(""),
                    Param::Text(&c2),
                ])
                .expect("execute");
            }
        }
        let rows: Vec<(i64, String, Option<String>)> = w
            .conn()
            .prepare("SELECT a, b, c FROM t ORDER BY a")
            .expect("select")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("collect");
        assert_eq!(rows.len(), 6);
        assert_eq!(rows[0], (0, "b0\u{e9}\0x".to_string(), None));
        assert_eq!(rows[2], (2, "b2\u{e9}\0x".to_string(), None));
        assert_eq!(rows[5], (12, String::new(), Some("ccc".to_string())));
    }

    #[test]
    fn errors_are_reported_and_the_statement_is_usable_after_them() {
        let mut w = WriteConn::new(db());
        let (c, mut kept) = w.parts();
        let s = kept
            .statement("INSERT OR FAIL INTO t VALUES (?1, ?2, ?3)")
            .expect("p");
        let e = s
            .execute(&[Param::Int(1), Param::Null, Param::Null])
            .expect_err("NOT NULL");
        assert_eq!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation),
            "{e}"
        );
        assert!(e.to_string().contains("NOT NULL"), "{e}");
        assert!(matches!(
            s.execute(&[Param::Int(1)]),
            Err(rusqlite::Error::InvalidParameterCount(1, 3))
        ));
        s.execute(&[Param::Int(2), Param::Text("ok"), Param::Null])
            .expect("after the error");
        let n: i64 = c
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 1);
        assert!(kept.statement("INSERT INTO nowhere VALUES (1)").is_err());
        // Kept: the same statement again, not a second one.
        let sql = "INSERT OR FAIL INTO t VALUES (?1, ?2, ?3)";
        let a: *const InPlace = kept.statement(sql).expect("again");
        let b: *const InPlace = kept.statement(sql).expect("again");
        assert_eq!(a, b);
    }
}
