//! The capture tap: a thread beside extraction that turns the agent's output into redacted,
//! compressed blocks ([`crate::capture`]) and hands them to the writer.
//!
//! The tap is fed by the extraction thread with chunks it has already used (moved, not
//! copied), so passthrough never waits for it: between the pump and extraction sits the
//! spill queue (`run/queue.rs`), and between extraction and this thread a small bounded
//! channel. Masking, compression and storing happen here, off both of those threads.
//!
//! PTY mode feeds the same tap: its chunks carry `Stream::Pty`, and a resize is one call to
//! [`CaptureTap::resize`] from wherever SIGWINCH is handled.

use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::queue::Chunk;
use crate::capture::{Encoder, Masker, Totals};
use crate::event::Stream;
use crate::extract::rules::RuleBook;
use crate::extract::Redactor;
use crate::store::capture::{Mode, Write};
use crate::store::writer::Msg;

/// Chunks that may wait for the capture thread (each up to one 64 KiB read).
const DEPTH: usize = 16;

enum Tap {
    Output(Stream, Vec<u8>, SystemTime),
    Outputs(Vec<Chunk>),
    Resize(u16, u16, SystemTime),
}

/// Where output goes to be captured. Cheap to clone; dropping every clone ends capture.
#[derive(Clone)]
pub struct CaptureTap {
    tx: SyncSender<Tap>,
}

impl CaptureTap {
    /// Bytes of `stream` read at `at`. Waits if the capture thread is behind (never call
    /// this from the thread that passes output through).
    pub fn output(&self, stream: Stream, bytes: Vec<u8>, at: SystemTime) {
        let _ = self.tx.send(Tap::Output(stream, bytes, at));
    }

    /// Reads in order, in one message (the capture thread wakes once for them).
    pub fn outputs(&self, reads: Vec<Chunk>) {
        if !reads.is_empty() {
            let _ = self.tx.send(Tap::Outputs(reads));
        }
    }

    /// The pty was resized to `cols`×`rows` at `at`.
    pub fn resize(&self, cols: u16, rows: u16, at: SystemTime) {
        let _ = self.tx.send(Tap::Resize(cols, rows, at));
    }
}

/// The running capture thread.
pub struct Capture {
    handle: JoinHandle<Totals>,
}

impl Capture {
    /// Waits until everything sent to the tap is stored (all taps must be dropped first).
    pub fn finish(self) -> Totals {
        self.handle.join().unwrap_or_default()
    }
}

/// How long output may wait in an unsealed block: a live reader (`wrapper serve`, a replay
/// of a running session) sees it within this, and quiet sessions still get blocks of many
/// frames.
const SEAL_AFTER: Duration = Duration::from_secs(1);

/// Starts capturing: offsets count from `t0`; blocks go to `writer`. The masking rules are
/// `book`'s `[[redact]]` rules (`redact = false`: none), as `redactor` (the one extraction
/// uses) applies them; their prefilter is compiled on the capture thread so the agent's
/// start does not wait; if it cannot be compiled every segment is checked on its own.
pub fn start(
    book: RuleBook,
    redactor: Arc<Redactor>,
    redact: bool,
    t0: SystemTime,
    mode: Mode,
    size: Option<(u16, u16)>,
    writer: SyncSender<Msg>,
) -> std::io::Result<(CaptureTap, Capture)> {
    let (tx, rx) = sync_channel(DEPTH);
    let t0_us = t0
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let handle = thread::Builder::new()
        .name("wrapper-capture".into())
        .spawn(move || {
            super::nice::background(super::nice::Recorder::Capture);
            // A copy of its own, as extraction has (see `Redactor`).
            let masker = Masker::new(Arc::new(Redactor::clone(&redactor)), &book, redact);
            drop(book);
            let _ = writer.send(Msg::Capture(Write::Start { t0_us, mode, size }));
            capture_loop(rx, Encoder::new(masker, t0), writer)
        })?;
    Ok((CaptureTap { tx }, Capture { handle }))
}

fn capture_loop(rx: Receiver<Tap>, mut enc: Encoder, writer: SyncSender<Msg>) -> Totals {
    let send = |blocks: Vec<_>| {
        if !blocks.is_empty() {
            let _ = writer.send(Msg::Capture(Write::Blocks(blocks)));
        }
    };
    let mut unsealed_since: Option<Instant> = None;
    loop {
        let msg = match unsealed_since {
            Some(t) => rx.recv_timeout(SEAL_AFTER.saturating_sub(t.elapsed())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match msg {
            Ok(Tap::Output(s, b, at)) => enc.output(s, &b, at),
            Ok(Tap::Outputs(reads)) => {
                for r in reads {
                    enc.output(r.stream, &r.data, r.at);
                }
            }
            Ok(Tap::Resize(c, r, at)) => enc.resize(c, r, at),
            Err(RecvTimeoutError::Timeout) => enc.seal(),
            Err(RecvTimeoutError::Disconnected) => {
                send(enc.finish());
                return enc.totals();
            }
        }
        send(enc.take());
        unsealed_since = match (enc.has_unsealed(), unsealed_since) {
            (false, _) => None,
            (true, None) => Some(Instant::now()),
            (true, since) => since,
        };
    }
}
