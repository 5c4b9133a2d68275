//! The agents' own records (SPEC §10): JSON streams decoded by `[[json]]` rules, session logs
//! found and read, tokens and cost on the session. Each test replays what the real clients
//! printed and logged (tests/fixtures/streams/, recorded by scripts/record_agent_json.sh from
//! codex-cli 0.171.0 and Claude Code 2.1.197 against the scripted mock model) through the
//! real binary: a child prints the recorded output and writes the recorded log where the
//! agent would, under this test's `CODEX_HOME` / `CLAUDE_CONFIG_DIR`.

use std::path::PathBuf;
use std::process::Stdio;

use crate::harness::Env;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Which recorded run to replay: its stdout, stderr and session log (under tests/fixtures/),
/// and the directory it ran in (the fake agent puts this test's own in its place).
struct Recording {
    agent: &'static str,
    out: String,
    err: Option<String>,
    log: String,
    cwd: &'static str,
}

impl Recording {
    /// One of ours (tests/fixtures/streams/, scripts/record_agent_json.sh).
    fn ours(agent: &'static str, name: &str) -> Recording {
        let log = if agent == "codex" {
            "rollout.jsonl"
        } else {
            "log.jsonl"
        };
        Recording {
            agent,
            out: format!("streams/{name}.out"),
            err: Some(format!("streams/{name}.err")),
            log: format!("streams/{name}.{log}"),
            cwd: "/tmp/wrapper-rec/proj",
        }
    }

    /// One of the `real` recordings (tests/fixtures/agents/, scripts/real-agents.sh).
    fn real(agent: &'static str, out: &str, err: Option<&str>, log: &str) -> Recording {
        Recording {
            agent,
            out: format!("agents/{agent}/{out}"),
            err: err.map(|e| format!("agents/{agent}/{e}")),
            log: format!("agents/{agent}/{log}"),
            cwd: "/tmp/wrapper-real-agents/proj",
        }
    }

    /// A shell script that writes the session log where the agent would and prints the
    /// recorded stdout and stderr.
    fn script(&self, env: &Env) -> String {
        let dest = match self.agent {
            "codex" => format!(
                "{}/sessions/$(date -u +%Y/%m/%d)",
                env.path("codex-home").display()
            ),
            "gemini" => format!(
                "{}/.gemini/tmp/proj/chats",
                env.path("gemini-home").display()
            ),
            _ => format!("{}/projects/-proj", env.path("claude-home").display()),
        };
        // Gemini names the project by the SHA-256 of its path: the recorded one becomes the
        // hash of this run's directory.
        let hex = |s: &str| -> String {
            use sha2::{Digest, Sha256};
            Sha256::digest(s.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        let err = self
            .err
            .as_ref()
            .map(|e| format!("cat '{}' >&2", fixture(e).display()))
            .unwrap_or_else(|| "true".into());
        format!(
            "set -e; d=\"{dest}\"; mkdir -p \"$d\"; \
             h=$(printf %s \"$PWD\" | sha256sum | cut -d' ' -f1); \
             sed \"s#{cwd}#$PWD#g; s#{hash}#$h#g\" '{log}' > \"$d/{name}\"; \
             cat '{out}'; {err}",
            hash = hex(self.cwd),
            name = if self.agent == "gemini" {
                "session-2026-12-04T21-49-21d6727f.jsonl"
            } else {
                "rollout-test.jsonl"
            },
            cwd = self.cwd,
            log = fixture(&self.log).display(),
            out = fixture(&self.out).display(),
        )
    }

    /// Runs it through wrapper with the built-in rules and a database.
    fn run(&self, env: &Env) {
        let out = env
            .cmd()
            .arg(self.agent)
            .arg("--db")
            .arg(env.db())
            .arg("--")
            .args(["sh", "-c", &self.script(env)])
            .stdin(Stdio::null())
            .output()
            .expect("run wrapper");
        assert!(
            out.status.success(),
            "{:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // The agent's output reaches the terminal byte for byte.
        let recorded = std::fs::read(fixture(&self.out)).expect("fixture");
        assert_eq!(out.stdout, recorded);
    }
}

/// `value|exit_code|has duration` of each command event, in order.
fn commands(env: &Env) -> Vec<String> {
    env.query_strings(
        "SELECT matched_value || '|' || coalesce(json_extract(metadata_json, '$.exit_code'), '-') \
         || '|' || (json_extract(metadata_json, '$.duration_ms') IS NOT NULL) \
         FROM extraction_events WHERE event_type = 'command' ORDER BY id",
    )
}

fn count(env: &Env, sql_where: &str) -> i64 {
    env.query_i64(&format!(
        "SELECT count(*) FROM extraction_events WHERE {sql_where}"
    ))
}

/// What every mode must give: no event read out of a JSON escape, one code block stored once,
/// the agent's log and usage on the session.
fn common_checks(env: &Env, block_events: i64) {
    assert_eq!(
        count(
            env,
            "matched_value LIKE '%nbroken%' OR (original_line LIKE '{\"%' \
             AND json_extract(coalesce(metadata_json, '{}'), '$.source') IS NULL)"
        ),
        0,
        "an event from inside a JSON escape"
    );
    assert_eq!(env.query_i64("SELECT count(*) FROM code_blocks"), 1);
    assert_eq!(count(env, "event_type = 'code_block'"), block_events);
    assert_eq!(
        env.query_i64("SELECT count(*) FROM code_blocks WHERE language = 'c'"),
        1
    );
    let log = env.query_strings("SELECT agent_log_path FROM process_sessions");
    assert!(log[0].ends_with("rollout-test.jsonl"), "{log:?}");
    assert_eq!(
        env.query_i64(
            "SELECT count(*) FROM process_sessions WHERE agent_session_id IS NOT NULL \
             AND input_tokens > 0 AND output_tokens > 0 AND cached_input_tokens IS NOT NULL"
        ),
        1
    );
}

#[test]
fn codex_exec_json_commands_errors_code_blocks_and_tokens() {
    let env = Env::new();
    Recording::ours("codex", "codex_exec_json").run(&env);
    assert_eq!(
        commands(&env),
        ["gcc broken.c -o broken|1|1", "python3 -m pytest -q|5|1"]
    );
    assert_eq!(
        env.query_strings(
            "SELECT matched_value FROM extraction_events WHERE pattern = 'codex_json_command_failed' ORDER BY id"
        ),
        ["gcc broken.c -o broken", "python3 -m pytest -q"]
    );
    // The compiler error inside `aggregated_output` is found as a line of its own.
    assert_eq!(
        env.query_strings(
            "SELECT matched_value FROM extraction_events WHERE event_type = 'file_path' AND pattern = 'path_line_col'"
        ),
        ["broken.c:3:17"]
    );
    // Every command the log also has is confirmed, not stored again.
    assert_eq!(
        count(
            &env,
            "json_extract(metadata_json, '$.source') = 'log' AND event_type = 'command'"
        ),
        0
    );
    assert_eq!(
        count(
            &env,
            "event_type = 'command' AND json_extract(metadata_json, '$.confirmed_by') = 'log'"
        ),
        2
    );
    // The approval policy's refusal is only in the rollout.
    assert_eq!(
        count(
            &env,
            "event_type = 'denied' AND (pattern = 'codex_log_rejected' \
             OR json_extract(metadata_json, '$.confirmed_by') = 'log')"
        ),
        1
    );
    common_checks(&env, 1);
    assert_eq!(
        env.query_strings(
            "SELECT input_tokens || '/' || cached_input_tokens || '/' || output_tokens || '/' || agent_model FROM process_sessions"
        ),
        ["6600/3000/166/mock-model"]
    );
}

#[test]
fn claude_stream_json_pairs_tool_calls_and_records_denials_and_cost() {
    let env = Env::new();
    Recording::ours("claude", "claude_stream_json").run(&env);
    assert_eq!(
        commands(&env),
        [
            "gcc broken.c -o broken|1|1",
            "python3 -m pytest -q|5|1",
            "rm -rf build && git clean -fdx|-|1"
        ]
    );
    assert_eq!(
        env.query_strings(
            "SELECT json_extract(metadata_json, '$.status') FROM extraction_events \
             WHERE event_type = 'command' ORDER BY id"
        ),
        // The refused rm did not run: denied, not failed.
        ["failed", "failed", "denied"]
    );
    // Every failed tool call is an error, once (content and tool_use_result say it twice);
    // the refused one is a refusal, not a failure.
    assert_eq!(count(&env, "pattern = 'claude_tool_failed'"), 2);
    assert_eq!(count(&env, "pattern = 'error_prefix'"), 0);
    assert_eq!(
        env.query_strings(
            "SELECT matched_value || '|' || json_extract(metadata_json, '$.tool') FROM extraction_events \
             WHERE event_type = 'denied'"
        ),
        ["rm -rf build && git clean -fdx|Bash"]
    );
    common_checks(&env, 1);
    assert_eq!(
        env.query_strings(
            "SELECT input_tokens || '/' || cached_input_tokens || '/' || output_tokens || '/' || \
             cost_usd || '/' || cost_note FROM process_sessions"
        ),
        ["7200/3600/126/0.0492/Claude Code's own estimate (total_cost_usd), not a bill"]
    );
}

#[test]
fn stats_and_show_report_tokens_and_cost_per_agent_day_and_session() {
    let env = Env::new();
    for (agent, name) in [
        ("claude", "claude_stream_json"),
        ("codex", "codex_exec_json"),
    ] {
        Recording::ours(agent, name).run(&env);
    }
    let out = env
        .cmd()
        .args(["stats", "--json", "--db"])
        .arg(env.db())
        .output()
        .expect("stats");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats json");
    let u = &v["usage"];
    assert_eq!(u["total"]["input_tokens"], 13800);
    assert_eq!(u["total"]["output_tokens"], 292);
    let agents: Vec<(String, i64)> = u["by_agent"]
        .as_array()
        .expect("by_agent")
        .iter()
        .map(|a| {
            (
                a["agent_name"].as_str().unwrap_or("").to_string(),
                a["input_tokens"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        agents,
        [("claude".to_string(), 7200), ("codex".to_string(), 6600)]
    );
    assert_eq!(u["by_day"].as_array().map(Vec::len), Some(2));
    assert_eq!(u["sessions"].as_array().map(Vec::len), Some(2));
    assert!((u["by_agent"][0]["cost_usd"].as_f64().unwrap_or(0.0) - 0.0492).abs() < 1e-9);

    let sid =
        env.query_strings("SELECT session_id FROM process_sessions WHERE agent_name = 'claude'");
    let out = env
        .cmd()
        .args(["show", "--json", "--db"])
        .arg(env.db())
        .arg(&sid[0])
        .output()
        .expect("show");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("show json");
    assert_eq!(v["usage"]["output_tokens"], 126);
    assert!(v["usage"]["agent_log_path"]
        .as_str()
        .is_some_and(|p| p.ends_with(".jsonl")));
    // And for people: the table says what the cost is.
    let out = env
        .cmd()
        .args(["show", "--db"])
        .arg(env.db())
        .arg(&sid[0])
        .output()
        .expect("show");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("own estimate"), "{text}");
}

#[test]
fn a_log_of_another_directory_is_not_this_sessions() {
    let env = Env::new();
    // The recorded log, left as recorded: its cwd is not this session's.
    let d = env.path("claude-home").join("projects/-other");
    std::fs::create_dir_all(&d).expect("mkdir");
    let script = format!(
        "cp '{}' '{}/x.jsonl'; cat '{}'",
        fixture("streams/claude_text.log.jsonl").display(),
        d.display(),
        fixture("streams/claude_text.out").display()
    );
    let out = env
        .cmd()
        .args(["claude", "--db"])
        .arg(env.db())
        .args(["--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(out.status.success());
    assert_eq!(count(&env, "event_type = 'command'"), 0);
    assert_eq!(
        env.query_strings("SELECT coalesce(agent_log_path, 'none') FROM process_sessions"),
        ["none"]
    );
}

/// A look at what each recording of the `real` branch gives, for the tests below.
fn summary(env: &Env) -> Vec<String> {
    env.query_strings(
        "SELECT event_type || '|' || pattern || '|' || substr(replace(coalesce(matched_value, ''), char(10), ' '), 1, 40) \
         || '|' || coalesce(json_extract(metadata_json, '$.exit_code'), '-') \
         || '|' || coalesce(json_extract(metadata_json, '$.confirmed_by'), json_extract(metadata_json, '$.source'), 'screen') \
         FROM extraction_events WHERE event_type IN ('command', 'error', 'denied', 'code_block') ORDER BY id",
    )
}

/// The `real` branch's recordings (another run of each client, another directory): every
/// shell command one command event with exit status and duration, every failure an error,
/// the denial recorded, the code block stored once, tokens on the session.
fn check_real(r: Recording, commands_expected: &[&str], failures: &str, denied: &str) -> Env {
    let env = Env::new();
    r.run(&env);
    let got = commands(&env);
    for c in commands_expected {
        assert_eq!(
            got.iter().filter(|g| g == c).count(),
            1,
            "{c} once in {got:?}\n{:#?}",
            summary(&env)
        );
    }
    assert_eq!(
        count(
            &env,
            // The log's failure, or a failure the screen showed and the log confirmed (stored
            // once, under the screen's rule).
            &format!(
                "event_type = 'error' AND (pattern = '{failures}' \
                 OR (json_extract(metadata_json, '$.confirmed_by') = 'log' \
                     AND json_extract(metadata_json, '$.exit_code') IS NOT NULL))"
            )
        ),
        // Every command that ran and exited non-zero; a refused one (no exit code) is a
        // refusal, not a failure.
        commands_expected
            .iter()
            .filter(|c| !c.contains("|0|") && !c.contains("|-|"))
            .count() as i64,
        "{:#?}",
        summary(&env)
    );
    assert_eq!(
        count(
            &env,
            &format!(
                "event_type = 'denied' AND (pattern = '{denied}' \
                 OR json_extract(metadata_json, '$.confirmed_by') = 'log')"
            )
        ),
        1,
        "{:#?}",
        summary(&env)
    );
    assert_eq!(env.query_i64("SELECT count(*) FROM code_blocks"), 1);
    // The compiler's error, once, whether the output showed it (and the log's tool output
    // confirmed it) or only the log has it (`claude -p` in text mode, a folded TUI call).
    assert_eq!(
        count(
            &env,
            "pattern = 'compiler_error' AND matched_value = 'expected ‘;’ before ‘return’' \
             AND (json_extract(metadata_json, '$.confirmed_by') = 'log' \
                  OR json_extract(metadata_json, '$.source') = 'log')"
        ),
        1,
        "{:#?}",
        summary(&env)
    );
    assert_eq!(
        count(
            &env,
            "matched_value LIKE '%nbroken%' OR (original_line LIKE '{\"%' \
             AND json_extract(coalesce(metadata_json, '{}'), '$.source') IS NULL)"
        ),
        0
    );
    assert_eq!(
        env.query_i64(
            "SELECT count(*) FROM process_sessions WHERE input_tokens > 0 AND output_tokens > 0 \
             AND agent_log_path IS NOT NULL AND agent_session_id IS NOT NULL"
        ),
        1
    );
    env
}

const GCC_FAILS: &str = "gcc broken.c -o broken|1|1";
const PYTEST_PASSES: &str = "python3 -m pytest -q|0|1";

#[test]
fn real_codex_exec_json() {
    let r = Recording::real(
        "codex",
        "exec-json.jsonl",
        Some("exec-json.stderr.txt"),
        "exec-json.session.jsonl",
    );
    check_real(
        r,
        &[GCC_FAILS, PYTEST_PASSES],
        "codex_json_command_failed",
        "codex_log_rejected",
    );
}

#[test]
fn real_codex_exec_text() {
    let r = Recording::real(
        "codex",
        "exec-text.stdout.txt",
        Some("exec-text.stderr.txt"),
        "exec-text.session.jsonl",
    );
    let env = check_real(
        r,
        &[GCC_FAILS, PYTEST_PASSES],
        "codex_exec_failed",
        "codex_log_rejected",
    );
    assert_eq!(count(&env, "pattern = 'codex_log_command_failed'"), 0);
}

#[test]
fn real_claude_stream_json() {
    let r = Recording::real(
        "claude",
        "p-stream.jsonl",
        Some("p-stream.stderr.txt"),
        "p-stream.session.jsonl",
    );
    let env = check_real(
        r,
        &[
            GCC_FAILS,
            PYTEST_PASSES,
            "rm -rf build && git clean -fdx|-|1",
        ],
        "claude_tool_failed",
        "claude_denied",
    );
    assert_eq!(
        env.query_i64("SELECT count(*) FROM process_sessions WHERE cost_usd > 0 AND cost_note LIKE '%estimate%'"),
        1
    );
}

#[test]
fn real_claude_text() {
    let r = Recording::real(
        "claude",
        "p-text.stdout.txt",
        Some("p-text.stderr.txt"),
        "p-text.session.jsonl",
    );
    check_real(
        r,
        &[
            GCC_FAILS,
            PYTEST_PASSES,
            "rm -rf build && git clean -fdx|-|1",
        ],
        "claude_tool_failed",
        "claude_log_denied",
    );
}

/// The TUIs: what their screens cannot show exactly, their logs can.
#[test]
fn real_tuis_are_covered_by_their_session_logs() {
    // Claude Code 2.1.197, and 2.1.332, whose screen folds calls away: the log has them all.
    for dir in ["", "2.1.332/"] {
        let r = Recording::real(
            "claude",
            &format!("{dir}tui.scrollback.txt"),
            None,
            &format!("{dir}tui.session.jsonl"),
        );
        let env = check_real(
            r,
            &[
                GCC_FAILS,
                PYTEST_PASSES,
                "rm -rf build && git clean -fdx|-|1",
            ],
            "claude_tool_failed",
            "claude_log_denied",
        );
        // The screen's `⎿  Interrupted · What should Claude do instead?` and the log's
        // refusal are one event, with the command the log names.
        assert_eq!(
            env.query_strings(
                "SELECT matched_value || '|' || json_extract(metadata_json, '$.confirmed_by') \
                 FROM extraction_events WHERE event_type = 'denied'"
            ),
            ["rm -rf build && git clean -fdx|log"],
            "{dir}"
        );
        // The failure once, whether the screen showed it under the call (`⎿  Error: Exit
        // code 1`) or folded rows away (2.1.332's `Ran 1 shell command · 1 failed`).
        assert_eq!(
            env.query_strings(
                "SELECT pattern || '|' || json_extract(metadata_json, '$.exit_code') || '|' \
                 || json_extract(metadata_json, '$.confirmed_by') FROM extraction_events \
                 WHERE event_type = 'error' AND pattern <> 'compiler_error'"
            ),
            [if dir.is_empty() {
                "claude_tool_error|1|log"
            } else {
                "claude_tui_ran_failed|1|log"
            }],
            "{dir}"
        );
    }
    let env = Env::new();
    Recording::real("codex", "tui.scrollback.txt", None, "tui.session.jsonl").run(&env);
    let got = commands(&env);
    for c in [GCC_FAILS, PYTEST_PASSES] {
        assert_eq!(got.iter().filter(|g| *g == c).count(), 1, "{got:?}");
    }
    assert_eq!(env.query_i64("SELECT count(*) FROM code_blocks"), 1);
}

/// Found by an audit: strings decoded from an agent's JSON kept the ESC and BEL that JSON
/// carries as `\u001b` and `\u0007`, so an OSC 52 in a command reached whoever read the event
/// in `sqlite3`. Lines have their escape sequences stripped before they are stored (SPEC §2);
/// so do decoded strings, and no other control character but tab and newline is kept.
#[test]
fn control_characters_decoded_from_json_are_not_stored() {
    let env = Env::new();
    let line = r#"{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"/bin/bash -lc 'ls \u001b]52;c;cHduZWQ=\u0007 \u001b[2J'","aggregated_output":"\u001b[31mred\u001b[0m\nnext\tcol\n","exit_code":2,"status":"failed"}}"#;
    std::fs::write(env.path("out.jsonl"), format!("{line}\n")).expect("write");
    let out = env
        .cmd()
        .args(["codex", "--db"])
        .arg(env.db())
        .args(["--", "cat"])
        .arg(env.path("out.jsonl"))
        .stdin(Stdio::null())
        .output()
        .expect("run");
    crate::harness::assert_exit(&out, 0);
    let stored = env.query_strings(
        "SELECT coalesce(matched_value, '') || coalesce(metadata_json, '') FROM extraction_events",
    );
    assert!(
        stored.iter().any(|s| s.starts_with("ls ")),
        "the command was recorded: {stored:?}"
    );
    for s in &stored {
        assert!(
            !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t'),
            "a control character was stored: {s:?}"
        );
    }
}

/// Found by a live run of Claude Code 2.1.332: its TUI shows only the first row of a long
/// call (`⎿  $ for f in …; done && echo '… the next`), the log has the whole command, and the
/// session held both, as two commands. The log's account is merged into the screen's event,
/// which gets the whole command as its value.
#[test]
fn a_command_the_screen_cut_short_is_one_event_with_the_logs_whole_value() {
    let env = Env::new();
    let home = env.path("claude-home");
    let proj = env.path("proj");
    std::fs::create_dir_all(&proj).expect("mkdir");
    let full = "for f in broken.c test_ok.py; do echo \"== $f\"; wc -l \"$f\"; done && echo 'all files counted; the next step compares them'";
    let shown = &full[..full.find(" the next").expect("cut") + " the next".len()];
    let agent = r#"
import json, os, sys, time, datetime
home, shown, full = sys.argv[1], sys.argv[2], sys.argv[3]
cwd = os.getcwd()
d = os.path.join(home, "projects", "".join(c if c.isalnum() else "-" for c in cwd))
os.makedirs(d, exist_ok=True)
now = lambda: datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
print("  \u23bf  $ " + shown, flush=True)
recs = [
  {"type": "user", "cwd": cwd, "timestamp": now(), "message": {"role": "user", "content": "count"}},
  {"type": "assistant", "cwd": cwd, "timestamp": now(), "message": {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_9", "name": "Bash", "input": {"command": full}}]}},
  {"type": "user", "cwd": cwd, "timestamp": now(), "message": {"role": "user", "content": [{"type": "tool_result", "content": "== broken.c", "is_error": False, "tool_use_id": "toolu_9"}]}},
]
with open(os.path.join(d, "s1.jsonl"), "w") as f:
    for r in recs:
        f.write(json.dumps(r) + "\n")
"#;
    let out = env
        .cmd()
        .current_dir(&proj)
        .env("CLAUDE_CONFIG_DIR", &home)
        .args(["claude", "--db"])
        .arg(env.db())
        .args(["--", "python3", "-c", agent])
        .arg(&home)
        .args([shown, full])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    crate::harness::assert_exit(&out, 0);
    let commands = env.query_strings(
        "SELECT matched_value || '|' || coalesce(json_extract(metadata_json, '$.confirmed_by'), '-') \
         FROM extraction_events WHERE event_type = 'command'",
    );
    assert_eq!(commands, [format!("{full}|log")]);
}

/// Gemini CLI 0.61's session log (`~/.gemini/tmp/<project>/chats/session-….jsonl`, found by
/// the SHA-256 of the project's path in its first record) holds what none of its outputs say:
/// a shell call's exit code (`gemini -p` reports none, the TUI a ✓ either way), tokens and the
/// session id. Each recorded run through wrapper: every command once with its exit code, the
/// failure, the refusal once and not as a command or a failure, the compiler's error once,
/// the code block, the session's facts.
#[test]
fn real_gemini_runs_are_covered_by_their_session_logs() {
    for (out, err, log) in [
        (
            "p-stream.jsonl",
            Some("p-stream.stderr.txt"),
            "p-stream.session.jsonl",
        ),
        (
            "p-text.stdout.txt",
            Some("p-text.stderr.txt"),
            "p-text.session.jsonl",
        ),
        ("tui.scrollback.txt", None, "tui.session.jsonl"),
    ] {
        let env = Env::new();
        Recording::real("gemini", out, err, log).run(&env);
        let s = summary(&env);
        let exit_codes: Vec<String> = commands(&env)
            .iter()
            .map(|c| c.rsplit_once('|').map_or(c.clone(), |(v, _)| v.to_string()))
            .collect();
        assert_eq!(
            exit_codes,
            ["gcc broken.c -o broken|1", "python3 -m pytest -q|0"],
            "{out}: {s:#?}"
        );
        // The failure once, with its exit code: the log's own, or the error the output
        // showed right after the command, which the log confirmed.
        assert_eq!(
            count(
                &env,
                "event_type = 'error' AND json_extract(metadata_json, '$.exit_code') = 1"
            ),
            1,
            "{out}: {s:#?}"
        );
        assert_eq!(
            env.query_strings(
                "SELECT matched_value FROM extraction_events WHERE event_type = 'denied'"
            ),
            ["rm -rf build && git clean -fdx"],
            "{out}: {s:#?}"
        );
        assert_eq!(
            count(
                &env,
                "event_type = 'error' AND (matched_value LIKE '%rm -rf%' \
                 OR matched_value LIKE '%denied%' OR matched_value LIKE '%Cancelled%')"
            ),
            0,
            "{out}: {s:#?}"
        );
        assert_eq!(
            count(
                &env,
                "pattern = 'compiler_error' AND matched_value = 'expected ‘;’ before ‘return’'"
            ),
            1,
            "{out}: {s:#?}"
        );
        // The answer's code block (the TUI run ends at the refusal, before any answer).
        assert_eq!(
            env.query_i64("SELECT count(*) FROM code_blocks"),
            i64::from(!out.starts_with("tui")),
            "{out}"
        );
        assert_eq!(
            env.query_i64(
                "SELECT count(*) FROM process_sessions WHERE input_tokens > 0 \
                 AND output_tokens > 0 AND agent_log_path LIKE '%/chats/session-%' \
                 AND agent_session_id IS NOT NULL AND agent_model IS NOT NULL"
            ),
            1,
            "{out}: {s:#?}"
        );
    }
}
