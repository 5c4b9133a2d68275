//! The one place that receives signals and forwards them (SPEC §6.1).
//!
//! Signals sent to wrapper are caught (so wrapper survives them and can record the session),
//! turned into messages for the run loop by a listener thread, and forwarded to the child's
//! process group exactly once each. Nothing else in wrapper sends signals.

use std::io;
use std::sync::mpsc::Sender;
use std::thread;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use signal_hook::consts::*;
use signal_hook::iterator::{Handle, Signals};

/// The signals wrapper forwards to the child's group.
pub const FORWARDED: [i32; 8] = [
    SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT,
];

/// Signals that ask the agent to stop: after one, `--kill-after` applies; a second kills.
pub fn is_terminating(sig: i32) -> bool {
    matches!(sig, SIGINT | SIGTERM | SIGHUP | SIGQUIT)
}

/// `SIGTERM` for 15, `SIG42` for what has no name.
pub fn name(sig: i32) -> String {
    Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("SIG{sig}"))
}

/// Starts listening. Every forwarded signal becomes `wrap(sig)` on `tx`. Listening starts
/// before the child is spawned, so a signal that arrives early is not lost.
pub fn listen<M: Send + 'static>(
    tx: Sender<M>,
    wrap: impl Fn(i32) -> M + Send + 'static,
) -> io::Result<Handle> {
    let mut signals = Signals::new(FORWARDED)?;
    let handle = signals.handle();
    thread::Builder::new()
        .name("wrapper-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if tx.send(wrap(sig)).is_err() {
                    break;
                }
            }
        })?;
    Ok(handle)
}

/// Sends `sig` to the child's process group. A group that is already gone is not an error.
pub fn send_group(pgid: Pid, sig: i32) -> io::Result<()> {
    let sig = Signal::try_from(sig).map_err(io::Error::from)?;
    match killpg(pgid, sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Ctrl-Z typed in PTY mode. The pty's line discipline sends SIGTSTP to the pty's foreground
/// group, but when that group is the agent's own — a session leader whose parent (wrapper)
/// is in another session — the group is orphaned, and the kernel discards a terminal stop
/// signal sent to an orphaned group: the agent would never stop. So when the pty would have
/// signalled (ISIG on, `byte` is its VSUSP character) and its foreground group is the
/// agent's, wrapper stops the group with SIGSTOP, which cannot be discarded; the waiter then
/// stops wrapper's job as the shell expects. A job of a shell inside the pty is not
/// orphaned, and that shell's own job control applies as usual.
pub fn ctrl_z_through_pty(master: &std::os::fd::OwnedFd, pgid: Pid, bytes: &[u8]) {
    use nix::sys::termios::{self, LocalFlags, SpecialCharacterIndices};
    let Ok(t) = termios::tcgetattr(master) else {
        return;
    };
    let vsusp = t.control_chars[SpecialCharacterIndices::VSUSP as usize];
    if vsusp == 0 || !t.local_flags.contains(LocalFlags::ISIG) || !bytes.contains(&vsusp) {
        return;
    }
    if nix::unistd::tcgetpgrp(master).is_ok_and(|fg| fg == pgid) {
        let _ = send_group(pgid, SIGSTOP);
    }
}
