//! `wrapper replay <SESSION> [--speed X] [--idle-limit D] [--from TS]`: plays a captured
//! session in the terminal with its original timing.
//!
//! Keys: space pauses and resumes, `.` steps one frame (while paused), `]` jumps to the next
//! marker (an error or a prompt event), `q` or Ctrl-C quits. The terminal is put in a
//! non-canonical, no-echo mode by a guard that restores it in `Drop`, so every way out —
//! `q`, an error, a panic — leaves it as found; output modes the replayed bytes switched on
//! (alternate screen, hidden cursor, mouse reporting) are switched off again on the way out.
//! Output processing (`onlcr`) stays on, so pipe-mode output shows as it did live.
//!
//! When stdout is not a terminal the bytes are written at once, without timing.

use std::io::{self, IsTerminal, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::Args;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{self, LocalFlags, SetArg, SpecialCharacterIndices, Termios};

use crate::cast::{timing, Entry};
use crate::cli::DbOpt;
use crate::cmd::export::{self, Markers};
use crate::cmd::view;
use crate::error::{CliError, CliResult};
use crate::output;

/// Play a captured session in the terminal with its original timing
#[derive(Debug, Args)]
#[command(
    after_help = "Keys: space pause/resume, . step (paused), ] next error or prompt, q or Ctrl-C quit"
)]
pub struct ReplayArgs {
    /// Session id, or any unique prefix of one
    #[arg(value_name = "SESSION")]
    pub session: String,
    /// Playback speed: 2 is twice as fast
    #[arg(long, value_name = "X", default_value_t = 1.0, value_parser = parse_speed)]
    pub speed: f64,
    /// Shorten pauses longer than DUR (e.g. 2s)
    #[arg(long, value_name = "DUR", value_parser = crate::cli::parse_duration)]
    pub idle_limit: Option<Duration>,
    /// Start at TS: an offset into the session (90s, 1m30s, 01:30) or a time (RFC 3339)
    #[arg(long, value_name = "TS")]
    pub from: Option<String>,
    #[command(flatten)]
    pub db: DbOpt,
}

fn parse_speed(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("{s:?}: write a positive number, e.g. 0.5 or 4")),
    }
}

/// An offset into the session, in microseconds, from `90s`, `1m30s`, `01:30`, `1:02:03`,
/// `90` or an RFC 3339 time (`t0_us` is the session's start).
pub fn parse_from(s: &str, t0_us: i64) -> Result<u64, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        if secs >= 0.0 && secs.is_finite() {
            return Ok((secs * 1e6) as u64);
        }
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(d.as_micros() as u64);
    }
    if s.contains(':') && !s.contains('T') {
        let mut total = 0f64;
        for part in s.split(':') {
            let v: f64 = part
                .parse()
                .map_err(|_| format!("--from {s:?}: write an offset like 90s, 1m30s or 01:30"))?;
            total = total * 60.0 + v;
        }
        return Ok((total * 1e6) as u64);
    }
    match chrono::DateTime::parse_from_rfc3339(s) {
        Ok(t) => Ok((t.timestamp_micros() - t0_us).max(0) as u64),
        Err(_) => Err(format!(
            "--from {s:?}: write an offset like 90s, 1m30s or 01:30, or an RFC 3339 time"
        )),
    }
}

/// "1.2 MiB".
pub fn human_bytes(n: i64) -> String {
    let n = n.max(0) as f64;
    if n < 1024.0 {
        format!("{n} B")
    } else if n < 1024.0 * 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else if n < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / (1024.0 * 1024.0))
    } else {
        format!("{:.2} GiB", n / (1024.0 * 1024.0 * 1024.0))
    }
}

pub fn run(args: ReplayArgs) -> CliResult<i32> {
    let (conn, _) = view::open_db(&args.db)?;
    let loaded = export::load(&conn, &args.session, None, &Markers::parse("error,prompt"))?;
    let from_us = match &args.from {
        Some(s) => parse_from(s, loaded.info.t0_us).map_err(|e| CliError::usage(anyhow!(e)))?,
        None => 0,
    };
    let mut failed: Option<CliError> = None;
    let entries = export::entries(&conn, &loaded, from_us)?.map_while(|e| match e {
        Ok(e) => Some(e),
        Err(err) => {
            failed = Some(err);
            None
        }
    });
    let entries = timing::starting_at(entries, from_us);
    let result = if io::stdout().is_terminal() {
        let entries: Box<dyn Iterator<Item = Entry>> = match args.idle_limit {
            Some(d) => Box::new(timing::idle_limit(entries, d.as_micros() as u64)),
            None => Box::new(entries),
        };
        play(timing::speed(entries, args.speed))
    } else {
        dump(entries)
    };
    if let Some(e) = failed {
        return Err(e);
    }
    result
}

/// Not a terminal: every byte at once.
fn dump(entries: impl Iterator<Item = Entry>) -> CliResult<i32> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    for e in entries {
        if let Entry::Output { data, .. } = e {
            out.write_all(&data).map_err(output::io_error)?;
        }
    }
    out.flush().map_err(output::io_error)?;
    Ok(0)
}

/// The user's terminal in non-canonical, no-echo, no-signal mode while it lives.
struct RawGuard<'a> {
    fd: BorrowedFd<'a>,
    saved: Termios,
}

impl<'a> RawGuard<'a> {
    fn new(fd: BorrowedFd<'a>) -> nix::Result<RawGuard<'a>> {
        let saved = termios::tcgetattr(fd)?;
        let mut t = saved.clone();
        // Keys one at a time, not echoed; Ctrl-C arrives as a byte so quitting restores the
        // terminal through the same path. Output processing is left as it was.
        t.local_flags &= !(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG);
        t.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
        t.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
        termios::tcsetattr(fd, SetArg::TCSANOW, &t)?;
        Ok(RawGuard { fd, saved })
    }
}

impl Drop for RawGuard<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd, SetArg::TCSANOW, &self.saved);
    }
}

/// Output modes a recording may have switched on, switched off (sent on the way out).
const RESET_MODES: &[u8] =
    b"\x1b[0m\x1b[?25h\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?2004l";
const ALT_SCREEN_OFF: &[u8] = b"\x1b[?1049l";

/// Longest wait between two looks at the terminating-signal flag.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// A key the player understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Pause,
    Step,
    NextMarker,
    Quit,
}

fn key(b: u8) -> Option<Key> {
    match b {
        b' ' => Some(Key::Pause),
        b'.' => Some(Key::Step),
        b']' => Some(Key::NextMarker),
        b'q' | b'Q' | 0x03 | 0x04 => Some(Key::Quit),
        _ => None,
    }
}

/// The playback clock: where in the (adapted) timeline we are.
struct Clock {
    /// Wall time at which timeline offset 0 was (or would have been).
    base: Instant,
    paused_at: Option<u64>,
}

impl Clock {
    fn now_us(&self) -> u64 {
        self.paused_at
            .unwrap_or_else(|| self.base.elapsed().as_micros() as u64)
    }

    fn pause_toggle(&mut self) {
        match self.paused_at.take() {
            Some(at) => self.seek(at),
            None => self.paused_at = Some(self.now_us()),
        }
    }

    /// Continues from offset `at`.
    fn seek(&mut self, at: u64) {
        if self.paused_at.is_some() {
            self.paused_at = Some(at);
        } else {
            self.base = Instant::now() - Duration::from_micros(at);
        }
    }
}

struct Player<W: Write> {
    out: W,
    alt_screen: bool,
}

impl<W: Write> Player<W> {
    fn show(&mut self, e: &Entry) -> io::Result<()> {
        if let Entry::Output { data, .. } = e {
            if memchr::memmem::find(data, b"\x1b[?1049h").is_some() {
                self.alt_screen = true;
            }
            if memchr::memmem::find(data, b"\x1b[?1049l").is_some() {
                self.alt_screen = false;
            }
            self.out.write_all(data)?;
            self.out.flush()?;
        }
        Ok(())
    }

    fn restore(&mut self) {
        let _ = self.out.write_all(RESET_MODES);
        if self.alt_screen {
            let _ = self.out.write_all(ALT_SCREEN_OFF);
        }
        let _ = self.out.flush();
    }
}

/// Reads one key if one arrives within `timeout` (`None`: wait for ever).
fn read_key(fd: Option<BorrowedFd<'_>>, timeout: Option<Duration>) -> Option<Key> {
    let Some(fd) = fd else {
        std::thread::sleep(timeout.unwrap_or(SIGNAL_CHECK).min(SIGNAL_CHECK));
        return None;
    };
    // Bounded, so a terminating signal (checked by the caller) is noticed promptly.
    let t = timeout.unwrap_or(SIGNAL_CHECK).min(SIGNAL_CHECK);
    let t = PollTimeout::try_from(t.as_millis() as i32).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    match poll(&mut fds, t) {
        Ok(n) if n > 0 => {
            let mut b = [0u8; 1];
            match nix::unistd::read(fd, &mut b) {
                Ok(1) => key(b[0]),
                // End of input: nothing more will come; treat as quit only if we would wait
                // for ever, else just play on.
                _ => timeout.is_none().then_some(Key::Quit),
            }
        }
        _ => None,
    }
}

/// A terminal: play with timing and keys.
fn play(entries: impl Iterator<Item = Entry>) -> CliResult<i32> {
    let stdin = io::stdin();
    let keys_fd = stdin.is_terminal().then(|| stdin.as_fd());
    let _guard = match keys_fd {
        Some(fd) => Some(
            RawGuard::new(fd)
                .map_err(|e| CliError::usage(anyhow!("cannot set up the terminal: {e}")))?,
        ),
        None => None,
    };
    let mut player = Player {
        out: io::stdout().lock(),
        alt_screen: false,
    };
    // SIGTERM, SIGHUP (and SIGINT where the keys are not a terminal) end playback through
    // the same path as `q`, so the terminal is restored then too.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    let result = play_loop(entries, keys_fd, &mut player, &stop);
    player.restore();
    result.map_err(output::io_error)?;
    Ok(0)
}

fn play_loop<W: Write>(
    entries: impl Iterator<Item = Entry>,
    keys: Option<BorrowedFd<'_>>,
    player: &mut Player<W>,
    stop: &std::sync::atomic::AtomicBool,
) -> io::Result<()> {
    let mut clock = Clock {
        base: Instant::now(),
        paused_at: None,
    };
    let mut entries = entries.peekable();
    while let Some(next) = entries.peek() {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let at = next.at_us();
        let now = clock.now_us();
        if clock.paused_at.is_none() && now >= at {
            if let Some(e) = entries.next() {
                player.show(&e)?;
            }
            continue;
        }
        let wait = (clock.paused_at.is_none()).then(|| Duration::from_micros(at - now));
        match read_key(keys, wait) {
            None => {}
            Some(Key::Quit) => return Ok(()),
            Some(Key::Pause) => clock.pause_toggle(),
            Some(Key::Step) => {
                // One frame now (markers and resizes on the way are passed over).
                for e in entries.by_ref() {
                    let at = e.at_us();
                    let output = matches!(e, Entry::Output { .. });
                    player.show(&e)?;
                    clock.seek(at);
                    if output {
                        break;
                    }
                }
            }
            Some(Key::NextMarker) => {
                // Everything up to the next marker at once, then on from there.
                for e in entries.by_ref() {
                    let at = e.at_us();
                    let marker = matches!(e, Entry::Marker { .. });
                    player.show(&e)?;
                    if marker {
                        clock.seek(at);
                        break;
                    }
                    clock.seek(at);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_offsets() {
        assert_eq!(parse_from("90", 0), Ok(90_000_000));
        assert_eq!(parse_from("1m30s", 0), Ok(90_000_000));
        assert_eq!(parse_from("01:30", 0), Ok(90_000_000));
        assert_eq!(parse_from("1:00:00", 0), Ok(3_600_000_000));
        assert_eq!(
            parse_from("2023-11-14T22:13:30Z", 1_700_000_000_000_000),
            Ok(10_000_000)
        );
        assert!(parse_from("soon", 0).is_err());
    }

    #[test]
    fn keys() {
        assert_eq!(key(b' '), Some(Key::Pause));
        assert_eq!(key(3), Some(Key::Quit));
        assert_eq!(key(b'x'), None);
    }
}
