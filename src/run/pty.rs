//! The pseudo-terminal and the child on it (PTY mode, SPEC §10).
//!
//! Interactive agents need a terminal: through pipes they switch to print mode, buffer their
//! output, lose line editing and colour, or refuse to start. Here the child gets a fresh pty
//! as stdin, stdout, stderr and controlling terminal, in a session of its own (so the pty's
//! line discipline, not wrapper, turns Ctrl-C into SIGINT for the child's foreground group),
//! sized like the user's terminal and starting from the user's termios.
//!
//! pty-process spawns with `setsid` + `TIOCSCTTY` in std's `pre_exec` — no `forkpty`, which
//! is unsound in a threaded process. Nothing else may put the child in a process group of its
//! own: std's `setpgid` would run first and `setsid` then fail with EPERM. As a session leader
//! the child's pid is its process group id.
//!
//! Reading the master after the last slave descriptor is closed fails with EIO: that is the
//! end of the stream, not an error (the pump treats it as EOF). Dropping [`PtyChild`] closes
//! the master (the child's session gets SIGHUP) and, if nobody reaped the child, kills its
//! group and reaps it, so a failed run leaves nothing behind.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::sys::termios::{self, SetArg, Termios};
use nix::unistd::Pid;

use super::child::{ChildSpec, SpawnError};

/// A child running on a pty.
pub struct PtyChild {
    pub pid: Pid,
    master: Option<OwnedFd>,
    /// Set by whoever collected the child's exit status.
    pub reaped: Arc<AtomicBool>,
}

/// The pty's size when wrapper's own streams are not terminals.
pub const DEFAULT_SIZE: (u16, u16) = (80, 24);

impl PtyChild {
    /// The master side (read: the child's output; write: its input).
    pub fn master(&self) -> Option<&OwnedFd> {
        self.master.as_ref()
    }

    /// Another descriptor for the master.
    pub fn dup_master(&self) -> std::io::Result<OwnedFd> {
        match &self.master {
            Some(m) => m.try_clone(),
            None => Err(std::io::Error::other("the pty is closed")),
        }
    }
}

impl Drop for PtyChild {
    fn drop(&mut self) {
        drop(self.master.take());
        if !self.reaped.load(Ordering::SeqCst) {
            let _ = nix::sys::signal::killpg(self.pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(self.pid, None);
        }
    }
}

/// Sets the pty's window size (`TIOCSWINSZ`); the kernel then sends SIGWINCH to the pty's
/// foreground group.
pub fn resize(master: &OwnedFd, cols: u16, rows: u16) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the struct we pass, on a descriptor we own.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(master),
            libc::TIOCSWINSZ,
            &ws,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Spawns `spec` on a new pty of `size` (cols, rows), its termios copied from `termios`.
pub fn spawn(
    spec: &ChildSpec,
    size: (u16, u16),
    termios_from: Option<&Termios>,
) -> Result<PtyChild, SpawnError> {
    let fail = |source: std::io::Error| SpawnError {
        program: spec.argv.first().cloned().unwrap_or_default(),
        source,
    };
    let io_err = |e: pty_process::Error| match e {
        pty_process::Error::Io(e) => e,
        other => std::io::Error::other(other.to_string()),
    };
    let (pty, pts) = pty_process::blocking::open().map_err(|e| fail(io_err(e)))?;
    pty.resize(pty_process::Size::new(size.1.max(1), size.0.max(1)))
        .map_err(|e| fail(io_err(e)))?;
    if let Some(t) = termios_from {
        // The child starts from the user's settings (erase key, ixon, iutf8, ...).
        termios::tcsetattr(pts.as_fd(), SetArg::TCSANOW, t)
            .map_err(|e| fail(std::io::Error::from(e)))?;
    }
    let spawn = |spec: &ChildSpec| {
        pty_process::blocking::Command::new(&spec.program)
            .args(&spec.args)
            .spawn_borrowed(&pts)
    };
    // A file the kernel cannot execute runs through /bin/sh, as a shell runs it.
    let child = match spawn(spec) {
        Err(pty_process::Error::Io(e)) if e.raw_os_error() == Some(libc::ENOEXEC) => {
            match spec.through_sh() {
                Some(sh) => spawn(&sh).map_err(|_| pty_process::Error::Io(e)),
                None => Err(pty_process::Error::Io(e)),
            }
        }
        other => other,
    }
    .map_err(|e| fail(io_err(e)))?;
    // The child has its own descriptors of the terminal now: the master sees the end of its
    // output when the child's last one closes.
    drop(pts);
    Ok(PtyChild {
        pid: Pid::from_raw(child.id() as i32),
        master: Some(OwnedFd::from(pty)),
        reaped: Arc::new(AtomicBool::new(false)),
    })
}
