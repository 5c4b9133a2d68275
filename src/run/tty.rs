//! The user's terminal in PTY mode: raw mode that is undone on every path, the terminal
//! modes the child left on, its size, and forwarding keystrokes to the pty.
//!
//! While the child runs on its own pseudo-terminal, the user's terminal must pass every key
//! straight through (raw mode: no echo, no line editing, Ctrl-C and Ctrl-Z as bytes), so that
//! the child's own line discipline does what a terminal would. Raw mode is global state that
//! outlives wrapper, so restoring it cannot be left to the happy path: [`RawGuard`] restores
//! in `Drop`, a panic hook restores before the panic message is printed, and Ctrl-Z restores
//! before wrapper stops ([`suspend`]) and goes raw again on `fg` ([`resume`]). The state
//! lives in statics so that the panic hook — which has no access to the run loop — can reach
//! it; there is one user's terminal per process.
//!
//! Restoring termios is not enough after a TUI crashed: the alternate screen, a hidden
//! cursor, mouse and focus reporting, bracketed paste and kitty keyboard pushes live in the
//! terminal emulator. The pump follows the child's output ([`crate::screen::modes`]) and
//! publishes what is left on ([`publish_modes`]); at the end exactly those are reset.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
use nix::sys::termios::{self, SetArg, SpecialCharacterIndices, Termios};

use crate::screen::modes::ModeSet;

/// The user's termios as found (set while raw mode is on or suspended).
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);
/// Whether the user's terminal is in raw mode right now.
static RAW: AtomicBool = AtomicBool::new(false);
/// The modes the child has on ([`ModeSet::pack`]).
static MODES: AtomicU64 = AtomicU64::new(0);
/// The modes were reset on the user's terminal by [`suspend`] and are to be set again.
static MODES_SUSPENDED: AtomicBool = AtomicBool::new(false);

fn stdin() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process (wrapper never closes it).
    unsafe { BorrowedFd::borrow_raw(libc::STDIN_FILENO) }
}

fn is_tty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// Whether stdin and stdout are both terminals (what `pty = "auto"` asks).
pub fn stdin_and_stdout_are_terminals() -> bool {
    is_tty(libc::STDIN_FILENO) && is_tty(libc::STDOUT_FILENO)
}

/// Whether wrapper's process group is the foreground of the terminal on stdin.
pub fn in_foreground() -> bool {
    nix::unistd::tcgetpgrp(stdin()).is_ok_and(|fg| fg == nix::unistd::getpgrp())
}

/// The user's terminal size: from stdin, else stdout, else stderr.
pub fn size() -> Option<libc::winsize> {
    for fd in [libc::STDIN_FILENO, libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes a winsize into the struct we pass.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col > 0 {
            return Some(ws);
        }
    }
    None
}

/// The user's termios if stdin is a terminal, for the child's pty to start from.
pub fn user_termios() -> Option<Termios> {
    termios::tcgetattr(stdin()).ok()
}

/// Publishes the modes the child has on now (called by the pump after each read).
pub fn publish_modes(m: ModeSet) {
    MODES.store(m.pack(), Ordering::Relaxed);
}

/// The modes the child has on, as last published.
pub fn modes() -> ModeSet {
    ModeSet::unpack(MODES.load(Ordering::Relaxed))
}

/// Writes to the user's terminal, if stdout is one (never into a file or a pipe).
fn write_terminal(bytes: &[u8]) {
    if bytes.is_empty() || !is_tty(libc::STDOUT_FILENO) {
        return;
    }
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: writes from a valid slice to fd 1.
        let r = unsafe { libc::write(libc::STDOUT_FILENO, rest.as_ptr().cast(), rest.len()) };
        if r < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        rest = &rest[r as usize..];
    }
}

/// Puts the user's terminal (stdin) into raw mode; restores it when dropped. Also installs
/// the panic hook that restores first.
pub struct RawGuard(());

impl RawGuard {
    /// `Ok(None)` if stdin is not a terminal (nothing to make raw).
    pub fn new() -> io::Result<Option<RawGuard>> {
        let Ok(orig) = termios::tcgetattr(stdin()) else {
            return Ok(None);
        };
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(orig);
        install_panic_hook();
        set_raw()?;
        Ok(Some(RawGuard(())))
    }
}

impl Drop for RawGuard {
    fn drop(&mut self) {
        restore();
    }
}

fn set_raw() -> io::Result<()> {
    let saved = SAVED.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(mut raw) = saved else {
        return Ok(());
    };
    // Output processing off too: the child's own pty already turned `\n` into `\r\n`,
    // and passthrough must be byte for byte.
    termios::cfmakeraw(&mut raw);
    termios::tcsetattr(stdin(), SetArg::TCSADRAIN, &raw).map_err(io::Error::from)?;
    RAW.store(true, Ordering::SeqCst);
    Ok(())
}

fn set_cooked() {
    if let Some(orig) = SAVED.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        // With SIGTTOU blocked a background caller is not stopped by this.
        let _ = with_ttou_blocked(|| termios::tcsetattr(stdin(), SetArg::TCSADRAIN, orig));
    }
    RAW.store(false, Ordering::SeqCst);
}

fn with_ttou_blocked<T>(f: impl FnOnce() -> T) -> T {
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let mut old = SigSet::empty();
    let blocked = signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut old));
    let r = f();
    if blocked.is_ok() {
        let _ = signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
    r
}

/// The end of the session (or a panic): resets the modes the child left on, then gives the
/// terminal its termios back. Idempotent.
pub fn restore() {
    let left = ModeSet::unpack(MODES.swap(0, Ordering::SeqCst));
    if !MODES_SUSPENDED.swap(false, Ordering::SeqCst) {
        write_terminal(&left.reset_sequence());
    }
    if SAVED.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
        set_cooked();
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Before wrapper stops with its job (Ctrl-Z): the terminal as the user had it, the child's
/// modes undone, so the shell gets a usable terminal.
pub fn suspend() {
    if !MODES_SUSPENDED.swap(true, Ordering::SeqCst) {
        write_terminal(&modes().reset_sequence());
    }
    if RAW.load(Ordering::SeqCst) {
        set_cooked();
    }
}

/// After `fg` (or any continue): raw again and the child's modes back — only if wrapper is
/// in the foreground (after `bg` the terminal is the shell's). Idempotent.
pub fn resume() {
    let has_saved = SAVED.lock().unwrap_or_else(|e| e.into_inner()).is_some();
    if !has_saved || !in_foreground() {
        return;
    }
    if !RAW.load(Ordering::SeqCst) {
        let _ = set_raw();
    }
    if MODES_SUSPENDED.swap(false, Ordering::SeqCst) {
        write_terminal(&modes().set_sequence());
    }
}

/// A panic anywhere in wrapper restores the terminal before its message is printed.
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            prev(info);
        }));
    });
}

/// The pty's end-of-file character (`VEOF`, normally Ctrl-D).
pub fn veof(master: &OwnedFd) -> u8 {
    termios::tcgetattr(master.as_fd())
        .map(|t| t.control_chars[SpecialCharacterIndices::VEOF as usize])
        .ok()
        .filter(|&c| c != 0)
        .unwrap_or(4)
}

/// How often the input thread looks again whether wrapper is back in the foreground after
/// a read in the background was refused.
const BACKGROUND_POLL: Duration = Duration::from_millis(50);

/// Starts the thread that forwards stdin to the pty, byte for byte. Keystrokes go nowhere
/// else (never recorded). At EOF of a stdin that is not a terminal (`--pty` with piped
/// input), the child gets the terminal's EOF: the `VEOF` byte, twice after a line without
/// its newline (the first ends that line, the second is the EOF). Ctrl-Z: see
/// [`super::signals::ctrl_z_through_pty`].
pub fn forward_input(master: OwnedFd, child_pgid: nix::unistd::Pid) -> io::Result<()> {
    let stdin_is_tty = is_tty(libc::STDIN_FILENO);
    thread::Builder::new()
        .name("wrapper-input".into())
        .spawn(move || {
            // A read from the terminal while wrapper is in the background (after `bg`) then
            // fails with EIO instead of stopping all of wrapper: the child's output keeps
            // flowing, and the input waits for `fg`.
            let mut ttin = SigSet::empty();
            ttin.add(Signal::SIGTTIN);
            ttin.add(Signal::SIGTTOU);
            let _ = signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttin), None);
            let eof = veof(&master);
            let mut buf = [0u8; 4096];
            let mut last = b'\n';
            loop {
                match nix::unistd::read(stdin(), &mut buf) {
                    Ok(0) => {
                        if !stdin_is_tty {
                            let seq: &[u8] = if last == b'\n' { &[eof] } else { &[eof, eof] };
                            let _ = write_all(&master, seq);
                        }
                        return;
                    }
                    Ok(n) => {
                        last = buf[n - 1];
                        if write_all(&master, &buf[..n]).is_err() {
                            return;
                        }
                        if stdin_is_tty {
                            super::signals::ctrl_z_through_pty(&master, child_pgid, &buf[..n]);
                        }
                    }
                    Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                    Err(nix::errno::Errno::EIO) if stdin_is_tty => thread::sleep(BACKGROUND_POLL),
                    Err(_) => return,
                }
            }
        })?;
    Ok(())
}

fn write_all(fd: &OwnedFd, mut buf: &[u8]) -> nix::Result<()> {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
