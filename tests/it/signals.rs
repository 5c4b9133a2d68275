//! Signals sent to wrapper reach the child's process group exactly once, and every path out
//! records the session and loses nothing.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::harness::*;

/// A child that counts each signal it gets in a file and says when it is ready.
fn trap_script(log: &std::path::Path, term_action: &str) -> String {
    format!(
        "trap 'echo USR1 >> {log}' USR1; trap 'echo USR2 >> {log}' USR2; \
         trap 'echo CONT >> {log}' CONT; trap 'echo WINCH >> {log}' WINCH; \
         trap 'echo TERM >> {log}; {term_action}' TERM; trap 'echo INT >> {log}; exit 130' INT; \
         echo ready; while :; do sleep 0.05; done",
        log = log.display()
    )
}

fn log_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn forwarded_signals_reach_the_child_once_and_are_recorded() {
    let env = Env::new();
    let log = env.path("signals.log");
    let w = Running::spawn(env.run_cmd("codex", &[], &["sh", "-c", &trap_script(&log, "exit 0")]));
    w.out.wait_for("ready");
    w.signal(Signal::SIGUSR1);
    wait_until("USR1 at the child", || {
        log_lines(&log).contains(&"USR1".to_string())
    });
    for (sig, name) in [
        (Signal::SIGUSR2, "USR2"),
        (Signal::SIGCONT, "CONT"),
        (Signal::SIGWINCH, "WINCH"),
    ] {
        w.signal(sig);
        wait_until(&format!("{name} at the child"), || {
            log_lines(&log).contains(&name.to_string())
        });
    }
    w.signal(Signal::SIGTERM);
    let (code, _, err) = w.wait();
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    assert_eq!(log_lines(&log), ["USR1", "USR2", "CONT", "WINCH", "TERM"]);
    // Told to stop and forwarded it: interrupted, whatever the child's own exit code.
    assert_eq!(
        env.query_strings("SELECT state FROM process_sessions"),
        ["interrupted"]
    );
    let signaled = env.query_strings(
        "SELECT json_extract(metadata_json, '$.signal') FROM process_state_changes WHERE state = 'signaled' ORDER BY id",
    );
    assert_eq!(
        signaled,
        ["SIGUSR1", "SIGUSR2", "SIGCONT", "SIGWINCH", "SIGTERM"]
    );
}

#[test]
fn ctrl_c_to_the_foreground_group_interrupts_the_child_once() {
    let env = Env::new();
    let log = env.path("signals.log");
    let mut cmd = env.run_cmd("codex", &[], &["sh", "-c", &trap_script(&log, "exit 0")]);
    // Like a shell job: wrapper leads its own group, which the "terminal" signals as a whole.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let w = Running::spawn(cmd);
    w.out.wait_for("ready");
    nix::sys::signal::killpg(w.pid(), Signal::SIGINT).expect("killpg");
    let (code, _, _) = w.wait();
    assert_eq!(code, 130);
    assert_eq!(
        log_lines(&log),
        ["INT"],
        "the child must see Ctrl-C exactly once"
    );
    assert_eq!(
        env.query_strings("SELECT state || ':' || exit_code FROM process_sessions"),
        ["interrupted:130"]
    );
}

#[test]
fn kill_after_escalates_to_sigkill_for_the_whole_group() {
    let env = Env::new();
    let log = env.path("signals.log");
    let pidfile = env.path("grandchild.pid");
    // The child ignores SIGTERM, and so does a grandchild in the same group.
    let script = format!(
        "sh -c 'trap \"\" TERM; echo $$ > {pid}; while :; do sleep 0.05; done' & {}",
        trap_script(&log, ":"),
        pid = pidfile.display()
    );
    let w =
        Running::spawn(env.run_cmd("codex", &["--kill-after", "300ms"], &["sh", "-c", &script]));
    w.out.wait_for("ready");
    wait_until("grandchild pid", || {
        std::fs::read_to_string(&pidfile)
            .map(|s| !s.trim().is_empty())
            .unwrap_or(false)
    });
    let grandchild: i32 = std::fs::read_to_string(&pidfile)
        .expect("pid")
        .trim()
        .parse()
        .expect("pid number");
    w.signal(Signal::SIGTERM);
    let (code, _, _) = w.wait();
    assert_eq!(code, 137);
    assert_eq!(log_lines(&log), ["TERM"]);
    // Nothing of the group survives wrapper.
    wait_until("grandchild gone", || process_gone(grandchild));
    assert_eq!(
        env.query_strings(
            "SELECT state || ':' || exit_code || ':' || signal FROM process_sessions"
        ),
        ["interrupted:137:SIGKILL"]
    );
    let reasons = env.query_strings(
        "SELECT json_extract(metadata_json, '$.reason') FROM process_state_changes WHERE state = 'signaled' AND json_extract(metadata_json, '$.signal') = 'SIGKILL'",
    );
    assert_eq!(reasons, ["kill-after"]);
}

#[test]
fn a_second_terminating_signal_kills_at_once() {
    let env = Env::new();
    let log = env.path("signals.log");
    let w = Running::spawn(env.run_cmd(
        "codex",
        &["--kill-after", "60s"],
        &["sh", "-c", &trap_script(&log, ":")],
    ));
    w.out.wait_for("ready");
    w.signal(Signal::SIGTERM);
    wait_until("TERM at the child", || {
        log_lines(&log).contains(&"TERM".to_string())
    });
    let start = Instant::now();
    w.signal(Signal::SIGTERM);
    let (code, _, _) = w.wait();
    assert_eq!(code, 137);
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn sigterm_during_a_flood_loses_no_line() {
    let env = Env::new();
    // The child writes numbered error lines until told to stop, then reports how many.
    let w = Running::spawn(env.run_cmd(
        "codex",
        &["--batch-size", "100"],
        &["sh", "-c", EXACT_FLOOD],
    ));
    w.out.wait_for("error: line 2000");
    w.signal(Signal::SIGTERM);
    let (code, out, err) = w.wait();
    assert_eq!(code, 7);
    let err = String::from_utf8_lossy(&err);
    let wrote: i64 = err
        .lines()
        .find_map(|l| l.strip_prefix("wrote "))
        .expect("child reported its count")
        .trim()
        .parse()
        .expect("number");
    let out_lines = out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() as i64;
    assert_eq!(out_lines, wrote + 1, "passthrough lost lines");
    // ready + N error lines on stdout, "wrote N" on stderr.
    assert_eq!(
        env.query_i64("SELECT total_lines_processed FROM process_sessions"),
        wrote + 2
    );
    assert_eq!(
        env.query_i64("SELECT count(*) FROM extraction_events WHERE event_type = 'error'"),
        wrote
    );
    assert_eq!(
        env.query_i64("SELECT total_extraction_events FROM process_sessions"),
        wrote
    );
    assert_eq!(
        env.query_strings("SELECT state FROM process_sessions"),
        ["interrupted"]
    );
}

/// Runs `inner` under `script`, which gives it a pseudo-terminal as its controlling terminal
/// with wrapper in the foreground, as an interactive shell would.
fn under_pty(env: &Env, inner: &str) -> Option<Running> {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("NOTE: `script` (util-linux) is not installed; terminal tests are skipped");
        return None;
    }
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-q", "-e", "-c", inner, "/dev/null"])
        .current_dir(env.dir.path())
        .env("XDG_CONFIG_HOME", env.path("config"))
        .env("XDG_DATA_HOME", env.path("data"));
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn script");
    let out = Captured::start(child.stdout.take().expect("stdout"));
    let err = Captured::start(child.stderr.take().expect("stderr"));
    Some(Running { child, out, err })
}

#[test]
fn at_a_terminal_the_agent_can_read_it_and_ctrl_c_reaches_it_once() {
    let env = Env::new();
    let log = env.path("signals.log");
    let agent = format!(
        "trap 'echo INT >> {log}; trap - INT; kill -INT $$' INT; read answer; echo got:$answer; \
         echo ready; while :; do sleep 0.05; done",
        log = log.display()
    );
    let script = env.path("agent.sh");
    std::fs::write(&script, agent).expect("write agent");
    // Pipe mode's hand-over of the terminal (PTY mode's Ctrl-C: tests/it/pty.rs).
    let inner = format!(
        "{} codex --no-pty --db {} --no-default-patterns -- sh {}",
        bin().display(),
        env.db().display(),
        script.display()
    );
    let Some(mut w) = under_pty(&env, &inner) else {
        return;
    };
    let mut stdin = w.child.stdin.take().expect("stdin");
    use std::io::Write;
    // The agent reads the terminal: it must be in the terminal's foreground group to do so.
    stdin.write_all(b"hello\n").expect("type");
    w.out.wait_for("got:hello");
    w.out.wait_for("ready");
    // Ctrl-C typed at the terminal.
    stdin.write_all(b"\x03").expect("ctrl-c");
    let (code, _, _) = w.wait();
    assert_eq!(code, 130, "script returns wrapper's exit code");
    assert_eq!(
        log_lines(&log),
        ["INT"],
        "Ctrl-C must reach the agent exactly once"
    );
    assert_eq!(
        env.query_strings(
            "SELECT state || ':' || exit_code || ':' || signal FROM process_sessions"
        ),
        ["interrupted:130:SIGINT"]
    );
    let meta = env
        .query_strings("SELECT metadata_json FROM process_state_changes WHERE state = 'running'");
    assert!(meta[0].contains(r#""foreground":true"#), "{}", meta[0]);
}

/// A parent that ignores SIGCHLD (some daemons and CI runners do) passes that on through
/// exec; the kernel then reaps children by itself, and a naive `waitpid` fails with ECHILD.
/// Wrapper must still see its agent's exit status, and record it.
#[test]
fn an_inherited_ignored_sigchld_does_not_lose_the_exit_status() {
    use std::os::unix::process::CommandExt;

    let env = Env::new();
    let mut cmd = env.run_cmd("codex", &[], &["sh", "-c", "echo out; exit 3"]);
    // SAFETY: signal() is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGCHLD, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(
        env.query_strings("SELECT state || ':' || exit_code FROM process_sessions"),
        ["failed:3"]
    );
}
