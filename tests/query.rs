//! The query side (SPEC §7), driven through the real binary. Databases are made the way users
//! make them: by running `wrapper` over real child processes, with a small pattern file of the
//! test's own so the tests do not depend on the built-in rules. A few tests then edit rows
//! with rusqlite (to age a session, or to fake an old or a too-new schema), because waiting
//! days for a session to get old is not an option.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command as StdCommand, Stdio};

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

const PATTERNS: &str = r#"
version = 1

[[pattern]]
name = "my_error"
event_type = "error"
regex = '''^error: (?P<value>.+)$'''
samples = ["error: boom"]

[[pattern]]
name = "my_warning"
event_type = "warning"
regex = '''^warning: (?P<value>.+)$'''
samples = ["warning: careful"]

[[pattern]]
name = "my_prompt"
event_type = "prompt"
regex = '''^Run (?P<value>.+)\? \[y/N\]'''
risk_level = "high"
samples = ["Run rm -rf build? [y/N]"]

[[pattern]]
name = "my_command"
event_type = "command"
regex = '''^\$ (?P<value>.+)$'''
risk_level = "medium"
samples = ["$ make test"]
"#;

/// A temporary home for one test: its database, its pattern file, an empty config dir.
struct Env {
    dir: TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("p.toml"), PATTERNS).expect("write patterns");
        Env { dir }
    }

    /// The standard fixture: two codex sessions (one completed, one failed) and one claude
    /// session, recorded in that order.
    fn standard() -> Env {
        let env = Env::new();
        env.record(
            "codex",
            "alpha-1111",
            "echo 'error: mismatched types'; echo 'hello world'; echo 'Run rm -rf build? [y/N]'; \
             printf '```rust\\nfn main() {}\\n```\\n'; echo 'warning: unused import' >&2",
        );
        env.record("codex", "alpha-2222", "echo 'error: linker failed'; exit 1");
        env.record(
            "claude",
            "beta-3333",
            "echo '$ git push --force'; printf '```python\\nprint(\"zebra\")\\n```\\n'",
        );
        env
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("w.db")
    }

    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("wrapper").expect("binary built");
        c.current_dir(self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_DATA_HOME", self.dir.path().join("data"))
            .env("NO_COLOR", "1")
            .env_remove("WRAPPER_DB")
            .env_remove("WRAPPER_ENV")
            .env_remove("WRAPPER_ENABLE_DB")
            .env_remove("RUST_LOG");
        c
    }

    /// Runs `sh -c script` under wrapper as `agent`, recording into the test database.
    fn record(&self, agent: &str, session: &str, script: &str) {
        let out = self
            .cmd()
            .args([agent, "--db"])
            .arg(self.db())
            .args(["--no-default-patterns", "--patterns", "p.toml"])
            .args(["--session-id", session, "--", "sh", "-c", script])
            .output()
            .expect("wrapper runs");
        assert!(
            out.status.code().is_some(),
            "wrapper died: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A query command against the test database.
    fn query(&self, args: &[&str]) -> Command {
        let mut c = self.cmd();
        c.args(args).arg("--db").arg(self.db());
        c
    }

    /// Runs a query that must succeed and returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.query(args).output().expect("runs");
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs a query with --json-style output and parses it.
    fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: bad JSON {e}: {text}"))
    }

    /// Runs a query that must fail with exit 2 and one line on stderr; returns that line.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.query(args).output().expect("runs");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
        err
    }

    fn conn(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db()).expect("open db")
    }

    /// Moves a session and everything under it back to `day` (YYYY-MM-DD).
    fn age(&self, session: &str, day: &str) {
        let c = self.conn();
        let ts = format!("{day}T12:00:00.000Z");
        for sql in [
            "UPDATE process_sessions SET started_at = ?1, ended_at = ?1 WHERE session_id = ?2",
            "UPDATE process_state_changes SET timestamp = ?1 WHERE session_id = ?2",
            "UPDATE extraction_events SET timestamp = ?1 WHERE session_id = ?2",
            "UPDATE code_blocks SET timestamp = ?1 WHERE session_id = ?2",
            // The spans say where a session's (and a type's) rows lie in time: rows moved in
            // time by hand move their spans too.
            "UPDATE event_session_spans SET min_ts = ?1, max_ts = ?1 WHERE session_id = ?2",
        ] {
            c.execute(sql, [&ts, session]).expect("age rows");
        }
        c.execute_batch(
            "UPDATE event_type_spans SET \
               min_ts = (SELECT min(e.timestamp) FROM extraction_events e \
                 WHERE e.id BETWEEN first_id AND last_id AND e.event_type = event_type_spans.event_type), \
               max_ts = (SELECT max(e.timestamp) FROM extraction_events e \
                 WHERE e.id BETWEEN first_id AND last_id AND e.event_type = event_type_spans.event_type)",
        )
        .expect("age spans");
    }
}

fn ids(v: &Value, field: &str) -> Vec<String> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|r| r[field].as_str().unwrap_or("").to_string())
        .collect()
}

fn one_line_error(err: &str) -> &str {
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    err.trim_end()
}

// --- sessions ------------------------------------------------------------------------------

#[test]
fn sessions_json_lists_newest_first_with_column_names() {
    let env = Env::standard();
    let v = env.json(&["sessions", "--json"]);
    assert_eq!(
        ids(&v, "session_id"),
        ["beta-3333", "alpha-2222", "alpha-1111"]
    );
    let failed = &v[1];
    assert_eq!(failed["agent_name"], "codex");
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["exit_code"], 1);
    assert_eq!(failed["total_extraction_events"], 1);
    assert_eq!(failed["total_lines_processed"], 1);
    assert!(failed["ended_at"].is_string());
    assert!(failed["started_at"]
        .as_str()
        .is_some_and(|t| t.len() == 24 && t.ends_with('Z')));
    let cmd: Vec<String> = serde_json::from_str(failed["command_json"].as_str().unwrap_or(""))
        .expect("command_json is a JSON array");
    assert_eq!(cmd[0], "sh");
    for key in ["id", "hostname", "cwd", "pid", "wrapper_version", "signal"] {
        assert!(failed.get(key).is_some(), "missing {key}");
    }
}

#[test]
fn sessions_filter_by_agent_and_limit() {
    let env = Env::standard();
    let v = env.json(&["sessions", "--agent", "codex", "--json"]);
    assert_eq!(ids(&v, "session_id"), ["alpha-2222", "alpha-1111"]);
    let v = env.json(&["sessions", "--limit", "1", "--json"]);
    assert_eq!(ids(&v, "session_id"), ["beta-3333"]);
    let v = env.json(&["sessions", "--agent", "nobody", "--json"]);
    assert_eq!(v, serde_json::json!([]));
}

#[test]
fn sessions_since_uses_durations_and_dates() {
    let env = Env::standard();
    env.age("alpha-1111", "2020-03-01");
    let v = env.json(&["sessions", "--since", "7d", "--json"]);
    assert_eq!(ids(&v, "session_id"), ["beta-3333", "alpha-2222"]);
    let v = env.json(&["sessions", "--since", "2020-02-29", "--json"]);
    assert_eq!(v.as_array().map(Vec::len), Some(3));
    let v = env.json(&["sessions", "--since", "2020-03-01T12:00:00.001Z", "--json"]);
    assert_eq!(ids(&v, "session_id"), ["beta-3333", "alpha-2222"]);
    let v = env.json(&["sessions", "--since", "2020-03-01T12:00:00Z", "--json"]);
    assert_eq!(v.as_array().map(Vec::len), Some(3));
}

#[test]
fn sessions_jsonl_is_one_object_per_line() {
    let env = Env::standard();
    let text = env.ok(&["sessions", "--jsonl"]);
    let rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(
        rows,
        env.json(&["sessions", "--json"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    );
}

#[test]
fn sessions_table_for_people_without_colour_off_a_terminal() {
    let env = Env::standard();
    let text = env.ok(&["sessions"]);
    let first = text.lines().next().unwrap_or("");
    for col in [
        "SESSION", "AGENT", "STATE", "STARTED", "EXIT", "EVENTS", "COMMAND",
    ] {
        assert!(first.contains(col), "header lacks {col}: {first}");
    }
    assert!(text.contains("alpha-2222") && text.contains("failed"));
    assert!(!text.contains('\x1b'), "escape codes off a terminal");
    assert_eq!(text.lines().count(), 4);
}

#[test]
fn active_sessions_are_listed_and_never_pruned() {
    let env = Env::standard();
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("wrapper"))
        .current_dir(env.dir.path())
        .env("XDG_CONFIG_HOME", env.dir.path().join("config"))
        .args(["codex", "--db"])
        .arg(env.db())
        .args(["--no-default-patterns", "--patterns", "p.toml"])
        .args([
            "--session-id",
            "live-9999",
            "--",
            "sh",
            "-c",
            "echo ready; read x; exit 0",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn wrapper");
    // The session row is written before the child starts, so once the child speaks it exists.
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line, "ready\n");
    let v = env.json(&["sessions", "--active", "--json"]);
    assert_eq!(ids(&v, "session_id"), ["live-9999"]);
    let v = env.json(&["prune", "--older-than", "0s", "--json"]);
    assert_eq!(v["sessions"].as_array().map(Vec::len), Some(3));
    let left = env.json(&["sessions", "--json"]);
    assert_eq!(ids(&left, "session_id"), ["live-9999"]);
    drop(child.stdin.take());
    assert!(child.wait().expect("wait").success());
    let v = env.json(&["sessions", "--active", "--json"]);
    assert_eq!(v, serde_json::json!([]));
}

// --- show ----------------------------------------------------------------------------------

#[test]
fn show_by_unique_prefix_has_history_counts_and_blocks() {
    let env = Env::standard();
    let v = env.json(&["show", "alpha-1", "--json"]);
    assert_eq!(v["session"]["session_id"], "alpha-1111");
    assert_eq!(v["session"]["state"], "completed");
    let states: Vec<&str> = v["state_changes"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["state"].as_str())
        .collect();
    assert_eq!(states, ["started", "running", "completed"]);
    assert_eq!(v["state_changes"][2]["exit_code"], 0);
    let counts = v["event_counts"].as_array().expect("array");
    let prompt = counts
        .iter()
        .find(|c| c["pattern"] == "my_prompt")
        .expect("prompt counted");
    assert_eq!(prompt["event_type"], "prompt");
    assert_eq!(prompt["risk_level"], "high");
    assert_eq!(prompt["n"], 1);
    assert_eq!(v["code_blocks"][0]["language"], "rust");
    assert_eq!(v["code_blocks"][0]["content"], "fn main() {}");
    assert_eq!(v["code_blocks_total"], 1);
    let text = env.ok(&["show", "alpha-1111"]);
    assert!(text.contains("State history") && text.contains("my_prompt"));
}

#[test]
fn show_ambiguous_prefix_lists_candidates() {
    let env = Env::standard();
    let err = env.fails(&["show", "alpha-"]);
    let err = one_line_error(&err);
    assert!(err.contains("ambiguous"), "{err}");
    assert!(
        err.contains("alpha-1111") && err.contains("alpha-2222"),
        "{err}"
    );
}

#[test]
fn show_unknown_session_is_an_error() {
    let env = Env::standard();
    let err = env.fails(&["show", "gamma"]);
    assert!(
        one_line_error(&err).contains("no session \"gamma\""),
        "{err}"
    );
}

// --- events --------------------------------------------------------------------------------

fn event<'a>(v: &'a Value, pattern: &str) -> &'a Value {
    v.as_array()
        .expect("array")
        .iter()
        .find(|e| e["pattern"] == pattern)
        .unwrap_or_else(|| panic!("no {pattern} event in {v}"))
}

#[test]
fn events_json_fields_equal_columns() {
    let env = Env::standard();
    let v = env.json(&["events", "--session", "alpha-1111", "--json"]);
    let e = event(&v, "my_error");
    assert!(e["id"].is_i64());
    assert_eq!(e["agent_name"], "codex");
    assert_eq!(e["session_id"], "alpha-1111");
    assert_eq!(e["stream"], "stdout");
    assert_eq!(e["event_type"], "error");
    assert_eq!(e["matched_value"], "mismatched types");
    assert_eq!(e["original_line"], "error: mismatched types");
    assert_eq!(e["line_number"], 1);
    assert_eq!(e["risk_level"], Value::Null);
    assert_eq!(e["auto_confirmable"], false);
    assert!(e["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(e.get("metadata_json").is_some() && e.get("code_block_language").is_some());
    let w = event(&v, "my_warning");
    assert_eq!(w["stream"], "stderr");
    let p = event(&v, "my_prompt");
    assert_eq!(p["risk_level"], "high");
    assert_eq!(p["matched_value"], "rm -rf build");
    let b = event(&v, "code_block");
    assert_eq!(b["code_block_language"], "rust");
}

#[test]
fn events_are_newest_first() {
    let env = Env::standard();
    let v = env.json(&["events", "--json"]);
    let sessions = ids(&v, "session_id");
    assert_eq!(sessions.first().map(String::as_str), Some("beta-3333"));
    assert_eq!(sessions.last().map(String::as_str), Some("alpha-1111"));
    let lines: Vec<i64> = env
        .json(&["events", "--session", "alpha-1111", "--json"])
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["line_number"].as_i64())
        .collect();
    let mut sorted = lines.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(lines, sorted);
}

#[test]
fn events_filter_by_agent_type_pattern_and_risk() {
    let env = Env::standard();
    let v = env.json(&["events", "--agent", "claude", "--json"]);
    assert!(ids(&v, "agent_name").iter().all(|a| a == "claude"));
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    let v = env.json(&["events", "--type", "error", "--json"]);
    assert_eq!(
        ids(&v, "matched_value"),
        ["linker failed", "mismatched types"]
    );
    let v = env.json(&["events", "--pattern", "my_command", "--json"]);
    assert_eq!(ids(&v, "matched_value"), ["git push --force"]);
    let v = env.json(&["events", "--risk", "high", "--json"]);
    assert_eq!(ids(&v, "pattern"), ["my_prompt"]);
    let v = env.json(&["events", "--risk", "medium", "--json"]);
    assert_eq!(ids(&v, "pattern"), ["my_command"]);
    let v = env.json(&[
        "events", "--agent", "codex", "--type", "error", "--limit", "1", "--json",
    ]);
    assert_eq!(ids(&v, "session_id"), ["alpha-2222"]);
}

#[test]
fn events_session_prefix_and_time_window() {
    let env = Env::standard();
    env.age("alpha-1111", "2020-03-01");
    let v = env.json(&["events", "--session", "alpha-1", "--json"]);
    assert_eq!(v.as_array().map(Vec::len), Some(4));
    let v = env.json(&["events", "--until", "2020-03-01", "--json"]);
    assert!(ids(&v, "session_id").iter().all(|s| s == "alpha-1111"));
    assert_eq!(v.as_array().map(Vec::len), Some(4));
    let v = env.json(&["events", "--until", "2020-02-29", "--json"]);
    assert_eq!(v, serde_json::json!([]));
    let v = env.json(&["events", "--since", "1d", "--type", "error", "--json"]);
    assert_eq!(ids(&v, "session_id"), ["alpha-2222"]);
    let v = env.json(&[
        "events",
        "--since",
        "2020-03-01T11:00:00Z",
        "--until",
        "2020-03-01T13:00:00+00:00",
        "--json",
    ]);
    assert_eq!(v.as_array().map(Vec::len), Some(4));
}

#[test]
fn events_jsonl_matches_json() {
    let env = Env::standard();
    let rows: Vec<Value> = env
        .ok(&["events", "--jsonl"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(rows.len(), 7);
    assert_eq!(Value::Array(rows), env.json(&["events", "--json"]));
}

#[test]
fn events_table_elides_long_values() {
    let env = Env::new();
    let long = "x".repeat(400);
    env.record("codex", "long-1", &format!("echo 'error: {long}'"));
    let text = env.ok(&["events"]);
    assert!(text.contains('…'), "{text}");
    assert!(text.lines().all(|l| l.chars().count() < 300));
}

#[test]
fn unparseable_filters_are_one_line_errors() {
    let env = Env::standard();
    let err = env.fails(&["events", "--since", "last tuesday"]);
    assert!(one_line_error(&err).contains("--since"), "{err}");
    let err = env.fails(&["sessions", "--since", "2026-13-45"]);
    assert!(one_line_error(&err).contains("2026-13-45"), "{err}");
    let err = env.fails(&["events", "--session", "nope"]);
    assert!(one_line_error(&err).contains("nope"), "{err}");
    let err = env.fails(&["events", "--risk", "extreme"]);
    assert!(err.contains("extreme"), "{err}");
    env.fails(&["events", "--limit", "-3"]);
    env.fails(&["timeline", "--agent", "codex", "--to", "someday"]);
}

// --- code blocks ---------------------------------------------------------------------------

#[test]
fn code_blocks_list_filters_and_fields() {
    let env = Env::standard();
    let v = env.json(&["code-blocks", "--json"]);
    assert_eq!(ids(&v, "language"), ["python", "rust"]);
    let b = &v[1];
    assert_eq!(b["agent_name"], "codex");
    assert_eq!(b["session_id"], "alpha-1111");
    assert_eq!(b["content"], "fn main() {}");
    assert_eq!(b["parseable"], true);
    assert_eq!(b["occurrences"], 1);
    assert_eq!(b["line_start"], 4);
    assert_eq!(b["line_end"], 6);
    assert_eq!(b["digest"].as_str().map(str::len), Some(64));
    let v = env.json(&["code-blocks", "--language", "python", "--json"]);
    assert_eq!(ids(&v, "session_id"), ["beta-3333"]);
    let v = env.json(&["code-blocks", "--agent", "codex", "--json"]);
    assert_eq!(ids(&v, "language"), ["rust"]);
    let v = env.json(&["code-blocks", "--session", "beta", "--json"]);
    assert_eq!(ids(&v, "language"), ["python"]);
    let text = env.ok(&["code-blocks"]);
    assert!(text.contains("DIGEST") && text.contains("fn main() {}"));
}

/// A block printed by several sessions is stored once, under the first; the session and
/// agent filters still find it for every session that printed it, and pruning the first
/// session hands the block to the next one instead of deleting it.
#[test]
fn a_block_printed_by_several_sessions_belongs_to_each_and_survives_a_prune_of_the_first() {
    let env = Env::standard();
    env.record(
        "gemini",
        "gamma-4444",
        "printf '```rust\\nfn main() {}\\n```\\n'",
    );
    let v = env.json(&["code-blocks", "--language", "rust", "--json"]);
    assert_eq!(ids(&v, "session_id"), ["alpha-1111"]);
    assert_eq!(v[0]["occurrences"], 2);
    for filter in [["--session", "gamma"], ["--agent", "gemini"]] {
        let v = env.json(&["code-blocks", filter[0], filter[1], "--json"]);
        assert_eq!(ids(&v, "language"), ["rust"], "{filter:?}");
    }
    env.age("alpha-1111", "2020-03-01");
    let dry = env.json(&["prune", "--older-than", "2020-06-01", "--dry-run", "--json"]);
    assert_eq!(dry["code_blocks"], 0, "the block is still gamma's");
    env.ok(&["prune", "--older-than", "2020-06-01"]);
    let v = env.json(&["code-blocks", "--language", "rust", "--json"]);
    assert_eq!(ids(&v, "session_id"), ["gamma-4444"]);
    assert_eq!(v[0]["agent_name"], "gemini");
    assert_eq!(v[0]["occurrences"], 1);
    let digest = v[0]["digest"].as_str().expect("digest").to_string();
    assert_eq!(
        env.ok(&["code-blocks", "get", &digest[..12]]),
        "fn main() {}\n"
    );
    // Pruned in its turn, no session printed it any more: it goes.
    env.age("gamma-4444", "2020-03-02");
    let v = env.json(&["prune", "--older-than", "2020-06-01", "--json"]);
    assert_eq!(v["code_blocks"], 1);
    assert_eq!(
        env.json(&["code-blocks", "--language", "rust", "--json"]),
        serde_json::json!([])
    );
}

#[test]
fn code_blocks_get_prints_raw_content() {
    let env = Env::standard();
    let v = env.json(&["code-blocks", "--language", "python", "--json"]);
    let digest = v[0]["digest"].as_str().expect("digest").to_string();
    assert_eq!(
        env.ok(&["code-blocks", "get", &digest[..10]]),
        "print(\"zebra\")\n"
    );
    assert_eq!(
        env.ok(&["code-blocks", "get", &digest.to_uppercase()]),
        "print(\"zebra\")\n"
    );
    let err = env.fails(&["code-blocks", "get", "xyz"]);
    assert!(one_line_error(&err).contains("xyz"));
}

#[test]
fn code_blocks_get_ambiguous_prefix_lists_candidates() {
    let env = Env::new();
    // 17 distinct blocks: two of them must share a first hex digit.
    let script: String = (0..17)
        .map(|i| format!("printf '```\\nblock {i}\\n```\\n'; "))
        .collect();
    env.record("codex", "many-1", &script);
    let v = env.json(&["code-blocks", "--json"]);
    let digests = ids(&v, "digest");
    assert_eq!(digests.len(), 17);
    let first = digests
        .iter()
        .map(|d| &d[..1])
        .find(|p| digests.iter().filter(|d| d.starts_with(*p)).count() > 1)
        .expect("pigeonhole");
    let err = env.fails(&["code-blocks", "get", first]);
    let err = one_line_error(&err);
    assert!(err.contains("ambiguous"), "{err}");
    let v = env.json(&["show", "many-1", "--blocks", "5", "--json"]);
    assert_eq!(v["code_blocks"].as_array().map(Vec::len), Some(5));
    assert_eq!(v["code_blocks_total"], 17);
    let err = env.fails(&["code-blocks", "get", "ffffffffffffffffff0"]);
    assert!(err.contains("no code block"), "{err}");
}

// --- stats ---------------------------------------------------------------------------------

fn count(v: &Value, list: &str, key: &str, name: &str) -> i64 {
    v[list]
        .as_array()
        .expect("array")
        .iter()
        .find(|c| c[key] == name)
        .and_then(|c| c["n"].as_i64())
        .unwrap_or(0)
}

#[test]
fn stats_totals_breakdowns_and_success_rate() {
    let env = Env::standard();
    let v = env.json(&["stats", "--json"]);
    assert_eq!(v["sessions"], 3);
    assert_eq!(v["ended_sessions"], 3);
    assert_eq!(v["completed_sessions"], 2);
    assert_eq!(v["active_sessions"], 0);
    let rate = v["success_rate"].as_f64().expect("rate");
    assert!((rate - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(v["events"], 7);
    assert_eq!(count(&v, "by_type", "event_type", "error"), 2);
    assert_eq!(count(&v, "by_type", "event_type", "code_block"), 2);
    assert_eq!(count(&v, "by_pattern", "pattern", "my_prompt"), 1);
    assert_eq!(count(&v, "by_risk", "risk_level", "high"), 1);
    assert_eq!(count(&v, "by_risk", "risk_level", "medium"), 1);
    assert_eq!(count(&v, "by_risk", "risk_level", ""), 5);
    let codex = &v["by_agent"][1];
    assert_eq!(codex["agent_name"], "codex");
    assert_eq!(codex["sessions"], 2);
    assert_eq!(codex["success_rate"], 0.5);
    assert_eq!(codex["events"], 5);
    let text = env.ok(&["stats"]);
    assert!(
        text.contains("66.7%") && text.contains("By pattern"),
        "{text}"
    );
}

#[test]
fn stats_per_agent_per_pattern_and_window() {
    let env = Env::standard();
    let v = env.json(&["stats", "--agent", "claude", "--json"]);
    assert_eq!(v["sessions"], 1);
    assert_eq!(v["events"], 2);
    assert_eq!(v["success_rate"], 1.0);
    let v = env.json(&["stats", "--pattern", "my_error", "--json"]);
    assert_eq!(v["sessions"], 2);
    assert_eq!(v["events"], 2);
    assert_eq!(v["success_rate"], 0.5);
    assert_eq!(v["by_pattern"].as_array().map(Vec::len), Some(1));
    env.age("alpha-2222", "2020-03-01");
    let v = env.json(&["stats", "--since", "30d", "--json"]);
    assert_eq!(v["sessions"], 2);
    assert_eq!(v["success_rate"], 1.0);
    // --agent and --pattern together: that agent's sessions where the rule fired.
    let v = env.json(&[
        "stats",
        "--agent",
        "claude",
        "--pattern",
        "my_error",
        "--json",
    ]);
    let both = v["sessions"].as_i64().unwrap_or(-1);
    assert!((0..=1).contains(&both), "{v}");
    let v = env.json(&["stats", "--agent", "nobody", "--json"]);
    assert_eq!(v["sessions"], 0);
    assert_eq!(v["success_rate"], Value::Null);
}

// --- timeline ------------------------------------------------------------------------------

#[test]
fn timeline_interleaves_states_and_events_in_time_order() {
    let env = Env::standard();
    let v = env.json(&["timeline", "--agent", "codex", "--json"]);
    let rows = v.as_array().expect("array");
    let stamps: Vec<&str> = rows
        .iter()
        .filter_map(|r| r["timestamp"].as_str())
        .collect();
    let mut sorted = stamps.clone();
    sorted.sort();
    assert_eq!(stamps, sorted);
    assert_eq!(rows[0]["kind"], "state");
    assert_eq!(rows[0]["what"], "started");
    assert_eq!(rows[0]["session_id"], "alpha-1111");
    let last = rows.last().expect("rows");
    assert_eq!(last["what"], "failed");
    assert_eq!(last["detail"], "exit 1");
    assert!(rows.iter().all(|r| r["session_id"] != "beta-3333"));
    let ev = rows
        .iter()
        .find(|r| r["kind"] == "event")
        .expect("an event");
    for key in ["pattern", "risk_level", "line_number"] {
        assert!(ev.get(key).is_some(), "missing {key}");
    }
    assert_eq!(rows.len(), 11);
}

#[test]
fn timeline_from_and_to_bound_the_window() {
    let env = Env::standard();
    env.age("alpha-1111", "2020-03-01");
    let v = env.json(&[
        "timeline",
        "--agent",
        "codex",
        "--to",
        "2020-03-01",
        "--json",
    ]);
    assert!(ids(&v, "session_id").iter().all(|s| s == "alpha-1111"));
    assert_eq!(v.as_array().map(Vec::len), Some(7));
    let v = env.json(&["timeline", "--agent", "codex", "--from", "1d", "--json"]);
    assert!(ids(&v, "session_id").iter().all(|s| s == "alpha-2222"));
    let v = env.json(&[
        "timeline",
        "--agent",
        "codex",
        "--from",
        "2020-01-01",
        "--limit",
        "2",
        "--json",
    ]);
    assert_eq!(ids(&v, "what"), ["started", "running"]);
    // Without --agent: every agent's entries (issue 15: the agent is no longer required).
    let all = env.json(&["timeline", "--json"]);
    assert!(all.as_array().map_or(0, Vec::len) >= v.as_array().map_or(0, Vec::len));
}

// --- search --------------------------------------------------------------------------------

#[test]
fn search_finds_event_lines_and_code() {
    let env = Env::standard();
    let v = env.json(&["search", "mismatched", "--json"]);
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    assert_eq!(v[0]["kind"], "event");
    assert_eq!(v[0]["session_id"], "alpha-1111");
    assert_eq!(v[0]["pattern"], "my_error");
    assert_eq!(v[0]["snippet"], "error: mismatched types");
    assert!(v[0]["rank"].is_f64());
    let v = env.json(&["search", "zebra", "--json"]);
    assert_eq!(v[0]["kind"], "code_block");
    assert_eq!(v[0]["language"], "python");
    assert_eq!(v[0]["digest"].as_str().map(str::len), Some(64));
    let v = env.json(&["search", "rm -rf", "--json"]);
    assert_eq!(ids(&v, "pattern"), ["my_prompt"]);
    let text = env.ok(&["search", "linker"]);
    assert!(
        text.contains("error: linker failed") && !text.contains('\x1b'),
        "{text}"
    );
}

#[test]
fn search_agent_filter_prefix_and_raw_syntax() {
    let env = Env::standard();
    let v = env.json(&["search", "error", "--agent", "claude", "--json"]);
    assert_eq!(v, serde_json::json!([]));
    let v = env.json(&["search", "mism*", "--json"]);
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    let v = env.json(&["search", "--raw", "linker OR zebra", "--json"]);
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    let err = env.fails(&["search", "--raw", "\"unbalanced"]);
    assert!(one_line_error(&err).contains("cannot search"), "{err}");
    assert!(env
        .ok(&["search", "nothinglikethis"])
        .contains("no matches"));
}

#[test]
fn search_indexes_rows_recorded_after_the_last_search() {
    let env = Env::standard();
    assert_eq!(
        env.json(&["search", "quokka", "--json"]),
        serde_json::json!([])
    );
    env.record("codex", "later-1", "echo 'error: quokka escaped'");
    let v = env.json(&["search", "quokka", "--json"]);
    assert_eq!(ids(&v, "session_id"), ["later-1"]);
}

#[test]
fn an_old_database_gains_search_by_migration() {
    let env = Env::standard();
    {
        let c = env.conn();
        c.execute_batch(
            "DROP TABLE extraction_events_fts; DROP TABLE code_blocks_fts; DROP TABLE fts_state; \
             ALTER TABLE process_sessions DROP COLUMN agent_session_id; \
             ALTER TABLE process_sessions DROP COLUMN agent_model; \
             ALTER TABLE process_sessions DROP COLUMN input_tokens; \
             ALTER TABLE process_sessions DROP COLUMN cached_input_tokens; \
             ALTER TABLE process_sessions DROP COLUMN output_tokens; \
             ALTER TABLE process_sessions DROP COLUMN cost_usd; \
             ALTER TABLE process_sessions DROP COLUMN cost_note; \
             ALTER TABLE process_sessions DROP COLUMN agent_log_path; \
             PRAGMA user_version = 1;",
        )
        .expect("make it a v1 database");
    }
    let v = env.json(&["search", "linker", "--json"]);
    assert_eq!(ids(&v, "session_id"), ["alpha-2222"]);
    let version: i64 = env
        .conn()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, wrapper::store::schema::LATEST);
}

// --- prune ---------------------------------------------------------------------------------

fn table_count(env: &Env, table: &str, session: &str) -> i64 {
    env.conn()
        .query_row(
            &format!("SELECT count(*) FROM {table} WHERE session_id = ?1"),
            [session],
            |r| r.get(0),
        )
        .expect("count")
}

#[test]
fn prune_dry_run_deletes_nothing() {
    let env = Env::standard();
    env.age("alpha-1111", "2020-03-01");
    let v = env.json(&["prune", "--older-than", "30d", "--dry-run", "--json"]);
    assert_eq!(v["dry_run"], true);
    assert_eq!(ids(&v["sessions"], "session_id"), ["alpha-1111"]);
    assert_eq!(v["events"], 4);
    assert_eq!(v["code_blocks"], 1);
    assert_eq!(v["state_changes"], 3);
    assert_eq!(table_count(&env, "extraction_events", "alpha-1111"), 4);
    let text = env.ok(&["prune", "--older-than", "30d", "--dry-run"]);
    assert!(
        text.contains("would delete 1 session started") && text.contains("nothing deleted"),
        "{text}"
    );
    assert_eq!(
        env.json(&["sessions", "--json"]).as_array().map(Vec::len),
        Some(3)
    );
}

#[test]
fn prune_deletes_old_sessions_with_everything_under_them() {
    let env = Env::standard();
    // Index first, so prune must also take the rows out of the FTS index.
    assert_eq!(
        env.json(&["search", "mismatched", "--json"])
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    env.age("alpha-1111", "2020-03-01");
    let text = env.ok(&["prune", "--older-than", "2020-06-01"]);
    assert!(text.contains("deleted 1 session started"), "{text}");
    for table in [
        "process_sessions",
        "process_state_changes",
        "extraction_events",
        "event_counts",
        "code_blocks",
    ] {
        assert_eq!(table_count(&env, table, "alpha-1111"), 0, "{table}");
    }
    assert_eq!(table_count(&env, "extraction_events", "alpha-2222"), 1);
    assert_eq!(
        env.json(&["search", "mismatched", "--json"]),
        serde_json::json!([])
    );
    let check: String = env
        .conn()
        .query_row(
            "INSERT INTO extraction_events_fts(extraction_events_fts, rank) VALUES('integrity-check', 1) RETURNING 'ok'",
            [],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| e.to_string());
    assert_eq!(check, "ok");
    // Rows recorded after a prune (which may reuse deleted ids) are still found.
    env.record("codex", "after-1", "echo 'error: wombat'");
    assert_eq!(
        ids(&env.json(&["search", "wombat", "--json"]), "session_id"),
        ["after-1"]
    );
    assert!(env
        .ok(&["prune", "--older-than", "2020-06-01"])
        .contains("nothing to prune"));
    env.fails(&["prune", "--older-than", "whenever"]);
    env.fails(&["prune"]);
}

// --- backup --------------------------------------------------------------------------------

#[test]
fn backup_copies_and_refuses_to_overwrite() {
    let env = Env::standard();
    let dest = env.dir.path().join("copy.db");
    let dest_s = dest.to_string_lossy().to_string();
    assert!(env.ok(&["backup", &dest_s]).contains("backed up"));
    let mut c = env.cmd();
    let copy = c
        .args(["sessions", "--json", "--db", &dest_s])
        .output()
        .expect("runs");
    let v: Value = serde_json::from_slice(&copy.stdout).expect("JSON");
    assert_eq!(
        ids(&v, "session_id"),
        ["beta-3333", "alpha-2222", "alpha-1111"]
    );
    let err = env.fails(&["backup", &dest_s]);
    assert!(one_line_error(&err).contains("--force"), "{err}");
    env.record("codex", "gamma-4444", "echo hi");
    assert!(env
        .ok(&["backup", &dest_s, "--force"])
        .contains("backed up"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dest).expect("meta").permissions().mode();
    assert_eq!(mode & 0o077, 0, "backup readable by others: {mode:o}");
}

// --- the database itself -------------------------------------------------------------------

#[test]
fn missing_database_says_where_and_how() {
    let env = Env::new();
    for args in [
        &["sessions"][..],
        &["events"],
        &["stats"],
        &["search", "x"],
        &["show", "x"],
        &["code-blocks"],
        &["timeline", "--agent", "x"],
        &["prune", "--older-than", "1d"],
        &["backup", "out.db"],
    ] {
        let err = env.fails(args);
        let err = one_line_error(&err);
        assert!(
            err.contains("w.db") && err.contains("--enable-db"),
            "{args:?}: {err}"
        );
    }
    assert!(!env.db().exists(), "a query created the database");
}

#[test]
fn database_from_a_newer_wrapper_is_refused() {
    let env = Env::standard();
    env.conn()
        .execute_batch("PRAGMA user_version = 99")
        .expect("bump");
    for args in [&["sessions"][..], &["events"], &["stats"], &["search", "x"]] {
        let err = env.fails(args);
        assert!(one_line_error(&err).contains("newer"), "{args:?}: {err}");
    }
}

#[test]
fn db_path_check_and_migrate_still_work() {
    let env = Env::standard();
    assert_eq!(
        env.ok(&["db", "path"]).trim(),
        env.db().to_string_lossy().as_ref()
    );
    let latest = wrapper::store::schema::LATEST;
    assert!(env
        .ok(&["db", "check"])
        .contains(&format!("ok (schema version {latest})")));
    assert!(env
        .ok(&["db", "migrate"])
        .contains(&format!("schema version {latest}")));
}

#[test]
fn wrapper_db_env_selects_the_database() {
    let env = Env::standard();
    let out = env
        .cmd()
        .env("WRAPPER_DB", env.db())
        .args(["sessions", "--json"])
        .output()
        .expect("runs");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v.as_array().map(Vec::len), Some(3));
}
