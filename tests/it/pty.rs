//! PTY mode (SPEC §10) in a real pseudo-terminal that plays the user's terminal: the test
//! opens a pty pair, runs wrapper on the slave (as its controlling terminal, as a terminal
//! emulator would), types into the master and reads what appears there. After every way a
//! session can end, the terminal's `stty -g` must be what it was before, and reset sequences
//! must appear exactly for the modes the child left on.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::Instant;

use crate::harness::*;

/// The user's terminal: a pty pair, wrapper on its slave.
struct Term {
    env: Env,
    slave: OwnedFd,
    keys: std::fs::File,
    screen: Captured,
    wrapper: Option<Child>,
}

/// Written to the terminal by the test once wrapper has exited ([`Term::read_all`]).
const SYNC: &str = "<<the test read all>>";

impl Term {
    fn new(cols: u16, rows: u16) -> Term {
        let env = Env::new();
        let size = nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
        let master = std::fs::File::from(pty.master);
        let keys = master.try_clone().expect("dup master");
        Term {
            env,
            slave: pty.slave,
            keys,
            screen: Captured::start(master),
            wrapper: None,
        }
    }

    /// `stty -g` of the terminal, as the user's shell would see it.
    fn stty(&self) -> String {
        let out = Command::new("stty")
            .arg("-g")
            .stdin(self.slave.try_clone().expect("dup"))
            .output()
            .expect("stty");
        assert!(out.status.success(), "stty -g failed");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Starts `cmd` (a wrapper command) on the terminal, as its session leader.
    fn start(&mut self, mut cmd: Command) {
        let s = &self.slave;
        cmd.stdin(s.try_clone().expect("dup"))
            .stdout(s.try_clone().expect("dup"))
            .stderr(s.try_clone().expect("dup"));
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.wrapper = Some(cmd.spawn().expect("spawn wrapper"));
    }

    /// Starts `wrapper codex [extra] -- sh -c script` with the test rules and database.
    fn sh(&mut self, extra: &[&str], script: &str) {
        let cmd = self.env.run_cmd("codex", extra, &["sh", "-c", script]);
        self.start(cmd);
    }

    fn type_in(&mut self, s: &[u8]) {
        self.keys.write_all(s).expect("type");
    }

    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.wrapper.as_ref().expect("started").id() as i32)
    }

    /// Waits for wrapper to exit; its exit code.
    fn wait(&mut self) -> i32 {
        let w = self.wrapper.as_mut().expect("started");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(s) = w.try_wait().expect("wait") {
                use std::os::unix::process::ExitStatusExt;
                self.read_all();
                return s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0));
            }
            assert!(
                Instant::now() < deadline,
                "wrapper did not exit; the screen:\n{:?}",
                self.screen.text()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Waits until everything written to the terminal so far has been read from its master:
    /// bytes written to the slave after it come out after them, so once [`SYNC`] has been
    /// read, so has the rest (wrapper's exit does not mean its last bytes were read yet).
    fn read_all(&mut self) {
        let mut slave = std::fs::File::from(self.slave.try_clone().expect("dup"));
        slave
            .write_all(SYNC.as_bytes())
            .expect("write to the terminal");
        self.screen.wait_for(SYNC);
    }

    /// Everything that appeared on the screen (up to [`Term::read_all`]'s marker).
    fn text(&self) -> String {
        let text = self.screen.text();
        match text.find(SYNC) {
            Some(i) => text[..i].to_string(),
            None => text,
        }
    }

    /// What appeared on the screen after the first `marker`.
    /// What wrapper wrote after `marker`, less its closing summary line ("wrapper: session …
    /// recorded in …", run/summary.rs), which must come last if it comes at all.
    fn after(&self, marker: &str) -> String {
        let text = self.text();
        let rest = match text.find(marker) {
            Some(i) => text[i + marker.len()..].to_string(),
            None => panic!("{marker:?} not on the screen: {text:?}"),
        };
        match rest.find("wrapper: session ") {
            Some(i) => {
                let (head, summary) = rest.split_at(i);
                assert!(
                    summary.contains(" recorded in ") && summary.ends_with("\r\n"),
                    "the summary is the last line: {rest:?}"
                );
                assert_eq!(summary.matches('\n').count(), 1, "{rest:?}");
                head.to_string()
            }
            None => rest,
        }
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        if let Some(w) = &mut self.wrapper {
            if w.try_wait().ok().flatten().is_none() {
                let _ = w.kill();
                let _ = w.wait();
            }
        }
    }
}

/// The only session's capture, exported as an asciicast (v2).
fn export_cast(env: &Env) -> String {
    let sid = env
        .query_strings("SELECT session_id FROM process_sessions")
        .remove(0);
    let cast = env.path("session.cast");
    let out = env
        .cmd()
        .args(["export", &sid, "--db"])
        .arg(env.db())
        .arg("-o")
        .arg(&cast)
        .output()
        .expect("export");
    assert!(out.status.success(), "{out:?}");
    std::fs::read_to_string(&cast).expect("cast")
}

fn outcome(env: &Env) -> String {
    env.query_strings(
        "SELECT state || ':' || exit_code || ':' || coalesce(signal, '') FROM process_sessions",
    )
    .join(",")
}

/// The child gets a terminal for stdin, stdout and stderr, sized like the user's, in a
/// session of its own; the user's terminal is raw meanwhile and as it was afterwards.
#[test]
fn the_child_runs_on_a_terminal_of_the_users_size_and_the_terminal_is_restored() {
    let mut t = Term::new(100, 30);
    let before = t.stty();
    t.sh(
        &[],
        "test -t 0 && test -t 1 && test -t 2 && echo ALL-TTY; stty size; \
         ps -o sid= -p $$ | tr -d ' ' > sid; echo error: from the pty; echo DO\"\"NE",
    );
    assert_eq!(t.wait(), 0, "{:?}", t.text());
    let text = t.text();
    assert!(text.contains("ALL-TTY"), "{text:?}");
    assert!(text.contains("30 100"), "{text:?}");
    let sid: i32 = std::fs::read_to_string(t.env.path("sid"))
        .expect("sid")
        .trim()
        .parse()
        .expect("sid number");
    assert_ne!(sid, t.pid().as_raw(), "the child has a session of its own");
    assert_eq!(t.stty(), before);
    // Nothing was left on, so nothing is reset.
    assert!(!t.after("DONE").contains('\x1b'), "{text:?}");
    assert_eq!(outcome(&t.env), "completed:0:");
    assert_eq!(
        t.env
            .query_strings("SELECT stream || ':' || matched_value FROM extraction_events"),
        ["pty:from the pty"]
    );
}

/// What the child switched on and left on is switched off at the end, and only that.
#[test]
fn modes_the_child_left_on_are_reset_and_only_those() {
    let mut t = Term::new(80, 24);
    let before = t.stty();
    t.sh(
        &[],
        r"printf '\033[?1049h\033[?2004h\033[?25l\033[?1000h\033[?1006h\033[?1004h\033[>1u'; \
          printf '\033[?1004l'; echo DO''NE",
    );
    assert_eq!(t.wait(), 0);
    assert_eq!(
        t.after("DONE\r\n"),
        "\x1b[<1u\x1b[?1006l\x1b[?1000l\x1b[?2004l\x1b[?1049l\x1b[?25h"
    );
    assert_eq!(t.stty(), before);
}

/// The child killed by SIGKILL in the middle of a TUI: the terminal is restored all the same.
#[test]
fn after_the_child_is_killed_by_sigkill_the_terminal_is_restored() {
    let mut t = Term::new(80, 24);
    let before = t.stty();
    t.sh(
        &[],
        r"printf '\033[?1049h\033[?2004h'; echo DO''NE; kill -KILL $$",
    );
    assert_eq!(t.wait(), 137);
    assert_eq!(t.after("DONE\r\n"), "\x1b[?2004l\x1b[?1049l");
    assert_eq!(t.stty(), before);
    assert_eq!(outcome(&t.env), "killed:137:SIGKILL");
}

/// Ctrl-C is the byte 0x03 through the pty: the child's line discipline makes it one SIGINT
/// for the child's foreground group — not a second one from wrapper.
#[test]
fn ctrl_c_reaches_the_child_once_through_the_pty() {
    let mut t = Term::new(80, 24);
    let before = t.stty();
    t.sh(
        &[],
        "n=0; trap 'n=$((n+1))' INT; echo RE''ADY; read x; echo COUNT=$n; read y; echo GOT=$y",
    );
    t.screen.wait_for("READY");
    t.type_in(b"\x03");
    t.screen.wait_for("COUNT=");
    t.type_in(b"done\r");
    assert_eq!(t.wait(), 0);
    let text = t.text();
    assert!(text.contains("COUNT=1"), "{text:?}");
    assert!(text.contains("GOT=done"), "{text:?}");
    assert_eq!(t.stty(), before);
}

/// Ctrl-C that ends the agent: recorded as interrupted by the user, exit 130.
#[test]
fn ctrl_c_that_ends_the_child_records_interrupted() {
    let mut t = Term::new(80, 24);
    let before = t.stty();
    t.sh(&[], r"printf '\033[?25l'; echo RE''ADY; read x");
    t.screen.wait_for("READY");
    t.type_in(b"\x03");
    assert_eq!(t.wait(), 130);
    assert!(t.after("READY").ends_with("\x1b[?25h"), "{:?}", t.text());
    assert_eq!(outcome(&t.env), "interrupted:130:SIGINT");
    assert_eq!(t.stty(), before);
}

/// Terminating signals sent to wrapper from elsewhere go to the child's group; the terminal
/// is restored on each of these paths.
#[test]
fn signals_to_wrapper_reach_the_child_and_the_terminal_is_restored() {
    use nix::sys::signal::Signal;
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        let mut t = Term::new(80, 24);
        let before = t.stty();
        t.sh(&[], r"printf '\033[?2004h'; echo RE''ADY; read x");
        t.screen.wait_for("READY");
        nix::sys::signal::kill(t.pid(), sig).expect("signal");
        assert_eq!(t.wait(), 128 + sig as i32, "{sig}");
        assert!(t.after("READY").ends_with("\x1b[?2004l"), "{sig}");
        assert_eq!(t.stty(), before, "{sig}");
        assert_eq!(
            outcome(&t.env),
            format!("interrupted:{}:{}", 128 + sig as i32, sig.as_str())
        );
    }
}

/// A panic in wrapper: the hook restores the terminal first (wrapper exits 101).
#[test]
fn a_panic_in_wrapper_restores_the_terminal_first() {
    let mut t = Term::new(80, 24);
    let before = t.stty();
    let mut cmd = t.env.run_cmd(
        "codex",
        &[],
        &["sh", "-c", r"printf '\033[?1049h\033[?1002h'; echo DO''NE"],
    );
    cmd.env("WRAPPER_TEST_PANIC", "after-exit");
    t.start(cmd);
    assert_eq!(t.wait(), 101);
    let after = t.after("DONE\r\n");
    assert!(after.starts_with("\x1b[?1002l\x1b[?1049l"), "{after:?}");
    assert!(after.contains("panicked"), "{after:?}");
    assert_eq!(t.stty(), before);
}

/// The terminal resized: the pty follows (the child gets SIGWINCH from the kernel and reads
/// the new size), and the session records it.
#[test]
fn a_resize_of_the_users_terminal_resizes_the_pty_and_is_recorded() {
    let mut t = Term::new(80, 24);
    t.sh(
        &[],
        // A trapped signal that arrives while `read` waits ends the `read` (dash): read
        // again, or the child would be gone before the test types, and the terminal, already
        // restored, would echo the key itself.
        "trap 'stty size' WINCH; echo RE''ADY; until read x; do :; done; stty size; echo DO''NE",
    );
    t.screen.wait_for("READY");
    let ws = nix::pty::Winsize {
        ws_row: 40,
        ws_col: 132,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the winsize we pass; the slave is open.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&t.slave),
            libc::TIOCSWINSZ,
            &ws,
        )
    };
    assert_eq!(rc, 0);
    wait_until("the resize recorded", || {
        !t.env
            .query_strings(
                "SELECT metadata_json FROM process_state_changes WHERE json_extract(metadata_json, '$.signal') = 'SIGWINCH'",
            )
            .is_empty()
    });
    t.type_in(b"\r");
    assert_eq!(t.wait(), 0);
    assert!(t.after("READY").contains("40 132"), "{:?}", t.text());
    let meta = t.env.query_strings(
        "SELECT metadata_json FROM process_state_changes WHERE json_extract(metadata_json, '$.signal') = 'SIGWINCH'",
    );
    assert!(
        meta[0].contains("\"cols\":132") && meta[0].contains("\"rows\":40"),
        "{meta:?}"
    );
    // The capture has the resize where it happened: after the output before it, before the
    // output after it (asciicast: an "r" event between the two).
    let text = export_cast(&t.env);
    let (ready, resize, size) = (
        text.find("READY"),
        text.find("\"r\", \"132x40\"")
            .or_else(|| text.find("\"r\",\"132x40\"")),
        text.find("40 132"),
    );
    assert!(
        matches!((ready, resize, size), (Some(a), Some(b), Some(c)) if a < b && b < c),
        "{ready:?} {resize:?} {size:?}: {text}"
    );
}

/// `--pty` with piped input: the child reads it from its terminal and gets the terminal's
/// EOF at its end, so `cat` ends.
#[test]
fn with_pty_and_piped_stdin_the_child_gets_eof() {
    let env = Env::new();
    let mut cmd = env.run_cmd("codex", &["--pty"], &["cat"]);
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"error: one\nerror: two without newline")
        .expect("write");
    let out = Captured::start(child.stdout.take().expect("stdout"));
    let r = Running {
        child,
        out,
        err: Captured::start(std::io::empty()),
    };
    let (code, out, _) = r.wait();
    assert_eq!(code, 0);
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("error: two without newline"), "{out:?}");
    assert_eq!(outcome(&env), "completed:0:");
}

/// `--no-pty` at a terminal: pipes, as before (the child's stdout is not a terminal).
#[test]
fn no_pty_at_a_terminal_keeps_pipes() {
    let mut t = Term::new(80, 24);
    t.sh(&["--no-pty"], "test -t 1 || echo PI''PED");
    assert_eq!(t.wait(), 0);
    t.screen.wait_for("PIPED");
}

/// Rules in the style of Claude Code's screen, for the end-to-end replay below (the built-in
/// TUI rules are another change's).
const CLAUDE_RULES: &str = r#"
[[pattern]]
name = "t_bash"
event_type = "command"
regex = '''^● Bash\((?P<value>.+)\)$'''
samples = ["● Bash(ls -la)"]

[[pattern]]
name = "t_exit"
event_type = "error"
regex = '''⎿\s*Error: Exit code (?P<value>\d+)'''
samples = ["  ⎿  Error: Exit code 1"]

[[pattern]]
name = "t_proceed"
event_type = "prompt"
regex = '''Do you want to proceed\?'''
prompt = true
samples = [" Do you want to proceed?"]
"#;

/// Plays an asciicast v2 recording's output on its terminal (no output processing, so
/// `\n` stays `\n`), with its pauses: one of 100 ms or more becomes 100 ms (above the tests'
/// 40 ms `--prompt-idle`), a shorter one none.
const CAST_PLAYER: &str = r#"
import json, sys, termios, time
a = termios.tcgetattr(1); a[1] &= ~termios.OPOST; termios.tcsetattr(1, termios.TCSANOW, a)
rows = open(sys.argv[1], encoding="utf-8").read().splitlines()[1:]
last = 0.0
for r in rows:
    t, kind, data = json.loads(r)
    if t - last >= 0.1:
        time.sleep(0.1)
    last = t
    if kind == "o":
        sys.stdout.write(data); sys.stdout.flush()
"#;

/// The real Claude Code TUI's pty output (a recording), played back by a child on wrapper's
/// pty with its pauses: through the real binary, PTY mode records the shell commands Claude
/// ran, the failure, and each approval question while it was on the screen.
#[test]
fn a_recorded_claude_tui_session_through_pty_mode_yields_its_commands_and_questions() {
    let mut t = Term::new(120, 40);
    let rules = t.env.path("claude.toml");
    std::fs::write(&rules, CLAUDE_RULES).expect("rules");
    let cast = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/agents/claude/tui.cast");
    let cmd = t.env.run_cmd_with_rules(
        "claude",
        &rules,
        &["--prompt-idle", "40ms"],
        &["python3", "-c", CAST_PLAYER, &cast.to_string_lossy()],
    );
    let before = t.stty();
    t.start(cmd);
    assert_eq!(t.wait(), 0, "{:?}", t.text());
    assert_eq!(t.stty(), before);
    let events = |kind: &str| {
        t.env.query_strings(&format!(
            "SELECT matched_value FROM extraction_events WHERE event_type = '{kind}' \
             AND stream = 'pty' ORDER BY id"
        ))
    };
    assert_eq!(
        events("command"),
        [
            "gcc broken.c -o broken",
            "python3 -m pytest -q",
            "rm -rf build && git clean -fdx"
        ]
    );
    assert_eq!(events("error"), ["1"]);
    let asked = events("prompt").len();
    assert!(asked >= 3, "three approval questions, got {asked}");
}

/// Plays a recorded TUI session (`tests/fixtures/agents/CAST`) on wrapper's pty as `agent`,
/// with the built-in rules and a database, and an empty agent home (`home_var`) so no
/// session log is read: the run ends 0 and the terminal is left as it was found.
fn play_recorded_tui(agent: &str, home_var: &str, cast: &str) -> Term {
    let mut t = Term::new(120, 40);
    let cast = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/agents")
        .join(cast);
    let empty = t.env.path("agent-home");
    std::fs::create_dir(&empty).expect("mkdir");
    let mut cmd = t.env.cmd();
    cmd.env(home_var, &empty)
        .args([agent, "--db"])
        .arg(t.env.db())
        .args(["--prompt-idle", "40ms", "--", "python3", "-c", CAST_PLAYER])
        .arg(&cast);
    let before = t.stty();
    t.start(cmd);
    assert_eq!(t.wait(), 0, "{:?}", t.text());
    assert_eq!(t.stty(), before);
    t
}

/// Claude Code 2.1.332's TUI (alternate screen, mouse tracking, calls folded once done),
/// played back on wrapper's pty with the built-in rules: each command from its `⎿  $ cmd`
/// row, the folded failure, each approval question, the refusal.
#[test]
fn a_recorded_claude_2_1_332_session_through_pty_mode_yields_its_commands_and_questions() {
    let t = play_recorded_tui("claude", "CLAUDE_CONFIG_DIR", "claude/2.1.332/tui.cast");
    let events = |kind: &str| {
        t.env.query_strings(&format!(
            "SELECT pattern || ': ' || matched_value FROM extraction_events \
             WHERE event_type = '{kind}' AND stream = 'pty' ORDER BY id"
        ))
    };
    let commands: Vec<String> = events("command")
        .into_iter()
        .filter(|c| c.starts_with("claude_tui_shell: "))
        .collect();
    assert_eq!(
        commands,
        [
            "claude_tui_shell: gcc broken.c -o broken",
            "claude_tui_shell: python3 -m pytest -q",
            "claude_tui_shell: rm -rf build && git clean -fdx"
        ]
    );
    assert_eq!(
        events("error"),
        ["claude_tui_ran_failed: Ran 1 shell command · 1 failed"]
    );
    assert_eq!(events("denied"), ["claude_tool_declined: Interrupted"]);
    // The player drops pauses under 100 ms, and the second question came 68 ms after the
    // first was answered (the recording's driver answered at once, the mock model replied
    // at once): played so, the same rows stand at the same place on the alternate screen
    // with no settle between, and it reads as the first question still asked. By the
    // recording's own clock all three are read (screen.rs). (A loaded machine that pauses
    // the player between the two may let the screen settle there: then it is three.)
    let asked = events("prompt");
    assert!(
        (2..=3).contains(&asked.len()),
        "approval questions: {asked:?}"
    );
}

/// The real Codex TUI (0.171, inline viewport), played back on wrapper's pty with the
/// built-in rules: the commands it ran and the one the user declined. Codex draws the
/// declined `rm` as an exec cell too (`• Exited (status 1) rm …` right after `✗ You
/// canceled the request to run rm …`): a refusal, not a command that ran and failed.
#[test]
fn a_recorded_codex_tui_session_through_pty_mode_keeps_a_declined_command_a_refusal() {
    let t = play_recorded_tui("codex", "CODEX_HOME", "codex/tui.cast");
    let events = |kind: &str| {
        t.env.query_strings(&format!(
            "SELECT DISTINCT matched_value FROM extraction_events \
             WHERE event_type = '{kind}' AND stream = 'pty' AND pattern LIKE 'codex_tui_%'"
        ))
    };
    let rm = "rm -rf build && git clean -fdx";
    let commands = events("command");
    assert!(
        commands.iter().any(|c| c == "gcc broken.c -o broken")
            && commands.iter().any(|c| c == "python3 -m pytest -q"),
        "commands: {commands:?}"
    );
    assert!(!commands.iter().any(|c| c == rm), "commands: {commands:?}");
    assert_eq!(events("error"), ["gcc broken.c -o broken"]);
    assert_eq!(events("denied"), [rm]);
}

/// Found by an audit: a TUI breaks a long word at the terminal's width with line breaks of
/// its own (Ink, ratatui), so a real `sk-proj-` key (~164 characters) is three rows, and only
/// the first row was masked: the rest was stored in the events' lines and the capture. The
/// rows that continue a key are masked as that key, in the database and in every export;
/// the terminal still shows it whole.
#[test]
fn a_key_the_tui_wrapped_onto_more_rows_is_masked_on_every_row() {
    let mut t = Term::new(80, 24);
    let key = format!("sk-proj-{}", "Zq8sW3xE7cR5vB1n".repeat(10));
    let (r1, rest) = key.split_at(70);
    let (r2, r3) = rest.split_at(76);
    // From a file: the command line holds no part of the key.
    let script = t.env.path("tui.sh");
    std::fs::write(
        &script,
        format!("printf '  error: the key is {r1}\\r\\n  {r2}\\r\\n  {r3} (rotated)\\r\\n'\n"),
    )
    .expect("script");
    let all = t.env.path("all.toml");
    std::fs::write(
        &all,
        "version = 1\n[[pattern]]\nname = \"any\"\nevent_type = \"line\"\nregex = '''(?P<value>.+)'''\nsamples = [\"x\"]\n",
    )
    .expect("rules");
    let cmd = t
        .env
        .run_cmd_with_rules("claude", &all, &[], &["sh", &script.to_string_lossy()]);
    t.start(cmd);
    assert_eq!(t.wait(), 0, "{:?}", t.text());
    assert!(t.text().contains(r2), "the terminal shows the key");
    let pieces = [&r1[20..40], &r2[10..30], &r2[50..70], &r3[..10]];
    let sid = t
        .env
        .query_strings("SELECT session_id FROM process_sessions");
    let mut stored = t
        .env
        .query_strings("SELECT coalesce(original_line, '') FROM extraction_events")
        .join("\n");
    for fmt in ["txt", "asciicast"] {
        let out = t
            .env
            .cmd()
            .args(["export", &sid[0], "--format", fmt, "--db"])
            .arg(t.env.db())
            .output()
            .expect("export");
        assert!(out.status.success());
        stored.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    assert!(stored.contains("(rotated)"), "{stored}");
    for p in pieces {
        assert!(!stored.contains(p), "{p} stored:\n{stored}");
    }
    for f in ["w.db", "w.db-wal"] {
        if let Ok(bytes) = std::fs::read(t.env.path(f)) {
            for p in pieces {
                assert!(
                    memchr::memmem::find(&bytes, p.as_bytes()).is_none(),
                    "{p} in {f}"
                );
            }
        }
    }
}

/// `pty` in the config file: a value other than auto/always/never is a usage error naming
/// the file and the key; "always" gives the child a terminal even with pipes around wrapper.
#[test]
fn the_config_key_pty_is_checked_and_obeyed() {
    let env = Env::new();
    let cfg = env.path("config.toml");
    std::fs::write(&cfg, "pty = \"sometimes\"\n").expect("config");
    let out = env
        .run_cmd("codex", &["--config", cfg.to_str().unwrap()], &["true"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config.toml") && err.contains("`pty`"),
        "{err}"
    );
    std::fs::write(&cfg, "pty = \"always\"\n").expect("config");
    let out = env
        .run_cmd(
            "codex",
            &["--config", cfg.to_str().unwrap()],
            &["sh", "-c", "test -t 1 && echo ON-A-TTY"],
        )
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ON-A-TTY"));
    // --no-pty wins over the file.
    let out = env
        .run_cmd(
            "codex",
            &["--config", cfg.to_str().unwrap(), "--no-pty"],
            &["sh", "-c", "test -t 1 || echo PIPED"],
        )
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stdout).contains("PIPED"));
}

/// PTY mode with the built-in rules, which include rules that look at the previous line
/// (`[pattern.context]`): their per-stream state must cover the pty stream too (it once had
/// two slots, and the first pty line panicked the extraction thread: exit 125).
#[test]
fn built_in_rules_with_context_work_on_the_pty_stream() {
    let mut t = Term::new(80, 24);
    let mut cmd = t.env.cmd();
    cmd.args(["codex", "--pty", "--db"]).arg(t.env.db()).args([
        "--",
        "sh",
        "-c",
        "printf 'npm error code E404\\nnpm error 404 Not Found\\n+ make test\\nerror[E0308]: mismatched types\\nDO''NE\\n'",
    ]);
    t.start(cmd);
    assert_eq!(t.wait(), 0, "{:?}", t.text());
    assert_eq!(outcome(&t.env), "completed:0:");
    let got = t.env.query_strings(
        "SELECT stream || ' ' || event_type || ' ' || pattern FROM extraction_events \
         WHERE event_type IN ('error', 'command') ORDER BY line_number, id",
    );
    assert!(got.iter().all(|g| g.starts_with("pty ")), "{got:?}");
    // The npm block's headline only (a context rule), the traced command, the compiler error.
    let npm = got.iter().filter(|g| g.contains("npm_error")).count();
    assert_eq!(npm, 1, "{got:?}");
    assert!(
        got.iter().any(|g| g.ends_with("command shell_xtrace")),
        "{got:?}"
    );
    assert!(
        got.iter().any(|g| g.ends_with("error rust_error")),
        "{got:?}"
    );
}

/// A flood of lines through PTY mode (the screen model fast-forwards over most of them,
/// screen/fast.rs): every line is committed once, in order, its events extracted with the
/// right line numbers, colours and all, and nothing else.
#[test]
fn a_flood_of_lines_on_the_pty_commits_every_line_in_order() {
    const N: usize = 20_000;
    let mut t = Term::new(80, 24);
    // Every 10th line an error, in colour; the rest plain, some coloured, some wide. Written
    // to a file first, then `cat` on the pty in large writes: reads of many lines each.
    let script = format!(
        "i=1; while [ $i -le {N} ]; do \
           if [ $((i % 10)) -eq 0 ]; then printf '\\033[31merror\\033[0m: failure %d\\n' $i; \
           elif [ $((i % 7)) -eq 0 ]; then printf '\\033[2m  step %d done\\033[0m  \\n' $i; \
           elif [ $((i % 13)) -eq 0 ]; then printf '漢字 line %d\\n' $i; \
           else printf 'line %d of output\\n' $i; fi; i=$((i + 1)); done > flood.txt; \
         cat flood.txt; echo DO''NE"
    );
    let mut cmd = t.env.run_cmd("codex", &["--pty"], &["sh", "-c", &script]);
    cmd.env("RUST_LOG", "wrapper=debug");
    t.start(cmd);
    assert_eq!(t.wait(), 0, "{:?}", t.text().len());
    // The screen model did skip drawing most lines (its own count, logged at the end).
    let text = t.text();
    let said = "the screen model fast-forwarded over ";
    let skipped: usize = text
        .find(said)
        .and_then(|i| text[i + said.len()..].split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no count: {:?}", &text[text.len().saturating_sub(2000)..]));
    assert!(skipped > N / 2, "{skipped} of {N} lines fast-forwarded");
    assert_eq!(outcome(&t.env), "completed:0:");
    let got = t.env.query_strings(
        "SELECT line_number || ' ' || matched_value FROM extraction_events \
         WHERE pattern = 't_error' ORDER BY line_number",
    );
    let want: Vec<String> = (1..=N / 10)
        .map(|k| format!("{} failure {}", k * 10, k * 10))
        .collect();
    assert_eq!(got.len(), want.len(), "{:?}", &got[..got.len().min(5)]);
    assert_eq!(got, want);
    let lines = t
        .env
        .query_strings("SELECT CAST(total_lines_processed AS TEXT) FROM process_sessions");
    assert_eq!(lines, [(N + 1).to_string()]);
}

/// PTY mode's output is captured as one `pty` stream with the terminal's size, masked, and
/// exports to an asciicast of that size.
#[test]
fn pty_output_is_captured_masked_and_exports_with_the_terminal_size() {
    let mut t = Term::new(100, 30);
    let mut cmd = t.env.cmd();
    cmd.args(["codex", "--pty", "--db"]).arg(t.env.db()).args([
        "--",
        "sh",
        "-c",
        "printf '\\033[31mred\\033[0m key sk-abcdefghijklmnop1234 DO''NE\\n'",
    ]);
    t.start(cmd);
    assert_eq!(t.wait(), 0, "{:?}", t.text());
    assert_eq!(
        t.env
            .query_strings("SELECT mode || ' ' || cols || 'x' || rows FROM capture_sessions"),
        ["pty 100x30"]
    );
    let text = export_cast(&t.env);
    let header: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("header")).expect("json");
    assert_eq!(
        (header["width"].as_u64(), header["height"].as_u64()),
        (Some(100), Some(30))
    );
    assert!(text.contains("\\u001b[31mred\\u001b[0m"), "{text}");
    assert!(
        text.contains("DONE") && !text.contains("sk-abcdefghijklmnop1234"),
        "{text}"
    );
}

/// In PTY mode too the screen model yields (src/run/nice.rs), started by the extraction
/// thread at the same value, not lowered twice; the agent runs at wrapper's priority.
#[test]
fn the_screen_model_yields_once_and_the_agent_does_not() {
    let mut t = Term::new(80, 24);
    t.sh(
        &[],
        r#"i=0
        while [ $i -lt 500 ]; do
          grep -q wrapper-screen /proc/$PPID/task/*/comm && break
          sleep 0.01; i=$((i + 1))
        done
        echo "self $(cut -d' ' -f19 /proc/self/stat)"
        for t in /proc/$PPID/task/*; do echo "$(cat $t/comm) $(cut -d' ' -f19 $t/stat)"; done
        echo DO''NE"#,
    );
    assert_eq!(t.wait(), 0, "{:?}", t.text());
    let text = t.text();
    let own = own_nice();
    let nice = |name: &str| nice_values(&text, name);
    assert_eq!(nice("self"), [own], "{text}");
    assert_eq!(nice("wrapper-screen"), [(own + 10).min(19)], "{text}");
    assert_eq!(nice("wrapper-extract"), [(own + 10).min(19)], "{text}");
    assert!(nice("wrapper-pump").iter().all(|&n| n == own), "{text}");
}
