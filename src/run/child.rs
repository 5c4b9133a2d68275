//! The child process: what to run, spawning it in its own process group, the terminal's
//! foreground, and how it ended.
//!
//! "Describe, then run" (as watchexec does): [`ChildSpec`] is a plain value saying what to
//! spawn; [`spawn`] turns it into a [`Spawned`] child. The child gets its own process group so
//! that signals can reach the agent and everything it started, and so that Ctrl-C at a
//! terminal reaches the agent once (from the terminal) rather than twice (terminal + wrapper).
//! When wrapper owns the terminal, the child's group is made the terminal's foreground group,
//! so the agent can read the terminal and receives Ctrl-C itself, as if it ran alone.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::sys::pthread::{pthread_kill, pthread_self};
use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// What to run.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// The command as the user gave it, for the session's `command_json`.
    pub argv: Vec<String>,
    /// Whether a one-word command with shell syntax goes through `/bin/sh -c`.
    pub via_shell: bool,
}

impl ChildSpec {
    /// The command as a shell runs a file that the kernel cannot execute (no `#!` line, not
    /// a binary: `ENOEXEC`): `/bin/sh FILE ARGS`, as `execvp(3)` and every shell do, so that
    /// `wrapper ci -- ./build.sh` runs a script without a `#!` line as the shell would.
    /// `None` when the program cannot be found as a file.
    pub fn through_sh(&self) -> Option<ChildSpec> {
        let file = resolve(&self.program)?;
        // A binary the kernel cannot run (another architecture, a truncated ELF, compressed
        // data) is not a script: bash says "cannot execute binary file", and so does this.
        let mut head = [0u8; 512];
        let n = std::fs::File::open(&file)
            .and_then(|mut f| io::Read::read(&mut f, &mut head))
            .ok()?;
        if head[..n].contains(&0) || head[..n].starts_with(b"\x7fELF") {
            return None;
        }
        Some(ChildSpec {
            program: "/bin/sh".into(),
            args: std::iter::once(file.into_os_string())
                .chain(self.args.iter().cloned())
                .collect(),
            argv: self.argv.clone(),
            via_shell: self.via_shell,
        })
    }

    /// One word with whitespace or shell syntax runs through `/bin/sh -c` (SPEC §1);
    /// anything else is executed directly, found on `PATH`.
    pub fn from_words(words: Vec<OsString>) -> ChildSpec {
        let argv: Vec<String> = words
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect();
        if words.len() == 1 && needs_shell(&argv[0]) {
            return ChildSpec {
                program: "/bin/sh".into(),
                args: vec!["-c".into(), words[0].clone()],
                argv,
                via_shell: true,
            };
        }
        let mut words = words.into_iter();
        ChildSpec {
            program: words.next().unwrap_or_default(),
            args: words.collect(),
            argv,
            via_shell: false,
        }
    }
}

/// Whether one word given as the whole command holds whitespace or shell syntax, and so runs
/// through `/bin/sh -c` (SPEC §1).
pub fn needs_shell(word: &str) -> bool {
    word.chars().any(|c| {
        c.is_whitespace()
            || matches!(
                c,
                '|' | '&'
                    | ';'
                    | '<'
                    | '>'
                    | '('
                    | ')'
                    | '$'
                    | '`'
                    | '\\'
                    | '"'
                    | '\''
                    | '*'
                    | '?'
                    | '['
                    | '#'
                    | '~'
                    | '{'
                    | '}'
            )
    })
}

/// A running child.
#[derive(Debug)]
pub struct Spawned {
    pub pid: Pid,
    /// The child's process group (equal to its pid).
    pub pgid: Pid,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// Whether the child's group was made the terminal's foreground group.
    pub took_terminal: bool,
}

/// How the child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The exit code wrapper passes on: the child's, or 128 + N for death by signal N.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// Why a spawn failed, with the exit code SPEC §6.3 assigns.
#[derive(Debug, thiserror::Error)]
#[error("cannot run `{program}`: {}", explain(program, source))]
pub struct SpawnError {
    pub program: String,
    pub source: io::Error,
}

/// The file `program` names, as exec finds it: the path itself if it has a `/`, else the
/// first executable file of that name on `PATH`.
fn resolve(program: &std::ffi::OsStr) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::path::Path::new(program);
    if program.as_encoded_bytes().contains(&b'/') {
        return Some(path.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(path))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The cause in words where the system's is misleading: exec says "No such file or
/// directory" for a script whose `#!` interpreter is missing, and "Permission denied" for a
/// directory.
fn explain(program: &str, e: &io::Error) -> String {
    let named = program.contains('/');
    let found = resolve(std::ffi::OsStr::new(program));
    let path = found.as_deref().unwrap_or(std::path::Path::new(program));
    if e.raw_os_error() == Some(libc::ENOEXEC) {
        return "it cannot be executed: a binary for another system, or not a program at all"
            .into();
    }
    match e.kind() {
        io::ErrorKind::NotFound if path.is_file() => {
            let first = std::fs::File::open(path).ok().and_then(|f| {
                use io::{BufRead, Read};
                let mut line = String::new();
                io::BufReader::new(f.take(256)).read_line(&mut line).ok()?;
                Some(line)
            });
            let line = first.as_deref().unwrap_or("");
            let line = line.strip_suffix('\n').unwrap_or(line);
            match line.strip_prefix("#!") {
                Some(interp) if interp.ends_with('\r') => format!(
                    "its `#!` line ends in a carriage return (a file saved with Windows line \
                     ends), so its interpreter is `{}\\r`, which does not exist",
                    interp.trim_end_matches('\r').trim()
                ),
                Some(interp) => format!(
                    "its interpreter `{}` (from its `#!` line) does not exist",
                    interp.split_whitespace().next().unwrap_or("")
                ),
                None => e.to_string(),
            }
        }
        io::ErrorKind::NotFound if !named => {
            "no such command on PATH (is it installed, and PATH set as where it runs?)".into()
        }
        io::ErrorKind::NotFound => "no such file".into(),
        io::ErrorKind::PermissionDenied if named && path.is_dir() => "it is a directory".into(),
        io::ErrorKind::PermissionDenied if named && path.is_file() => {
            "it is not executable (chmod +x it, or run it with its interpreter)".into()
        }
        _ => e.to_string(),
    }
}

impl SpawnError {
    /// 127 for "not found", 126 for "found but cannot be executed".
    pub fn exit_code(&self) -> i32 {
        match self.source.kind() {
            io::ErrorKind::NotFound => 127,
            _ => 126,
        }
    }
}

/// Whether wrapper should hand the terminal to the child: stdin is a terminal and wrapper's
/// group is in its foreground (not when wrapper itself runs in the background).
pub fn should_take_terminal() -> bool {
    let stdin = io::stdin();
    let Ok(fg) = nix::unistd::tcgetpgrp(&stdin) else {
        return false;
    };
    fg == nix::unistd::getpgrp()
}

/// Whether stdin is wrapper's controlling terminal, so that shell job control applies to the
/// child (its stops must be followed), whether or not wrapper started in the foreground: a
/// job started with `&` and later brought back with `fg` needs it as much.
pub fn has_job_control() -> bool {
    terminal_foreground().is_some()
}

/// Spawns the child in a new process group with stdout and stderr piped, stdin inherited.
pub fn spawn(spec: &ChildSpec, take_terminal: bool) -> Result<Spawned, SpawnError> {
    match spawn_once(spec, take_terminal) {
        Err(e) if e.source.raw_os_error() == Some(libc::ENOEXEC) => match spec.through_sh() {
            Some(sh) => spawn_once(&sh, take_terminal).map_err(|_| e),
            None => Err(e),
        },
        other => other,
    }
}

fn spawn_once(spec: &ChildSpec, take_terminal: bool) -> Result<Spawned, SpawnError> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if take_terminal {
        // SAFETY: runs in the forked child before exec and only calls async-signal-safe
        // functions (signal, tcsetpgrp, getpid). std has already put the child in its own
        // process group (`process_group(0)` runs before pre_exec hooks).
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                libc::tcsetpgrp(0, libc::getpid());
                libc::signal(libc::SIGTTOU, libc::SIG_DFL);
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().map_err(|source| SpawnError {
        program: spec.argv.first().cloned().unwrap_or_default(),
        source,
    })?;
    let pid = Pid::from_raw(child.id() as i32);
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(SpawnError {
            program: spec.argv.first().cloned().unwrap_or_default(),
            source: io::Error::other("pipes were not created"),
        });
    };
    let stdout: OwnedFd = stdout.into();
    let stderr: OwnedFd = stderr.into();
    // Bigger pipes let a fast child write more before it waits on us. Best effort.
    for fd in [&stdout, &stderr] {
        // SAFETY: plain fcntl on a file descriptor this function owns.
        unsafe {
            libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
        }
    }
    Ok(Spawned {
        pid,
        pgid: pid,
        stdout,
        stderr,
        took_terminal: take_terminal,
    })
}

/// Gives the terminal's foreground back to wrapper's own group after the child is done —
/// only if the child's group `pgid` still holds it. If it does not, wrapper runs in the
/// background (`bg`), or the agent passed the terminal on itself: then the terminal belongs
/// to someone else (the shell), and taking it would leave that shell unable to read.
pub fn restore_terminal(pgid: Pid) {
    if terminal_foreground() == Some(pgid) {
        set_foreground(nix::unistd::getpgrp());
    }
}

/// When wrapper is continued (`fg`) while its child is the job's terminal owner: if wrapper's
/// group is in the foreground now, the terminal goes to the child's group first, so the
/// child does not run into SIGTTIN the moment it is continued.
pub fn hand_terminal_back(pgid: Pid) {
    if terminal_foreground() == Some(nix::unistd::getpgrp()) {
        set_foreground(pgid);
    }
}

/// The terminal's foreground process group, if stdin is a terminal.
fn terminal_foreground() -> Option<Pid> {
    nix::unistd::tcgetpgrp(io::stdin()).ok()
}

/// Makes sure wrapper can wait for its child. A parent that ignores SIGCHLD passes that on
/// through exec, and with SIGCHLD ignored the kernel reaps children itself: `waitpid` would
/// fail with ECHILD and the agent's exit status would be lost. The agent inherits the
/// default disposition too, as it would from a shell.
pub fn reset_sigchld() {
    // SAFETY: setting a signal's disposition to SIG_DFL installs no handler.
    unsafe {
        let _ = signal::signal(Signal::SIGCHLD, signal::SigHandler::SigDfl);
    }
}

/// Lets the calling thread write to the terminal while it is not in the terminal's
/// foreground group. With `stty tostop`, writing from a background group stops the writer
/// with SIGTTOU — but when wrapper has handed the terminal to the agent, wrapper's group is
/// never the foreground one, and the agent's output is exactly what wrapper writes. With
/// SIGTTOU blocked the write goes through, as the agent's own would. Meant for the pump
/// thread only; threads created later inherit the mask, the agent does not (std resets the
/// signal mask in the child before exec).
pub fn allow_terminal_writes() {
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let _ = signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), None);
}

/// Blocks until the child ends. With `reap_all` (subreaper or PID 1) it also reaps every
/// orphan that was re-parented to wrapper, as tini does, while waiting for its own child.
///
/// With `job_control` (wrapper handed the child the terminal) it also keeps shell job control
/// working: when the child is stopped — Ctrl-Z, or a read from the terminal while the job
/// runs in the background — wrapper takes the terminal back and stops itself, so the shell
/// sees the job stopped and gets its prompt back; on `fg` it hands the terminal to the child
/// again and continues it; on `bg` it only continues it.
///
/// `before_stop` runs just before wrapper stops with its job (it passes through what the
/// agent printed before it stopped).
pub fn wait(
    pid: Pid,
    reap_all: bool,
    job_control: bool,
    before_stop: &dyn Fn(),
) -> io::Result<Exit> {
    let flags = if job_control {
        WaitPidFlag::WUNTRACED
    } else {
        WaitPidFlag::empty()
    };
    loop {
        let target = if reap_all { Pid::from_raw(-1) } else { pid };
        match waitpid(target, Some(flags)) {
            Ok(WaitStatus::Exited(p, code)) if p == pid => return Ok(Exit::Code(code)),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => return Ok(Exit::Signal(sig as i32)),
            Ok(WaitStatus::Stopped(p, sig)) if p == pid => stop_with_child(pid, sig, before_stop),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

/// The child (process group `pgid`) has stopped with `sig`: behave as the job it belongs to.
///
/// Normally the job stops: wrapper gives the terminal back to its own group if the child's
/// group holds it (Ctrl-Z while the agent had the terminal) — the shell knows wrapper's
/// group, not the child's — and stops its own group (see [`stop_own_group`]), so the shell
/// sees the job stopped. When the shell continues it (`fg` or `bg`), wrapper hands the
/// terminal to the child again if it is in the foreground now, and continues the child.
///
/// Two cases are not a stop of the job: the child ran into SIGTTIN/SIGTTOU while wrapper is
/// in the foreground (the child was continued a moment before it got the terminal back) —
/// then the child gets the terminal and goes on at once; and SIGTSTP is ignored, so wrapper
/// cannot stop — then the child waits, stopped, for wrapper to be in the foreground.
fn stop_with_child(pgid: Pid, sig: Signal, before_stop: &dyn Fn()) {
    let ours = nix::unistd::getpgrp();
    let fg = terminal_foreground();
    let tty_stop = matches!(sig, Signal::SIGTTIN | Signal::SIGTTOU);
    if tty_stop && fg == Some(ours) {
        resume_if_foreground(pgid, ours);
        return;
    }
    if sigtstp_ignored() {
        // Wrapper cannot stop (nor can the rest of its job, which inherited that), so to the
        // shell the job is still running, and its `fg` will send no SIGCONT.
        wait_for_foreground(pgid, ours);
        return;
    }
    if fg == Some(pgid) {
        set_foreground(ours);
    }
    before_stop();
    stop_own_group(ours);
    // Continued by the shell (`fg` or `bg`) — or never stopped (see `stop_own_group`). In
    // the background the child is continued by the shell's SIGCONT to wrapper (`bg`), which
    // the run loop forwards.
    resume_if_foreground(pgid, ours);
}

/// If wrapper's group has the terminal, hands it to the child's group; then continues the
/// child if it can run without being stopped again at once: its group in the foreground, or
/// no terminal at all. Returns whether it did.
fn resume_if_foreground(pgid: Pid, ours: Pid) -> bool {
    let fg = terminal_foreground();
    if fg == Some(ours) {
        set_foreground(pgid);
    }
    let runs = fg.is_none() || fg == Some(ours) || fg == Some(pgid);
    if runs {
        let _ = signal::killpg(pgid, Signal::SIGCONT);
    }
    runs
}

/// How often a stopped agent checks whether the shell has given wrapper the terminal, when
/// wrapper itself could not stop (see [`wait_for_foreground`]).
const FOREGROUND_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Leaves the stopped agent stopped until wrapper's group gets the terminal (the shell's
/// `fg`), then hands it over and continues the agent. Continuing it at once instead would
/// only run it into SIGTTIN again, over and over. No signal says that the terminal changed
/// hands, so this looks every [`FOREGROUND_POLL`]; it also returns if the agent is
/// continued or ends some other way (`waitpid` then tells).
fn wait_for_foreground(pgid: Pid, ours: Pid) {
    while !resume_if_foreground(pgid, ours) && is_stopped(pgid) {
        std::thread::sleep(FOREGROUND_POLL);
    }
}

/// Whether process `pid` is stopped (`T` in `/proc`); false where that cannot be read.
fn is_stopped(pid: Pid) -> bool {
    stat_field(pid, 0).is_some_and(|state| state == "T")
}

/// Field `n` of `/proc/<pid>/stat` after the command name (0: the state, 1: the parent).
fn stat_field(pid: Pid, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(n).map(str::to_string)
}

/// Whether SIGTSTP is ignored (a parent's `trap '' TSTP`, inherited through exec).
pub(crate) fn sigtstp_ignored() -> bool {
    // SAFETY: sigaction with a null new action only reads the current disposition.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGTSTP, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

/// Stops wrapper's own process group with SIGTSTP, as Ctrl-Z would have if the agent were
/// still in it: the other members first (a `make` or a shell script that runs wrapper; they
/// would otherwise keep running, so the shell would never see the job stopped), then wrapper
/// itself.
///
/// Wrapper's own stop is directed at this thread, so this thread takes it on its way out of
/// the call and nothing after it runs before wrapper has stopped and been continued (a
/// process-directed signal may be taken by another thread a moment later). SIGTSTP rather
/// than SIGSTOP, because the kernel then does what it would do to the agent itself: the shell
/// reports "Stopped", and where no one could continue the group (an orphaned group — wrapper
/// started as the session leader, `ssh -t host wrapper …`) or SIGTSTP is ignored, nothing
/// stops and the agent is simply continued.
///
/// Wrapper's own children in the group (a `git` it runs for the session's repository facts)
/// are left alone: stopped between its fork and its exec, such a child would keep the
/// spawning thread waiting in the kernel for the exec, wrapper's stop would never complete,
/// and the shell would never see the job stopped (a hang once in ~10 runs of
/// `jobs::ctrl_c_after_fg_of_a_background_job_records_interrupted`). It finishes on its own.
pub(crate) fn stop_own_group(ours: Pid) {
    let me = nix::unistd::getpid();
    for pid in group_members(ours) {
        if pid != me && parent_of(pid) != Some(me) {
            let _ = signal::kill(pid, Signal::SIGTSTP);
        }
    }
    let _ = pthread_kill(pthread_self(), Signal::SIGTSTP);
}

/// The parent of process `pid`, from `/proc/<pid>/stat`.
fn parent_of(pid: Pid) -> Option<Pid> {
    stat_field(pid, 1)?.parse().ok().map(Pid::from_raw)
}

/// The processes of process group `pgid`, from `/proc` (empty where it cannot be read).
fn group_members(pgid: Pid) -> Vec<Pid> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .map(Pid::from_raw)
        .filter(|&pid| nix::unistd::getpgid(Some(pid)) == Ok(pgid))
        .collect()
}

/// Makes `pgid` the terminal's foreground group; SIGTTOU is blocked meanwhile, since a
/// background caller would otherwise be stopped by it.
fn set_foreground(pgid: Pid) {
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let mut old = SigSet::empty();
    if signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut old)).is_ok() {
        let _ = nix::unistd::tcsetpgrp(io::stdin(), pgid);
        let _ = signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
}

/// Reaps whatever orphans have exited, without blocking (subreaper mode, after our child).
pub fn reap_orphans() {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Whether any process of the group is still alive.
pub fn group_alive(pgid: Pid) -> bool {
    matches!(
        signal::killpg(pgid, None),
        Ok(()) | Err(nix::errno::Errno::EPERM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_word_with_shell_syntax_goes_through_sh() {
        let s = ChildSpec::from_words(vec!["echo 'test error'".into()]);
        assert!(s.via_shell);
        assert_eq!(s.program, "/bin/sh");
        let s = ChildSpec::from_words(vec!["sleep".into(), "1".into()]);
        assert!(!s.via_shell);
        assert_eq!(s.args, vec![OsString::from("1")]);
        let s = ChildSpec::from_words(vec!["/usr/bin/true".into()]);
        assert!(!s.via_shell);
    }
}
