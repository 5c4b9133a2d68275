//! The read side of the store (SPEC §7): filters become parameterised SQL here and rows come
//! back as typed records whose field names are the column names, so `--json` output is the
//! schema people already query with `sqlite3`.
//!
//! Values are always bound, never spliced into SQL text; only fixed fragments chosen by this
//! file are. Every query is written so that SQLite can answer the first page from an index
//! (see docs/QUERYING.md for the plans and timings): lists are newest first and ordered by a
//! key the filtering index already holds.

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use serde::Serialize;

use super::session_spans::{self, Key, Listing, Order};
use super::spans;

/// States that end a session (SPEC §6). Only these may be pruned; they are the denominator of
/// the success rate.
pub const FINAL_STATES: &[&str] = &[
    "completed",
    "failed",
    "killed",
    "interrupted",
    "spawn_failed",
    "abandoned",
];

/// `state IN (…final…)` as SQL text: the list is this file's constant, not user input.
fn final_states_sql() -> String {
    let quoted: Vec<String> = FINAL_STATES.iter().map(|s| format!("'{s}'")).collect();
    format!("({})", quoted.join(", "))
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    #[error("no session {0:?} (list them with `wrapper sessions`)")]
    UnknownSession(String),
    #[error("session prefix {prefix:?} is ambiguous: it matches {}{}", candidates.join(", "), if *more { ", …" } else { "" })]
    AmbiguousSession {
        prefix: String,
        candidates: Vec<String>,
        more: bool,
    },
    #[error("no code block whose digest starts with {0:?} (list them with `wrapper code-blocks`)")]
    UnknownDigest(String),
    #[error("digest prefix {prefix:?} is ambiguous: it matches {}{}", candidates.join(", "), if *more { ", …" } else { "" })]
    AmbiguousDigest {
        prefix: String,
        candidates: Vec<String>,
        more: bool,
    },
    #[error("{0:?} is not a digest prefix (hexadecimal digits, as `wrapper code-blocks` shows)")]
    BadDigest(String),
    #[error("cannot search for {query:?}: {message}")]
    BadSearch { query: String, message: String },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

pub type QueryResult<T> = Result<T, QueryError>;

/// Conditions joined with AND, each with its bound values in order. Clauses are fixed SQL
/// written in this file with `?` placeholders; values only ever travel as parameters.
#[derive(Default)]
struct Where {
    clauses: Vec<String>,
    params: Vec<Value>,
}

impl Where {
    fn add(&mut self, clause: &str, values: impl IntoIterator<Item = Value>) {
        self.clauses.push(clause.to_string());
        self.params.extend(values);
    }

    fn opt(&mut self, clause: &str, value: &Option<String>) {
        if let Some(v) = value {
            self.add(clause, [Value::Text(v.clone())]);
        }
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }
}

/// A `LIMIT` value: `0` means no limit (SQLite's `-1`).
fn limit_value(limit: u64) -> Value {
    Value::Integer(if limit == 0 {
        -1
    } else {
        i64::try_from(limit).unwrap_or(i64::MAX)
    })
}

/// `LIMIT ? OFFSET ?` values for a page: `limit` as [`limit_value`], `offset` rows skipped.
fn page_values(limit: u64, offset: u64) -> [Value; 2] {
    [
        limit_value(limit),
        Value::Integer(i64::try_from(offset).unwrap_or(i64::MAX)),
    ]
}

/// The smallest string greater than every string that starts with `prefix`: strings compare
/// as bytes, and U+10FFFF is the largest UTF-8 sequence. A prefix lookup is then a range on
/// the UNIQUE index instead of a scan.
fn prefix_upper(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

// ---------------------------------------------------------------------------------------------
// Sessions

/// One `process_sessions` row.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    pub id: i64,
    pub agent_name: String,
    pub session_id: String,
    pub environment: Option<String>,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub exit_code: Option<i64>,
    pub signal: Option<String>,
    pub state: String,
    pub pid: Option<i64>,
    pub hostname: Option<String>,
    pub cwd: Option<String>,
    pub command_json: String,
    pub total_lines_processed: i64,
    pub total_extraction_events: i64,
    pub total_feedback_outcomes: i64,
    pub stdout_log_path: Option<String>,
    pub stderr_log_path: Option<String>,
    pub extraction_config_version: Option<String>,
    pub environment_config_version: Option<String>,
    pub wrapper_version: Option<String>,
    pub wrapper_pid: Option<i64>,
}

const SESSION_COLUMNS: &str = "id, agent_name, session_id, environment, started_at, ended_at, \
    exit_code, signal, state, pid, hostname, cwd, command_json, total_lines_processed, \
    total_extraction_events, total_feedback_outcomes, stdout_log_path, stderr_log_path, \
    extraction_config_version, environment_config_version, wrapper_version, wrapper_pid";

impl Session {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Session> {
        Ok(Session {
            id: r.get(0)?,
            agent_name: r.get(1)?,
            session_id: r.get(2)?,
            environment: r.get(3)?,
            started_at: r.get(4)?,
            ended_at: r.get(5)?,
            exit_code: r.get(6)?,
            signal: r.get(7)?,
            state: r.get(8)?,
            pid: r.get(9)?,
            hostname: r.get(10)?,
            cwd: r.get(11)?,
            command_json: r.get(12)?,
            total_lines_processed: r.get(13)?,
            total_extraction_events: r.get(14)?,
            total_feedback_outcomes: r.get(15)?,
            stdout_log_path: r.get(16)?,
            stderr_log_path: r.get(17)?,
            extraction_config_version: r.get(18)?,
            environment_config_version: r.get(19)?,
            wrapper_version: r.get(20)?,
            wrapper_pid: r.get(21)?,
        })
    }

    pub fn is_final(&self) -> bool {
        FINAL_STATES.contains(&self.state.as_str())
    }
}

#[derive(Debug, Default, Clone)]
pub struct SessionFilter {
    pub agent: Option<String>,
    /// Only sessions still `started` or `running`.
    pub active: bool,
    /// Started at or after (a stored-timestamp string).
    pub since: Option<String>,
    pub limit: u64,
    /// Rows skipped before the page (for paging over HTTP).
    pub offset: u64,
    /// Only sessions in this repository (a path or a remote URL; `store::git`).
    pub repo: Option<String>,
    /// Only sessions on this branch, at the start or at the end.
    pub branch: Option<String>,
}

fn session_where(f: &SessionFilter) -> Where {
    let mut w = Where::default();
    w.opt("agent_name = ?", &f.agent);
    if f.active {
        w.add("state IN ('started', 'running')", []);
    }
    w.opt("started_at >= ?", &f.since);
    for (clause, values) in super::git::filter_clauses(f.repo.as_deref(), f.branch.as_deref()) {
        w.add(clause, values);
    }
    w
}

/// Sessions, newest first.
pub fn sessions(conn: &Connection, f: &SessionFilter) -> QueryResult<Vec<Session>> {
    let w = session_where(f);
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM process_sessions{} ORDER BY started_at DESC, id DESC \
         LIMIT ? OFFSET ?",
        w.sql()
    );
    let mut p = w.params;
    p.extend(page_values(f.limit, f.offset));
    rows(conn, &sql, params_from_iter(p), Session::from_row)
}

/// How many sessions [`sessions`] would list without a limit.
pub fn sessions_count(conn: &Connection, f: &SessionFilter) -> QueryResult<i64> {
    let w = session_where(f);
    let sql = format!("SELECT count(*) FROM process_sessions{}", w.sql());
    Ok(conn.query_row(&sql, params_from_iter(w.params), |r| r.get(0))?)
}

/// Resolves a full session id or a unique prefix of one to the full id.
pub fn resolve_session(conn: &Connection, given: &str) -> QueryResult<String> {
    if given.is_empty() {
        return Err(QueryError::UnknownSession(given.into()));
    }
    let exact: Option<String> = conn
        .query_row(
            "SELECT session_id FROM process_sessions WHERE session_id = ?1",
            [given],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = exact {
        return Ok(id);
    }
    let found: Vec<String> = rows(
        conn,
        "SELECT session_id FROM process_sessions WHERE session_id >= ?1 AND session_id < ?2 \
         ORDER BY session_id LIMIT 11",
        params![given, prefix_upper(given)],
        |r| r.get(0),
    )?;
    match found.len() {
        0 => Err(QueryError::UnknownSession(given.into())),
        1 => Ok(found.into_iter().next().unwrap_or_default()),
        n => Err(QueryError::AmbiguousSession {
            prefix: given.into(),
            more: n > 10,
            candidates: found.into_iter().take(10).collect(),
        }),
    }
}

/// The session row of a full session id.
pub fn session(conn: &Connection, session_id: &str) -> QueryResult<Session> {
    conn.query_row(
        &format!("SELECT {SESSION_COLUMNS} FROM process_sessions WHERE session_id = ?1"),
        [session_id],
        Session::from_row,
    )
    .optional()?
    .ok_or_else(|| QueryError::UnknownSession(session_id.into()))
}

/// One `process_state_changes` row.
#[derive(Debug, Clone, Serialize)]
pub struct StateChange {
    pub id: i64,
    pub session_id: String,
    pub timestamp: String,
    pub state: String,
    pub exit_code: Option<i64>,
    pub metadata_json: Option<String>,
}

/// Runs `sql` with `params` and maps every row with `map`.
fn rows<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> QueryResult<Vec<T>> {
    let mut stmt = conn.prepare(sql)?;
    let all = stmt
        .query_map(params, map)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(all)
}

/// A session's state history, oldest first.
pub fn state_changes(conn: &Connection, session_id: &str) -> QueryResult<Vec<StateChange>> {
    rows(
        conn,
        "SELECT id, session_id, timestamp, state, exit_code, metadata_json \
         FROM process_state_changes WHERE session_id = ?1 ORDER BY id",
        [session_id],
        |r| {
            Ok(StateChange {
                id: r.get(0)?,
                session_id: r.get(1)?,
                timestamp: r.get(2)?,
                state: r.get(3)?,
                exit_code: r.get(4)?,
                metadata_json: r.get(5)?,
            })
        },
    )
}

/// One `event_counts` row.
#[derive(Debug, Clone, Serialize)]
pub struct EventCount {
    pub event_type: String,
    pub pattern: String,
    /// `""` when the rule has no risk level (the table's key cannot hold NULL).
    pub risk_level: String,
    pub n: i64,
}

/// How many code blocks were first seen in a session.
pub fn code_block_count(conn: &Connection, session_id: &str) -> QueryResult<i64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM code_blocks WHERE session_id = ?1",
        [session_id],
        |r| r.get(0),
    )?)
}

/// A session's event counts, most frequent first.
pub fn event_counts(conn: &Connection, session_id: &str) -> QueryResult<Vec<EventCount>> {
    rows(
        conn,
        "SELECT event_type, pattern, risk_level, n FROM event_counts WHERE session_id = ?1 \
         ORDER BY n DESC, event_type, pattern",
        [session_id],
        |r| {
            Ok(EventCount {
                event_type: r.get(0)?,
                pattern: r.get(1)?,
                risk_level: r.get(2)?,
                n: r.get(3)?,
            })
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Events

/// One `extraction_events` row. The same fields as `--events-out` lines, plus `id`.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub id: i64,
    pub agent_name: String,
    pub session_id: String,
    pub timestamp: String,
    pub stream: String,
    pub event_type: String,
    pub pattern: String,
    pub matched_value: Option<String>,
    pub original_line: Option<String>,
    pub line_number: Option<i64>,
    pub metadata_json: Option<String>,
    pub code_block_language: Option<String>,
    pub risk_level: Option<String>,
    pub auto_confirmable: bool,
}

const EVENT_COLUMNS: &str = "id, agent_name, session_id, timestamp, stream, event_type, pattern, \
    matched_value, original_line, line_number, metadata_json, code_block_language, risk_level, \
    auto_confirmable";

impl EventRecord {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<EventRecord> {
        Ok(EventRecord {
            id: r.get(0)?,
            agent_name: r.get(1)?,
            session_id: r.get(2)?,
            timestamp: r.get(3)?,
            stream: r.get(4)?,
            event_type: r.get(5)?,
            pattern: r.get(6)?,
            matched_value: r.get(7)?,
            original_line: r.get(8)?,
            line_number: r.get(9)?,
            metadata_json: r.get(10)?,
            code_block_language: r.get(11)?,
            risk_level: r.get(12)?,
            auto_confirmable: r.get::<_, i64>(13)? != 0,
        })
    }
}

#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    pub agent: Option<String>,
    /// A full session id (resolve prefixes first with [`resolve_session`]).
    pub session: Option<String>,
    pub event_type: Option<String>,
    pub pattern: Option<String>,
    pub risk: Option<String>,
    /// `timestamp >= since`.
    pub since: Option<String>,
    /// `timestamp < until`.
    pub until: Option<String>,
    pub limit: u64,
    /// Rows skipped before the page (for paging over HTTP).
    pub offset: u64,
}

/// Events, newest first.
///
/// Which rows make the page, and how SQLite finds them, depends on the filters, so that the
/// first page always comes off an index instead of a sort of every matching row:
/// - `--session`: by `line_number` (read order, hence time order), off the session's spans
///   (`store::session_spans`): the spans that can hold the page, each span's rows by rowid;
/// - `--agent`: by `timestamp`, off the agent's spans in the same way;
/// - `--type` alone (with pattern, risk or time): the type's most recently recorded rows,
///   off its spans (`store::spans`), newest span first, each span's rows by rowid;
/// - otherwise (no filter, or only pattern, risk, time): the most recently recorded rows,
///   walking the table backwards by id and stopping after `limit` matches.
///
/// Ids are given at commit, so recording order differs from timestamp order only among
/// events committed within the same flush interval by concurrent wrappers; such a page is
/// then shown in timestamp order.
///
/// `id` breaks ties; an index holds the rowid as its last column, so that costs no sort.
pub fn events(conn: &Connection, f: &EventFilter) -> QueryResult<Vec<EventRecord>> {
    if let Some(l) = session_listing(f) {
        let (sql, mut p) = listing_select(conn, &l, f, "LIMIT ? OFFSET ?")?;
        p.extend(page_values(f.limit, f.offset));
        return rows(conn, &sql, params_from_iter(p), EventRecord::from_row);
    }
    let scan = event_scan(f);
    let sql = scan.select("LIMIT ? OFFSET ?");
    let mut p = scan.w.params;
    p.extend(page_values(f.limit, f.offset));
    let mut rows = rows(conn, &sql, params_from_iter(p), EventRecord::from_row)?;
    if scan.recording_order {
        rows.sort_by(|a, b| b.timestamp.cmp(&a.timestamp).then(b.id.cmp(&a.id)));
    }
    Ok(rows)
}

const ORDER_BY_ID: &str = "id DESC";

/// How many events [`events`] would list without a limit (`f.limit` and `f.offset` unused).
///
/// Without a time bound the answer is a sum over `event_counts` (one row per session, type,
/// pattern and risk, kept by the writer in the same transactions), not a walk over a
/// million index entries; with one, the rows are counted.
pub fn events_count(conn: &Connection, f: &EventFilter) -> QueryResult<i64> {
    if f.since.is_none() && f.until.is_none() {
        let mut w = Where::default();
        w.opt(
            "session_id IN (SELECT session_id FROM process_sessions WHERE agent_name = ?)",
            &f.agent,
        );
        w.opt("session_id = ?", &f.session);
        w.opt("event_type = ?", &f.event_type);
        w.opt("pattern = ?", &f.pattern);
        w.opt("risk_level = ?", &f.risk);
        let sql = format!("SELECT coalesce(sum(n), 0) FROM event_counts{}", w.sql());
        return Ok(conn.query_row(&sql, params_from_iter(w.params), |r| r.get(0))?);
    }
    if let Some(l) = session_listing(f) {
        let (w, p) = l.where_sql(None);
        let sql = format!("SELECT count(*) FROM {}{w}", session_spans::FROM);
        return Ok(conn.query_row(&sql, params_from_iter(p), |r| r.get(0))?);
    }
    let scan = event_scan(f);
    let sql = format!("SELECT count(*) FROM {}{}", scan.from, scan.w.sql());
    Ok(conn.query_row(&sql, params_from_iter(scan.w.params), |r| r.get(0))?)
}

/// Events committed after the event `after_id`, in commit (id) order, at most `f.limit`:
/// what a live tail sends next. Ids grow with every commit, so `id > after_id` is exactly
/// "not sent yet"; the walk is on the primary key, so a filter that matches rarely costs a
/// scan of the new rows only.
pub fn events_after(
    conn: &Connection,
    f: &EventFilter,
    after_id: i64,
) -> QueryResult<Vec<EventRecord>> {
    let mut w = event_where(f);
    w.add("id > ?", [Value::Integer(after_id)]);
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM extraction_events{} ORDER BY id LIMIT ?",
        w.sql()
    );
    let mut p = w.params;
    p.push(limit_value(f.limit));
    rows(conn, &sql, params_from_iter(p), EventRecord::from_row)
}

/// The id of the newest committed event, 0 when there is none.
pub fn last_event_id(conn: &Connection) -> QueryResult<i64> {
    Ok(conn.query_row(
        "SELECT coalesce(max(id), 0) FROM extraction_events",
        [],
        |r| r.get(0),
    )?)
}

fn event_where(f: &EventFilter) -> Where {
    let mut w = Where::default();
    w.opt("agent_name = ?", &f.agent);
    w.opt("session_id = ?", &f.session);
    w.opt("event_type = ?", &f.event_type);
    w.opt("pattern = ?", &f.pattern);
    w.opt("risk_level = ?", &f.risk);
    w.opt("timestamp >= ?", &f.since);
    w.opt("timestamp < ?", &f.until);
    w
}

/// The listing of `f` by session (in line order) or by agent (in time order), newest first,
/// if it names either ([`session_spans`]).
fn session_listing(f: &EventFilter) -> Option<Listing<'_>> {
    let (key, value, order) = match (&f.session, &f.agent) {
        (Some(s), _) => (Key::Session, s, Order::Line),
        (None, Some(a)) => (Key::Agent, a, Order::Timestamp),
        (None, None) => return None,
    };
    let mut l = Listing::new(key, value, order, true);
    if key == Key::Session {
        l.row("e.agent_name = ?", &f.agent);
    }
    l.row("e.event_type = ?", &f.event_type);
    l.row("e.pattern = ?", &f.pattern);
    l.row("e.risk_level = ?", &f.risk);
    l.within(&f.since, &f.until);
    Some(l)
}

/// `SELECT` of the listing's events in its order, followed by `tail` (the limit clause),
/// over the spans [`session_spans::bound`] says can hold the page.
fn listing_select(
    conn: &Connection,
    l: &Listing<'_>,
    f: &EventFilter,
    tail: &str,
) -> QueryResult<(String, Vec<Value>)> {
    let bound = session_spans::bound(conn, l, f.limit, f.offset)?;
    Ok(l.page_sql(SPAN_EVENT_COLUMNS, bound.as_ref(), tail))
}

/// What [`events`] reads: which columns from where, the conditions, and the order.
struct EventScan {
    columns: &'static str,
    from: &'static str,
    w: Where,
    order: &'static str,
    /// The page is the most recently *recorded* rows (by id), shown in timestamp order.
    recording_order: bool,
}

impl EventScan {
    /// `SELECT … ORDER BY …` followed by `tail` (the limit clause).
    fn select(&self, tail: &str) -> String {
        format!(
            "SELECT {} FROM {}{} ORDER BY {} {tail}",
            self.columns,
            self.from,
            self.w.sql(),
            self.order
        )
    }
}

fn event_scan(f: &EventFilter) -> EventScan {
    let (Some(t), None, None) = (&f.event_type, &f.agent, &f.session) else {
        return EventScan {
            columns: EVENT_COLUMNS,
            from: "extraction_events",
            w: event_where(f),
            order: ORDER_BY_ID,
            recording_order: true,
        };
    };
    let mut w = Where::default();
    w.add("s.event_type = ?", [Value::Text(t.clone())]);
    w.add("e.event_type = ?", [Value::Text(t.clone())]);
    w.opt("e.pattern = ?", &f.pattern);
    w.opt("e.risk_level = ?", &f.risk);
    // A span whose rows all lie outside the window is skipped without reading them.
    if let Some(since) = &f.since {
        let v = Value::Text(since.clone());
        w.add("s.max_ts >= ?", [v.clone()]);
        w.add("e.timestamp >= ?", [v]);
    }
    if let Some(until) = &f.until {
        let v = Value::Text(until.clone());
        w.add("s.min_ts < ?", [v.clone()]);
        w.add("e.timestamp < ?", [v]);
    }
    EventScan {
        columns: SPAN_EVENT_COLUMNS,
        from: spans::FROM,
        w,
        order: spans::NEWEST_FIRST,
        recording_order: true,
    }
}

/// [`EVENT_COLUMNS`] of the `e` in [`spans::FROM`] and [`session_spans::FROM`].
const SPAN_EVENT_COLUMNS: &str = "e.id, e.agent_name, e.session_id, e.timestamp, e.stream, \
    e.event_type, e.pattern, e.matched_value, e.original_line, e.line_number, e.metadata_json, \
    e.code_block_language, e.risk_level, e.auto_confirmable";

/// The query plan SQLite chooses for [`events`], for the benchmark and for tests that guard
/// against a filter silently losing its index.
pub fn events_plan(conn: &Connection, f: &EventFilter) -> QueryResult<Vec<String>> {
    if let Some(l) = session_listing(f) {
        let (sql, mut p) = listing_select(conn, &l, f, "LIMIT ?")?;
        p.push(limit_value(f.limit));
        let sql = format!("EXPLAIN QUERY PLAN {sql}");
        return rows(conn, &sql, params_from_iter(p), |r| r.get::<_, String>(3));
    }
    let scan = event_scan(f);
    let sql = format!("EXPLAIN QUERY PLAN {}", scan.select("LIMIT ?"));
    let mut p = scan.w.params;
    p.push(limit_value(f.limit));
    rows(conn, &sql, params_from_iter(p), |r| r.get::<_, String>(3))
}

// ---------------------------------------------------------------------------------------------
// Code blocks

/// One `code_blocks` row.
#[derive(Debug, Clone, Serialize)]
pub struct CodeBlockRecord {
    pub id: i64,
    pub agent_name: String,
    pub session_id: String,
    pub timestamp: String,
    pub language: Option<String>,
    pub content: String,
    pub line_start: Option<i64>,
    pub line_end: Option<i64>,
    pub context_json: Option<String>,
    pub parseable: bool,
    pub digest: String,
    pub occurrences: i64,
    pub last_seen_at: Option<String>,
}

const CODE_BLOCK_COLUMNS: &str = "id, agent_name, session_id, timestamp, language, content, \
    line_start, line_end, context_json, parseable, digest, occurrences, last_seen_at";

impl CodeBlockRecord {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<CodeBlockRecord> {
        Ok(CodeBlockRecord {
            id: r.get(0)?,
            agent_name: r.get(1)?,
            session_id: r.get(2)?,
            timestamp: r.get(3)?,
            language: r.get(4)?,
            content: r.get(5)?,
            line_start: r.get(6)?,
            line_end: r.get(7)?,
            context_json: r.get(8)?,
            parseable: r.get::<_, i64>(9)? != 0,
            digest: r.get(10)?,
            occurrences: r.get(11)?,
            last_seen_at: r.get(12)?,
        })
    }
}

#[derive(Debug, Default, Clone)]
pub struct CodeBlockFilter {
    pub agent: Option<String>,
    pub language: Option<String>,
    /// A full session id.
    pub session: Option<String>,
    pub limit: u64,
    /// Rows skipped before the page (for paging over HTTP).
    pub offset: u64,
}

/// Code blocks, most recently first seen first. By id rather than timestamp: a block is
/// stored when first seen, so the orders agree, and `idx_code_blocks_session` and
/// `idx_code_blocks_language` hold the id, so the first page needs no sort.
///
/// A block is stored once (deduplicated by digest) under the session that printed it first,
/// but every session that printed it has a `code_block` event naming its digest: the agent
/// and session filters look there, so a block shows up for every session and agent that
/// printed it, not only the first.
pub fn code_blocks(conn: &Connection, f: &CodeBlockFilter) -> QueryResult<Vec<CodeBlockRecord>> {
    let w = code_block_where(f);
    let sql = format!(
        "SELECT {CODE_BLOCK_COLUMNS} FROM code_blocks{} ORDER BY id DESC LIMIT ? OFFSET ?",
        w.sql()
    );
    let mut p = w.params;
    p.extend(page_values(f.limit, f.offset));
    rows(conn, &sql, params_from_iter(p), CodeBlockRecord::from_row)
}

/// How many code blocks [`code_blocks`] would list without a limit.
pub fn code_blocks_count(conn: &Connection, f: &CodeBlockFilter) -> QueryResult<i64> {
    let w = code_block_where(f);
    let sql = format!("SELECT count(*) FROM code_blocks{}", w.sql());
    Ok(conn.query_row(&sql, params_from_iter(w.params), |r| r.get(0))?)
}

fn code_block_where(f: &CodeBlockFilter) -> Where {
    let mut w = Where::default();
    // The blocks an agent printed: its `code_block` events, found through their type's spans
    // (they are few) rather than by walking every event of the agent.
    if let Some(agent) = &f.agent {
        w.add(
            &format!(
                "(agent_name = ? OR digest IN (SELECT e.matched_value FROM {} \
                 WHERE s.event_type = 'code_block' AND e.event_type = 'code_block' \
                 AND e.agent_name = ?))",
                spans::FROM
            ),
            [Value::Text(agent.clone()), Value::Text(agent.clone())],
        );
    }
    w.opt("language = ?", &f.language);
    if let Some(session) = &f.session {
        // As for an agent: the `code_block` events, through their type's spans.
        w.add(
            &format!(
                "(session_id = ? OR digest IN (SELECT e.matched_value FROM {} \
                 WHERE s.event_type = 'code_block' AND e.event_type = 'code_block' \
                 AND e.session_id = ?))",
                spans::FROM
            ),
            [Value::Text(session.clone()), Value::Text(session.clone())],
        );
    }
    w
}

/// The code block whose digest is `prefix` or starts with it (case-insensitive hex).
pub fn code_block_by_digest(conn: &Connection, prefix: &str) -> QueryResult<CodeBlockRecord> {
    let p = prefix.trim().to_ascii_lowercase();
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(QueryError::BadDigest(prefix.into()));
    }
    let found = rows(
        conn,
        &format!(
            "SELECT {CODE_BLOCK_COLUMNS} FROM code_blocks WHERE digest >= ?1 AND digest < ?2 \
             ORDER BY digest LIMIT 11"
        ),
        params![p, prefix_upper(&p)],
        CodeBlockRecord::from_row,
    )?;
    match found.len() {
        0 => Err(QueryError::UnknownDigest(prefix.into())),
        1 => found
            .into_iter()
            .next()
            .ok_or_else(|| QueryError::UnknownDigest(prefix.into())),
        n => Err(QueryError::AmbiguousDigest {
            prefix: prefix.into(),
            more: n > 10,
            candidates: found.into_iter().take(10).map(|b| b.digest).collect(),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Stats

#[derive(Debug, Default, Clone)]
pub struct StatsFilter {
    pub agent: Option<String>,
    /// Only sessions with at least one event of this pattern, and only its events.
    pub pattern: Option<String>,
    /// Sessions started at or after.
    pub since: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TypeCount {
    pub event_type: String,
    pub n: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PatternCount {
    pub pattern: String,
    pub event_type: String,
    pub n: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RiskCount {
    /// `""` for events whose rule has no risk level.
    pub risk_level: String,
    pub n: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentStats {
    pub agent_name: String,
    pub sessions: i64,
    pub active_sessions: i64,
    pub ended_sessions: i64,
    pub completed_sessions: i64,
    /// completed / ended; `null` when no session has ended.
    pub success_rate: Option<f64>,
    pub events: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub sessions: i64,
    pub active_sessions: i64,
    pub ended_sessions: i64,
    pub completed_sessions: i64,
    pub success_rate: Option<f64>,
    pub events: i64,
    pub by_type: Vec<TypeCount>,
    pub by_pattern: Vec<PatternCount>,
    pub by_risk: Vec<RiskCount>,
    pub by_agent: Vec<AgentStats>,
}

fn rate(completed: i64, ended: i64) -> Option<f64> {
    (ended > 0).then(|| completed as f64 / ended as f64)
}

/// Totals from `process_sessions` and `event_counts` only: never a scan of the events.
pub fn stats(conn: &Connection, f: &StatsFilter) -> QueryResult<Stats> {
    let mut w = Where::default();
    w.opt("agent_name = ?", &f.agent);
    w.opt("started_at >= ?", &f.since);
    w.opt(
        "session_id IN (SELECT session_id FROM event_counts WHERE pattern = ?)",
        &f.pattern,
    );
    let scope = format!(
        "WITH s AS (SELECT session_id, agent_name, state FROM process_sessions{})",
        w.sql()
    );
    let finals = final_states_sql();
    let mut by_agent: Vec<AgentStats> = {
        let sql = format!(
            "{scope} SELECT agent_name, count(*), \
             sum(state IN ('started', 'running')), sum(state IN {finals}), \
             sum(state = 'completed') FROM s GROUP BY agent_name ORDER BY agent_name"
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(w.params.iter()), |r| {
            let ended: i64 = r.get(3)?;
            let completed: i64 = r.get(4)?;
            Ok(AgentStats {
                agent_name: r.get(0)?,
                sessions: r.get(1)?,
                active_sessions: r.get(2)?,
                ended_sessions: ended,
                completed_sessions: completed,
                success_rate: rate(completed, ended),
                events: 0,
            })
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };

    let mut ep = w.params.clone();
    let pattern_clause = if let Some(p) = &f.pattern {
        ep.push(Value::Text(p.clone()));
        " WHERE c.pattern = ?"
    } else {
        ""
    };
    let sql = format!(
        "{scope} SELECT s.agent_name, c.event_type, c.pattern, c.risk_level, sum(c.n) \
         FROM s JOIN event_counts c ON c.session_id = s.session_id{pattern_clause} \
         GROUP BY 1, 2, 3, 4"
    );
    let rows: Vec<(String, String, String, String, i64)> =
        rows(conn, &sql, params_from_iter(ep), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?;

    use std::collections::BTreeMap;
    let mut by_type: BTreeMap<&str, i64> = BTreeMap::new();
    let mut by_pattern: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    let mut by_risk: BTreeMap<&str, i64> = BTreeMap::new();
    let mut per_agent: BTreeMap<&str, i64> = BTreeMap::new();
    for (agent, t, p, risk, n) in &rows {
        *by_type.entry(t).or_default() += n;
        *by_pattern.entry((p, t)).or_default() += n;
        *by_risk.entry(risk).or_default() += n;
        *per_agent.entry(agent).or_default() += n;
    }
    for a in &mut by_agent {
        a.events = per_agent.get(a.agent_name.as_str()).copied().unwrap_or(0);
    }
    let mut by_type: Vec<TypeCount> = by_type
        .into_iter()
        .map(|(t, n)| TypeCount {
            event_type: t.into(),
            n,
        })
        .collect();
    by_type.sort_by(|a, b| b.n.cmp(&a.n).then_with(|| a.event_type.cmp(&b.event_type)));
    let mut by_pattern: Vec<PatternCount> = by_pattern
        .into_iter()
        .map(|((p, t), n)| PatternCount {
            pattern: p.into(),
            event_type: t.into(),
            n,
        })
        .collect();
    by_pattern.sort_by(|a, b| b.n.cmp(&a.n).then_with(|| a.pattern.cmp(&b.pattern)));
    let mut by_risk: Vec<RiskCount> = by_risk
        .into_iter()
        .map(|(r, n)| RiskCount {
            risk_level: r.into(),
            n,
        })
        .collect();
    by_risk.sort_by(|a, b| b.n.cmp(&a.n).then_with(|| a.risk_level.cmp(&b.risk_level)));

    let sum = |g: fn(&AgentStats) -> i64| by_agent.iter().map(g).sum::<i64>();
    let (sessions, active, ended, completed) = (
        sum(|a| a.sessions),
        sum(|a| a.active_sessions),
        sum(|a| a.ended_sessions),
        sum(|a| a.completed_sessions),
    );
    Ok(Stats {
        sessions,
        active_sessions: active,
        ended_sessions: ended,
        completed_sessions: completed,
        success_rate: rate(completed, ended),
        events: by_type.iter().map(|t| t.n).sum(),
        by_type,
        by_pattern,
        by_risk,
        by_agent,
    })
}

// ---------------------------------------------------------------------------------------------
// Timeline

/// One moment of an agent's timeline: a state change or an event.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    pub timestamp: String,
    pub session_id: String,
    /// `"state"` or `"event"`.
    pub kind: String,
    /// The state (`running`, `completed`, …) or the event type.
    pub what: String,
    pub pattern: Option<String>,
    pub risk_level: Option<String>,
    /// The event's matched value, or a state change's exit code / metadata.
    pub detail: Option<String>,
    pub line_number: Option<i64>,
}

#[derive(Debug, Default, Clone)]
pub struct TimelineFilter {
    /// One agent's sessions, or every agent's.
    pub agent: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: u64,
}

/// State changes and events of one agent's sessions, oldest first. With `from`, the first
/// `limit` entries from there; without it, the last `limit` before `to` (or now).
///
/// Each kind is read with its own `ORDER BY … LIMIT` (an agent's events off its spans, as
/// [`events`] reads them), then the two short lists are merged here: a single UNION ALL
/// query would sort every event of the agent before applying the limit.
pub fn timeline(conn: &Connection, f: &TimelineFilter) -> QueryResult<Vec<TimelineEntry>> {
    let forward = f.from.is_some();
    let dir = if forward { "ASC" } else { "DESC" };
    let lim = limit_value(f.limit);
    // (entry, order within one millisecond: starts, then events, then ends; then row id)
    let mut all: Vec<(TimelineEntry, i64, i64)> = Vec::new();

    const TIMELINE_COLUMNS: &str = "e.timestamp, e.session_id, e.event_type, e.pattern, \
        e.risk_level, e.matched_value, e.line_number, e.id";
    let (sql, mut p) = match &f.agent {
        Some(agent) => {
            let mut l = Listing::new(Key::Agent, agent, Order::Timestamp, !forward);
            l.within(&f.from, &f.to);
            let bound = session_spans::bound(conn, &l, f.limit, 0)?;
            l.page_sql(TIMELINE_COLUMNS, bound.as_ref(), "LIMIT ?")
        }
        None => {
            let mut ew = Where::default();
            ew.opt("e.timestamp >= ?", &f.from);
            ew.opt("e.timestamp < ?", &f.to);
            let sql = format!(
                "SELECT {TIMELINE_COLUMNS} FROM extraction_events e{} \
                 ORDER BY e.timestamp {dir}, e.id {dir} LIMIT ?",
                ew.sql()
            );
            (sql, ew.params)
        }
    };
    p.push(lim.clone());
    let mut stmt = conn.prepare(&sql)?;
    for r in stmt.query_map(params_from_iter(p), |r| {
        Ok((
            TimelineEntry {
                timestamp: r.get(0)?,
                session_id: r.get(1)?,
                kind: "event".into(),
                what: r.get(2)?,
                pattern: r.get(3)?,
                risk_level: r.get(4)?,
                detail: r.get(5)?,
                line_number: r.get(6)?,
            },
            1,
            r.get(7)?,
        ))
    })? {
        all.push(r?);
    }

    let mut sw = Where::default();
    sw.opt("s.agent_name = ?", &f.agent);
    sw.opt("c.timestamp >= ?", &f.from);
    sw.opt("c.timestamp < ?", &f.to);
    let sql = format!(
        "SELECT c.timestamp, c.session_id, c.state, \
                CASE WHEN c.exit_code IS NOT NULL THEN 'exit ' || c.exit_code ELSE c.metadata_json END, \
                c.id FROM process_state_changes c \
         JOIN process_sessions s ON s.session_id = c.session_id{} \
         ORDER BY c.timestamp {dir}, c.id {dir} LIMIT ?",
        sw.sql()
    );
    let mut p = sw.params;
    p.push(lim);
    let mut stmt = conn.prepare(&sql)?;
    for r in stmt.query_map(params_from_iter(p), |r| {
        let state: String = r.get(2)?;
        let k = if matches!(state.as_str(), "started" | "running") {
            0
        } else {
            2
        };
        Ok((
            TimelineEntry {
                timestamp: r.get(0)?,
                session_id: r.get(1)?,
                kind: "state".into(),
                what: state,
                pattern: None,
                risk_level: None,
                detail: r.get(3)?,
                line_number: None,
            },
            k,
            r.get(4)?,
        ))
    })? {
        all.push(r?);
    }

    all.sort_by(|a, b| {
        a.0.timestamp
            .cmp(&b.0.timestamp)
            .then(a.1.cmp(&b.1))
            .then(a.2.cmp(&b.2))
    });
    if f.limit > 0 {
        let n = usize::try_from(f.limit).unwrap_or(usize::MAX);
        if forward {
            all.truncate(n);
        } else if all.len() > n {
            all.drain(..all.len() - n);
        }
    }
    Ok(all.into_iter().map(|(e, _, _)| e).collect())
}

// ---------------------------------------------------------------------------------------------
// Full-text search

/// One search hit: an event or a code block.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    /// `"event"` or `"code_block"`.
    pub kind: String,
    /// `extraction_events.id` or `code_blocks.id`.
    pub id: i64,
    pub session_id: String,
    pub agent_name: String,
    pub timestamp: String,
    pub event_type: Option<String>,
    pub pattern: Option<String>,
    pub line_number: Option<i64>,
    pub language: Option<String>,
    pub digest: Option<String>,
    /// The best-matching fragment; matches are wrapped in [`HIT_OPEN`] / [`HIT_CLOSE`].
    pub snippet: String,
    /// FTS5 bm25 rank: lower is better.
    pub rank: f64,
}

/// Markers around matched terms in [`SearchHit::snippet`], replaced by the presentation layer.
pub const HIT_OPEN: char = '\u{2}';
pub const HIT_CLOSE: char = '\u{3}';

/// Turns what a person typed into an FTS5 query: each word becomes a quoted phrase (so `-`,
/// `:`, `(` and quotes are plain text, not syntax), all must match; a trailing `*` keeps its
/// prefix meaning. With `raw`, the FTS5 query language is used as given.
pub fn fts_query(input: &str, raw: bool) -> String {
    if raw {
        return input.to_string();
    }
    input
        .split_whitespace()
        .map(|w| {
            let (word, star) = match w.strip_suffix('*') {
                Some(s) if !s.is_empty() => (s, "*"),
                _ => (w, ""),
            };
            format!("\"{}\"{star}", word.replace('"', "\"\""))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Ranked full-text search over event lines and code blocks. Call [`super::fts::sync`] first.
pub fn search(
    conn: &Connection,
    query: &str,
    raw: bool,
    agent: Option<&str>,
    limit: u64,
) -> QueryResult<Vec<SearchHit>> {
    let q = fts_query(query, raw);
    if q.trim().is_empty() {
        return Err(QueryError::BadSearch {
            query: query.into(),
            message: "the query is empty".into(),
        });
    }
    let (open, close) = (HIT_OPEN.to_string(), HIT_CLOSE.to_string());
    let agent_clause = if agent.is_some() {
        " AND x.agent_name = ?5"
    } else {
        " AND ?5 IS NULL"
    };
    let lim = limit_value(limit);
    // The SQL here is fixed and known good, so a generic SQLITE_ERROR while running it comes
    // from the MATCH expression: the user's query (unbalanced quote, unknown column, ...).
    let bad = |e: rusqlite::Error| match &e {
        rusqlite::Error::SqliteFailure(f, msg) if f.code == rusqlite::ErrorCode::Unknown => {
            QueryError::BadSearch {
                query: query.into(),
                message: msg.clone().unwrap_or_else(|| f.to_string()),
            }
        }
        _ => QueryError::Sqlite(e),
    };
    // The two indexes differ only in their table, what identifies a hit (event type and
    // pattern, or language and digest) and the snippet's column; one query shape serves both.
    let sources = [
        (
            "event",
            "extraction_events",
            "x.event_type, x.pattern, x.line_number",
            -1,
        ),
        (
            "code_block",
            "code_blocks",
            "x.language, x.digest, x.line_start",
            0,
        ),
    ];
    let mut hits = Vec::new();
    for (kind, table, cols, snippet_col) in sources {
        let sql = format!(
            "SELECT x.id, x.session_id, x.agent_name, x.timestamp, {cols}, \
                    snippet({table}_fts, {snippet_col}, ?2, ?3, '…', 24), f.rank \
             FROM {table}_fts f JOIN {table} x ON x.id = f.rowid \
             WHERE {table}_fts MATCH ?1{agent_clause} ORDER BY f.rank LIMIT ?4"
        );
        let is_event = kind == "event";
        let mut stmt = conn.prepare(&sql).map_err(bad)?;
        let rows = stmt
            .query_map(params![q, open, close, lim, agent], |r| {
                let (a, b): (Option<String>, Option<String>) = (r.get(4)?, r.get(5)?);
                let (event_type, pattern, language, digest) = if is_event {
                    (a, b, None, None)
                } else {
                    (None, None, a, b)
                };
                Ok(SearchHit {
                    kind: kind.into(),
                    id: r.get(0)?,
                    session_id: r.get(1)?,
                    agent_name: r.get(2)?,
                    timestamp: r.get(3)?,
                    event_type,
                    pattern,
                    line_number: r.get(6)?,
                    language,
                    digest,
                    snippet: r.get(7)?,
                    rank: r.get(8)?,
                })
            })
            .map_err(bad)?;
        for r in rows {
            hits.push(r.map_err(bad)?);
        }
    }
    // Both lists are ranked by bm25 on comparable short texts; merge them into one ranking.
    hits.sort_by(|a, b| {
        a.rank
            .total_cmp(&b.rank)
            .then(b.timestamp.cmp(&a.timestamp))
    });
    if limit > 0 {
        hits.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    Ok(hits)
}

// ---------------------------------------------------------------------------------------------
// Prune

/// `prune --captures-older-than`: drops the captured output of ended sessions that started
/// before `cutoff`, keeping the sessions and their events.
pub fn drop_captures(
    conn: &Connection,
    cutoff: &str,
    dry_run: bool,
) -> QueryResult<super::capture::DropReport> {
    Ok(super::capture::drop_older_than(
        conn,
        cutoff,
        &final_states_sql(),
        dry_run,
    )?)
}

/// What a prune removed (or, dry, would remove).
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub sessions: Vec<Session>,
    pub events: i64,
    pub event_counts: i64,
    pub code_blocks: i64,
    pub state_changes: i64,
    /// Compressed bytes of captured output that go with the sessions.
    pub capture_bytes: i64,
    pub dry_run: bool,
}

/// Deletes every session in a final state that started before `cutoff`, with everything
/// under it, in one transaction; the FTS indexes lose the same rows. Live sessions are never
/// touched. With `dry_run`, counts the same rows and changes nothing.
pub fn prune(conn: &Connection, cutoff: &str, dry_run: bool) -> QueryResult<PruneReport> {
    let tx = super::retention_transaction(conn, dry_run)?;
    let finals = final_states_sql();
    let mut stmt = tx.prepare(&format!(
        "SELECT {SESSION_COLUMNS} FROM process_sessions \
         WHERE started_at < ?1 AND state IN {finals} ORDER BY started_at, id"
    ))?;
    let sessions: Vec<Session> = stmt
        .query_map([cutoff], Session::from_row)?
        .collect::<rusqlite::Result<_>>()?;
    drop(stmt);
    let mut report = PruneReport {
        sessions,
        events: 0,
        event_counts: 0,
        code_blocks: 0,
        state_changes: 0,
        capture_bytes: 0,
        dry_run,
    };
    if report.sessions.is_empty() {
        return Ok(report);
    }
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS prune_sessions (session_id TEXT PRIMARY KEY); \
         DELETE FROM temp.prune_sessions;",
    )?;
    {
        let mut ins = tx.prepare("INSERT INTO temp.prune_sessions (session_id) VALUES (?1)")?;
        for s in &report.sessions {
            ins.execute([&s.session_id])?;
        }
    }
    const DOOMED: &str = "session_id IN (SELECT session_id FROM temp.prune_sessions)";
    // The same rows of the events, through the sessions' spans instead of a scan of the table.
    let doomed_events =
        session_spans::ids_of_sessions("SELECT session_id FROM temp.prune_sessions");
    // A code block is stored once, under the session that printed it first, but other
    // sessions may have printed it too (their `code_block` events name its digest). For every
    // block the doomed sessions stored or printed, count the sightings that remain.
    tx.execute_batch(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS prune_refs \
           (digest TEXT PRIMARY KEY, n INTEGER, first_id INTEGER, last_ts TEXT); \
         DELETE FROM temp.prune_refs; \
         INSERT INTO temp.prune_refs (digest, n, first_id, last_ts) \
           SELECT matched_value, count(*), min(id), max(timestamp) FROM extraction_events \
           WHERE event_type = 'code_block' AND NOT ({DOOMED}) AND matched_value IN ( \
             SELECT digest FROM code_blocks WHERE {DOOMED} \
             UNION SELECT matched_value FROM extraction_events \
               WHERE event_type = 'code_block' AND {DOOMED}) \
           GROUP BY matched_value;"
    ))?;
    // Blocks that go: stored by a doomed session and printed by no session that stays.
    let gone_blocks = format!("{DOOMED} AND digest NOT IN (SELECT digest FROM temp.prune_refs)");
    let count = |table: &str, cond: &str| -> rusqlite::Result<i64> {
        tx.query_row(
            &format!("SELECT count(*) FROM {table} WHERE {cond}"),
            [],
            |r| r.get(0),
        )
    };
    report.events = count("extraction_events", &doomed_events)?;
    report.event_counts = count("event_counts", DOOMED)?;
    report.code_blocks = count("code_blocks", &gone_blocks)?;
    report.state_changes = count("process_state_changes", DOOMED)?;
    report.capture_bytes = super::capture::stored_where(&tx, DOOMED)?;
    if dry_run {
        tx.execute_batch("DROP TABLE temp.prune_sessions; DROP TABLE temp.prune_refs")?;
        tx.commit()?;
        return Ok(report);
    }
    // An external-content FTS index must be told the old values of every row it indexed
    // before that row goes; rows above the mark were never indexed and must not be "deleted".
    for (fts, table, cols) in super::fts::FTS {
        let cond = if *table == "code_blocks" {
            gone_blocks.as_str()
        } else {
            doomed_events.as_str()
        };
        tx.execute(
            &format!(
                "INSERT INTO {fts} ({fts}, rowid, {cols}) SELECT 'delete', id, {cols} FROM {table} \
                 WHERE {cond} AND id <= (SELECT indexed_through FROM fts_state WHERE fts_table = ?1)"
            ),
            [fts],
        )?;
    }
    tx.execute(&format!("DELETE FROM code_blocks WHERE {gone_blocks}"), [])?;
    // The blocks that stay: a doomed first session hands the block to the earliest sighting
    // that remains, and every touched block counts only the sightings that remain.
    tx.execute_batch(&format!(
        "UPDATE code_blocks SET \
           (session_id, agent_name, timestamp) = (SELECT e.session_id, e.agent_name, e.timestamp \
             FROM temp.prune_refs r JOIN extraction_events e ON e.id = r.first_id \
             WHERE r.digest = code_blocks.digest) \
         WHERE {DOOMED}; \
         UPDATE code_blocks SET \
           (occurrences, last_seen_at) = (SELECT r.n, r.last_ts FROM temp.prune_refs r \
             WHERE r.digest = code_blocks.digest) \
         WHERE digest IN (SELECT digest FROM temp.prune_refs);"
    ))?;
    super::capture::delete_where(&tx, DOOMED)?;
    let doomed_ids: (Option<i64>, Option<i64>) = tx.query_row(
        &format!("SELECT min(id), max(id) FROM extraction_events WHERE {doomed_events}"),
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    tx.execute(
        &format!("DELETE FROM extraction_events WHERE {doomed_events}"),
        [],
    )?;
    for table in [
        "event_session_spans",
        "event_counts",
        "process_state_changes",
        "process_sessions",
    ] {
        tx.execute(&format!("DELETE FROM {table} WHERE {DOOMED}"), [])?;
    }
    if let (Some(lo), Some(hi)) = doomed_ids {
        spans::clip(&tx, lo, hi)?;
    }
    // SQLite reuses the ids of deleted rows at the top of a table: lower the mark so that
    // rows inserted later with those ids are indexed.
    for (fts, table, _) in super::fts::FTS {
        tx.execute(
            &format!(
                "UPDATE fts_state SET indexed_through = \
                 min(indexed_through, (SELECT coalesce(max(id), 0) FROM {table})) \
                 WHERE fts_table = ?1"
            ),
            [fts],
        )?;
    }
    tx.execute_batch("DROP TABLE temp.prune_sessions; DROP TABLE temp.prune_refs")?;
    tx.commit()?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = crate::store::open(&dir.path().join("t.db"), crate::store::OpenMode::Create)
            .expect("open");
        (dir, conn)
    }

    fn plan(conn: &Connection, f: EventFilter) -> String {
        events_plan(conn, &EventFilter { limit: 50, ..f })
            .expect("plan")
            .join(" | ")
    }

    /// The §9 queries must come off an index with no sort step, or (by session or agent) off
    /// the spans, sorting only the rows of the spans that can hold the page; a schema or
    /// query change that loses that would make them scan a million rows.
    #[test]
    fn first_pages_come_off_an_index_without_sorting() {
        let (_d, conn) = db();
        let p = plan(
            &conn,
            EventFilter {
                agent: Some("codex".into()),
                ..Default::default()
            },
        );
        assert!(
            p.contains("SEARCH s USING INDEX idx_session_spans_agent (agent_name=?")
                && p.contains("SEARCH e USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"),
            "{p}"
        );
        let p = plan(
            &conn,
            EventFilter {
                event_type: Some("error".into()),
                since: Some("2026-01-01T00:00:00.000Z".into()),
                ..Default::default()
            },
        );
        assert!(
            p.contains("SEARCH s USING PRIMARY KEY (event_type=?)")
                && p.contains("SEARCH e USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)")
                && !p.contains("TEMP B-TREE"),
            "{p}"
        );
        let p = plan(
            &conn,
            EventFilter {
                event_type: Some("prompt".into()),
                risk: Some("high".into()),
                ..Default::default()
            },
        );
        assert!(
            p.contains("SEARCH s USING PRIMARY KEY") && !p.contains("TEMP B-TREE"),
            "{p}"
        );
        let p = plan(
            &conn,
            EventFilter {
                session: Some("s".into()),
                ..Default::default()
            },
        );
        assert!(
            p.contains("SEARCH s USING PRIMARY KEY (session_id=?)")
                && p.contains("SEARCH e USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"),
            "{p}"
        );
        let p = plan(&conn, EventFilter::default());
        assert!(!p.contains("TEMP B-TREE"), "{p}");
    }

    #[test]
    fn words_become_quoted_phrases() {
        assert_eq!(fts_query("rm -rf", false), r#""rm" "-rf""#);
        assert_eq!(fts_query("mism* a\"b", false), r#""mism"* "a""b""#);
        assert_eq!(fts_query("a OR b", true), "a OR b");
    }
}
