//! Session spans: how a session's or an agent's events are found without an index on
//! `(session_id, line_number)` or on `(agent_name, timestamp)`.
//!
//! Those two indexes were a quarter of the database file (38 of 157 MB for the standard
//! input) and two B-tree insertions per event; on a disk, what SQLite writes is what the
//! database pipeline waits for (docs/PERFORMANCE.md, "Issue 17, ninth session"). A span says
//! "every row of this session whose id is in `first_id..=last_id` is here; rows of other
//! sessions may lie between", with how many rows it holds, their agent, and the range of their
//! line numbers and timestamps. The writer adds one per transaction (a transaction holds the
//! rows of one session): a row per 500 events.
//!
//! The invariant the queries rely on: the spans of one session never overlap, every row of
//! the session lies in one of them, and a span's rows have its agent. Each transaction's ids
//! are its own ([`insert`] is given them), the migration cuts existing rows into disjoint runs
//! of ids per session, and `prune` deletes a session's spans with its rows.
//!
//! Pages stay exact. "A session's events by line number, newest first, 50 from offset 100" is
//! what `ORDER BY line_number DESC, id DESC LIMIT 50 OFFSET 100` over the whole table gives:
//! [`bound`] finds a line number `b` such that every span that can hold one of the first 150
//! rows has `max_line >= b`, by reading the 150th row of the spans that qualify (spans are
//! nearly in order, so that is a span or two of rows, whatever the session's size).

use std::cmp::Ordering;

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection};

use crate::event::Event;

/// The `FROM` of a listing by session or agent: spans, then each span's rows by rowid.
/// `CROSS JOIN` keeps that order (SQLite would otherwise be free to start from the events).
/// A row is its own session's: spans of two sessions may overlap (the migration's do, where
/// the rows were interleaved), so an agent's spans would otherwise list a row twice.
pub const FROM: &str = "event_session_spans s CROSS JOIN extraction_events e \
     ON e.id BETWEEN s.first_id AND s.last_id AND e.session_id = s.session_id";

/// Whose rows: one session's or one agent's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Session,
    Agent,
}

impl Key {
    /// The conditions on the span and on the row, each with one `?` for the key's value.
    pub fn clauses(self) -> [&'static str; 2] {
        match self {
            Key::Session => ["s.session_id = ?", "e.session_id = ?"],
            Key::Agent => ["s.agent_name = ?", "e.agent_name = ?"],
        }
    }
}

/// What the rows are ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// `line_number` (a row without one counts as -1: last, as SQLite sorts a NULL).
    Line,
    Timestamp,
}

impl Order {
    /// The row's sort key, as SQL over `e`.
    pub fn row(self) -> &'static str {
        match self {
            Order::Line => "coalesce(e.line_number, -1)",
            Order::Timestamp => "e.timestamp",
        }
    }

    /// The span's smallest and largest sort key, as SQL over `s`.
    fn span(self) -> (&'static str, &'static str) {
        match self {
            Order::Line => ("s.min_line", "s.max_line"),
            Order::Timestamp => ("s.min_ts", "s.max_ts"),
        }
    }
}

/// One ordered listing: the key and its value, the order and its direction, and the other
/// conditions (on `s`, to skip spans, and on `e`), each with its values in order.
pub struct Listing<'a> {
    key: Key,
    value: &'a str,
    order: Order,
    newest_first: bool,
    span_clauses: Vec<String>,
    span_params: Vec<Value>,
    row_clauses: Vec<String>,
    row_params: Vec<Value>,
}

impl<'a> Listing<'a> {
    /// A listing with no condition beside the key.
    pub fn new(key: Key, value: &'a str, order: Order, newest_first: bool) -> Listing<'a> {
        Listing {
            key,
            value,
            order,
            newest_first,
            span_clauses: Vec::new(),
            span_params: Vec::new(),
            row_clauses: Vec::new(),
            row_params: Vec::new(),
        }
    }

    /// A condition on the rows, with its one value, if there is one.
    pub fn row(&mut self, clause: &str, value: &Option<String>) {
        if let Some(v) = value {
            self.row_clauses.push(clause.into());
            self.row_params.push(Value::Text(v.clone()));
        }
    }

    /// Only rows with `since <= timestamp < until` (either may be absent); a span whose rows
    /// all lie outside is skipped without reading them.
    pub fn within(&mut self, since: &Option<String>, until: &Option<String>) {
        self.row("e.timestamp >= ?", since);
        self.row("e.timestamp < ?", until);
        if let Some(v) = since {
            self.span_clauses.push("s.max_ts >= ?".into());
            self.span_params.push(Value::Text(v.clone()));
        }
        if let Some(v) = until {
            self.span_clauses.push("s.min_ts < ?".into());
            self.span_params.push(Value::Text(v.clone()));
        }
    }

    /// ` WHERE …` for the rows of [`FROM`], with `bound` (see [`bound`]) if any, and its values.
    pub fn where_sql(&self, bound: Option<&Value>) -> (String, Vec<Value>) {
        let [span_key, row_key] = self.key.clauses();
        let mut clauses = vec![span_key.to_string()];
        let mut params = vec![Value::Text(self.value.to_string())];
        clauses.extend(self.span_clauses.iter().cloned());
        params.extend(self.span_params.iter().cloned());
        if let Some(b) = bound {
            clauses.push(self.bound_clause().to_string());
            params.push(b.clone());
        }
        clauses.push(row_key.to_string());
        params.push(Value::Text(self.value.to_string()));
        clauses.extend(self.row_clauses.iter().cloned());
        params.extend(self.row_params.iter().cloned());
        (format!(" WHERE {}", clauses.join(" AND ")), params)
    }

    /// `ORDER BY` for the listing (`id` breaks ties, as it did on the indexes).
    pub fn order_sql(&self) -> String {
        let dir = if self.newest_first { "DESC" } else { "ASC" };
        format!("{} {dir}, e.id {dir}", self.order.row())
    }

    /// `SELECT` of `columns` (of `e`) for the listing's rows over the spans that can hold the
    /// page, in its order, `tail` (the limit clause) applied.
    ///
    /// The page is chosen first by (order key, id) alone and only its rows are then read
    /// whole: sorting the candidates with every column would carry each one's line, match and
    /// metadata through SQLite's sorter. When one millisecond holds many spans (a flood read
    /// in large chunks: 12,307 rows of 27 spans at the end of the benchmark's sessions), the
    /// first page of `events --agent` on 1.1 M events took 26.7 ms (whole process) that way
    /// and 14.6 ms this way (docs/PERFORMANCE.md, "Issue 17, tenth and eleventh
    /// sessions").
    pub fn page_sql(
        &self,
        columns: &str,
        bound: Option<&Value>,
        tail: &str,
    ) -> (String, Vec<Value>) {
        let (w, p) = self.where_sql(bound);
        let dir = if self.newest_first { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {columns} FROM (SELECT e.id AS page_id, {key} AS page_key FROM {FROM}{w} \
             ORDER BY {order} {tail}) page CROSS JOIN extraction_events e ON e.id = page.page_id \
             ORDER BY page.page_key {dir}, page.page_id {dir}",
            key = self.order.row(),
            order = self.order_sql(),
        );
        (sql, p)
    }

    /// The condition that a row is at `?` or before it in the listing's order.
    fn row_at_or_before(&self) -> String {
        let op = if self.newest_first { ">=" } else { "<=" };
        format!("{} {op} ?", self.order.row())
    }

    fn bound_clause(&self) -> &'static str {
        match (self.order, self.newest_first) {
            (Order::Line, true) => "s.max_line >= ?",
            (Order::Line, false) => "s.min_line <= ?",
            (Order::Timestamp, true) => "s.max_ts >= ?",
            (Order::Timestamp, false) => "s.min_ts <= ?",
        }
    }

    /// Whether `a` comes before `b` in the listing's order, or with it.
    fn no_later(&self, a: &Value, b: &Value) -> bool {
        let o = compare(a, b);
        if self.newest_first {
            o != Ordering::Less
        } else {
            o != Ordering::Greater
        }
    }
}

/// The bound on the spans under which `ORDER BY` [`Listing::order_sql`] `LIMIT limit OFFSET
/// offset` over [`FROM`] gives exactly the rows the whole table would; `None`: every span
/// (no limit, or the page reaches the last span).
///
/// Newest first by line number (the other orders alike): with the spans sorted by
/// `max_line`, take the first ones holding `offset + limit` rows; their smallest `min_line`
/// `b` bounds the page's last row from below, so no span with `max_line < b` can hold a row of
/// the page. If the spans with `max_line >= b` hold `offset + limit` rows at or above `b`, so
/// is that row: done. If not, that row is read: if below `b` (a span reaching down past it), it
/// is the bound, and the spans above it are counted again; if there is none (the other
/// conditions left too few rows), twice as many spans.
pub fn bound(
    conn: &Connection,
    l: &Listing<'_>,
    limit: u64,
    offset: u64,
) -> rusqlite::Result<Option<Value>> {
    if limit == 0 {
        return Ok(None);
    }
    let want = offset.saturating_add(limit);
    let (lo, hi) = l.order.span();
    let (sort, far) = if l.newest_first {
        (format!("{hi} DESC"), lo)
    } else {
        (format!("{lo} ASC"), hi)
    };
    // A session has a span per 500 events: reading them all is a few thousand short rows at
    // most, far less than the rows they stand for.
    let mut clauses = vec![l.key.clauses()[0].to_string()];
    clauses.extend(l.span_clauses.iter().cloned());
    let mut p = vec![Value::Text(l.value.to_string())];
    p.extend(l.span_params.iter().cloned());
    let sql = format!(
        "SELECT {far}, s.n FROM event_session_spans s WHERE {} ORDER BY {sort}",
        clauses.join(" AND ")
    );
    let mut stmt = conn.prepare(&sql)?;
    let spans = stmt
        .query_map(params_from_iter(p), |r| {
            Ok((r.get::<_, Value>(0)?, r.get::<_, i64>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<(Value, i64)>>>()?;
    let mut first = 0u64;
    let mut take = spans.len();
    for (i, (_, n)) in spans.iter().enumerate() {
        first = first.saturating_add(u64::try_from(*n).unwrap_or(0));
        if first >= want {
            take = i + 1;
            break;
        }
    }
    // The statement's text, with the bound's clause (its value is bound in the loop).
    let (where_sql, _) = l.where_sql(Some(&Value::Null));
    let kth = format!(
        "SELECT {} FROM {FROM}{where_sql} ORDER BY {} LIMIT 1 OFFSET ?",
        l.order.row(),
        l.order_sql()
    );
    let mut stmt = conn.prepare(&kth)?;
    // Whether `want` rows lie at the bound or before it: then so does the page's last row,
    // found without reading (and sorting) every row of the spans the bound takes, which the
    // `kth` statement must. It stops at the `want`th row.
    let enough = format!(
        "SELECT count(*) FROM (SELECT 1 FROM {FROM}{where_sql} AND {} LIMIT ?)",
        l.row_at_or_before()
    );
    let mut enough = conn.prepare(&enough)?;
    let want_v = Value::Integer(i64::try_from(want).unwrap_or(i64::MAX));
    let skip = Value::Integer(i64::try_from(want - 1).unwrap_or(i64::MAX));
    while take < spans.len() {
        // The farthest end of the spans taken: every row of theirs is on this side of it.
        let mut b = spans[0].0.clone();
        for (far, _) in &spans[1..take] {
            if l.no_later(&b, far) {
                b = far.clone();
            }
        }
        loop {
            let (_, mut p) = l.where_sql(Some(&b));
            let mut counted = p.clone();
            counted.extend([b.clone(), want_v.clone()]);
            let n: i64 = enough.query_row(params_from_iter(counted), |r| r.get(0))?;
            if u64::try_from(n).unwrap_or(0) >= want {
                return Ok(Some(b));
            }
            p.push(skip.clone());
            let row: Option<Value> = match stmt.query_row(params_from_iter(p), |r| r.get(0)) {
                Ok(v) => Some(v),
                Err(rusqlite::Error::QueryReturnedNoRows) => None,
                Err(e) => return Err(e),
            };
            match row {
                Some(v) if l.no_later(&v, &b) => return Ok(Some(b)),
                Some(v) => b = v,
                None => break,
            }
        }
        take = take.saturating_mul(2).max(take + 1);
    }
    Ok(None)
}

/// SQLite's order of values: NULL, numbers, text (as bytes), blobs.
fn compare(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Integer(_) | Value::Real(_) => 1,
            Value::Text(_) => 2,
            Value::Blob(_) => 3,
        }
    }
    match (a, b) {
        (Value::Integer(x), Value::Integer(y)) => x.cmp(y),
        (Value::Integer(x), Value::Real(y)) => (*x as f64).total_cmp(y),
        (Value::Real(x), Value::Integer(y)) => x.total_cmp(&(*y as f64)),
        (Value::Real(x), Value::Real(y)) => x.total_cmp(y),
        (Value::Text(x), Value::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Blob(x), Value::Blob(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Records the span of `events` (one session's, of `agent`), just inserted with ids `first..`.
pub fn insert(
    conn: &Connection,
    session_id: &str,
    agent: &str,
    first: i64,
    events: &[&Event],
) -> rusqlite::Result<()> {
    let Some(e0) = events.first() else {
        return Ok(());
    };
    let line = |e: &Event| i64::try_from(e.line_number).unwrap_or(i64::MAX);
    let (mut min_line, mut max_line) = (line(e0), line(e0));
    let (mut min_ts, mut max_ts) = (&*e0.timestamp, &*e0.timestamp);
    for e in &events[1..] {
        min_line = min_line.min(line(e));
        max_line = max_line.max(line(e));
        min_ts = min_ts.min(&*e.timestamp);
        max_ts = max_ts.max(&*e.timestamp);
    }
    let n = events.len() as i64;
    conn.prepare_cached(
        "INSERT INTO event_session_spans (session_id, last_id, first_id, agent_name, n, \
         min_line, max_line, min_ts, max_ts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        session_id,
        first + n - 1,
        first,
        agent,
        n,
        min_line,
        max_line,
        min_ts,
        max_ts
    ])?;
    Ok(())
}

/// `id IN (…)`: the ids of the events of the sessions in `sessions_sql` (a `SELECT` of
/// session ids), found through their spans.
pub fn ids_of_sessions(sessions_sql: &str) -> String {
    format!("id IN (SELECT e.id FROM {FROM} WHERE s.session_id IN ({sessions_sql}))")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rusqlite::Connection;

    use crate::event::{Event, Record, Stream};
    use crate::store::query::{self, EventFilter, TimelineFilter};
    use crate::store::writer::WriteConn;
    use crate::store::{open, writer, OpenMode};
    use crate::test_rng::XorShift;

    const SESSIONS: [(&str, &str); 3] = [("s1", "a"), ("s2", "b"), ("s3", "a")];
    const TYPES: [&str; 3] = ["error", "file_path", "code_block"];

    fn session(conn: &Connection, id: &str, agent: &str, started: &str) {
        conn.execute(
            "INSERT INTO process_sessions (agent_name, session_id, started_at, state, command_json) \
             VALUES (?1, ?2, ?3, 'completed', '[]')",
            [agent, id, started],
        )
        .expect("session");
    }

    /// A batch of `n` events whose line numbers go back now and then (a code block's event
    /// comes after the lines inside it) and whose timestamps are not in id order either.
    fn batch(rng: &mut XorShift, tag: usize, n: usize, line0: u64) -> Vec<Record> {
        (0..n)
            .map(|i| {
                let back = if rng.below(5) == 0 {
                    rng.below(40) as u64
                } else {
                    0
                };
                let minute = rng.below(10);
                Record::Event(Event {
                    timestamp: Arc::from(format!(
                        "2026-01-01T00:{minute:02}:{:02}.000Z",
                        rng.below(4)
                    )),
                    stream: Stream::Stdout,
                    event_type: Arc::from(TYPES[rng.below(TYPES.len())]),
                    pattern: Arc::from("p"),
                    matched_value: Some(format!("v{tag}-{i}")),
                    original_line: None,
                    line_number: (line0 + i as u64).saturating_sub(back),
                    metadata_json: None,
                    code_block_language: None,
                    risk_level: None,
                    auto_confirmable: false,
                })
            })
            .collect()
    }

    fn ids(conn: &Connection, sql: &str, p: Vec<rusqlite::types::Value>) -> Vec<i64> {
        let mut stmt = conn.prepare(sql).expect("prepare");
        stmt.query_map(rusqlite::params_from_iter(p), |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    }

    /// A session's spans do not overlap, and every row is in a span of its session.
    fn assert_invariant(conn: &Connection) {
        let uncovered = ids(
            conn,
            "SELECT e.id FROM extraction_events e WHERE NOT EXISTS (SELECT 1 FROM \
             event_session_spans s WHERE s.session_id = e.session_id \
             AND s.agent_name = e.agent_name AND e.id BETWEEN s.first_id AND s.last_id)",
            vec![],
        );
        assert!(uncovered.is_empty(), "rows in no span: {uncovered:?}");
        let overlapping = ids(
            conn,
            "SELECT a.last_id FROM event_session_spans a JOIN event_session_spans b \
             ON a.session_id = b.session_id AND a.last_id < b.last_id AND b.first_id <= a.last_id",
            vec![],
        );
        assert!(overlapping.is_empty(), "overlapping spans: {overlapping:?}");
    }

    /// Every page of every session's and agent's listing, with and without other filters,
    /// against the same `ORDER BY … LIMIT … OFFSET` over the whole table; and the counts,
    /// where `event_counts` has them (`counted`: the rows were written by the writer).
    fn assert_listings(conn: &Connection, counted: bool) {
        use rusqlite::types::Value::{Integer, Text};
        let mut filters: Vec<(EventFilter, String, Vec<rusqlite::types::Value>)> = Vec::new();
        for (s, a) in SESSIONS {
            filters.push((
                EventFilter {
                    session: Some(s.into()),
                    ..Default::default()
                },
                "session_id = ? ORDER BY coalesce(line_number, -1) DESC, id DESC".into(),
                vec![Text(s.into())],
            ));
            filters.push((
                EventFilter {
                    session: Some(s.into()),
                    agent: Some(a.into()),
                    event_type: Some("code_block".into()),
                    ..Default::default()
                },
                "session_id = ? AND agent_name = ? AND event_type = 'code_block' \
                 ORDER BY coalesce(line_number, -1) DESC, id DESC"
                    .into(),
                vec![Text(s.into()), Text(a.into())],
            ));
        }
        for a in ["a", "b", "nobody"] {
            filters.push((
                EventFilter {
                    agent: Some(a.into()),
                    ..Default::default()
                },
                "agent_name = ? ORDER BY timestamp DESC, id DESC".into(),
                vec![Text(a.into())],
            ));
            let (since, until) = ("2026-01-01T00:03:00.000Z", "2026-01-01T00:07:30.000Z");
            filters.push((
                EventFilter {
                    agent: Some(a.into()),
                    event_type: Some("error".into()),
                    since: Some(since.into()),
                    until: Some(until.into()),
                    ..Default::default()
                },
                "agent_name = ? AND event_type = 'error' AND timestamp >= ? AND timestamp < ? \
                 ORDER BY timestamp DESC, id DESC"
                    .into(),
                vec![Text(a.into()), Text(since.into()), Text(until.into())],
            ));
        }
        for (f, tail, p) in filters {
            let all = ids(
                conn,
                &format!("SELECT id FROM extraction_events WHERE {tail}"),
                p.clone(),
            );
            if counted || f.since.is_some() {
                assert_eq!(
                    query::events_count(conn, &f).expect("count"),
                    all.len() as i64,
                    "{tail}"
                );
            }
            for (limit, offset) in [(1, 0), (7, 0), (7, 7), (50, 3), (300, 0), (13, 190), (0, 0)] {
                let got: Vec<i64> = query::events(
                    conn,
                    &EventFilter {
                        limit,
                        offset,
                        ..f.clone()
                    },
                )
                .expect("events")
                .iter()
                .map(|e| e.id)
                .collect();
                let mut q = p.clone();
                q.extend([
                    Integer(if limit == 0 { -1 } else { limit as i64 }),
                    Integer(offset as i64),
                ]);
                let want = ids(
                    conn,
                    &format!("SELECT id FROM extraction_events WHERE {tail} LIMIT ? OFFSET ?"),
                    q,
                );
                assert_eq!(got, want, "{tail} limit {limit} offset {offset}");
            }
        }
        // The timeline reads an agent's events the same way, both ways in time.
        for a in ["a", "b"] {
            for (from, to, order) in [
                (None, None, "DESC"),
                (Some("2026-01-01T00:02:00.000Z"), None, "ASC"),
                (None, Some("2026-01-01T00:05:00.000Z"), "DESC"),
            ] {
                let f = TimelineFilter {
                    agent: Some(a.into()),
                    from: from.map(str::to_string),
                    to: to.map(str::to_string),
                    limit: 40,
                };
                let got: Vec<Option<String>> = query::timeline(conn, &f)
                    .expect("timeline")
                    .into_iter()
                    .filter(|t| t.kind == "event")
                    .map(|t| t.detail)
                    .collect();
                let mut w = vec!["agent_name = ?".to_string()];
                let mut p = vec![Text(a.into())];
                if let Some(from) = from {
                    w.push("timestamp >= ?".into());
                    p.push(Text(from.into()));
                }
                if let Some(to) = to {
                    w.push("timestamp < ?".into());
                    p.push(Text(to.into()));
                }
                let sql = format!(
                    "SELECT matched_value FROM extraction_events WHERE {} \
                     ORDER BY timestamp {order}, id {order} LIMIT 40",
                    w.join(" AND ")
                );
                let mut stmt = conn.prepare(&sql).expect("prepare");
                let mut want: Vec<Option<String>> = stmt
                    .query_map(rusqlite::params_from_iter(p), |r| r.get(0))
                    .expect("query")
                    .collect::<rusqlite::Result<_>>()
                    .expect("rows");
                if order == "DESC" {
                    // The timeline is shown oldest first.
                    want.reverse();
                }
                assert_eq!(got, want, "timeline of {a} from {from:?} to {to:?}");
            }
        }
    }

    #[test]
    fn pages_by_session_and_agent_match_a_scan_across_sessions_and_prunes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db =
            WriteConn::new(open(&dir.path().join("t.db"), OpenMode::Create).expect("open"));
        session(db.conn(), "s1", "a", "2020-01-01T00:00:00.000Z");
        session(db.conn(), "s2", "b", "2026-01-01T00:00:00.000Z");
        session(db.conn(), "s3", "a", "2026-01-01T00:00:00.000Z");
        let mut rng = XorShift::new(17);
        let mut lines = [0u64; 3];
        // The sessions' batches interleaved, as wrappers sharing one database write them.
        for tag in 0..24 {
            let k = rng.below(3);
            let n = 5 + rng.below(60);
            let (s, a) = SESSIONS[k];
            let b = batch(&mut rng, tag, n, lines[k]);
            lines[k] += n as u64;
            writer::write_batch(&mut db, s, a, &b, 0, &[]).expect("batch");
        }
        assert_invariant(db.conn());
        assert_listings(db.conn(), true);
        // Pruning s1 (it started first) removes its rows and spans; the others still list
        // exactly, and so do rows written after.
        let report = query::prune(db.conn(), "2021-01-01T00:00:00.000Z", false).expect("prune");
        assert!(report.events > 0);
        let left: i64 = db
            .conn()
            .query_row(
                "SELECT count(*) FROM extraction_events WHERE session_id = 's1'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(left, 0);
        for tag in 24..30 {
            let b = batch(&mut rng, tag, 30, lines[2]);
            lines[2] += 30;
            writer::write_batch(&mut db, "s3", "a", &b, 0, &[]).expect("batch");
        }
        assert_invariant(db.conn());
        assert_listings(db.conn(), true);
    }

    /// The first span holds enough rows but none that pass the filter; the next reaches down
    /// below the bound to the one that does, and a third span, wholly below the bound, holds
    /// a better one: the page must come from it.
    #[test]
    fn a_page_reaches_past_spans_below_the_first_bound() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db =
            WriteConn::new(open(&dir.path().join("t.db"), OpenMode::Create).expect("open"));
        session(db.conn(), "s", "a", "2026-01-01T00:00:00.000Z");
        let ev = |line: u64, t: &str| {
            Record::Event(Event {
                timestamp: Arc::from("2026-01-01T00:00:00.000Z"),
                stream: Stream::Stdout,
                event_type: Arc::from(t),
                pattern: Arc::from("p"),
                matched_value: Some(format!("{t}@{line}")),
                original_line: None,
                line_number: line,
                metadata_json: None,
                code_block_language: None,
                risk_level: None,
                auto_confirmable: false,
            })
        };
        let batches = [
            (100..=110).map(|l| ev(l, "file_path")).collect::<Vec<_>>(),
            vec![ev(105, "file_path"), ev(20, "error")],
            vec![ev(50, "error")],
        ];
        for b in &batches {
            writer::write_batch(&mut db, "s", "a", b, 0, &[]).expect("batch");
        }
        let f = EventFilter {
            session: Some("s".into()),
            event_type: Some("error".into()),
            limit: 1,
            ..Default::default()
        };
        let got: Vec<Option<String>> = query::events(db.conn(), &f)
            .expect("events")
            .into_iter()
            .map(|e| e.matched_value)
            .collect();
        assert_eq!(got, [Some("error@50".to_string())]);
    }

    #[test]
    fn an_older_database_gets_spans_for_its_rows_and_loses_both_indexes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("old.db");
        {
            let conn = crate::store::schema::database_at_version(&path, 6);
            for (s, a) in SESSIONS {
                session(&conn, s, a, "2026-01-01T00:00:00.000Z");
            }
            // 1,500 rows of three sessions interleaved one by one, some without a line number.
            let mut rng = XorShift::new(5);
            for i in 0..1500u32 {
                let (s, a) = SESSIONS[rng.below(3)];
                let line = (rng.below(9) > 0).then_some(i64::from(i) - rng.below(20) as i64);
                conn.execute(
                    "INSERT INTO extraction_events (agent_name, session_id, timestamp, stream, \
                     event_type, pattern, matched_value, line_number) \
                     VALUES (?1, ?2, ?3, 'stdout', ?4, 'p', ?5, ?6)",
                    rusqlite::params![
                        a,
                        s,
                        format!("2026-01-01T00:{:02}:00.000Z", rng.below(10)),
                        TYPES[rng.below(TYPES.len())],
                        format!("old-{i}"),
                        line
                    ],
                )
                .expect("row");
            }
        }
        let db = WriteConn::new(open(&path, OpenMode::Existing).expect("migrate"));
        let indexes: i64 = db
            .conn()
            .query_row(
                "SELECT count(*) FROM sqlite_schema \
                 WHERE name IN ('idx_events_session', 'idx_events_agent_ts')",
                [],
                |r| r.get(0),
            )
            .expect("schema");
        assert_eq!(indexes, 0);
        assert_invariant(db.conn());
        assert_listings(db.conn(), false);
        // Run again over spans the writer made (a version set back by hand): replaced, not
        // doubled.
        db.conn()
            .execute_batch("PRAGMA user_version = 6")
            .expect("set back");
        drop(db);
        let conn = open(&path, OpenMode::Existing).expect("migrate again");
        assert_invariant(&conn);
        assert_listings(&conn, false);
    }
}
