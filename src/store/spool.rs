//! The JSON Lines spool (SPEC §6.5): where a session's records go when its database fails
//! mid-run, and how `wrapper import-spool` loads them back.
//!
//! Each line is one object with a `kind`: `session` (the session row, first), `event` and
//! `code_block` (column names as fields), `state` (a state change) and `lines` (the session's
//! line count so far). Text in a spool was redacted before it got here, like text in the
//! database.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Deserialize;
use serde_json::{json, Value};

use super::writer::{
    insert_events, insert_session_row, upsert_code_block, write_state, EventRow, SessionRow, State,
    StateChange,
};
use crate::event::{CodeBlock, Event, Record, RiskLevel, Stream};

/// An open spool. Lines are collected per batch and written with one `write` at
/// [`Spool::flush`], so a failed write never leaves half a line behind: the file is cut back
/// to its last complete line and stays importable.
///
/// Its name, `<db>.spool-<session-id>-<random>.jsonl`, cannot be known in advance, and it is
/// created with `O_CREAT | O_EXCL | O_NOFOLLOW`: nobody can plant a file or a symlink where it
/// will be written. On a clash it takes another name.
pub struct Spool {
    /// The file being written; `None` when nowhere could be written (events are lost).
    path: Option<PathBuf>,
    out: Option<File>,
    /// Lines not yet written, and how many events they hold.
    buf: Vec<u8>,
    buf_events: u64,
    /// Length of the file up to its last complete batch.
    good_len: u64,
    /// The `session` line, repeated at the top of a fallback file so it imports on its own.
    session_line: Vec<u8>,
    /// Where to go when the current file cannot be written (the temporary directory).
    fallback: Option<PathBuf>,
    /// Name prefix of spool files: `<db file name>.spool-<session id>`.
    stem: String,
    /// Events written to a spool file, and events that could be written nowhere.
    written: u64,
    lost: u64,
}

/// How many names a spool tries in one directory before it gives the directory up.
const NAME_ATTEMPTS: usize = 8;

impl Spool {
    /// Opens the spool next to the database, or in the temporary directory when that fails,
    /// and writes the session row first so the spool can be imported on its own. A place only
    /// counts as writable once that first line is really written: a full disk lets a file be
    /// created but not filled.
    pub fn create(db_path: &Path, session: &SessionRow) -> Spool {
        let stem = format!(
            "{}.spool-{}",
            db_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "wrapper.db".into()),
            session.session_id
        );
        let beside = db_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let temp = std::env::temp_dir();
        let mut session_line =
            serde_json::to_vec(&json!({ "kind": "session", "session": session }))
                .unwrap_or_default();
        session_line.push(b'\n');
        let mut spool = Spool {
            path: None,
            out: None,
            buf: Vec::new(),
            buf_events: 0,
            good_len: 0,
            session_line,
            fallback: None,
            stem,
            written: 0,
            lost: 0,
        };
        if let Some((path, f, len)) = start_file(&beside, &spool.stem, &spool.session_line) {
            spool.path = Some(path);
            spool.out = Some(f);
            spool.good_len = len;
            spool.fallback = Some(temp).filter(|t| !same_dir(t, &beside));
        } else if let Some((path, f, len)) = start_file(&temp, &spool.stem, &spool.session_line) {
            spool.path = Some(path);
            spool.out = Some(f);
            spool.good_len = len;
        }
        spool
    }

    /// The file events are being written to; `None` when nowhere could be written.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Events written to a spool file so far, and events lost because nowhere was writable.
    pub fn counts(&self) -> (u64, u64) {
        (self.written, self.lost)
    }

    pub fn write_records(&mut self, session: &SessionRow, records: &[Record]) {
        for r in records {
            let v = match r {
                Record::Event(e) => {
                    let mut v = serde_json::to_value(EventRow::new(
                        &session.agent_name,
                        &session.session_id,
                        e,
                    ))
                    .unwrap_or(Value::Null);
                    v["kind"] = "event".into();
                    self.buf_events += 1;
                    v
                }
                Record::CodeBlock(b) => json!({
                    "kind": "code_block",
                    "agent_name": session.agent_name,
                    "session_id": session.session_id,
                    "timestamp": &*b.timestamp,
                    "language": b.language,
                    "content": b.content,
                    "line_start": b.line_start,
                    "line_end": b.line_end,
                    "context_json": b.context_json,
                    "parseable": b.parseable,
                    "digest": b.digest,
                }),
                Record::Facts(f) => json!({
                    "kind": "facts",
                    "session_id": session.session_id,
                    "facts": f,
                }),
                Record::Merge(m) => json!({
                    "kind": "merge",
                    "session_id": session.session_id,
                    "merge": m,
                }),
            };
            self.line(&v);
        }
    }

    pub fn write_lines(&mut self, session_id: &str, lines: u64) {
        self.line(&json!({ "kind": "lines", "session_id": session_id, "lines": lines }));
    }

    pub fn write_state(&mut self, session_id: &str, st: &StateChange) {
        self.line(&json!({ "kind": "state", "session_id": session_id, "change": st }));
    }

    /// Writes the collected lines. When the spool's own disk fails (it may be the full disk
    /// that broke the database), the file is cut back to its last complete batch and the
    /// spool moves once to the temporary directory, with a warning naming the new file.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let buf = std::mem::take(&mut self.buf);
        let events = std::mem::take(&mut self.buf_events);
        // Without a file (nowhere was writable, already said) the lines are lost: counted.
        let Some(out) = &mut self.out else {
            self.lost += events;
            return;
        };
        if out.write_all(&buf).is_ok() {
            self.good_len += buf.len() as u64;
            self.written += events;
            return;
        }
        let _ = out.set_len(self.good_len);
        self.out = None;
        let old = self.path.take().unwrap_or_default();
        if let Some(temp) = self.fallback.take() {
            let mut first = self.session_line.clone();
            first.extend_from_slice(&buf);
            if let Some((path, f, len)) = start_file(&temp, &self.stem, &first) {
                eprintln!(
                    "wrapper: warning: cannot write spool {}; events from here on go to {} \
                     (import both with `wrapper import-spool`)",
                    old.display(),
                    path.display()
                );
                self.out = Some(f);
                self.good_len = len;
                self.path = Some(path);
                self.written += events;
                return;
            }
        }
        self.lost += events;
        eprintln!(
            "wrapper: warning: cannot write spool {} nor one in the temporary directory; \
             EVENTS ARE BEING LOST from here on (the agent keeps running; wrapper says how many \
             at the end)",
            old.display()
        );
    }

    fn line(&mut self, v: &Value) {
        if serde_json::to_writer(&mut self.buf, v).is_ok() {
            self.buf.push(b'\n');
        }
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Creates a new spool file in `dir` under a name nobody could know in advance and writes
/// `first` to it; `None` (and no file left behind) if that fails.
fn start_file(dir: &Path, stem: &str, first: &[u8]) -> Option<(PathBuf, File, u64)> {
    let names =
        std::iter::repeat_with(|| format!("{stem}-{}.jsonl", uuid::Uuid::new_v4().simple()));
    start_file_named(dir, names.take(NAME_ATTEMPTS), first)
}

/// [`start_file`] with the names to try given (tests plant files at them).
fn start_file_named(
    dir: &Path,
    names: impl Iterator<Item = String>,
    first: &[u8],
) -> Option<(PathBuf, File, u64)> {
    for name in names {
        let path = dir.join(name);
        let opened = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path);
        let mut f = match opened {
            Ok(f) => f,
            // Something is already there (a file, a symlink): another name.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(_) => return None,
        };
        if f.write_all(first).is_err() {
            drop(f);
            let _ = fs::remove_file(&path);
            return None;
        }
        return Some((path, f, first.len() as u64));
    }
    None
}

/// What an import did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ImportReport {
    pub sessions_created: u64,
    pub events: u64,
    pub code_blocks: u64,
    pub states: u64,
    /// Where the spool was moved after a successful import, so it is not imported twice.
    pub moved_to: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read spool {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a spool record: {message}")]
    Bad {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {source}")]
    Db {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

#[derive(Deserialize)]
struct SpoolEvent {
    agent_name: String,
    session_id: String,
    timestamp: String,
    stream: String,
    event_type: String,
    pattern: String,
    matched_value: Option<String>,
    original_line: Option<String>,
    line_number: u64,
    metadata_json: Option<String>,
    code_block_language: Option<String>,
    risk_level: Option<String>,
    auto_confirmable: bool,
}

#[derive(Deserialize)]
struct SpoolBlock {
    agent_name: String,
    session_id: String,
    timestamp: String,
    language: Option<String>,
    content: String,
    line_start: u64,
    line_end: u64,
    context_json: String,
    parseable: bool,
    digest: String,
}

#[derive(Deserialize)]
struct SpoolState {
    state: String,
    timestamp: String,
    exit_code: Option<i32>,
    signal: Option<String>,
    pid: Option<u32>,
    metadata: Option<Value>,
}

/// Loads a spool into the database in one transaction, then renames it to `*.imported`.
pub fn import(conn: &Connection, path: &Path) -> Result<ImportReport, ImportError> {
    let read_err = |source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    };
    let db = |source| ImportError::Db {
        path: path.to_path_buf(),
        source,
    };
    let bad = |line: usize, message: String| ImportError::Bad {
        path: path.to_path_buf(),
        line,
        message,
    };
    let reader = BufReader::new(File::open(path).map_err(read_err)?);
    let tx =
        rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate).map_err(db)?;
    let mut report = ImportReport::default();
    for (i, line) in reader.lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(read_err)?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).map_err(|e| bad(n, e.to_string()))?;
        let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
        match kind {
            "session" => {
                let s: SessionRow = serde_json::from_value(v["session"].clone())
                    .map_err(|e| bad(n, e.to_string()))?;
                let exists: Option<i64> = tx
                    .query_row(
                        "SELECT 1 FROM process_sessions WHERE session_id = ?1",
                        [&s.session_id],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db)?;
                if exists.is_none() {
                    insert_session_row(&tx, &s, "running").map_err(db)?;
                    report.sessions_created += 1;
                }
            }
            "event" => {
                let e: SpoolEvent = serde_json::from_value(v).map_err(|e| bad(n, e.to_string()))?;
                let ev = Event {
                    timestamp: e.timestamp.into(),
                    stream: Stream::parse(&e.stream)
                        .ok_or_else(|| bad(n, format!("unknown stream {:?}", e.stream)))?,
                    event_type: e.event_type.into(),
                    pattern: e.pattern.into(),
                    matched_value: e.matched_value,
                    original_line: e.original_line.map(Into::into),
                    line_number: e.line_number,
                    metadata_json: e.metadata_json,
                    code_block_language: e.code_block_language,
                    risk_level: e.risk_level.as_deref().and_then(RiskLevel::parse),
                    auto_confirmable: e.auto_confirmable,
                };
                insert_events(&tx, None, &e.session_id, &e.agent_name, &[&ev]).map_err(db)?;
                tx.execute(
                    "UPDATE process_sessions SET total_extraction_events = total_extraction_events + 1 \
                     WHERE session_id = ?1",
                    [&e.session_id],
                )
                .map_err(db)?;
                tx.execute(
                    "INSERT INTO event_counts (session_id, event_type, pattern, risk_level, n) \
                     VALUES (?1, ?2, ?3, ?4, 1) ON CONFLICT (session_id, event_type, pattern, risk_level) \
                     DO UPDATE SET n = n + 1",
                    params![
                        e.session_id,
                        &*ev.event_type,
                        &*ev.pattern,
                        ev.risk_level.map_or("", |r| r.as_str())
                    ],
                )
                .map_err(db)?;
                report.events += 1;
            }
            "code_block" => {
                let b: SpoolBlock = serde_json::from_value(v).map_err(|e| bad(n, e.to_string()))?;
                let block = CodeBlock {
                    timestamp: b.timestamp.into(),
                    language: b.language,
                    content: b.content,
                    line_start: b.line_start,
                    line_end: b.line_end,
                    context_json: b.context_json,
                    parseable: b.parseable,
                    digest: b.digest,
                };
                upsert_code_block(&tx, None, &b.session_id, &b.agent_name, &block).map_err(db)?;
                report.code_blocks += 1;
            }
            "lines" => {
                let lines = v["lines"]
                    .as_u64()
                    .ok_or_else(|| bad(n, "`lines` is not a number".into()))?;
                tx.execute(
                    "UPDATE process_sessions SET total_lines_processed = MAX(total_lines_processed, ?1) \
                     WHERE session_id = ?2",
                    params![lines as i64, line_session(&v)],
                )
                .map_err(db)?;
            }
            "state" => {
                let sid = v["session_id"].as_str().unwrap_or_default().to_string();
                let s: SpoolState = serde_json::from_value(v["change"].clone())
                    .map_err(|e| bad(n, e.to_string()))?;
                let state = parse_state(&s.state)
                    .ok_or_else(|| bad(n, format!("unknown state {:?}", s.state)))?;
                write_state(
                    &tx,
                    &sid,
                    &StateChange {
                        state,
                        timestamp: s.timestamp,
                        exit_code: s.exit_code,
                        signal: s.signal,
                        pid: s.pid,
                        metadata: s.metadata,
                    },
                )
                .map_err(db)?;
                report.states += 1;
            }
            "facts" => {
                let f: crate::event::SessionFacts = serde_json::from_value(v["facts"].clone())
                    .map_err(|e| bad(n, e.to_string()))?;
                crate::store::usage::write_facts(&tx, &line_session(&v), &f).map_err(db)?;
            }
            "merge" => {
                let m: crate::event::Merge = serde_json::from_value(v["merge"].clone())
                    .map_err(|e| bad(n, e.to_string()))?;
                crate::store::usage::merge_event(&tx, &line_session(&v), &m).map_err(db)?;
            }
            other => return Err(bad(n, format!("unknown kind {other:?}"))),
        }
    }
    tx.commit().map_err(db)?;
    let moved = path.with_extension("jsonl.imported");
    if fs::rename(path, &moved).is_ok() {
        report.moved_to = Some(moved);
    }
    Ok(report)
}

fn line_session(v: &Value) -> String {
    v.get("session_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn parse_state(s: &str) -> Option<State> {
    Some(match s {
        "started" => State::Started,
        "running" => State::Running,
        "signaled" => State::Signaled,
        "completed" => State::Completed,
        "failed" => State::Failed,
        "killed" => State::Killed,
        "interrupted" => State::Interrupted,
        "spawn_failed" => State::SpawnFailed,
        "abandoned" => State::Abandoned,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file or a symlink already at a spool's name is never written through: the spool
    /// takes the next name.
    #[test]
    fn a_planted_file_or_symlink_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target");
        fs::write(&target, "mine\n").expect("write");
        std::os::unix::fs::symlink(&target, dir.path().join("a.jsonl")).expect("symlink");
        std::os::unix::fs::symlink(dir.path().join("dangling"), dir.path().join("b.jsonl"))
            .expect("symlink");
        fs::write(dir.path().join("c.jsonl"), "theirs\n").expect("write");
        let names = ["a", "b", "c", "d"].map(|n| format!("{n}.jsonl"));
        let (path, _f, len) =
            start_file_named(dir.path(), names.into_iter(), b"first\n").expect("a spool");
        assert_eq!(path, dir.path().join("d.jsonl"));
        assert_eq!(len, 6);
        assert_eq!(fs::read_to_string(&target).expect("read"), "mine\n");
        assert!(!dir.path().join("dangling").exists());
        assert_eq!(
            fs::read_to_string(dir.path().join("c.jsonl")).expect("read"),
            "theirs\n"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).expect("stat").permissions().mode() & 0o777,
            0o600
        );
        // Every name taken: no spool, and nothing written anywhere.
        let names = ["a", "b", "c"].map(|n| format!("{n}.jsonl"));
        assert!(start_file_named(dir.path(), names.into_iter(), b"x\n").is_none());
    }
}
