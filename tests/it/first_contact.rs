//! What a new user meets in the first ten minutes (issue 15): a mistyped subcommand is caught
//! before anything runs, completions and the man page exist, tables fit 60/80/120-column
//! terminals (in a real pty), a recorded run at a terminal says where it went, and the small
//! things: empty results on stderr, counts in the right number, the help's examples doing what
//! they say.

use std::io::Read;
use std::process::{Command, Stdio};

use crate::harness::*;

/// Runs `cmd` with stdin, stdout and stderr on a fresh pty of `cols`×40 (its controlling
/// terminal, as under a terminal emulator) and returns everything it wrote, and its exit code.
fn on_pty(mut cmd: Command, cols: u16) -> (i32, String) {
    let size = nix::pty::Winsize {
        ws_row: 40,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
    let slave = pty.slave;
    on_pty_slave(&mut cmd, &slave);
    let mut child = cmd.spawn().expect("spawn on a pty");
    // The command holds its copies of the slave until dropped: the master reads EOF only
    // once every one is closed.
    drop(cmd);
    drop(slave);
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the last slave fd is closed: the end of the output.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    });
    let status = child.wait().expect("wait");
    let out = reader.join().expect("reader");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out).replace("\r\n", "\n"),
    )
}

#[test]
fn a_mistyped_subcommand_is_caught_and_nothing_runs() {
    let env = Env::new();
    for (args, suggestion) in [
        (&["shwo", "5e0d"][..], "did you mean: wrapper show 5e0d"),
        (
            &["serach", "error"][..],
            "did you mean: wrapper search error",
        ),
        (&["sesions"][..], "did you mean: wrapper sessions"),
        (
            &["evnets", "--limit", "3"][..],
            "did you mean: wrapper events",
        ),
    ] {
        let out = env
            .cmd()
            .args(args)
            .arg("--db")
            .arg(env.db())
            .stdin(Stdio::null())
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(suggestion), "{args:?}: {err}");
        assert!(!env.db().exists(), "{args:?} started a session");
    }
    // A name near a subcommand whose command does run is an agent: `stat` running `true`.
    let out = env
        .cmd()
        .args(["stat", "--db"])
        .arg(env.db())
        .args(["--", "true"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        env.query_strings("SELECT agent_name FROM process_sessions"),
        ["stat"]
    );
}

#[test]
fn completions_and_the_man_page() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = env
            .cmd()
            .args(["completions", shell])
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("wrapper") && text.contains("sessions"),
            "{shell}"
        );
    }
    if std::path::Path::new("/bin/bash").exists() {
        let script = env.path("wrapper.bash");
        let out = env
            .cmd()
            .args(["completions", "bash"])
            .output()
            .expect("run");
        std::fs::write(&script, out.stdout).expect("write");
        let check = Command::new("/bin/bash")
            .arg("-n")
            .arg(&script)
            .status()
            .expect("bash -n");
        assert!(check.success(), "the bash completion script does not parse");
    }
    let out = env.cmd().arg("man").output().expect("run");
    assert_eq!(out.status.code(), Some(0));
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH wrapper 1"),
        "{page:.200}"
    );
    assert!(
        page.contains(".SH \"WRAPPER SESSIONS\""),
        "no section per subcommand"
    );
    assert!(page.contains("\\-\\-since") || page.contains("--since"));
}

/// Records sessions whose states and commands make a wide table: every final state, a long
/// agent name and a long command.
fn sessions_db(env: &Env) {
    let runs: [(&str, &str); 4] = [
        ("codex", "echo 'error: boom'; exit 1"),
        ("claude", "true"),
        (
            "a-rather-long-agent-name",
            "echo a long command line with many words to elide",
        ),
        ("aider", "kill -TERM $$"),
    ];
    for (agent, script) in runs {
        env.run_cmd(agent, &[], &["sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .expect("run");
    }
    // An interrupted one: wrapper is told to stop while the agent runs.
    let mut c = env.run_cmd("gemini", &[], &["sh", "-c", "echo ready; exec sleep 30"]);
    c.stdin(Stdio::null());
    let run = Running::spawn(c);
    wait_until("the agent started", || {
        env.db().exists()
            && env.query_i64("SELECT count(*) FROM process_sessions WHERE state = 'running'") == 1
    });
    run.signal(nix::sys::signal::Signal::SIGTERM);
    run.wait();
}

#[test]
fn tables_fit_60_80_and_120_columns() {
    let env = Env::new();
    sessions_db(&env);
    let states = env.query_strings("SELECT DISTINCT state FROM process_sessions");
    assert!(states.iter().any(|s| s == "interrupted"), "{states:?}");
    for cols in [60u16, 80, 120] {
        let mut c = env.cmd();
        c.arg("sessions").arg("--db").arg(env.db());
        let (code, text) = on_pty(c, cols);
        assert_eq!(code, 0, "{text}");
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 6, "a header and five rows at {cols}:\n{text}");
        for l in &lines {
            assert!(
                l.chars().count() <= usize::from(cols),
                "{} columns at {cols}: {l:?}\n{text}",
                l.chars().count()
            );
        }
        // The header's words are whole, and so is every state.
        for h in ["SESSION", "AGENT", "STATE", "EXIT"] {
            assert!(
                lines[0].split_whitespace().any(|w| w == h),
                "{h} at {cols}: {text}"
            );
        }
        for s in &states {
            assert!(
                lines.iter().any(|l| l.split_whitespace().any(|w| w == s)),
                "state {s} not whole at {cols}:\n{text}"
            );
        }
        if cols == 120 {
            assert!(
                lines[0].contains("COMMAND") && lines[0].contains("LINES"),
                "{text}"
            );
        }
    }
    // Events and code blocks fit too.
    for sub in ["events", "timeline", "code-blocks"] {
        let mut c = env.cmd();
        c.arg(sub).arg("--db").arg(env.db());
        let (code, text) = on_pty(c, 60);
        assert_eq!(code, 0, "{sub}: {text}");
        for l in text.lines() {
            assert!(l.chars().count() <= 60, "{sub}: {l:?}");
        }
    }
}

#[test]
fn a_recorded_run_at_a_terminal_says_where_it_went() {
    let env = Env::new();
    let mut c = env.run_cmd("codex", &[], &["sh", "-c", "echo 'error: x'"]);
    c.env("WRAPPER_DB", env.path("elsewhere.db"));
    let (code, text) = on_pty(c, 100);
    assert_eq!(code, 0, "{text}");
    let sid = env
        .query_strings("SELECT session_id FROM process_sessions")
        .remove(0);
    let short = &sid[..8];
    assert!(
        text.contains(&format!("wrapper: session {short} recorded in")),
        "{text}"
    );
    assert!(text.contains("1 line, 1 event"), "{text}");
    assert!(
        text.contains(&format!("wrapper show {short} --db")),
        "names the database when it is not the default: {text}"
    );
    // With -q, and off a terminal, the agent's stderr stays the agent's own.
    let mut c = env.run_cmd("codex", &["-q"], &["true"]);
    c.env_remove("WRAPPER_DB");
    let (_, text) = on_pty(c, 100);
    assert!(!text.contains("recorded in"), "{text}");
    let out = env
        .run_cmd("codex", &[], &["true"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(
        out.stderr.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    // -v says what wrapper is about to do.
    let out = env
        .run_cmd("codex", &["-v"], &["true"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("recording to") && err.contains("rules"),
        "{err}"
    );
}

#[test]
fn the_help_examples_do_what_they_say() {
    let env = Env::new();
    let out = env
        .cmd()
        .args(["demo", "echo 'error: test failed'", "--db"])
        .arg(env.db())
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        env.query_i64("SELECT count(*) FROM extraction_events WHERE event_type = 'error'"),
        1,
        "the help's shell-syntax example records its error"
    );
    let help = env.cmd().arg("--help").output().expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("wrapper demo \"echo 'error: test failed'\" --enable-db"));
    let run_help = env.cmd().args(["run", "--help"]).output().expect("help");
    let run_help = String::from_utf8_lossy(&run_help.stdout);
    assert!(
        !run_help.contains("wrapper run --help"),
        "`run --help` refers to itself"
    );
}

#[test]
fn small_things() {
    let env = Env::new();
    env.run_cmd("codex", &[], &["sh", "-c", "echo 'error: one'"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let db = env.db();
    let q = |args: &[&str]| {
        env.cmd()
            .args(args)
            .arg("--db")
            .arg(&db)
            .output()
            .expect("query")
    };
    // Nothing found: said on stderr, exit 0, stdout empty.
    let out = q(&["events", "--type", "nope"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no events match"));
    // An empty range gets a hint.
    let out = q(&["events", "--since", "1d", "--until", "2d"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hint:"),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Timeline without --agent: every agent.
    let out = q(&["timeline"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("t_error"));
    // stats takes --agent and --pattern together.
    let out = q(&[
        "stats",
        "--agent",
        "codex",
        "--pattern",
        "t_error",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // Counts in the right number.
    let out = q(&["prune", "--older-than", "0s", "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 session started") && text.contains("1 event,"),
        "{text}"
    );
    // A broken file in the user's pattern directory: refused, with the way out.
    let dir = env.path("config/wrapper/patterns");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("mine.toml"),
        "version = 1\n[[pattern]]\nname = 'x'\n",
    )
    .expect("w");
    let out = env
        .cmd()
        .args(["codex", "--db"])
        .arg(&db)
        .args(["--", "true"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("mine.toml") && err.contains("--no-user-patterns"),
        "{err}"
    );
    let out = env
        .cmd()
        .args(["codex", "--no-user-patterns", "--db"])
        .arg(&db)
        .args(["--", "true"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn code_blocks_of_one_session_leave_out_the_session_column() {
    let env = Env::new();
    env.run_cmd("codex", &[], &["printf", "```sh\\nls\\n```\\n"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let sid = env
        .query_strings("SELECT session_id FROM process_sessions")
        .remove(0);
    let out = env
        .cmd()
        .args(["code-blocks", "--session", &sid, "--db"])
        .arg(env.db())
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("DIGEST") && !text.contains("SESSION"),
        "{text}"
    );
}
