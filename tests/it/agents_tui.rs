//! The built-in rules on what the real agent clients showed: the TUI screens (`tmux
//! capture-pane`) and text-mode outputs recorded by `scripts/real-agents.sh --record` in
//! `tests/fixtures/agents/` (Codex 0.171, Claude Code 2.1.197, Gemini CLI 0.61 against the
//! scripted mock model). Each screen is run through `wrapper patterns test --agent …` and every
//! command, failure (with its exit status), approval question and refusal a person read there
//! must be an event — and no command event may be anything but a command the model asked for.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agents")
}

/// The commands the scenarios' model asks to run: the only values a command event may have.
fn scenario_commands() -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for name in ["fix_build", "test_fail"] {
        let path = fixtures().join(format!("scenarios/{name}.json"));
        let text = std::fs::read_to_string(&path).expect("scenario file");
        let v: Value = serde_json::from_str(&text).expect("scenario json");
        for t in v["turns"].as_array().expect("turns") {
            if let Some(c) = t["run"].as_str() {
                all.insert(c.to_owned());
            }
        }
    }
    all
}

/// A command as a screen shows it may be cut: Claude wraps a long call (the event has its
/// first line), Codex ends it with `…`, and `codex exec` prints it shell-quoted (a `'` inside
/// is `'"'"'`, or the rest switches to double quotes: `'echo '"'a b'"`).
fn shown_as(event_value: &str, command: &str) -> bool {
    let v = event_value
        .trim_end_matches('…')
        .replace(r#"'"'"'"#, "'")
        .replace(r#"'"'"#, "'");
    !v.is_empty() && command.starts_with(v.as_str())
}

/// `wrapper patterns test --jsonl --agent AGENT` on each fixture, all started at once (each
/// run compiles the rule set; in parallel the test stays quick on a loaded machine).
fn events_of(files: &[(&str, &str)]) -> Vec<Vec<Value>> {
    let env = Env::new();
    let children: Vec<_> = files
        .iter()
        .map(|(rel, agent)| {
            let path = fixtures().join(rel);
            assert!(path.is_file(), "fixture {} is missing", path.display());
            env.cmd()
                .args(["patterns", "test", "--jsonl", "--agent", agent])
                .arg(&path)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start wrapper patterns test")
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().expect("wrapper patterns test");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| serde_json::from_str(l).expect("json event"))
                .collect()
        })
        .collect()
}

fn values<'a>(ev: &'a [Value], kind: &str) -> Vec<&'a str> {
    ev.iter()
        .filter(|e| e["event_type"] == kind)
        .map(|e| e["matched_value"].as_str().unwrap_or(""))
        .collect()
}

fn metadata(e: &Value) -> Value {
    e["metadata_json"]
        .as_str()
        .map(|m| serde_json::from_str(m).expect("metadata json"))
        .unwrap_or(Value::Null)
}

/// What a person read on one recorded screen or output, and must find as events.
struct Expect {
    file: &'static str,
    agent: &'static str,
    /// command events, in order (values)
    commands: &'static [&'static str],
    /// each must be (a substring of) the value of some error event
    errors: &'static [&'static str],
    /// (rule, exit status) that must be on an event's metadata as `exit_code`
    exit_codes: &'static [(&'static str, &'static str)],
    /// approval questions on the screen (prompt events)
    prompts: &'static [&'static str],
    /// refusals: declined by the user or denied by a policy
    denied: &'static [&'static str],
}

const GCC: &str = "gcc broken.c -o broken";
const PYTEST: &str = "python3 -m pytest -q";
const RM: &str = "rm -rf build && git clean -fdx";
const GCC_ERROR: &str = "expected ‘;’ before ‘return’";
const CLAUDE_Q: &str = "Do you want to proceed?";
const CODEX_Q: &str = "Would you like to run the following command?";
const GEMINI_Q: &str = "Allow execution of [Shell]?";
const PYTEST_FAIL: &str = "python3 -m pytest -q test_fail.py";
const NOSUCH: &str = "nosuchtool --version";
const COUNT: &str = "for f in broken.c test_ok.py test_fail.py; do echo \"== $f\"; wc -l \"$f\"; done && echo 'all files counted; the next step compares them with the build configuration in detail'";

const EXPECT: &[Expect] = &[
    Expect {
        file: "claude/tui.approval-1.screen.txt",
        agent: "claude",
        commands: &[GCC],
        errors: &[],
        exit_codes: &[],
        prompts: &[CLAUDE_Q],
        denied: &[],
    },
    Expect {
        file: "claude/tui.approval-2.screen.txt",
        agent: "claude",
        commands: &[GCC, PYTEST],
        errors: &["Exit code 1", GCC_ERROR],
        exit_codes: &[("claude_tool_error", "1")],
        prompts: &[CLAUDE_Q],
        denied: &[],
    },
    Expect {
        file: "claude/tui.approval-3.screen.txt",
        agent: "claude",
        commands: &[GCC, PYTEST, RM],
        errors: &["Exit code 1", GCC_ERROR],
        exit_codes: &[("claude_tool_error", "1")],
        prompts: &[CLAUDE_Q],
        denied: &[],
    },
    Expect {
        file: "claude/tui.scrollback.txt",
        agent: "claude",
        commands: &[GCC, PYTEST, RM],
        errors: &["Exit code 1", GCC_ERROR],
        exit_codes: &[("claude_tool_error", "1")],
        prompts: &[],
        denied: &["Interrupted"],
    },
    // Claude Code 2.1.332: a call shows `⎿  $ cmd` while it waits or runs, then folds into
    // `Ran 1 shell command · 1 failed` (the failing command's output is only in the log).
    Expect {
        file: "claude/2.1.332/tui.approval-1.screen.txt",
        agent: "claude",
        commands: &[GCC],
        errors: &[],
        exit_codes: &[],
        prompts: &[CLAUDE_Q],
        denied: &[],
    },
    Expect {
        file: "claude/2.1.332/tui.approval-2.screen.txt",
        agent: "claude",
        commands: &[PYTEST],
        errors: &["1 failed"],
        exit_codes: &[],
        prompts: &[CLAUDE_Q],
        denied: &[],
    },
    Expect {
        file: "claude/2.1.332/tui.approval-3.screen.txt",
        agent: "claude",
        commands: &[RM],
        errors: &["1 failed"],
        exit_codes: &[],
        prompts: &[CLAUDE_Q],
        denied: &[],
    },
    Expect {
        file: "claude/2.1.332/tui.final.screen.txt",
        agent: "claude",
        commands: &[RM],
        errors: &["1 failed"],
        exit_codes: &[],
        prompts: &[],
        denied: &["Interrupted"],
    },
    Expect {
        file: "codex/tui.approval-1.screen.txt",
        agent: "codex",
        commands: &[GCC],
        errors: &[GCC],
        exit_codes: &[("codex_tui_exited", "1"), ("codex_tui_exited_error", "1")],
        prompts: &[CODEX_Q],
        denied: &[],
    },
    Expect {
        file: "codex/tui.approval-2.screen.txt",
        agent: "codex",
        commands: &[GCC, PYTEST],
        errors: &[GCC],
        exit_codes: &[("codex_tui_exited", "1")],
        prompts: &[CODEX_Q],
        denied: &[],
    },
    // The final screen: Codex cancelled the declined rm and then draws it as an exec cell,
    // `• Exited (status 1) rm …`, right after the refusal: it never ran, so it is a refusal
    // alone, neither a command nor a failure (the cell's rules hold outside that block).
    Expect {
        file: "codex/tui.scrollback.txt",
        agent: "codex",
        commands: &[PYTEST],
        errors: &[],
        exit_codes: &[],
        prompts: &[],
        denied: &[RM],
    },
    Expect {
        file: "codex/exec-text.merged.txt",
        agent: "codex",
        commands: &[GCC, PYTEST],
        errors: &["exited 1 in", GCC_ERROR],
        exit_codes: &[("codex_exec_failed", "1")],
        prompts: &[],
        denied: &["reject command"],
    },
    Expect {
        file: "gemini/p-text.merged.txt",
        agent: "gemini",
        commands: &[],
        errors: &[],
        exit_codes: &[],
        prompts: &[],
        denied: &["Tool execution denied by policy."],
    },
    Expect {
        file: "gemini/tui.approval-1.screen.txt",
        agent: "gemini",
        commands: &[],
        errors: &[],
        exit_codes: &[],
        prompts: &[GEMINI_Q],
        denied: &[],
    },
    // (The compiler's error inside Gemini's `│ … │` tool box: found since a live run of all
    // three clients showed it missed.)
    Expect {
        file: "gemini/tui.approval-3.screen.txt",
        agent: "gemini",
        commands: &[GCC, PYTEST],
        errors: &[GCC_ERROR],
        exit_codes: &[],
        prompts: &[GEMINI_Q],
        denied: &[],
    },
    // scenario test_fail: every command allowed
    Expect {
        file: "claude/test_fail/tui.scrollback.txt",
        agent: "claude",
        commands: &[PYTEST_FAIL, NOSUCH, COUNT],
        errors: &[
            "Exit code 1",
            "assert -1 == 5",
            "Exit code 127",
            "command not found",
        ],
        exit_codes: &[("claude_tool_error", "1"), ("claude_tool_error", "127")],
        prompts: &[],
        denied: &[],
    },
    Expect {
        file: "claude/test_fail/tui.approval-3.screen.txt",
        agent: "claude",
        commands: &[PYTEST_FAIL, NOSUCH, COUNT],
        errors: &["Exit code 1", "Exit code 127"],
        exit_codes: &[("claude_tool_error", "127")],
        prompts: &[CLAUDE_Q],
        denied: &[],
    },
    Expect {
        file: "codex/test_fail/tui.scrollback.txt",
        agent: "codex",
        commands: &[PYTEST_FAIL, NOSUCH, COUNT],
        errors: &[PYTEST_FAIL, NOSUCH],
        exit_codes: &[("codex_tui_exited", "1"), ("codex_tui_exited", "127")],
        prompts: &[],
        denied: &[],
    },
    Expect {
        file: "codex/test_fail/exec-text.merged.txt",
        agent: "codex",
        commands: &[PYTEST_FAIL, NOSUCH, COUNT],
        errors: &[
            "exited 1 in",
            "exited 127 in",
            "assert -1 == 5",
            "command not found",
        ],
        exit_codes: &[("codex_exec_failed", "1"), ("codex_exec_failed", "127")],
        prompts: &[],
        denied: &[],
    },
];

#[test]
fn agent_screens_yield_every_command_failure_and_approval_question() {
    let allowed = scenario_commands();
    let (mut want, mut found) = (0usize, 0usize);
    let mut misses = Vec::new();
    let files: Vec<_> = EXPECT.iter().map(|x| (x.file, x.agent)).collect();
    for (x, ev) in EXPECT.iter().zip(events_of(&files)) {
        let commands = values(&ev, "command");
        // no false command: every command event is one the model asked for
        for c in &commands {
            assert!(
                allowed.iter().any(|a| shown_as(c, a)),
                "{}: false command {c:?} (events: {ev:#?})",
                x.file
            );
        }
        assert_eq!(
            commands.len(),
            x.commands.len(),
            "{}: commands {commands:?}",
            x.file
        );
        for (got, want) in commands.iter().zip(x.commands) {
            assert!(shown_as(got, want), "{}: {got:?} is not {want:?}", x.file);
        }
        let mut need = |ok: bool, what: String| {
            want += 1;
            if ok {
                found += 1;
            } else {
                misses.push(format!("{}: {what}", x.file));
            }
        };
        let errors = values(&ev, "error");
        for e in x.errors {
            need(errors.iter().any(|v| v.contains(e)), format!("error {e:?}"));
        }
        for (rule, code) in x.exit_codes {
            need(
                ev.iter()
                    .any(|e| e["pattern"] == *rule && metadata(e)["exit_code"] == *code),
                format!("{rule} with exit_code {code}"),
            );
        }
        let prompts = values(&ev, "prompt");
        for p in x.prompts {
            need(prompts.contains(p), format!("prompt {p:?}"));
        }
        assert_eq!(
            prompts.len(),
            x.prompts.len(),
            "{}: one prompt event per question on the screen: {prompts:?}",
            x.file
        );
        let denied = values(&ev, "denied");
        for d in x.denied {
            need(
                denied.iter().any(|v| v.contains(d)),
                format!("denied {d:?}"),
            );
        }
        assert_eq!(
            denied.len(),
            x.denied.len(),
            "{}: denied {denied:?}",
            x.file
        );
    }
    assert!(
        misses.is_empty(),
        "missed {} of {want}: {misses:#?}",
        misses.len()
    );
    assert_eq!(found, want);
}

/// The lines right under a command on the Codex screen are its output (`  └ …`), never a
/// command; the lines inside Claude's tool-result block are never commands either.
#[test]
fn output_under_a_command_is_not_a_command() {
    let files = [
        ("codex/tui.approval-2.screen.txt", "codex"),
        ("codex/tui.scrollback.txt", "codex"),
        ("claude/tui.scrollback.txt", "claude"),
    ];
    for ((file, _), ev) in files.iter().zip(events_of(&files)) {
        for e in ev {
            if e["event_type"] == "command" {
                let line = e["original_line"].as_str().unwrap_or("");
                assert!(
                    !line.starts_with("  └") && !line.contains('⎿') && !line.starts_with("     "),
                    "{file}: command from an output line: {line:?}"
                );
            }
        }
    }
}

/// The recorded streams are what the README says: the real clients, with their versions.
#[test]
fn recordings_name_the_clients_that_made_them() {
    for (agent, needle) in [
        ("codex", "codex-cli "),
        ("claude", "(Claude Code)"),
        ("claude/2.1.332", "2.1.332 (Claude Code)"),
        ("gemini", "."),
    ] {
        let v = std::fs::read_to_string(fixtures().join(agent).join("VERSION")).expect("VERSION");
        assert!(v.contains(needle), "{agent}: {v}");
    }
    let cast = std::fs::read_to_string(fixtures().join("codex/tui.cast")).expect("cast");
    let header: Value =
        serde_json::from_str(cast.lines().next().expect("header")).expect("asciicast header");
    assert_eq!(header["version"], 2);
    assert_eq!(header["width"], 120);
}

/// Gemini's own rules on its final screen: the two commands that ran, and the declined rm as a
/// refusal (`│ -  Shell rm … │`), not a command: the generic `dangerous_command` rule, which
/// took that cancelled cell for a high-risk command, passes a line a refusal rule recorded.
#[test]
fn gemini_declined_cell_is_a_refusal_not_a_command() {
    let ev = events_of(&[("gemini/tui.scrollback.txt", "gemini")]).remove(0);
    // The test summary inside the tool box, without the box.
    assert_eq!(values(&ev, "test_result"), ["2 passed in 0.07s"]);
    let ours = |kind: &str| -> Vec<String> {
        ev.iter()
            .filter(|e| e["event_type"] == kind)
            .map(|e| e["matched_value"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(ours("command"), [GCC, PYTEST]);
    assert_eq!(ours("denied"), [RM]);
}

/// Codex's own rules on its screens after the user declined `rm`: Codex draws the declined
/// command as an exec cell, `• Exited (status 1) rm …`, right after `✗ You canceled the
/// request to run rm …`; the refusal is recorded, and neither a command nor a failure.
#[test]
fn codex_declined_cell_is_a_refusal_not_a_command_or_a_failure() {
    let files = [
        ("codex/tui.scrollback.txt", "codex"),
        ("codex/tui.final.screen.txt", "codex"),
    ];
    for ((file, _), ev) in files.iter().zip(events_of(&files)) {
        let of = |kind: &str| -> Vec<String> {
            ev.iter()
                .filter(|e| e["event_type"] == kind && e["pattern"] != "dangerous_command")
                .map(|e| e["matched_value"].as_str().unwrap_or("").to_owned())
                .collect()
        };
        assert_eq!(of("denied"), [RM], "{file}");
        assert!(!of("command").iter().any(|c| c == RM), "{file}: {ev:#?}");
        assert!(!of("error").iter().any(|c| c == RM), "{file}: {ev:#?}");
    }
}

/// Found by a review: a refusal may rule out only the command it refused. After `✗ You
/// canceled …` the declined command's own cell is neither a command nor a failure, and a
/// failing cell of another command right after it (or after the declined one's) is both.
#[test]
fn a_codex_refusal_rules_out_its_own_command_and_no_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let screens = [
        "✗ You canceled the request to run rm -rf build && git clean -fdx\n\n\
         • Exited (status 1) rm -rf build && git clean -fdx\n  └ (no output)\n\n\
         • Exited (status 2) make check\n  └ make: *** [check] Error 2\n",
        "✗ You did not approve codex to run rm -rf build && git clean -fdx\n\n\
         • Exited (status 2) make check\n  └ make: *** [check] Error 2\n",
    ];
    let files: Vec<String> = screens
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let p = dir.path().join(format!("screen-{i}.txt"));
            std::fs::write(&p, text).expect("write");
            p.to_string_lossy().into_owned()
        })
        .collect();
    let args: Vec<(&str, &str)> = files.iter().map(|f| (f.as_str(), "codex")).collect();
    for (i, ev) in events_of(&args).into_iter().enumerate() {
        let of = |kind: &str, pattern: &str| -> Vec<String> {
            ev.iter()
                .filter(|e| e["event_type"] == kind && e["pattern"] == pattern)
                .map(|e| e["matched_value"].as_str().unwrap_or("").to_owned())
                .collect()
        };
        assert_eq!(of("denied", "codex_tui_declined"), [RM], "screen {i}");
        assert_eq!(
            of("command", "codex_tui_exited"),
            ["make check"],
            "screen {i}"
        );
        assert_eq!(
            of("error", "codex_tui_exited_error"),
            ["make check"],
            "screen {i}"
        );
    }
}
