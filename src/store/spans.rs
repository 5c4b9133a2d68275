//! Event-type spans: how `events --type` finds its rows without an index on `event_type`.
//!
//! An index on `(event_type, timestamp)` has one insertion point per event type in the middle
//! of its B-tree, and each batch split and rewrote pages all over it: it was 40% of what
//! SQLite spent storing the events of the standard input (docs/PERFORMANCE.md). A span says
//! "every row of this type whose id is in `first_id..=last_id` is here; rows of other types
//! may lie between". The writer adds one per event type per transaction — a handful of rows
//! per 500 events — and a type's listing walks its spans newest first, and each span's rows
//! by rowid, stopping after a page, as it walked the index.
//!
//! The invariant the queries rely on: the spans of one type never overlap, and every row of
//! the type is inside one of them. Each transaction's ids are its own ([`insert`] is given
//! them), the migration cuts existing rows into disjoint runs of ids, and [`clip`] shrinks
//! or drops the spans whose rows `prune` deleted — so the ids SQLite hands out again after
//! deleting the newest rows fall in no span.

use rusqlite::{params, Connection};

use crate::event::Event;

/// The `FROM` of a listing by type: spans, then each span's rows by rowid. `CROSS JOIN`
/// keeps that order (SQLite would otherwise be free to start from the events).
pub const FROM: &str =
    "event_type_spans s CROSS JOIN extraction_events e ON e.id BETWEEN s.first_id AND s.last_id";

/// The order that makes a listing by type come straight off the spans' primary key and the
/// rowid: spans do not overlap, so this is `e.id DESC`.
pub const NEWEST_FIRST: &str = "s.last_id DESC, e.id DESC";

/// Records the spans of `events`, just inserted with the ids `first..`.
pub fn insert(conn: &Connection, first: i64, events: &[&Event]) -> rusqlite::Result<()> {
    // (type, first id, last id, earliest timestamp, latest): a batch has a handful of types.
    let mut spans: Vec<(&str, i64, i64, &str, &str)> = Vec::new();
    for (id, e) in (first..).zip(events) {
        let (t, ts) = (&*e.event_type, &*e.timestamp);
        match spans.iter_mut().find(|s| s.0 == t) {
            Some(s) => {
                s.2 = id;
                s.3 = s.3.min(ts);
                s.4 = s.4.max(ts);
            }
            None => spans.push((t, id, id, ts, ts)),
        }
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO event_type_spans (event_type, last_id, first_id, min_ts, max_ts) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (t, first_id, last_id, min_ts, max_ts) in spans {
        stmt.execute(params![t, last_id, first_id, min_ts, max_ts])?;
    }
    Ok(())
}

/// After rows with ids in `lo..=hi` were deleted: each span there shrinks to the rows of its
/// type that remain, or goes. Visits only the spans in that range.
pub fn clip(conn: &Connection, lo: i64, hi: i64) -> rusqlite::Result<()> {
    const ROWS: &str = "FROM extraction_events e WHERE e.id BETWEEN event_type_spans.first_id \
                        AND event_type_spans.last_id AND e.event_type = event_type_spans.event_type";
    conn.execute(
        &format!(
            "DELETE FROM event_type_spans WHERE last_id >= ?1 AND first_id <= ?2 \
             AND NOT EXISTS (SELECT 1 {ROWS})"
        ),
        [lo, hi],
    )?;
    // Every expression reads the row as it was before the update.
    conn.execute(
        &format!(
            "UPDATE event_type_spans SET first_id = (SELECT min(e.id) {ROWS}), \
               last_id = (SELECT max(e.id) {ROWS}), \
               min_ts = (SELECT min(e.timestamp) {ROWS}), \
               max_ts = (SELECT max(e.timestamp) {ROWS}) \
             WHERE last_id >= ?1 AND first_id <= ?2"
        ),
        [lo, hi],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rusqlite::Connection;

    use crate::event::{Event, Record, Stream};
    use crate::store::query::{self, EventFilter};
    use crate::store::writer::WriteConn;
    use crate::store::{open, writer, OpenMode};

    const TYPES: [&str; 4] = ["error", "warning", "prompt", "file_path"];

    fn session(conn: &Connection, id: &str, started: &str) {
        conn.execute(
            "INSERT INTO process_sessions (agent_name, session_id, started_at, state, command_json) \
             VALUES ('a', ?1, ?2, 'completed', '[]')",
            [id, started],
        )
        .expect("session");
    }

    /// A batch of `n` events of mixed types (a pseudo-random mix of `seed`), at `minute`.
    fn batch(seed: u64, n: usize, minute: u32) -> Vec<Record> {
        let mut x = seed;
        (0..n)
            .map(|i| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // "prompt" is rare: one in 16.
                let t = match (x >> 33) % 16 {
                    0 => "prompt",
                    1..=5 => "error",
                    6..=9 => "warning",
                    _ => "file_path",
                };
                Record::Event(Event {
                    timestamp: Arc::from(format!("2026-01-01T00:{minute:02}:{:02}.000Z", i % 60)),
                    stream: Stream::Stdout,
                    event_type: Arc::from(t),
                    pattern: Arc::from("p"),
                    matched_value: Some(format!("v{seed}-{i}")),
                    original_line: None,
                    line_number: i as u64,
                    metadata_json: None,
                    code_block_language: None,
                    risk_level: None,
                    auto_confirmable: false,
                })
            })
            .collect()
    }

    fn ids(conn: &Connection, sql: &str, p: &[&dyn rusqlite::ToSql]) -> Vec<i64> {
        let mut stmt = conn.prepare(sql).expect("prepare");
        stmt.query_map(p, |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    }

    /// Spans of a type do not overlap, and every row is in a span of its type.
    fn assert_invariant(conn: &Connection) {
        let uncovered = ids(
            conn,
            "SELECT e.id FROM extraction_events e WHERE NOT EXISTS (SELECT 1 FROM event_type_spans s \
             WHERE s.event_type = e.event_type AND e.id BETWEEN s.first_id AND s.last_id)",
            &[],
        );
        assert!(uncovered.is_empty(), "rows in no span: {uncovered:?}");
        let overlapping = ids(
            conn,
            "SELECT a.last_id FROM event_type_spans a JOIN event_type_spans b \
             ON a.event_type = b.event_type AND a.last_id < b.last_id AND b.first_id <= a.last_id",
            &[],
        );
        assert!(overlapping.is_empty(), "overlapping spans: {overlapping:?}");
    }

    /// The ids `events` lists for `f`, newest first.
    fn listed(conn: &Connection, f: &EventFilter) -> Vec<i64> {
        let mut ids: Vec<i64> = query::events(conn, f)
            .expect("events")
            .iter()
            .map(|e| e.id)
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids
    }

    /// Every page of every type's listing, and its counts, against a scan of the table.
    fn assert_listings(conn: &Connection) {
        for t in TYPES {
            let all = ids(
                conn,
                "SELECT id FROM extraction_events WHERE event_type = ?1 ORDER BY id DESC",
                &[&t],
            );
            for (limit, offset) in [(7, 0), (7, 7), (50, 3), (0, 0)] {
                let f = EventFilter {
                    event_type: Some(t.into()),
                    limit,
                    offset,
                    ..Default::default()
                };
                let got = listed(conn, &f);
                let end = if limit == 0 {
                    all.len()
                } else {
                    all.len().min(offset as usize + limit as usize)
                };
                let want = all.get(offset as usize..end).unwrap_or(&[]);
                assert_eq!(got, want, "{t} limit {limit} offset {offset}");
            }
            let (since, until) = ("2026-01-01T00:03:00.000Z", "2026-01-01T00:07:30.000Z");
            let want = ids(
                conn,
                "SELECT id FROM extraction_events WHERE event_type = ?1 AND timestamp >= ?2 \
                 AND timestamp < ?3 ORDER BY id DESC",
                &[&t, &since, &until],
            );
            let f = EventFilter {
                event_type: Some(t.into()),
                since: Some(since.into()),
                until: Some(until.into()),
                ..Default::default()
            };
            assert_eq!(
                query::events_count(conn, &f).expect("count"),
                want.len() as i64
            );
            assert_eq!(listed(conn, &f), want, "{t} in a window");
        }
    }

    #[test]
    fn listings_by_type_match_a_scan_across_sessions_prunes_and_reused_ids() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db =
            WriteConn::new(open(&dir.path().join("t.db"), OpenMode::Create).expect("open"));
        session(db.conn(), "old", "2020-01-01T00:00:00.000Z");
        session(db.conn(), "new", "2026-01-01T00:00:00.000Z");
        // Two sessions' batches interleaved, as two wrappers on one database write them.
        for i in 0..10u64 {
            let s = if i % 2 == 0 { "old" } else { "new" };
            writer::write_batch(
                &mut db,
                s,
                "a",
                &batch(i, 40 + i as usize * 7, i as u32),
                0,
                &[],
            )
            .expect("batch");
        }
        assert_invariant(db.conn());
        assert_listings(db.conn());
        // The newest rows go with "old" too if it printed last: SQLite then hands their ids
        // out again, and the spans must not claim the new rows twice.
        writer::write_batch(&mut db, "old", "a", &batch(99, 30, 9), 0, &[]).expect("batch");
        query::prune(db.conn(), "2021-01-01T00:00:00.000Z", false).expect("prune");
        assert_invariant(db.conn());
        assert_listings(db.conn());
        for i in 10..14u64 {
            writer::write_batch(&mut db, "new", "a", &batch(i, 25, i as u32 % 10), 0, &[])
                .expect("batch");
        }
        assert_invariant(db.conn());
        assert_listings(db.conn());
    }

    #[test]
    fn an_older_database_gets_spans_for_its_rows_and_loses_the_type_index() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("old.db");
        {
            let conn = crate::store::schema::database_at_version(&path, 5);
            session(&conn, "s1", "2026-01-01T00:00:00.000Z");
            session(&conn, "s2", "2026-01-01T00:00:00.000Z");
            // 1,500 rows of two sessions, one at a time and interleaved.
            for i in 0..1500u32 {
                let t = TYPES[(i as usize * 7 + i as usize / 13) % TYPES.len()];
                conn.execute(
                    "INSERT INTO extraction_events (agent_name, session_id, timestamp, stream, \
                     event_type, pattern) VALUES ('a', ?1, ?2, 'stdout', ?3, 'p')",
                    rusqlite::params![
                        if i % 3 == 0 { "s1" } else { "s2" },
                        format!("2026-01-01T00:{:02}:00.000Z", i / 150),
                        t
                    ],
                )
                .expect("row");
            }
        }
        let mut db = WriteConn::new(open(&path, OpenMode::Existing).expect("migrate"));
        let index: i64 = db
            .conn()
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'idx_events_type_ts'",
                [],
                |r| r.get(0),
            )
            .expect("schema");
        assert_eq!(index, 0);
        assert_invariant(db.conn());
        assert_listings(db.conn());
        writer::write_batch(&mut db, "s1", "a", &batch(5, 60, 8), 0, &[]).expect("batch");
        assert_invariant(db.conn());
        assert_listings(db.conn());
        // Run again over spans the writer made (a version set back by hand): replaced, not
        // doubled.
        db.conn()
            .execute_batch("PRAGMA user_version = 5")
            .expect("set back");
        drop(db);
        let conn = open(&path, OpenMode::Existing).expect("migrate again");
        assert_invariant(&conn);
        assert_listings(&conn);
    }
}
