//! Keeping the full-text indexes (SPEC §7 `wrapper search`) in step with the tables.
//!
//! The FTS5 tables are external-content indexes over `extraction_events` and `code_blocks`.
//! Nothing on the insert path touches them — no triggers — because indexing costs several
//! times a plain row insert and a flood must not slow down. Instead rows are indexed in id
//! order behind a high-water mark (`fts_state.indexed_through`) by two parties:
//!
//! - the run path's writer, in small steps whenever it has been idle for a moment (an
//!   interactive agent leaves it idle almost all the time), so after most sessions the index
//!   is already complete;
//! - `wrapper search`, which indexes whatever is still missing before it searches.
//!
//! `wrapper prune` removes the rows it deletes from the index in the same transaction.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

/// The FTS tables, their content tables and the indexed columns (fixed SQL, not input).
pub(crate) const FTS: &[(&str, &str, &str)] = &[
    (
        "extraction_events_fts",
        "extraction_events",
        "original_line, matched_value",
    ),
    ("code_blocks_fts", "code_blocks", "content, language"),
];

/// Ids indexed per write transaction by `wrapper search` while catching up, so running
/// wrappers never wait on the write lock for long (one chunk takes well under a second).
pub const SEARCH_CHUNK: i64 = 50_000;

/// Ids indexed per write transaction by an idle writer: a few milliseconds of work, so an
/// event arriving meanwhile is hardly delayed.
pub const IDLE_CHUNK: i64 = 2_000;

/// How many rows the FTS indexes are behind, all tables together, without taking any lock.
pub fn backlog(conn: &Connection) -> rusqlite::Result<i64> {
    let mut total = 0;
    for (fts, table, _) in FTS {
        let (done, max) = marks(conn, fts, table)?;
        total += (max - done).max(0);
    }
    Ok(total)
}

fn marks(conn: &Connection, fts: &str, table: &str) -> rusqlite::Result<(i64, i64)> {
    let done: i64 = conn
        .query_row(
            "SELECT indexed_through FROM fts_state WHERE fts_table = ?1",
            [fts],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    let max: i64 = conn.query_row(
        &format!("SELECT coalesce(max(id), 0) FROM {table}"),
        [],
        |r| r.get(0),
    )?;
    Ok((done, max))
}

/// Indexes the next rows above the high-water mark of the first table that is behind: at most
/// `chunk` ids, in one write transaction. Returns the rows indexed and whether any table is
/// still behind afterwards.
///
/// Safe against concurrent writers and indexers: the mark is re-read under the write lock,
/// and rows are committed in id order (write transactions are serialised), so no committed
/// row can appear below the mark later.
pub fn step(conn: &Connection, chunk: i64) -> rusqlite::Result<(i64, bool)> {
    for (i, (fts, table, cols)) in FTS.iter().enumerate() {
        let (done, max) = marks(conn, fts, table)?;
        if max <= done {
            continue;
        }
        let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        let (done, max) = marks(&tx, fts, table)?;
        if max <= done {
            tx.commit()?;
            continue;
        }
        let upto = max.min(done.saturating_add(chunk.max(1)));
        let n = tx.execute(
            &format!(
                "INSERT INTO {fts} (rowid, {cols}) SELECT id, {cols} FROM {table} \
                 WHERE id > ?1 AND id <= ?2"
            ),
            params![done, upto],
        )?;
        tx.execute(
            "INSERT INTO fts_state (fts_table, indexed_through) VALUES (?1, ?2) \
             ON CONFLICT (fts_table) DO UPDATE SET indexed_through = excluded.indexed_through",
            params![fts, upto],
        )?;
        tx.commit()?;
        let more = upto < max
            || FTS[i + 1..].iter().try_fold(false, |behind, (f, t, _)| {
                marks(conn, f, t).map(|(d, m)| behind || m > d)
            })?;
        return Ok((n as i64, more));
    }
    Ok((0, false))
}

/// Brings the FTS indexes up to date, [`SEARCH_CHUNK`] ids per transaction. Returns the rows
/// indexed; `progress` is told the running total after each transaction.
pub fn sync(conn: &Connection, mut progress: impl FnMut(i64)) -> rusqlite::Result<i64> {
    let mut indexed = 0;
    loop {
        let (n, more) = step(conn, SEARCH_CHUNK)?;
        indexed += n;
        progress(indexed);
        if !more {
            return Ok(indexed);
        }
    }
}
