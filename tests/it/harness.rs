//! A small harness for driving the real `wrapper` binary: a temp dir, a command builder,
//! a pattern file of our own (so tests do not depend on the built-in rules' tuning), reading
//! the SQLite file the run wrote, and waiting on conditions with a deadline (never a sleep).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tempfile::TempDir;

/// A generous deadline: tests run on a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin!("wrapper").to_path_buf()
}

/// Rules used by most tests: small, known, independent of the built-ins.
pub const TEST_RULES: &str = r#"
version = 1

[[pattern]]
name = "t_error"
event_type = "error"
regex = '''^error(?:\[(?P<code>E[0-9]+)\])?: (?P<value>.+)$'''
samples = ["error[E0308]: mismatched types"]

[[pattern]]
name = "t_prompt"
event_type = "prompt"
regex = '''(?P<value>.*\?) \[y/N\]'''
prompt = true
risk_level = "high"
samples = ["Delete everything? [y/N] "]

[[pattern]]
name = "t_path"
event_type = "file_path"
regex = '''(?P<value>(?P<path>[A-Za-z0-9_./-]+\.rs):(?P<line>[0-9]+)(?::(?P<col>[0-9]+))?)'''
samples = ["  --> src/main.rs:3:5"]

[[pattern]]
name = "t_stderr_only"
event_type = "warning"
regex = '''^warning: (?P<value>.+)$'''
streams = ["stderr"]
samples = ["warning: unused variable"]

[[redact]]
name = "t_key"
regex = '''sk-[A-Za-z0-9]{16,}'''
samples = ["sk-abcdefghijklmnop1234"]
"#;

pub struct Env {
    pub dir: TempDir,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("rules.toml"), TEST_RULES).expect("write rules");
        Env { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn db(&self) -> PathBuf {
        self.path("w.db")
    }

    pub fn rules(&self) -> PathBuf {
        self.path("rules.toml")
    }

    /// `wrapper` with a clean environment: config and data dirs inside the temp dir.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.current_dir(self.dir.path())
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env_remove("WRAPPER_DB")
            .env_remove("WRAPPER_ENV")
            .env_remove("WRAPPER_ENABLE_DB")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            // The agents' session logs (`agents/`) are looked for here, never in the user's.
            .env("CODEX_HOME", self.path("codex-home"))
            .env("CLAUDE_CONFIG_DIR", self.path("claude-home"))
            .env("GEMINI_CLI_HOME", self.path("gemini-home"));
        // The machine's own telemetry settings must not send test sessions anywhere.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("OTEL_") {
                c.env_remove(k);
            }
        }
        c
    }

    /// `wrapper <agent> --db DB --no-default-patterns --patterns rules.toml [extra] -- <argv>`.
    pub fn run_cmd(&self, agent: &str, extra: &[&str], argv: &[&str]) -> Command {
        self.run_cmd_with_rules(agent, &self.rules(), extra, argv)
    }

    /// [`Env::run_cmd`] with another pattern file in place of `rules.toml`.
    pub fn run_cmd_with_rules(
        &self,
        agent: &str,
        rules: &std::path::Path,
        extra: &[&str],
        argv: &[&str],
    ) -> Command {
        let mut c = self.cmd();
        c.arg(agent)
            .arg("--db")
            .arg(self.db())
            .arg("--no-default-patterns")
            .arg("--patterns")
            .arg(rules)
            .args(extra)
            .arg("--")
            .args(argv);
        c
    }

    /// Runs `sh -c script` through wrapper and returns its output.
    pub fn sh(&self, extra: &[&str], script: &str) -> std::process::Output {
        self.sh_with_rules(&self.rules(), extra, script)
    }

    /// [`Env::sh`] with another pattern file in place of `rules.toml`.
    pub fn sh_with_rules(
        &self,
        rules: &std::path::Path,
        extra: &[&str],
        script: &str,
    ) -> std::process::Output {
        self.run_cmd_with_rules("codex", rules, extra, &["sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .expect("run wrapper")
    }

    pub fn conn(&self) -> Connection {
        Connection::open(self.db()).expect("open db")
    }

    pub fn query_i64(&self, sql: &str) -> i64 {
        self.conn()
            .query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// `state:exit_code:signal` of session `sid`.
    pub fn session_outcome(&self, sid: &str) -> Vec<String> {
        self.query_strings(&format!(
            "SELECT state || ':' || exit_code || ':' || coalesce(signal, '') \
             FROM process_sessions WHERE session_id = '{sid}'"
        ))
    }

    pub fn query_strings(&self, sql: &str) -> Vec<String> {
        let conn = self.conn();
        let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        stmt.query_map([], |r| r.get::<_, Option<String>>(0))
            .expect("query")
            .map(|r| r.expect("row").unwrap_or_default())
            .collect()
    }
}

/// Polls `cond` every few milliseconds until it holds or the deadline passes.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Collects a child's stream in the background so tests can wait for text to appear.
pub struct Captured(Arc<Mutex<Vec<u8>>>, Option<thread::JoinHandle<()>>);

impl Captured {
    pub fn start(mut r: impl Read + Send + 'static) -> Captured {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let h = thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match r.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => b.lock().expect("lock").extend_from_slice(&chunk[..n]),
                }
            }
        });
        Captured(buf, Some(h))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }

    pub fn wait_for(&self, needle: &str) {
        wait_until(&format!("output {needle:?}"), || {
            self.text().contains(needle)
        });
    }

    pub fn finish(&mut self) -> Vec<u8> {
        if let Some(h) = self.1.take() {
            let _ = h.join();
        }
        self.0.lock().expect("lock").clone()
    }
}

/// A spawned wrapper with its output captured.
pub struct Running {
    pub child: Child,
    pub out: Captured,
    pub err: Captured,
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wrapper");
        let out = Captured::start(child.stdout.take().expect("stdout"));
        let err = Captured::start(child.stderr.take().expect("stderr"));
        Running { child, out, err }
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), sig).expect("signal wrapper");
    }

    /// Waits for wrapper to exit (with the harness deadline) and returns its exit code.
    pub fn wait(mut self) -> (i32, Vec<u8>, Vec<u8>) {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if start.elapsed() > DEADLINE {
                let _ = self.child.kill();
                panic!("wrapper did not exit; stderr: {}", self.err.text());
            }
            thread::sleep(Duration::from_millis(5));
        };
        let out = self.out.finish();
        let err = self.err.finish();
        (status.code().unwrap_or(-1), out, err)
    }
}

impl Drop for Running {
    /// A test that fails while wrapper runs must not leave it (or its agent, which may wait
    /// forever for a file the test would have written) behind: SIGTERM, which wrapper forwards
    /// to the agent's group, then SIGKILL if it lingers.
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) {
            if start.elapsed() > Duration::from_secs(5) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The shared corpus of real transcripts, when it is beside the repository.
pub fn corpus_dir() -> Option<PathBuf> {
    // WRAPPER_SHARED_CORPUS points elsewhere (a worktree whose parent has no shared/).
    let p = std::env::var_os("WRAPPER_SHARED_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!(
            "NOTE: {} is absent; corpus-based checks are skipped (the rest of the suite runs)",
            p.display()
        );
        None
    }
}

/// Every file of the corpus, sorted.
pub fn corpus_files() -> Vec<PathBuf> {
    let Some(dir) = corpus_dir() else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for sub in ["agents", "builds"] {
        if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
            files.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
        }
    }
    files.sort();
    files
}

/// Whether a process has ended: no longer in /proc, or a zombie waiting to be reaped by
/// whoever inherited it.
pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// A child that floods numbered `error: line N` lines on stdout until it gets SIGTERM,
/// SIGINT or SIGHUP, then reports `wrote N` on stderr and exits 7.
///
/// The writing subshell ignores those signals and stops at a flag file set by the trapping
/// parent: a shell that is itself interrupted in the middle of `echo` can lose a line it
/// already counted (dash does, about one run in ten), which would make the count inexact.
pub const EXACT_FLOOD: &str = "rm -f stop; trap ': > stop' TERM INT HUP; \
     ( trap '' TERM INT HUP; i=0; while [ ! -e stop ]; do i=$((i+1)); echo \"error: line $i\"; done; \
       echo \"wrote $i\" >&2 ) & echo ready; wait; wait; exit 7";

/// Gives `cmd` the pty `slave` as stdin, stdout, stderr and controlling terminal, in a session of
/// its own: how a terminal emulator starts a program.
pub fn on_pty_slave(cmd: &mut Command, slave: &std::os::fd::OwnedFd) {
    use std::os::unix::process::CommandExt;
    cmd.stdin(slave.try_clone().expect("dup"))
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
}

/// The test process's nice value (field 19 of /proc/self/stat).
pub fn own_nice() -> i32 {
    std::fs::read_to_string("/proc/self/stat")
        .expect("stat")
        .split(' ')
        .nth(18)
        .and_then(|n| n.parse().ok())
        .expect("nice")
}

/// The nice values a child printed as `NAME VALUE` lines (a thread's `comm` and field 19 of
/// its stat), for the lines named `name`.
pub fn nice_values(text: &str, name: &str) -> Vec<i32> {
    text.lines()
        .filter_map(|l| l.trim_end().split_once(' '))
        .filter(|(n, _)| *n == name)
        .filter_map(|(_, v)| v.trim().parse().ok())
        .collect()
}

/// Asserts that `out` is the exit status `code`, showing its stderr if not.
#[track_caller]
pub fn assert_exit(out: &std::process::Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
