//! Signals sent to wrapper reach the child's process group exactly once, and every path out
//! records the session and loses nothing.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::harness::*;

/// A child that counts each signal it gets in a file and says when it is ready.
fn trap_script(log: &std::path::Path, term_action: &str) -> String {
    format!(
        "trap 'echo USR1 >> {log}' USR1; trap 'echo WINCH >> {log}' WINCH; \
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
    w.signal(Signal::SIGWINCH);
    wait_until("WINCH at the child", || {
        log_lines(&log).contains(&"WINCH".to_string())
    });
    w.signal(Signal::SIGTERM);
    let (code, _, err) = w.wait();
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    assert_eq!(log_lines(&log), ["USR1", "WINCH", "TERM"]);
    // Told to stop and forwarded it: interrupted, whatever the child's own exit code.
    assert_eq!(
        env.query_strings("SELECT state FROM process_sessions"),
        ["interrupted"]
    );
    let signaled = env.query_strings(
        "SELECT json_extract(metadata_json, '$.signal') FROM process_state_changes WHERE state = 'signaled' ORDER BY id",
    );
    assert_eq!(signaled, ["SIGUSR1", "SIGWINCH", "SIGTERM"]);
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
