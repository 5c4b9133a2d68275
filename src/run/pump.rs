//! Reads the child's pipes, passes every byte through at once, and hands the bytes on to
//! extraction (SPEC §1–§2, §6.2).
//!
//! One thread polls both pipes, so the order in which chunks are read is the order in which
//! lines are numbered. Each chunk is written to wrapper's own stdout/stderr *before* it is
//! queued for extraction: a prompt without a newline appears immediately, and nothing that
//! happens in extraction or the database can hold back bytes already read. The queue
//! ([`super::queue`]) holds 2 MiB in memory and spills to a temporary file beyond that, so a
//! slow database does not slow the agent down either, unless recording falls more than
//! 256 MiB behind.
//!
//! After the child exits, the pipes are read to EOF; if a descendant keeps them open, reading
//! stops 2 s after the exit (the drain limit) — but never before what the pipes held at the
//! exit has been read: that is the child's own output (a pipe holds up to 1 MiB here), and
//! with a slow terminal, or a pump starved of CPU, passing it through can take longer than
//! 2 s. It was cut off then, shown nowhere and recorded nowhere.
//!
//! In PTY mode ([`run_pty`]) the same loop reads one stream, the pty's master, with a
//! [`Watch`] that follows the terminal modes the child turns on (so they can be undone at
//! the end, see `run/tty.rs`); the master reads EIO once the child's side is closed, which
//! ends the stream like EOF.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::queue::Chunk;
use crate::event::{PerStream, Stream};

/// Bytes per read: the default pipe capacity, and a good write size for a terminal.
pub const CHUNK: usize = 64 * 1024;
/// How long the pipes are still read after the child exits (SPEC §6.2).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Commands from the run loop, delivered through the wake pipe.
pub const WAKE_CHILD_EXITED: u8 = 1;
pub const WAKE_STOP_NOW: u8 = 2;
/// Pass through everything the pipes hold right now, then say so on the `drained` channel:
/// sent before wrapper stops with its job, so that what the agent printed before it stopped
/// is on the terminal before the shell reports the job stopped (as it would be without
/// wrapper), not only after `fg`.
pub const WAKE_DRAIN: u8 = 3;

/// Asks the pump to pass through everything read so far and waits until it has, at most
/// [`DRAIN_WAIT`]: what the agent printed before it stopped reaches the terminal before
/// wrapper stops with its job. Bounded, in case the pump is held up writing to a terminal
/// that does not read. `wake` is the pump's wake pipe, `drained` its answers.
pub fn drain_before_stop(wake: &OwnedFd, drained: &std::sync::mpsc::Receiver<()>) {
    while drained.try_recv().is_ok() {}
    if nix::unistd::write(wake, &[WAKE_DRAIN]).is_ok() {
        let _ = drained.recv_timeout(DRAIN_WAIT);
    }
}

/// The longest [`drain_before_stop`] waits.
const DRAIN_WAIT: Duration = Duration::from_millis(500);

/// What the pump saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct PumpReport {
    pub bytes: PerStream<u64>,
    /// Both pipes reached EOF (false: the drain limit cut reading short).
    pub complete: bool,
}

struct Pipe {
    stream: Stream,
    fd: Option<OwnedFd>,
    /// Where its bytes go: 1 or 2. `None` once that write failed for good (EPIPE).
    out: Option<RawFd>,
    /// Sees every chunk right after it is passed through (PTY mode: the terminal modes the
    /// child turns on, see [`crate::screen::modes`]).
    watch: Option<Watch>,
    /// Bytes the pipe held when the child exited that are not read yet: the drain limit
    /// waits for them.
    owed: usize,
    /// The buffer reads go into: kept while reads are short, handed on when one is long.
    buf: Vec<u8>,
}

/// A look at each chunk on the pump thread; it must be cheap.
pub type Watch = Box<dyn FnMut(&[u8]) + Send>;

/// Runs until both pipes are at EOF, or the drain limit after the child's exit passes, or the
/// run loop says stop. `wake` is the read end of a pipe the run loop writes commands to.
pub fn run(
    stdout: OwnedFd,
    stderr: OwnedFd,
    wake: OwnedFd,
    chunks: Option<super::queue::Sender>,
    drained: std::sync::mpsc::Sender<()>,
) -> PumpReport {
    let pipes = vec![
        Pipe {
            stream: Stream::Stdout,
            fd: Some(stdout),
            out: Some(libc::STDOUT_FILENO),
            watch: None,
            owed: 0,
            buf: Vec::new(),
        },
        Pipe {
            stream: Stream::Stderr,
            fd: Some(stderr),
            out: Some(libc::STDERR_FILENO),
            watch: None,
            owed: 0,
            buf: Vec::new(),
        },
    ];
    run_pipes(pipes, wake, chunks, drained)
}

/// [`run`] for PTY mode: one stream, the pty's master, passed through to stdout. Reading it
/// fails with EIO once the child's side is closed, which ends the stream like EOF.
pub fn run_pty(
    master: OwnedFd,
    watch: Watch,
    wake: OwnedFd,
    chunks: Option<super::queue::Sender>,
    drained: std::sync::mpsc::Sender<()>,
) -> PumpReport {
    let pipes = vec![Pipe {
        stream: Stream::Pty,
        fd: Some(master),
        out: Some(libc::STDOUT_FILENO),
        watch: Some(watch),
        owed: 0,
        buf: Vec::new(),
    }];
    run_pipes(pipes, wake, chunks, drained)
}

fn run_pipes(
    mut pipes: Vec<Pipe>,
    wake: OwnedFd,
    chunks: Option<super::queue::Sender>,
    drained: std::sync::mpsc::Sender<()>,
) -> PumpReport {
    let mut wake = Some(wake);
    let mut chunks = chunks;
    let mut report = PumpReport::default();
    let mut deadline: Option<Instant> = None;

    while pipes.iter().any(|p| p.fd.is_some()) {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                let owed = pipes.iter().any(|p| p.fd.is_some() && p.owed > 0);
                match (left.is_zero(), owed) {
                    (true, false) => {
                        close_at_eof(&mut pipes, &mut chunks, &mut report);
                        report.complete = pipes.iter().all(|p| p.fd.is_none());
                        return report;
                    }
                    // What is owed is in the pipe: poll returns at once.
                    (true, true) => PollTimeout::NONE,
                    (false, _) => PollTimeout::try_from(left.as_millis().max(1) as i32)
                        .unwrap_or(PollTimeout::MAX),
                }
            }
        };
        let (ready, wake_ready) = match poll_ready(&pipes, wake.as_ref(), timeout) {
            Ok(r) => r,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return report,
        };
        for (i, pipe) in pipes.iter_mut().enumerate() {
            if ready[i] {
                if let Some(n) = pump_once(pipe, &mut chunks) {
                    report.bytes[pipe.stream] += n as u64;
                }
            }
        }
        if wake_ready {
            if let Some(w) = &wake {
                let mut cmd = [0u8; 16];
                match nix::unistd::read(w, &mut cmd) {
                    Ok(0) | Err(_) => wake = None,
                    Ok(n) => {
                        if cmd[..n].contains(&WAKE_STOP_NOW) {
                            return report;
                        }
                        if cmd[..n].contains(&WAKE_CHILD_EXITED) && deadline.is_none() {
                            deadline = Some(Instant::now() + DRAIN_LIMIT);
                            for p in &mut pipes {
                                p.owed = p.fd.as_ref().map_or(0, buffered);
                            }
                        }
                        if cmd[..n].contains(&WAKE_DRAIN) {
                            drain_now(&mut pipes, &mut chunks, &mut report);
                            let _ = drained.send(());
                        }
                    }
                }
            }
        }
    }
    report.complete = true;
    report
}

/// At the drain limit: reads the EOF of each pipe whose writers are all gone by now (ready,
/// nothing buffered), so that a drain that only just finished is not reported cut short.
fn close_at_eof(
    pipes: &mut [Pipe],
    chunks: &mut Option<super::queue::Sender>,
    report: &mut PumpReport,
) {
    let Ok((ready, _)) = poll_ready(pipes, None, PollTimeout::ZERO) else {
        return;
    };
    for (i, pipe) in pipes.iter_mut().enumerate() {
        if ready[i] && pipe.fd.as_ref().is_some_and(|fd| buffered(fd) == 0) {
            // Bytes written since the check are passed on and counted like any others.
            if let Some(n) = pump_once(pipe, chunks) {
                report.bytes[pipe.stream] += n as u64;
            }
        }
    }
}

/// Bytes waiting to be read in a pipe or a pty master (`FIONREAD`); 0 if it cannot say.
fn buffered(fd: &OwnedFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    if rc == 0 {
        usize::try_from(n).unwrap_or(0)
    } else {
        0
    }
}

/// Which pipes (and whether the wake pipe) are readable, waiting at most `timeout`.
fn poll_ready(
    pipes: &[Pipe],
    wake: Option<&OwnedFd>,
    timeout: PollTimeout,
) -> nix::Result<(Vec<bool>, bool)> {
    let mut fds: Vec<PollFd> = Vec::with_capacity(3);
    let mut which: Vec<usize> = Vec::with_capacity(3);
    for (i, p) in pipes.iter().enumerate() {
        if let Some(fd) = &p.fd {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            which.push(i);
        }
    }
    if let Some(w) = wake {
        fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
        which.push(usize::MAX);
    }
    poll(&mut fds, timeout)?;
    let mut ready = vec![false; pipes.len()];
    let mut wake_ready = false;
    for (fd, &i) in fds.iter().zip(&which) {
        let hit = fd.revents().is_some_and(|r| !r.is_empty());
        if i == usize::MAX {
            wake_ready = hit;
        } else if hit {
            ready[i] = true;
        }
    }
    Ok((ready, wake_ready))
}

/// Passes through whatever both pipes hold at this moment, without waiting for more.
fn drain_now(
    pipes: &mut [Pipe],
    chunks: &mut Option<super::queue::Sender>,
    report: &mut PumpReport,
) {
    while let Ok((ready, _)) = poll_ready(pipes, None, PollTimeout::ZERO) {
        let mut got = false;
        for (i, pipe) in pipes.iter_mut().enumerate() {
            if ready[i] {
                if let Some(n) = pump_once(pipe, chunks) {
                    report.bytes[pipe.stream] += n as u64;
                    got |= n > 0;
                }
            }
        }
        if !got {
            return;
        }
    }
}

/// Reads once from a ready pipe; passes the bytes through and queues them. Returns the
/// number of bytes read, `None` at EOF or on a read error (the pipe is then closed).
fn pump_once(pipe: &mut Pipe, chunks: &mut Option<super::queue::Sender>) -> Option<usize> {
    let fd = pipe.fd.as_ref()?.as_raw_fd();
    pipe.buf.clear();
    pipe.buf.reserve(CHUNK);
    let buf = &mut pipe.buf;
    let n = loop {
        // SAFETY: reads into the spare capacity of `buf`, at most `CHUNK` bytes.
        let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), CHUNK) };
        if r >= 0 {
            break r as usize;
        }
        match io::Error::last_os_error().kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Some(0),
            _ => {
                pipe.fd = None;
                return None;
            }
        }
    };
    if n == 0 {
        pipe.fd = None;
        return None;
    }
    pipe.owed = pipe.owed.saturating_sub(n);
    // SAFETY: `read` initialised the first `n` bytes.
    unsafe { buf.set_len(n) };
    let at = SystemTime::now();
    if let Some(out) = pipe.out {
        if write_all(out, &pipe.buf).is_err() {
            // Our own stdout/stderr is gone (e.g. `wrapper … | head`). Close the child's
            // pipe too, so the child sees EPIPE exactly as it would have without wrapper.
            pipe.out = None;
            pipe.fd = None;
        }
    }
    if let Some(w) = &mut pipe.watch {
        w(&pipe.buf);
    }
    if let Some(tx) = chunks {
        // A short read (a pty gives one per line written) is copied out, so that what waits
        // in the queue, bounded in bytes of capacity (`queue::MEM_BYTES`), is what it holds;
        // the buffer stays for the next read. A long one takes the buffer with it.
        let data = if n <= CHUNK / 4 {
            pipe.buf.to_vec()
        } else {
            std::mem::take(&mut pipe.buf)
        };
        if tx
            .send(Chunk {
                stream: pipe.stream,
                data,
                at,
            })
            .is_err()
        {
            *chunks = None;
        }
    }
    Some(n)
}

/// Writes all of `buf` to a raw fd, waiting (not spinning) if it is non-blocking.
fn write_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: writes from a valid slice to a descriptor wrapper inherited.
        let r = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if r >= 0 {
            buf = &buf[r as usize..];
            continue;
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => {
                // SAFETY: `fd` stays open for the duration of this call.
                let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
                let mut fds = [PollFd::new(bfd, PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::NONE);
            }
            _ => return Err(err),
        }
    }
    Ok(())
}
