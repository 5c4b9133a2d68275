//! Shell job control through wrapper, in a real pseudo-terminal with an interactive bash, as a
//! person at a terminal uses it: Ctrl-Z, `fg`, `bg`, `stty tostop`. Wrapper hands the
//! terminal to the agent; these tests check that it takes it back only when it is its to
//! take, and that the shell always keeps a terminal it can read.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::Child;
use std::time::Instant;

use crate::harness::*;

/// An interactive bash on its own pseudo-terminal (its controlling terminal, as a terminal
/// emulator would set it up), with what appears on the screen captured.
struct Shell {
    /// The test's directory, config and data dirs (bash runs in it).
    env: Env,
    bash: Child,
    keys: std::fs::File,
    screen: Captured,
}

impl Shell {
    /// `None` (the test is skipped, and says so) where bash is not installed.
    fn start() -> Option<Shell> {
        let env = Env::new();
        if !std::path::Path::new("/bin/bash").exists() {
            eprintln!("skipped: /bin/bash is not installed");
            return None;
        }
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let slave = pty.slave;
        let mut cmd = std::process::Command::new("/bin/bash");
        cmd.args(["--norc", "--noprofile", "-i"])
            .env("PS1", "$ ")
            .env("TERM", "dumb")
            .env("XDG_CONFIG_HOME", env.path("config"))
            .env("XDG_DATA_HOME", env.path("data"))
            .env("NO_COLOR", "1")
            .env_remove("WRAPPER_DB")
            .env_remove("WRAPPER_ENABLE_DB")
            .current_dir(env.path(""))
            .stdin(slave.try_clone().expect("dup"))
            .stdout(slave.try_clone().expect("dup"))
            .stderr(slave.try_clone().expect("dup"));
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let bash = cmd.spawn().expect("spawn bash");
        drop(slave);
        let master = std::fs::File::from(pty.master);
        let keys = master.try_clone().expect("dup master");
        let screen = Captured::start(master);
        Some(Shell {
            env,
            bash,
            keys,
            screen,
        })
    }

    /// Types `s`. Markers the test waits for are split with `""` in what is typed, so that
    /// the terminal's echo of the typing does not already contain them.
    fn type_in(&mut self, s: &str) {
        self.keys.write_all(s.as_bytes()).expect("type");
    }

    /// Waits until `needle` has appeared `n` times on the screen.
    fn wait_for_n(&self, needle: &str, n: usize) {
        let deadline = Instant::now() + DEADLINE;
        while self.screen.text().matches(needle).count() < n {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {needle:?} ×{n}; the screen:\n{}",
                self.screen.text()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn wait_for(&self, needle: &str) {
        self.wait_for_n(needle, 1);
    }

    /// Waits for the shell's prompt after the last `marker`: the job has ended and the shell
    /// reads the terminal again. A line typed before that would be read by the job, still in
    /// the foreground while it shuts down, and go to an agent that has left.
    fn wait_for_prompt_after(&self, marker: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let text = self.screen.text();
            if text.rfind(marker).is_some_and(|i| text[i..].contains("$ ")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the prompt after {marker:?}; the screen:\n{text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Leaves the shell and waits for it to exit.
    fn exit(mut self) {
        self.type_in("exit\n");
        let deadline = Instant::now() + DEADLINE;
        while self.bash.try_wait().expect("wait bash").is_none() {
            assert!(
                Instant::now() < deadline,
                "bash did not exit: {}",
                self.screen.text()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        // A failed test must not leave bash (and the jobs it holds) behind.
        if self.bash.try_wait().ok().flatten().is_none() {
            let _ = self.bash.kill();
            let _ = self.bash.wait();
        }
    }
}

/// Pipe mode's job control (PTY mode's is at the end of this file).
fn wrapper_cmd(child: &str) -> String {
    format!(
        "{} codex --no-pty --no-default-patterns -- sh -c '{child}'\n",
        bin().display()
    )
}

/// Starts the [`READER`] agent through wrapper in the background (`&`), with `extra`
/// options, and waits until it has printed READY.
fn start_reader_in_background(sh: &mut Shell, extra: &str) {
    sh.type_in(&format!(
        "{} codex {extra} --no-pty --no-default-patterns -- sh -c '{READER}' &\n",
        bin().display()
    ));
    sh.wait_for("READY");
}

/// An agent that reads one line from the terminal and echoes it.
const READER: &str = r#"echo RE""ADY; read x; echo GO""T:$x"#;

impl Shell {
    /// Runs `child` through wrapper and suspends it with Ctrl-Z once it is `READY`.
    fn run_and_suspend(&mut self, child: &str) {
        self.type_in(&wrapper_cmd(child));
        self.wait_for("READY");
        self.type_in("\x1a");
        self.wait_for("Stopped");
    }

    /// `fg` the [`READER`] job, answer it, and check that it read the answer and exited 0.
    fn fg_and_answer(&mut self) {
        self.type_in("fg\n");
        self.type_in("hello\n");
        self.wait_for("GOT:hello");
        self.wait_for_prompt_after("GOT:hello");
        self.type_in("echo EXIT\"\"=$?\n");
        self.wait_for("EXIT=0");
    }
}

/// Ctrl-Z stops the job and the shell gets its prompt back (before: the agent stopped and
/// the terminal hung, wrapper still waiting); `fg` resumes the agent with the terminal, so it
/// can read what is typed; the job then ends normally.
#[test]
fn ctrl_z_stops_the_job_and_fg_resumes_it_with_the_terminal() {
    let Some(mut sh) = Shell::start() else {
        return;
    };
    sh.run_and_suspend(READER);
    sh.fg_and_answer();
    sh.exit();
}

/// `bg`, then the agent reads the terminal: the agent is stopped by SIGTTIN, and the job
/// must stop with it *without* wrapper taking the terminal from the shell (which would leave
/// bash unable to read its next command). `fg` then gives the agent the terminal.
#[test]
fn a_backgrounded_job_that_reads_the_terminal_stops_and_the_shell_keeps_it() {
    let Some(mut sh) = Shell::start() else {
        return;
    };
    // Report job state changes at once, not only before the next prompt.
    sh.type_in("set -b\n");
    sh.run_and_suspend(READER);
    sh.type_in("bg\n");
    // The agent's read in the background stops it, and wrapper with it.
    sh.wait_for_n("Stopped", 2);
    sh.type_in("echo ALI\"\"VE\n");
    sh.wait_for("ALIVE");
    sh.fg_and_answer();
    sh.exit();
}

/// A job sent to the background that then ends: wrapper must not take the terminal back at
/// exit (it is the shell's by then).
#[test]
fn a_background_job_that_ends_leaves_the_terminal_with_the_shell() {
    let Some(mut sh) = Shell::start() else {
        return;
    };
    // The agent waits on a FIFO, not in a `sleep` loop: Ctrl-Z landing while `sh` is in
    // vfork() stops the vforked child and leaves `sh` itself waiting on it, unstoppable — a
    // half-stopped job no shell can see stopped, wrapper or not.
    let fifo = sh.env.path("go");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    sh.type_in("set -b\n");
    sh.run_and_suspend(r#"echo RE""ADY; read x < go; echo BY""E"#);
    sh.type_in("bg\n");
    sh.type_in("echo go > go\n");
    sh.wait_for("BYE");
    sh.wait_for("Done");
    sh.type_in("echo ALI\"\"VE\n");
    sh.wait_for("ALIVE");
    sh.exit();
}

/// With `stty tostop`, a process writing to the terminal from outside its foreground group is
/// stopped by SIGTTOU. Wrapper's group is never in the foreground while the agent holds the
/// terminal — yet what wrapper writes is the agent's output, and it must appear.
#[test]
fn with_stty_tostop_the_agents_output_still_reaches_the_terminal() {
    let Some(mut sh) = Shell::start() else {
        return;
    };
    sh.type_in("stty tostop\n");
    sh.type_in(&wrapper_cmd(r#"echo HEL""LO"#));
    sh.type_in("echo EXIT\"\"=$?\n");
    sh.wait_for("EXIT=");
    let screen = sh.screen.text();
    assert!(screen.contains("HELLO"), "{screen}");
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(!screen.contains("Stopped"), "{screen}");
    sh.exit();
}

/// Wrapper run from a script (or `make`): the script's shell is in wrapper's process group,
/// the agent is not. Ctrl-Z must stop the script too, or the shell never sees the job stopped
/// and the terminal hangs; `fg` then resumes everything, and the script goes on.
#[test]
fn ctrl_z_stops_a_script_that_runs_wrapper_and_fg_resumes_it() {
    let Some(mut sh) = Shell::start() else {
        return;
    };
    let script = sh.env.path("outer.sh");
    std::fs::write(
        &script,
        format!(
            "{} codex --no-pty --no-default-patterns -- sh -c 'echo READY; read x; echo GOT:$x'\n\
             echo SCRIPT:$?\n",
            bin().display()
        ),
    )
    .expect("write script");
    sh.type_in("sh outer.sh\n");
    sh.wait_for("READY");
    sh.type_in("\x1a");
    sh.wait_for("Stopped");
    sh.type_in("fg\n");
    sh.type_in("hello\n");
    sh.wait_for("GOT:hello");
    sh.wait_for("SCRIPT:0");
    sh.wait_for_prompt_after("SCRIPT:0");
    sh.type_in("echo EXIT\"\"=$?\n");
    sh.wait_for("EXIT=0");
    sh.exit();
}

/// Wrapper as the session leader of its terminal (as under `ssh -t host wrapper …`): no shell
/// could continue it, and the kernel ignores Ctrl-Z for such an orphaned group. So must
/// wrapper: the agent is continued at once and reads what is typed next (before, wrapper
/// stopped itself for good).
#[test]
fn ctrl_z_with_no_shell_to_continue_the_job_does_not_stop_it() {
    use std::io::Write;
    use std::os::unix::process::CommandExt;

    let env = Env::new();
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave = pty.slave;
    let mut cmd = env.cmd();
    cmd.args(["codex", "--no-default-patterns", "--", "sh", "-c"])
        .arg("echo READY; read x; echo GOT:$x")
        .stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave.try_clone().expect("dup"));
    // SAFETY: setsid and ioctl are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    /// A failed test must not leave a stopped wrapper behind.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut wrapper = KillOnDrop(cmd.spawn().expect("spawn wrapper"));
    drop(slave);
    let master = std::fs::File::from(pty.master);
    let mut keys = master.try_clone().expect("dup master");
    let screen = Captured::start(master);
    screen.wait_for("READY");
    keys.write_all(b"\x1a").expect("type");
    // The terminal echoes ^Z once it has sent SIGTSTP to the foreground group.
    screen.wait_for("^Z");
    keys.write_all(b"hello\n").expect("type");
    screen.wait_for("GOT:hello");
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = wrapper.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "wrapper did not exit: {}",
            screen.text()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0), "{}", screen.text());
}

/// The process that `ppid` started (the first found), from `/proc`.
fn child_of(ppid: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.find_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        (fields.get(1)?.parse::<u32>().ok()? == ppid).then_some(pid)
    })
}

/// A process's state letter (`T` stopped) and its context switches so far.
fn state_and_switches(pid: u32) -> (char, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .unwrap_or('?');
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let switches = status
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum();
    (state, switches)
}

/// SIGTSTP ignored (inherited from the shell's `trap '' TSTP`) and the job started in the
/// background: when the agent reads the terminal it is stopped by SIGTTIN, and wrapper cannot
/// stop with it. The agent must then stay stopped until the shell's `fg` — not be continued
/// by wrapper at once, only to be stopped again, over and over (a busy loop).
#[test]
fn with_sigtstp_ignored_a_background_agent_waits_stopped_for_fg() {
    let Some(mut sh) = Shell::start() else {
        return;
    };
    sh.type_in("trap '' TSTP\n");
    start_reader_in_background(&mut sh, "");
    sh.type_in("echo PI\"\"D=$!\n");
    sh.wait_for("PID=");
    let wrapper: u32 = {
        let screen = sh.screen.text();
        let after = screen.rsplit_once("PID=").map(|(_, a)| a).unwrap_or("");
        after
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .expect("wrapper pid")
    };
    let deadline = Instant::now() + DEADLINE;
    let agent = loop {
        if let Some(pid) = child_of(wrapper).filter(|&p| state_and_switches(p).0 == 'T') {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "the agent never stopped: {}",
            sh.screen.text()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let (_, before) = state_and_switches(agent);
    // A round trip through the shell: time enough for a loop to have run many times.
    for i in 0..3 {
        sh.type_in(&format!("echo MA\"\"RK{i}\n"));
        sh.wait_for(&format!("MARK{i}"));
    }
    let (state, after) = state_and_switches(agent);
    assert_eq!(state, 'T', "the agent should still be stopped");
    assert_eq!(
        before, after,
        "the agent was continued and stopped again meanwhile"
    );
    sh.fg_and_answer();
    sh.exit();
}

/// Started with `&`, the agent reads the terminal: as any job, it stops (the shell says so),
/// and `fg` gives it the terminal. Before, wrapper followed job control only when it started
/// in the foreground: the agent sat stopped, the shell saw a running job, and `fg` hung.
#[test]
fn a_job_started_in_the_background_stops_on_a_read_and_fg_resumes_it() {
    let Some(mut sh) = Shell::start() else {
        return;
    };
    sh.type_in("set -b\n");
    start_reader_in_background(&mut sh, "");
    sh.wait_for("Stopped");
    sh.fg_and_answer();
    sh.exit();
}

/// The same job, brought to the foreground and interrupted with Ctrl-C: the agent gets the
/// terminal's SIGINT itself, and the session is recorded as interrupted by the user, exactly
/// as for a job started in the foreground.
#[test]
fn ctrl_c_after_fg_of_a_background_job_records_interrupted() {
    let Some(mut sh) = Shell::start() else {
        return;
    };
    let db = sh.env.db();
    sh.type_in("set -b\n");
    start_reader_in_background(&mut sh, &format!("--db {}", db.display()));
    sh.wait_for("Stopped");
    sh.type_in("fg\n");
    // Ctrl-C once the agent is reading in the foreground: its `read` is what gets it.
    wait_until("the agent reading in the foreground", || {
        std::fs::read_dir("/proc").is_ok_and(|mut d| {
            d.any(|e| {
                e.ok()
                    .and_then(|e| std::fs::read_to_string(e.path().join("stat")).ok())
                    .is_some_and(|stat| {
                        // `sh -c` reading, running (not stopped), in the terminal's foreground
                        // group: field 8 (tpgid) equals field 5 (pgrp).
                        let Some((head, rest)) = stat.rsplit_once(')') else {
                            return false;
                        };
                        let f: Vec<&str> = rest.split_whitespace().collect();
                        head.ends_with("(sh")
                            && f.first() == Some(&"S")
                            && f.get(2).is_some()
                            && f.get(2) == f.get(5)
                            && std::fs::read_to_string(e_cmdline(&stat))
                                .is_ok_and(|c| c.contains("RE\"\"ADY"))
                    })
            })
        })
    });
    sh.type_in("\x03");
    let state = || -> String {
        rusqlite::Connection::open(&db)
            .and_then(|c| {
                c.query_row(
                    "SELECT state || ':' || coalesce(exit_code, '') FROM process_sessions",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap_or_default()
    };
    // `started` and `running` are not final: the session row exists, as `started`, from
    // before the spawn until the writer commits `running` (reading then was a failure in ~1
    // of 30 runs).
    wait_until("the session's final state", || {
        let s = state();
        !s.is_empty() && !s.starts_with("running") && !s.starts_with("started")
    });
    assert_eq!(state(), "interrupted:130");
    // Type on only once the shell shows its prompt again: what is typed while a job ends
    // can be lost in the hand-over of the terminal.
    wait_until("the shell's prompt", || {
        let text = sh.screen.text();
        text.rsplit_once("^C")
            .is_some_and(|(_, after)| after.contains("$ "))
    });
    sh.type_in("echo EXIT\"\"=$?\n");
    sh.wait_for("EXIT=130");
    sh.exit();
}

/// `/proc/<pid>/cmdline` for a `/proc/<pid>/stat` line.
fn e_cmdline(stat: &str) -> String {
    let pid = stat.split_whitespace().next().unwrap_or("0");
    format!("/proc/{pid}/cmdline")
}

/// PTY mode, as under `script`: Ctrl-Z reaches the agent through its pty and stops the job;
/// the shell gets its terminal back exactly as it was (`stty -g`, and the modes the agent
/// turned on are off); `fg` makes it raw again, gives the agent its modes back, and the
/// agent reads what is typed next. After the job ends the terminal is as it was.
#[test]
fn pty_mode_ctrl_z_restores_the_terminal_and_fg_resumes_the_agent() {
    let Some(mut sh) = Shell::start() else {
        return;
    };
    sh.type_in("stty -g > before; echo SA\"\"VED\n");
    sh.wait_for("SAVED");
    sh.type_in(&format!(
        "{} codex --pty --no-default-patterns -- sh -c '{}'\n",
        bin().display(),
        r#"printf "\033[?2004h"; echo RE""ADY; read x; echo GO""T:$x"#
    ));
    sh.wait_for("READY");
    sh.type_in("\x1a");
    sh.wait_for("Stopped");
    let at_stop = sh.screen.text();
    let tail = &at_stop[at_stop.find("READY").expect("READY")..];
    assert!(
        tail.contains("\x1b[?2004l"),
        "paste mode off while stopped: {tail:?}"
    );
    sh.type_in("stty -g > stopped; echo ST\"\"ORED\n");
    sh.wait_for("STORED");
    sh.type_in("fg\n");
    sh.wait_for_n("\x1b[?2004h", 2);
    sh.type_in("hello\r");
    sh.wait_for("GOT:hello");
    sh.wait_for_prompt_after("GOT:hello");
    sh.type_in("stty -g > after; echo EXIT\"\"=$?\n");
    sh.wait_for("EXIT=0");
    let read = |f: &str| std::fs::read_to_string(sh.env.path(f)).expect(f);
    assert_eq!(read("stopped"), read("before"));
    assert_eq!(read("after"), read("before"));
    sh.exit();
}
