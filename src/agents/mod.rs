//! The agents' own session logs: finding the one this session wrote, and reading it.
//!
//! Claude Code, Codex and Gemini CLI keep transcripts as they run (Claude:
//! `$CLAUDE_CONFIG_DIR/projects/<project>/<session>.jsonl`, default `~/.claude`; Codex:
//! `$CODEX_HOME/sessions/YYYY/MM/DD/rollout-*.jsonl`, default `~/.codex`; Gemini:
//! `~/.gemini/tmp/<project>/chats/session-<time>-<id>.jsonl`, `$GEMINI_CLI_HOME` in place of `~`).
//! They hold what the screen does not: every tool call with its input, its result and whether it
//! failed, and the tokens each response used. `claude -p` in text mode prints none of that, and a
//! TUI's screen is redrawn over. So when the agent is one of these, wrapper finds the file this
//! session wrote once the agent has exited, and feeds its lines to the same `[[json]]` rules as a
//! JSON stream (`extract/json.rs`), marked `source = "log"`; events the output showed already are
//! merged into those, not stored twice.
//!
//! Finding the file: the agent's home comes from the environment the agent inherited; candidates
//! are the log files modified while the session ran, whose recorded working directory is the
//! session's (Gemini records the SHA-256 of the project's path instead); of those, the one whose
//! first record is nearest the session's start. Only records written since the session started are
//! read (a resumed conversation's file holds older ones too). The files are opened read-only and
//! never written.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::event::format_timestamp;
use crate::extract::json::epoch_ms;
use crate::extract::Extractor;

/// Agents whose session logs wrapper can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Claude,
    Codex,
    Gemini,
}

impl Kind {
    /// From the agent name given to wrapper (`claude`, `codex-ci`), else from the program
    /// that runs (`wrapper ci -- claude -p …`).
    pub fn detect(agent: &str, program: Option<&str>) -> Option<Kind> {
        let by_name = |s: &str| {
            let s = s.rsplit('/').next().unwrap_or(s).to_ascii_lowercase();
            if s.starts_with("claude") {
                Some(Kind::Claude)
            } else if s.starts_with("codex") {
                Some(Kind::Codex)
            } else if s.starts_with("gemini") {
                Some(Kind::Gemini)
            } else {
                None
            }
        };
        by_name(agent).or_else(|| program.and_then(by_name))
    }
}

/// Slack on the session's time window: clocks and file times are not exact.
const SLACK: Duration = Duration::from_secs(2);

/// Largest log wrapper reads; a transcript beyond this is read up to it.
const MAX_LOG_BYTES: u64 = 512 << 20;

/// Longest log line read; a longer one (a huge tool output) is skipped.
const MAX_LOG_LINE: usize = 16 << 20;

/// What identifies this session's log.
#[derive(Debug, Clone)]
pub struct LogQuery {
    pub kind: Kind,
    pub started: SystemTime,
    pub cwd: PathBuf,
    /// The agent's home (`CLAUDE_CONFIG_DIR` or `~/.claude`, `CODEX_HOME` or `~/.codex`,
    /// `$GEMINI_CLI_HOME/.gemini` or `~/.gemini`).
    pub home: PathBuf,
}

impl LogQuery {
    /// For an agent run now from `cwd`, with wrapper's (and so the agent's) environment.
    pub fn new(
        agent: &str,
        argv: &[std::ffi::OsString],
        started: SystemTime,
        cwd: PathBuf,
    ) -> Option<Self> {
        let program = argv.first().map(|p| p.to_string_lossy());
        let kind = Kind::detect(agent, program.as_deref())?;
        let env_home = |var: &str, dir: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| dirs::home_dir().map(|h| h.join(dir)))
        };
        let home = match kind {
            Kind::Claude => env_home("CLAUDE_CONFIG_DIR", ".claude")?,
            Kind::Codex => env_home("CODEX_HOME", ".codex")?,
            // Gemini's variable names the directory that holds `.gemini`, as `~` does.
            Kind::Gemini => env_home("GEMINI_CLI_HOME", "")?.join(".gemini"),
        };
        Some(LogQuery {
            kind,
            started,
            cwd,
            home,
        })
    }

    /// The log this session wrote, if one is found. `agent_session_id`, when the agent's
    /// output named it (Codex's `thread.started`, Claude's and Gemini's `init`), picks the
    /// file by name — the agents name their logs after it (Gemini after its first 8
    /// characters) — so sessions run at once in one directory are told apart; otherwise the
    /// nearest start in the window and directory wins.
    pub fn find(&self, ended: SystemTime, agent_session_id: Option<&str>) -> Option<PathBuf> {
        let from = self.started.checked_sub(SLACK).unwrap_or(self.started);
        let until = ended + SLACK;
        let files = match self.kind {
            Kind::Claude => claude_candidates(&self.home, &self.cwd),
            Kind::Codex => codex_candidates(&self.home, from, until),
            Kind::Gemini => gemini_candidates(&self.home),
        };
        let start_ms = epoch_ms(&format_timestamp(self.started)).unwrap_or(0);
        let named = |p: &PathBuf| {
            agent_session_id.is_some_and(|id| {
                let id = match self.kind {
                    Kind::Gemini => id.get(..8).unwrap_or(id),
                    _ => id,
                };
                !id.is_empty()
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().contains(id))
            })
        };
        let project_hash = match self.kind {
            Kind::Gemini => project_hash(&self.cwd),
            _ => Vec::new(),
        };
        if let Some(p) = files
            .iter()
            .find(|p| named(p) && modified_between(p, from, until))
        {
            return Some(p.clone());
        }
        files
            .into_iter()
            .filter(|p| modified_between(p, from, until))
            .filter_map(|p| {
                let head = first_record(&p)?;
                let here = match (&head.cwd, &head.project_hash) {
                    (Some(cwd), _) => same_dir(cwd, &self.cwd),
                    (None, Some(h)) => project_hash.contains(h),
                    (None, None) => false,
                };
                if !here {
                    return None;
                }
                // A file with a record written since the session started comes first: the
                // run just before, in the same directory, was last written a moment before
                // this one started and its first record can be nearer the start than this
                // session's own (a TUI writes its first record only when the user types).
                let written_since = records_since(&p, start_ms);
                // Then the nearest first record to the start; a resumed file (older start)
                // is fine.
                let at = head.at_ms.unwrap_or(0);
                Some(((!written_since, (at - start_ms).abs()), p))
            })
            .min_by_key(|(d, _)| *d)
            .map(|(_, p)| p)
    }
}

fn modified_between(p: &Path, from: SystemTime, until: SystemTime) -> bool {
    fs::metadata(p)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= from && t <= until)
}

fn same_dir(a: &str, b: &Path) -> bool {
    let a = a.strip_prefix("file://").unwrap_or(a);
    let canon = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    Path::new(a) == b || canon(Path::new(a)) == canon(b)
}

/// Claude keeps a project's sessions in a directory named after its path with every
/// character that is not a letter or digit replaced by `-`. Every project directory is
/// looked at should that naming change; the cwd check decides.
fn claude_candidates(home: &Path, cwd: &Path) -> Vec<PathBuf> {
    let projects = home.join("projects");
    let named: String = cwd
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut dirs = vec![projects.join(&named)];
    if let Ok(rd) = fs::read_dir(&projects) {
        dirs.extend(
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir()),
        );
    }
    dirs.dedup();
    dirs.iter().flat_map(|d| jsonl_files(d)).collect()
}

/// Codex files its rollouts by local date: the days the session touched, in local time and in
/// UTC, are enough.
fn codex_candidates(home: &Path, from: SystemTime, until: SystemTime) -> Vec<PathBuf> {
    let sessions = home.join("sessions");
    let mut days: Vec<String> = Vec::new();
    for t in [from, until] {
        let utc: chrono::DateTime<chrono::Utc> = t.into();
        let local: chrono::DateTime<chrono::Local> = t.into();
        for d in [
            utc.format("%Y/%m/%d").to_string(),
            local.format("%Y/%m/%d").to_string(),
        ] {
            if !days.contains(&d) {
                days.push(d);
            }
        }
    }
    days.iter()
        .flat_map(|d| jsonl_files(&sessions.join(d)))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("rollout-"))
        })
        .collect()
}

/// Gemini keeps a project's chats under `tmp/<project>/chats/`, the project named by a short
/// name (older versions: the hash of its path). Every project directory is looked at; the
/// hash in each file's first record decides.
fn gemini_candidates(home: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(home.join("tmp")) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok().map(|e| e.path().join("chats")))
        .flat_map(|d| jsonl_files(&d))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("session-"))
        })
        .collect()
}

/// The SHA-256 (hex) of `cwd` as given and of its canonical form: how Gemini names a project
/// in its chats' first record (`projectHash`).
fn project_hash(cwd: &Path) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let hex = |p: &Path| format!("{:x}", Sha256::digest(p.as_os_str().as_encoded_bytes()));
    let mut out = vec![hex(cwd)];
    if let Ok(c) = fs::canonicalize(cwd) {
        if c != cwd {
            out.push(hex(&c));
        }
    }
    out
}

fn jsonl_files(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl") && p.is_file())
                .collect()
        })
        .unwrap_or_default()
}

struct Head {
    cwd: Option<String>,
    /// Gemini: the SHA-256 of the project's path, in place of a cwd.
    project_hash: Option<String>,
    at_ms: Option<i64>,
}

/// The working directory and time of a log's first record that has them (Claude's first
/// lines are queue bookkeeping without a cwd).
fn first_record(p: &Path) -> Option<Head> {
    let f = File::open(p).ok()?;
    let mut head = Head {
        cwd: None,
        project_hash: None,
        at_ms: None,
    };
    for line in BufReader::new(f.take(4 << 20)).lines().take(50) {
        let Ok(line) = line else { break };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if head.at_ms.is_none() {
            head.at_ms = v
                .get("timestamp")
                .or_else(|| v.get("startTime"))
                .and_then(|t| t.as_str())
                .and_then(epoch_ms);
        }
        if let Some(h) = v.get("projectHash").and_then(|h| h.as_str()) {
            head.project_hash = Some(h.to_ascii_lowercase());
            return Some(head);
        }
        let cwd = v
            .get("cwd")
            .or_else(|| v.pointer("/payload/cwd"))
            .and_then(|c| c.as_str());
        if let Some(c) = cwd {
            head.cwd = Some(c.to_string());
            return Some(head);
        }
    }
    Some(head)
}

/// Reads `path` into `x`: records written since `started` (others belong to an earlier run
/// of a resumed conversation), then the path and the session's facts. Returns the number of
/// lines fed.
pub fn read_into(path: &Path, started: SystemTime, x: &mut Extractor) -> std::io::Result<u64> {
    let mut since = epoch_ms(&format_timestamp(
        started.checked_sub(SLACK).unwrap_or(started),
    ));
    // A file written during the session whose records all predate it was written by a
    // clock that disagrees with ours (or copied whole): then every record is this session's.
    if !any_record_since(path, since)? {
        since = None;
    }
    let f = File::open(path)?;
    let mut reader = BufReader::new(f.take(MAX_LOG_BYTES));
    let fallback: Arc<str> = format_timestamp(SystemTime::now()).into();
    let mut buf = Vec::new();
    let (mut n, mut fed) = (0u64, 0u64);
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        n += 1;
        if buf.len() > MAX_LOG_LINE {
            continue;
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end();
        if let (Some(since), Some(at)) = (since, line_timestamp(line)) {
            if at < since {
                continue;
            }
        }
        x.feed_log_line(line, n, &fallback);
        fed += 1;
    }
    x.set_log_path(path.to_string_lossy().into_owned());
    Ok(fed)
}

/// Whether `path` holds a record stamped at or after `since_ms`: its last stamped record,
/// read from the tail (records are written in time order), or the whole file should the
/// tail hold none.
fn records_since(path: &Path, since_ms: i64) -> bool {
    const TAIL: u64 = 1 << 20;
    let tail = || -> std::io::Result<Option<i64>> {
        use std::io::{Seek, SeekFrom};
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(TAIL)))?;
        let mut buf = Vec::new();
        f.take(TAIL).read_to_end(&mut buf)?;
        Ok(buf
            .split(|&b| b == b'\n')
            .rev()
            .find_map(|l| line_timestamp(&String::from_utf8_lossy(l))))
    };
    match tail() {
        Ok(Some(last)) => last >= since_ms,
        Ok(None) => any_record_since(path, Some(since_ms)).unwrap_or(false),
        Err(_) => false,
    }
}

fn any_record_since(path: &Path, since: Option<i64>) -> std::io::Result<bool> {
    let Some(since) = since else { return Ok(true) };
    let reader = BufReader::new(File::open(path)?.take(MAX_LOG_BYTES));
    for line in reader.split(b'\n') {
        let line = line?;
        if line.len() > MAX_LOG_LINE {
            continue;
        }
        if line_timestamp(&String::from_utf8_lossy(&line)).is_some_and(|t| t >= since) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The `timestamp` of a log line, found without parsing the whole line: both agents write it
/// near the start or the end as `"timestamp":"…"`.
fn line_timestamp(line: &str) -> Option<i64> {
    let key = "\"timestamp\":\"";
    let at = line.find(key)? + key.len();
    let end = line[at..].find('"')? + at;
    epoch_ms(&line[at..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_are_told_by_name_or_program() {
        assert_eq!(Kind::detect("claude", None), Some(Kind::Claude));
        assert_eq!(
            Kind::detect("ci", Some("/usr/bin/codex")),
            Some(Kind::Codex)
        );
        assert_eq!(Kind::detect("aider", Some("aider")), None);
    }

    /// Found by a live run of the real TUIs: the batch run just before, in the same
    /// directory, was last written a second before the TUI session started, and its first
    /// record was nearer the start than the TUI's own (written when the user typed, 2.7 s
    /// in), so the session read the other run's log.
    #[test]
    fn gemini_chats_are_found_by_the_hash_of_the_project_path() {
        let home = tempfile::tempdir().expect("tempdir");
        let cwd = home.path().join("proj");
        let other = home.path().join("other");
        fs::create_dir(&cwd).expect("mkdir");
        fs::create_dir(&other).expect("mkdir");
        let started = SystemTime::now();
        let chats = |project: &str| {
            let d = home.path().join(".gemini/tmp").join(project).join("chats");
            fs::create_dir_all(&d).expect("mkdir");
            d
        };
        let chat = |dir: &Path, name: &str, project: &Path, id: &str| {
            let hash = &project_hash(project)[0];
            let text = format!(
                "{{\"sessionId\":\"{id}\",\"projectHash\":\"{hash}\",\"startTime\":\"{}\",\"kind\":\"main\"}}\n",
                format_timestamp(started + Duration::from_millis(200))
            );
            let p = dir.join(name);
            fs::write(&p, text).expect("write");
            p
        };
        // Another project's chat, written at the same time, and this one's, under the short
        // names Gemini gives projects.
        chat(
            &chats("other"),
            "session-2026-12-04T21-49-aaaaaaaa.jsonl",
            &other,
            "aaaaaaaa-1",
        );
        let own = chat(
            &chats("proj"),
            "session-2026-12-04T21-49-bbbbbbbb.jsonl",
            &cwd,
            "bbbbbbbb-2",
        );
        let q = LogQuery {
            kind: Kind::Gemini,
            started,
            cwd: cwd.clone(),
            home: home.path().join(".gemini"),
        };
        let ended = started + Duration::from_secs(2);
        assert_eq!(q.find(ended, None), Some(own.clone()));
        // Named by the session id Gemini's stream gave, by its first 8 characters.
        let twin = chat(
            &chats("proj"),
            "session-2026-12-04T21-49-cccccccc.jsonl",
            &cwd,
            "cccccccc-3",
        );
        assert_eq!(q.find(ended, Some("cccccccc-3")), Some(twin));
        assert_eq!(Kind::detect("gemini", None), Some(Kind::Gemini));
        assert_eq!(
            Kind::detect("ci", Some("/usr/local/bin/gemini")),
            Some(Kind::Gemini)
        );
    }

    #[test]
    fn the_log_written_during_the_session_wins_over_the_run_just_before() {
        let home = tempfile::tempdir().expect("tempdir");
        let cwd = home.path().join("proj");
        fs::create_dir(&cwd).expect("mkdir");
        let started = SystemTime::now();
        let day: chrono::DateTime<chrono::Local> = started.into();
        let dir = home
            .path()
            .join("sessions")
            .join(day.format("%Y/%m/%d").to_string());
        fs::create_dir_all(&dir).expect("mkdir");
        let stamp = |offset_ms: i64| {
            let t = if offset_ms < 0 {
                started - Duration::from_millis(offset_ms.unsigned_abs())
            } else {
                started + Duration::from_millis(offset_ms as u64)
            };
            format_timestamp(t)
        };
        let rollout = |name: &str, at: &[i64]| {
            let mut text = format!(
                "{{\"timestamp\":\"{}\",\"type\":\"session_meta\",\"payload\":{{\"cwd\":{:?}}}}}\n",
                stamp(at[0]),
                cwd.display().to_string()
            );
            for &t in &at[1..] {
                text.push_str(&format!(
                    "{{\"timestamp\":\"{}\",\"type\":\"event_msg\",\"payload\":{{}}}}\n",
                    stamp(t)
                ));
            }
            let p = dir.join(name);
            fs::write(&p, text).expect("write");
            p
        };
        let before = rollout("rollout-before.jsonl", &[-1050, -600, -300]);
        let own = rollout("rollout-own.jsonl", &[2700, 3100]);
        let q = LogQuery {
            kind: Kind::Codex,
            started,
            cwd: cwd.clone(),
            home: home.path().to_path_buf(),
        };
        let ended = started + Duration::from_secs(4);
        assert_eq!(q.find(ended, None), Some(own.clone()));
        // Alone, the earlier file is still found (a replayed or copied log, a skewed clock).
        fs::remove_file(&own).expect("rm");
        assert_eq!(q.find(ended, None), Some(before));
    }

    #[test]
    fn a_line_timestamp_is_found_without_a_parse() {
        let l = r#"{"type":"x","timestamp":"2026-12-01T16:23:26.365Z","n":1}"#;
        assert_eq!(line_timestamp(l), epoch_ms("2026-12-01T16:23:26.365Z"));
        assert_eq!(line_timestamp(r#"{"type":"x"}"#), None);
    }
}
