//! The schema, as forward-only numbered migrations (SPEC §5).
//!
//! `PRAGMA user_version` records how many have run. Never edit a shipped migration: add the
//! next one. Table and column names are a public interface (people query them with `sqlite3`),
//! so migrations add, never rename.

/// `(version, sql)`: migration `version` brings `user_version` from `version - 1` to `version`.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (1, V1),
    (2, V2),
    (3, V3_AGENT_USAGE),
    (4, V4_CAPTURE),
    (5, V5_GIT),
    (6, V6_TYPE_SPANS),
    (7, V7_SESSION_SPANS),
];

/// The schema version this wrapper writes.
pub const LATEST: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// `PRAGMA application_id`: "WRPR", so `file(1)` and wrapper can tell its databases apart.
pub const APPLICATION_ID: i64 = 0x5752_5052;

const V1: &str = r#"
CREATE TABLE IF NOT EXISTS process_sessions (
    id INTEGER PRIMARY KEY,
    agent_name TEXT NOT NULL,
    session_id TEXT NOT NULL UNIQUE,
    environment TEXT,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    exit_code INTEGER,
    signal TEXT,
    state TEXT NOT NULL,
    pid INTEGER,
    hostname TEXT,
    cwd TEXT,
    command_json TEXT NOT NULL,
    total_lines_processed INTEGER NOT NULL DEFAULT 0,
    total_extraction_events INTEGER NOT NULL DEFAULT 0,
    total_feedback_outcomes INTEGER NOT NULL DEFAULT 0,
    stdout_log_path TEXT,
    stderr_log_path TEXT,
    extraction_config_version TEXT,
    environment_config_version TEXT,
    wrapper_version TEXT,
    -- The wrapper process that owns the row: crash recovery (SPEC §6.4) checks that this
    -- process, not the child, is still alive.
    wrapper_pid INTEGER
);

CREATE TABLE IF NOT EXISTS process_state_changes (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES process_sessions(session_id),
    timestamp TEXT NOT NULL,
    state TEXT NOT NULL,
    exit_code INTEGER,
    metadata_json TEXT
);

CREATE TABLE IF NOT EXISTS extraction_events (
    id INTEGER PRIMARY KEY,
    agent_name TEXT NOT NULL,
    session_id TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    stream TEXT NOT NULL,
    event_type TEXT NOT NULL,
    pattern TEXT NOT NULL,
    matched_value TEXT,
    original_line TEXT,
    line_number INTEGER,
    metadata_json TEXT,
    code_block_language TEXT,
    risk_level TEXT,
    auto_confirmable INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS code_blocks (
    id INTEGER PRIMARY KEY,
    agent_name TEXT NOT NULL,
    session_id TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    language TEXT,
    content TEXT NOT NULL,
    line_start INTEGER,
    line_end INTEGER,
    context_json TEXT,
    parseable INTEGER NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    occurrences INTEGER NOT NULL DEFAULT 1,
    last_seen_at TEXT
);

-- Event counts per session, type, pattern and risk, kept by the writer in the same
-- transactions as the events, so `wrapper stats` never has to scan millions of rows.
CREATE TABLE IF NOT EXISTS event_counts (
    session_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    pattern TEXT NOT NULL,
    risk_level TEXT NOT NULL DEFAULT '',
    n INTEGER NOT NULL,
    PRIMARY KEY (session_id, event_type, pattern, risk_level)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS idx_sessions_agent_started ON process_sessions(agent_name, started_at);
CREATE INDEX IF NOT EXISTS idx_sessions_started ON process_sessions(started_at);
CREATE INDEX IF NOT EXISTS idx_sessions_state ON process_sessions(state);
CREATE INDEX IF NOT EXISTS idx_state_changes_session ON process_state_changes(session_id, id);
CREATE INDEX IF NOT EXISTS idx_events_session ON extraction_events(session_id, line_number);
CREATE INDEX IF NOT EXISTS idx_events_agent_ts ON extraction_events(agent_name, timestamp);
CREATE INDEX IF NOT EXISTS idx_events_type_ts ON extraction_events(event_type, timestamp);
CREATE INDEX IF NOT EXISTS idx_code_blocks_session ON code_blocks(session_id);
CREATE INDEX IF NOT EXISTS idx_code_blocks_language ON code_blocks(language);
"#;

/// Full-text search (SPEC §7 `wrapper search`).
///
/// External-content FTS5 tables: the text lives once, in `extraction_events` and `code_blocks`;
/// the FTS tables hold only the inverted index. Nothing on the insert path touches them (no
/// triggers): FTS indexing costs several times a plain row insert, and the run path must keep
/// its 500k lines/s. Instead rows whose id is above the high-water mark in `fts_state` are
/// indexed by the writer while it is idle and by `wrapper search` before it searches
/// (`store::fts`), and `wrapper prune` removes the rows it deletes from the index in the same
/// transaction.
///
/// No new index on `extraction_events`: the v1 indexes already serve the §9 queries (see
/// docs/QUERYING.md), and every index there is paid for on each of millions of inserts.
const V2: &str = r#"
CREATE VIRTUAL TABLE IF NOT EXISTS extraction_events_fts USING fts5(
    original_line, matched_value,
    content = 'extraction_events', content_rowid = 'id'
);

CREATE VIRTUAL TABLE IF NOT EXISTS code_blocks_fts USING fts5(
    content, language,
    content = 'code_blocks', content_rowid = 'id'
);

-- Per FTS table, the highest content rowid already indexed.
CREATE TABLE IF NOT EXISTS fts_state (
    fts_table TEXT PRIMARY KEY,
    indexed_through INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO fts_state (fts_table, indexed_through) VALUES
    ('extraction_events_fts', 0), ('code_blocks_fts', 0);
"#;

/// What the agent itself reports about a session (SPEC §10, `store/usage.rs`): its own
/// session id and model, token usage and cost, and the session log wrapper read. NULL is
/// "not reported". `cost_note` says what the cost is (Claude's `total_cost_usd` is the
/// client's own estimate, not a bill).
const V3_AGENT_USAGE: &str = r#"
ALTER TABLE process_sessions ADD COLUMN agent_session_id TEXT;
ALTER TABLE process_sessions ADD COLUMN agent_model TEXT;
ALTER TABLE process_sessions ADD COLUMN input_tokens INTEGER;
ALTER TABLE process_sessions ADD COLUMN cached_input_tokens INTEGER;
ALTER TABLE process_sessions ADD COLUMN output_tokens INTEGER;
ALTER TABLE process_sessions ADD COLUMN cost_usd REAL;
ALTER TABLE process_sessions ADD COLUMN cost_note TEXT;
ALTER TABLE process_sessions ADD COLUMN agent_log_path TEXT;
"#;

/// Output capture (SPEC §10, issue 13; `store::capture`): the agent's output, masked, as
/// index rows per frame and compressed blocks of many frames. `kind` is the stream's name
/// (`stdout`, `stderr`, `pty`) or `resize` (the frame's bytes are then `COLSxROWS`).
const V4_CAPTURE: &str = r#"
CREATE TABLE IF NOT EXISTS capture_sessions (
    session_id TEXT PRIMARY KEY,
    -- Unix microseconds of time offset 0.
    t0_us INTEGER NOT NULL,
    mode TEXT NOT NULL,
    cols INTEGER,
    rows INTEGER,
    frames INTEGER NOT NULL DEFAULT 0,
    raw_bytes INTEGER NOT NULL DEFAULT 0,
    stored_bytes INTEGER NOT NULL DEFAULT 0,
    blocks INTEGER NOT NULL DEFAULT 0,
    duration_us INTEGER NOT NULL DEFAULT 0,
    -- Set by `prune --captures-older-than`: the bytes are gone, the events stay.
    dropped_at TEXT
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS capture_blocks (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    raw_len INTEGER NOT NULL,
    codec TEXT NOT NULL,
    data BLOB NOT NULL
);

CREATE TABLE IF NOT EXISTS capture_frames (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    offset_us INTEGER NOT NULL,
    kind TEXT NOT NULL,
    len INTEGER NOT NULL,
    block_id INTEGER NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS idx_capture_blocks_session ON capture_blocks(session_id, first_seq);
"#;

/// Git linkage (SPEC §10): the session's repository, branch, HEAD and dirtiness at start and
/// end, the commits it made and the files it changed (`store::git`). Tables of their own,
/// deleted with their session by the foreign keys, so no other statement needs to know them.
const V5_GIT: &str = r#"
CREATE TABLE IF NOT EXISTS session_git (
    session_id TEXT PRIMARY KEY REFERENCES process_sessions(session_id) ON DELETE CASCADE,
    repo_root TEXT,
    remote_url TEXT,
    branch TEXT,
    head_start TEXT,
    dirty_start INTEGER,
    branch_end TEXT,
    head_end TEXT,
    dirty_end INTEGER,
    commit_count INTEGER,
    file_count INTEGER,
    error TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_session_git_repo ON session_git(repo_root);
CREATE INDEX IF NOT EXISTS idx_session_git_remote ON session_git(remote_url);
CREATE INDEX IF NOT EXISTS idx_session_git_branch ON session_git(branch);

CREATE TABLE IF NOT EXISTS session_commits (
    session_id TEXT NOT NULL REFERENCES process_sessions(session_id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    sha TEXT NOT NULL,
    committed_at TEXT,
    subject TEXT,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS session_files (
    session_id TEXT NOT NULL REFERENCES process_sessions(session_id) ON DELETE CASCADE,
    committed INTEGER NOT NULL,
    path TEXT NOT NULL,
    change TEXT NOT NULL,
    PRIMARY KEY (session_id, committed, path)
) WITHOUT ROWID;
"#;

/// Event-type spans in place of the `(event_type, timestamp)` index (issue 17; why, and the
/// invariant the queries keep: `store::spans`). Existing rows get spans of up to 512 ids each
/// (one scan, once); spans already there are replaced, so that running it again (on a file
/// whose version was set back by hand) cannot leave two spans over the same rows.
const V6_TYPE_SPANS: &str = r#"
CREATE TABLE IF NOT EXISTS event_type_spans (
    event_type TEXT NOT NULL,
    last_id INTEGER NOT NULL,
    first_id INTEGER NOT NULL,
    min_ts TEXT NOT NULL,
    max_ts TEXT NOT NULL,
    PRIMARY KEY (event_type, last_id)
) WITHOUT ROWID;
DELETE FROM event_type_spans;
INSERT INTO event_type_spans (event_type, last_id, first_id, min_ts, max_ts)
    SELECT event_type, max(id), min(id), min(timestamp), max(timestamp)
    FROM extraction_events GROUP BY event_type, id >> 9;
DROP INDEX IF EXISTS idx_events_type_ts;
"#;

/// Session spans in place of the `(session_id, line_number)` and `(agent_name, timestamp)`
/// indexes (issue 17; why, and the invariant the queries keep: `store::session_spans`).
/// Existing rows get spans of up to 512 ids of one session each (one scan, once); spans already
/// there are replaced, so that running it again cannot leave two spans over the same rows.
/// A session's rows all carry its agent (the writer and `import-spool` bind it per batch).
const V7_SESSION_SPANS: &str = r#"
CREATE TABLE IF NOT EXISTS event_session_spans (
    session_id TEXT NOT NULL,
    last_id INTEGER NOT NULL,
    first_id INTEGER NOT NULL,
    agent_name TEXT NOT NULL,
    n INTEGER NOT NULL,
    min_line INTEGER NOT NULL,
    max_line INTEGER NOT NULL,
    min_ts TEXT NOT NULL,
    max_ts TEXT NOT NULL,
    PRIMARY KEY (session_id, last_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_session_spans_agent ON event_session_spans(agent_name, max_ts);
DELETE FROM event_session_spans;
INSERT INTO event_session_spans
    (session_id, last_id, first_id, agent_name, n, min_line, max_line, min_ts, max_ts)
    SELECT session_id, max(id), min(id), min(agent_name), count(*),
           min(coalesce(line_number, -1)), max(coalesce(line_number, -1)),
           min(timestamp), max(timestamp)
    FROM extraction_events GROUP BY session_id, id >> 9;
DROP INDEX IF EXISTS idx_events_session;
DROP INDEX IF EXISTS idx_events_agent_ts;
"#;

/// A database file at `path` as a wrapper of schema `version` left it, for the migrations'
/// tests: the migrations up to `version` run, and its version and id set.
#[cfg(test)]
pub fn database_at_version(path: &std::path::Path, version: i64) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("open");
    for (v, sql) in MIGRATIONS {
        if *v <= version {
            conn.execute_batch(sql).expect("migration");
        }
    }
    conn.execute_batch(&format!(
        "PRAGMA user_version = {version}; PRAGMA application_id = {APPLICATION_ID};"
    ))
    .expect("version");
    conn
}
