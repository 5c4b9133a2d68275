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

/// How much one write transaction may index: at most this many rows and this many bytes of
/// text (but always at least one row). Rows can hold up to `max_line` bytes each (64 KiB by
/// default, code blocks more), so a count alone would not bound how long the write lock is
/// held.
#[derive(Debug, Clone, Copy)]
pub struct Chunk {
    pub rows: i64,
    pub bytes: i64,
}

/// Per write transaction by `wrapper search` while catching up, so running wrappers never
/// wait on the write lock for long (one chunk takes well under a second).
pub const SEARCH_CHUNK: Chunk = Chunk {
    rows: 50_000,
    bytes: 16 << 20,
};

/// Per write transaction by an idle writer: a few milliseconds of work, so an event arriving
/// meanwhile is hardly delayed.
pub const IDLE_CHUNK: Chunk = Chunk {
    rows: 2_000,
    bytes: 1 << 20,
};

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
/// `chunk.rows` ids and about `chunk.bytes` of text, in one write transaction. Returns the
/// rows indexed and whether any table is still behind afterwards.
///
/// Safe against concurrent writers and indexers: the mark is re-read under the write lock,
/// and rows are committed in id order (write transactions are serialised), so no committed
/// row can appear below the mark later.
pub fn step(conn: &Connection, chunk: Chunk) -> rusqlite::Result<(i64, bool)> {
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
        let mut upto = max.min(done.saturating_add(chunk.rows.max(1)));
        // The first row past the byte budget ends the chunk (it is left for the next one,
        // unless it is the first row: every step makes progress). Summing first keeps the
        // common case (short lines) to one cheap aggregate.
        let sizes = cols
            .split(", ")
            .map(|c| format!("coalesce(octet_length({c}), 0)"))
            .collect::<Vec<_>>()
            .join(" + ");
        let total: i64 = tx.query_row(
            &format!("SELECT coalesce(sum({sizes}), 0) FROM {table} WHERE id > ?1 AND id <= ?2"),
            params![done, upto],
            |r| r.get(0),
        )?;
        if total > chunk.bytes {
            // The last row that still fits the budget — or the first row alone.
            upto = tx.query_row(
                &format!(
                    "SELECT coalesce( \
                       (SELECT max(id) FROM (SELECT id, sum({sizes}) OVER (ORDER BY id) AS total \
                          FROM {table} WHERE id > ?1 AND id <= ?2) WHERE total <= ?3), \
                       (SELECT min(id) FROM {table} WHERE id > ?1))"
                ),
                params![done, upto, chunk.bytes],
                |r| r.get(0),
            )?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{open, OpenMode};

    fn indexed(conn: &Connection) -> i64 {
        conn.query_row(
            "SELECT indexed_through FROM fts_state WHERE fts_table = 'extraction_events_fts'",
            [],
            |r| r.get(0),
        )
        .expect("mark")
    }

    /// A step holds the write lock for a bounded amount of text, not only a bounded number of
    /// rows: 64 KiB lines would otherwise make a 2,000-row step index 128 MiB at once.
    #[test]
    fn a_step_stops_at_its_byte_budget_and_always_makes_progress() {
        let dir = tempfile::tempdir().expect("dir");
        let conn = open(&dir.path().join("w.db"), OpenMode::Create).expect("open");
        conn.execute(
            "INSERT INTO process_sessions (agent_name, session_id, started_at, state, command_json) \
             VALUES ('a', 's', 't', 'running', '[]')",
            [],
        )
        .expect("session");
        let line = "word ".repeat(8_000); // 40,000 bytes
        for i in 0..10 {
            let text = if i == 5 {
                "x".repeat(300_000)
            } else {
                line.clone()
            };
            conn.execute(
                "INSERT INTO extraction_events (agent_name, session_id, timestamp, stream, \
                 event_type, pattern, original_line) VALUES ('a', 's', 't', 'stdout', 'e', 'p', ?1)",
                [text],
            )
            .expect("event");
        }
        let chunk = Chunk {
            rows: 1_000,
            bytes: 100_000,
        };
        // Two 40 kB rows fit in 100 kB; the third would not.
        assert_eq!(step(&conn, chunk).expect("step"), (2, true));
        assert_eq!(indexed(&conn), 2);
        assert_eq!(step(&conn, chunk).expect("step"), (2, true));
        assert_eq!(step(&conn, chunk).expect("step"), (1, true));
        // Row 6 alone is over the budget: it is indexed on its own.
        assert_eq!(step(&conn, chunk).expect("step"), (1, true));
        assert_eq!(indexed(&conn), 6);
        while step(&conn, chunk).expect("step").1 {}
        assert_eq!(indexed(&conn), 10);
        let hits: i64 = conn
            .query_row(
                "SELECT count(*) FROM extraction_events_fts WHERE extraction_events_fts MATCH 'word'",
                [],
                |r| r.get(0),
            )
            .expect("match");
        assert_eq!(hits, 9);
    }
}
