//! PTY mode's supervisor: the child on a pseudo-terminal, the user's terminal raw, keys in,
//! output out, signals and job control, and the session finished in order (SPEC §10).
//!
//! It has the shape of pipe mode's loop in `run/mod.rs` — a pump thread, a waiter thread,
//! the signal listener, and this thread handling one message at a time — with what a
//! terminal changes: one stream (`pty`) instead of two; SIGWINCH resizes the pty instead of
//! being forwarded (the kernel signals the pty's foreground group itself); Ctrl-C and Ctrl-Z
//! arrive as bytes and the child's line discipline turns them into signals, so wrapper only
//! follows the child's stops with its own ([`wait`]); and the user's terminal is restored
//! before wrapper stops and on every way out ([`super::tty`]).

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde_json::json;

use super::child::{self, ChildSpec, Exit, SpawnError};
use super::pty::{self, PtyChild};
use super::{pump, signals, tty, Control, Outcome, GROUP_POLL};
use crate::config::{PtyChoice, RunConfig};
use crate::event::now_timestamp;
use crate::screen::modes::Modes;
use crate::store::writer::{Msg, State, StateChange};

/// Whether this run uses a pty: always, never, or (auto) when wrapper's stdin and stdout are
/// terminals and wrapper is in the terminal's foreground. A job started with `&` keeps pipes:
/// it could not put the terminal into raw mode without being stopped for it.
pub fn wanted(choice: PtyChoice) -> bool {
    match choice {
        PtyChoice::Always => true,
        PtyChoice::Never => false,
        PtyChoice::Auto => tty::stdin_and_stdout_are_terminals() && tty::in_foreground(),
    }
}

/// What the extraction side needs to model the screen: the pty's size when the agent started,
/// and its size now (`cols << 16 | rows`), kept current on SIGWINCH with the time of the last
/// change (µs since the epoch, stored before the size), so that the screen model and the
/// capture put a resize among the reads where it happened, however far behind they are.
#[derive(Clone)]
pub struct ScreenSetup {
    pub start: (u16, u16),
    pub size: Arc<AtomicU32>,
    pub resized_at_us: Arc<AtomicU64>,
}

fn pack_size(cols: u16, rows: u16) -> u32 {
    (u32::from(cols) << 16) | u32::from(rows)
}

/// A child started on a pty, with the user's terminal put into raw mode.
pub struct Started {
    pub child: PtyChild,
    pub size: (u16, u16),
    raw: Option<tty::RawGuard>,
}

/// Spawns `spec` on a pty sized like the user's terminal, with the user's termios, then
/// puts the user's terminal into raw mode.
pub fn spawn(spec: &ChildSpec) -> Result<Started, SpawnError> {
    let size = tty::size()
        .map(|ws| (ws.ws_col, ws.ws_row))
        .unwrap_or(pty::DEFAULT_SIZE);
    let termios = tty::user_termios();
    // Also where stdin is not a terminal (no raw mode): the modes the child turns on on
    // stdout's terminal are reset on a panic too.
    tty::install_panic_hook();
    let child = pty::spawn(spec, size, termios.as_ref())?;
    let raw = match tty::RawGuard::new() {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!("cannot put the terminal into raw mode: {e}");
            None
        }
    };
    Ok(Started { child, size, raw })
}

/// Runs the session of a child started by [`spawn`] until it has exited, its output is
/// passed through and extracted, and (after a stop request) its group is gone.
#[allow(clippy::too_many_arguments)]
pub(super) fn supervise(
    started: Started,
    cfg: &RunConfig,
    rules: super::rules::Rules,
    redactor: Arc<crate::extract::Redactor>,
    records_tx: Option<SyncSender<Msg>>,
    tap: Option<super::capture::CaptureTap>,
    ctl_tx: mpsc::Sender<Control>,
    ctl_rx: Receiver<Control>,
    reap_all: bool,
    state: &dyn Fn(StateChange),
) -> anyhow::Result<Outcome> {
    let Started { child, size, raw } = started;
    let pid = child.pid;
    let screen = ScreenSetup {
        start: size,
        size: Arc::new(AtomicU32::new(pack_size(size.0, size.1))),
        resized_at_us: Arc::new(AtomicU64::new(0)),
    };
    let (chunk_tx, extract, _backlog) =
        super::start_extraction(cfg, rules, redactor, records_tx, Some(screen.clone()), tap)?;
    let (wake_r, wake_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("cannot create the wake pipe")?;

    let master_out = child.dup_master().context("cannot duplicate the pty")?;
    let (drained_tx, drained_rx) = mpsc::channel::<()>();
    let pump_ctl = ctl_tx.clone();
    thread::Builder::new()
        .name("wrapper-pump".into())
        .spawn(move || {
            child::allow_terminal_writes();
            let mut modes = Modes::new();
            let watch: pump::Watch = Box::new(move |bytes| {
                modes.feed(bytes);
                tty::publish_modes(modes.current());
            });
            let report = pump::run_pty(master_out, watch, wake_r, chunk_tx, drained_tx);
            let _ = pump_ctl.send(Control::PumpDone(report));
        })
        .context("cannot start the pump thread")?;
    tty::forward_input(child.dup_master().context("cannot duplicate the pty")?, pid)
        .context("cannot start the input thread")?;

    let wake_drain = wake_w
        .try_clone()
        .context("cannot duplicate the wake pipe")?;
    let reaped = child.reaped.clone();
    thread::Builder::new()
        .name("wrapper-wait".into())
        .spawn(move || {
            // Before wrapper stops with its job: pass through what the agent printed first.
            let before_stop = || pump::drain_before_stop(&wake_drain, &drained_rx);
            let exit = wait(pid, reap_all, &before_stop);
            reaped.store(true, Ordering::SeqCst);
            let _ = ctl_tx.send(Control::Exited(exit));
        })
        .context("cannot start the waiter thread")?;

    let mut sup = Supervisor {
        pid,
        master: child.master(),
        screen: &screen,
        cfg,
        state,
        exit: None,
        pump: None,
        stop_signal: None,
        kill_deadline: None,
    };
    loop {
        if sup.finished() {
            break;
        }
        let msg = match sup.timeout() {
            Some(t) => ctl_rx.recv_timeout(t),
            None => ctl_rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match msg {
            Ok(Control::Signal(sig)) => sup.signal(sig),
            Ok(Control::Exited(result)) => {
                sup.exit = Some(result.context("waiting for the child failed")?);
                let _ = nix::unistd::write(&wake_w, &[pump::WAKE_CHILD_EXITED]);
            }
            Ok(Control::PumpDone(r)) => {
                sup.pump = Some(r);
                // Debug builds only: the tests' way to check that a panic restores the
                // terminal before its message is printed.
                #[cfg(debug_assertions)]
                if std::env::var_os("WRAPPER_TEST_PANIC").is_some_and(|v| v == "after-exit") {
                    panic!("WRAPPER_TEST_PANIC");
                }
            }
            Err(RecvTimeoutError::Timeout) => sup.timed_out(),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(anyhow!("internal: control channel closed"));
            }
        }
    }
    let (exit, pump_report, stop_signal) = (sup.exit, sup.pump, sup.stop_signal);
    // Everything the child printed is on the terminal: now give the terminal back (the
    // modes the child left on are reset, then termios), before waiting on extraction.
    drop(raw);
    tty::restore();
    drop(child);
    drop::<OwnedFd>(wake_w);
    if reap_all {
        child::reap_orphans();
    }
    let (lines, events) = match extract {
        Some(h) => h
            .join()
            .map_err(|_| anyhow!("internal: the extraction thread panicked"))?,
        None => (0, 0),
    };
    Ok(Outcome {
        exit: exit.ok_or_else(|| anyhow!("internal: no exit status"))?,
        pid,
        // Ctrl-C reaches the child from its terminal, as at a terminal of its own.
        job_control: true,
        stop_requested: stop_signal.is_some(),
        stop_signal,
        pump: pump_report.unwrap_or_default(),
        lines,
        events,
    })
}

/// The control loop's state, one method per message.
struct Supervisor<'a> {
    pid: Pid,
    master: Option<&'a OwnedFd>,
    screen: &'a ScreenSetup,
    cfg: &'a RunConfig,
    state: &'a dyn Fn(StateChange),
    exit: Option<Exit>,
    pump: Option<pump::PumpReport>,
    stop_signal: Option<i32>,
    kill_deadline: Option<Instant>,
}

impl Supervisor<'_> {
    /// The child is gone, its output read, and (after a stop request) its group gone too.
    fn finished(&mut self) -> bool {
        if self.exit.is_none() || self.pump.is_none() {
            return false;
        }
        match self.kill_deadline {
            Some(d) if child::group_alive(self.pid) => {
                if Instant::now() >= d {
                    self.escalate("kill-after");
                    self.kill_deadline = None;
                }
                false
            }
            _ => true,
        }
    }

    fn timeout(&self) -> Option<Duration> {
        let mut t = self
            .kill_deadline
            .map(|d| d.saturating_duration_since(Instant::now()));
        if self.exit.is_some() && self.pump.is_some() {
            t = Some(t.map_or(GROUP_POLL, |t| t.min(GROUP_POLL)));
        }
        t
    }

    fn record_signal(&self, sig: i32, meta: serde_json::Value) {
        (self.state)(StateChange {
            state: State::Signaled,
            timestamp: now_timestamp(),
            exit_code: None,
            signal: Some(signals::name(sig)),
            pid: Some(self.pid.as_raw() as u32),
            metadata: Some(meta),
        });
    }

    fn escalate(&self, why: &str) {
        if child::group_alive(self.pid) {
            let _ = signals::send_group(self.pid, libc::SIGKILL);
            self.record_signal(
                libc::SIGKILL,
                json!({ "reason": why, "pgid": self.pid.as_raw() }),
            );
        }
    }

    fn signal(&mut self, sig: i32) {
        match sig {
            libc::SIGWINCH => return self.resize(),
            libc::SIGCONT => {
                // `fg` after wrapper stopped (or was stopped): raw again if it has the
                // terminal; the child goes on in either case.
                tty::resume();
            }
            _ => {}
        }
        let _ = signals::send_group(self.pid, sig);
        self.record_signal(sig, json!({ "forwarded_to_pgid": self.pid.as_raw() }));
        if signals::is_terminating(sig) {
            if self.stop_signal.is_some() {
                self.escalate("second terminating signal");
                self.kill_deadline = None;
            } else {
                self.stop_signal = Some(sig);
                self.kill_deadline = Some(Instant::now() + self.cfg.kill_after);
            }
        }
    }

    /// The user's terminal changed size: so does the pty (the kernel sends SIGWINCH to the
    /// child's foreground group), and the screen model; recorded with the new size.
    fn resize(&mut self) {
        let (Some(ws), Some(master)) = (tty::size(), self.master) else {
            return;
        };
        if self.exit.is_some() {
            return;
        }
        let (cols, rows) = (ws.ws_col, ws.ws_row);
        // Before the resize: output the child writes in answer to it is read after this.
        let at_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        if let Err(e) = pty::resize(master, cols, rows) {
            tracing::debug!("cannot resize the pty: {e}");
            return;
        }
        self.screen.resized_at_us.store(at_us, Ordering::Relaxed);
        self.screen
            .size
            .store(pack_size(cols, rows), Ordering::Release);
        self.record_signal(
            libc::SIGWINCH,
            json!({ "cols": cols, "rows": rows, "resized": "pty" }),
        );
    }

    fn timed_out(&mut self) {
        if self.kill_deadline.is_some_and(|d| Instant::now() >= d) {
            if self.exit.is_none() || child::group_alive(self.pid) {
                self.escalate("kill-after");
            }
            self.kill_deadline = None;
        }
    }
}

/// Blocks until the child ends, following its stops as the job's: when the child stops
/// (Ctrl-Z typed reaches its line discipline as a byte, which stops the child's foreground
/// group), wrapper passes through what it printed, gives the user's terminal back, and stops
/// its own process group, as `script` does; when continued it goes raw again (if in the
/// foreground) and continues the child.
fn wait(pid: Pid, reap_all: bool, before_stop: &dyn Fn()) -> io::Result<Exit> {
    loop {
        let target = if reap_all { Pid::from_raw(-1) } else { pid };
        match waitpid(target, Some(WaitPidFlag::WUNTRACED)) {
            Ok(WaitStatus::Exited(p, code)) if p == pid => return Ok(Exit::Code(code)),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => return Ok(Exit::Signal(sig as i32)),
            Ok(WaitStatus::Stopped(p, _)) if p == pid => {
                before_stop();
                tty::suspend();
                if !child::sigtstp_ignored() {
                    // Returns once continued (or at once where nobody could continue us).
                    child::stop_own_group(nix::unistd::getpgrp());
                }
                tty::resume();
                let _ = signals::send_group(pid, libc::SIGCONT);
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}
