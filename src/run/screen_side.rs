//! PTY mode's extraction: the screen model on a thread of its own, the rules on the
//! extraction thread, in the order the screen showed things.
//!
//! In PTY mode every byte goes through a virtual terminal ([`crate::screen`]) before its
//! committed lines reach the rules. Both on one thread, a flood printed through the pty
//! kept that thread busy while the other core had time to spare: `perf` of
//! `wrapper --pty --db` on the benchmark's log put 58% of the run's samples on it, about
//! half of them in the screen model (avt's parser and buffer, the transcript). So the screen
//! model runs on a thread of its own (`wrapper-screen`), which reads the pump's queue, feeds
//! the capture, decides when the screen has settled, and sends what it shows, in order, to
//! the extraction thread: the lines each read committed, and the live rows at each settle.
//! The channel between them is bounded ([`AHEAD`] messages): a screen running ahead of the
//! rules waits, and the pump's queue (which spills to disk) takes up the slack, as before.
//! Should the thread not start, the screen model runs on the extraction thread as it did.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::pty_mode::ScreenSetup;
use super::queue;
use crate::event::{format_timestamp, now_timestamp};
use crate::extract::Extractor;
use crate::screen::Screen;
use crate::store::writer::Msg;

/// What the screen showed, for the rules.
enum Shown {
    /// Lines the screen committed (each ended by `\n`), read at this time.
    Lines(Vec<u8>, Arc<str>),
    /// The primary screen's live rows at a settle.
    Live(Vec<String>, Arc<str>),
    /// The output ended at this time.
    End(Arc<str>),
    /// Several of the above, in order, in one message.
    Many(Vec<Shown>),
}

/// Messages the screen may be ahead of the rules: each is one feed's lines (at most
/// [`FEED_BYTES`] of output) or a settle's rows.
const AHEAD: usize = 64;

/// Most output fed to the screen at once: reads that wait in the queue (the screen is
/// behind) are fed together, up to this many bytes.
///
/// A program printing line by line on a pty is read a line or two at a time (~120 bytes a
/// read under `cat`, strace), and the screen model fast-forwards only over reads that hold
/// more lines than the screen has rows (`screen/fast.rs`); fed together, a flood's reads are.
/// Each read still goes to the capture on its own, with its own time.
const FEED_BYTES: usize = 64 * 1024;

/// The longest span of read times fed together. Lines committed by a feed carry the time of
/// its last read, so this bounds how much later than its read a line's time can be (only
/// when the screen is behind, and never across a pause the screen may settle in: at most
/// half of `prompt_idle`).
const FEED_SPAN: Duration = Duration::from_millis(20);

/// The extraction thread in PTY mode: the bytes go through the screen model; its committed
/// lines are matched as lines of stream `pty`, and once nothing has been drawn for
/// `prompt_idle` the screen settles: the alternate screen's new rows become lines and the
/// live rows go to the prompt rules. Returns the lines and events extracted.
pub(super) fn extract(
    rx: queue::Receiver,
    mut x: Extractor,
    sink: SyncSender<Msg>,
    prompt_idle: Duration,
    setup: ScreenSetup,
    tap: Option<super::capture::CaptureTap>,
    agent_log: Option<crate::agents::LogQuery>,
) -> (u64, u64) {
    let mut out = super::ToWriter::new(sink);
    let (tx, shown) = mpsc::sync_channel::<Shown>(AHEAD);
    let (rx, setup, tap) = (&rx, &setup, tap.as_ref());
    thread::scope(|scope| {
        // The thread borrows the queue: should it not start, the queue is still here.
        let spawned = thread::Builder::new()
            .name("wrapper-screen".into())
            .spawn_scoped(scope, move || {
                super::nice::background(super::nice::Recorder::Reader);
                model(rx, prompt_idle, setup, tap, |s| {
                    let _ = tx.send(s);
                })
            });
        let handle = match spawned {
            Ok(handle) => handle,
            Err(e) => {
                tracing::debug!("cannot start the screen thread ({e}); the screen runs here");
                return model(rx, prompt_idle, setup, tap, |s| {
                    apply(&mut x, s, &agent_log);
                    out.send(&mut x);
                });
            }
        };
        let mut ended = false;
        for s in shown.iter() {
            ended |= matches!(s, Shown::End(_));
            apply(&mut x, s, &agent_log);
            out.send(&mut x);
        }
        if !ended {
            // The screen thread died (a panic in the virtual terminal): what was extracted
            // so far is finished and stored all the same.
            tracing::error!("the screen model stopped early: later output is shown, not recorded");
            apply(&mut x, Shown::End(now_timestamp().into()), &agent_log);
        }
        // Joined here, so that a panic of its is not raised again by the scope.
        let _ = handle.join();
    });
    out.send(&mut x);
    (x.lines(), x.events())
}

/// What the rules make of what the screen showed.
fn apply(x: &mut Extractor, s: Shown, agent_log: &Option<crate::agents::LogQuery>) {
    match s {
        Shown::Many(all) => {
            for s in all {
                apply(x, s, agent_log);
            }
        }
        Shown::Lines(lines, ts) => x.screen_lines(&lines, &ts),
        Shown::Live(rows, ts) => x.screen_prompts(&rows, &ts),
        Shown::End(ts) => {
            x.finish(&ts);
            if let Some(q) = agent_log {
                super::read_agent_log(q, x);
            }
        }
    }
}

/// How long what a feed yields (lines for the rules, reads for the capture) may wait to be
/// handed on with the next feeds', and how much of it.
///
/// A program printing line by line on a pty is read a line or two at a time, and handing each
/// read's yield on at once woke the extraction and capture threads (and, through extraction,
/// the writer) for every read: with the input piped into `cat` on a pty, 141 k context
/// switches for 300 k lines against 52 k without the database, on a run that is not CPU-bound
/// but a chain (the kernel's echo, `cat`, the pump) that every wakeup on its cores lengthens.
/// Handed on together, they wake once for many reads. Order and times are kept (each feed's
/// lines keep their own time, each read its own); everything waiting is handed on before a
/// settle and at the end.
const OUTBOX_WAIT: Duration = Duration::from_millis(20);
const OUTBOX_BYTES: usize = 32 * 1024;

/// While something waits to be handed on (a burst of output), the screen thread reads the
/// queue this often instead of being woken by every read.
const BURST_PAUSE: Duration = Duration::from_millis(2);

/// What waits to be handed on ([`OUTBOX_WAIT`]).
#[derive(Default)]
struct Outbox {
    shown: Vec<Shown>,
    capture: Vec<ForCapture>,
    bytes: usize,
    since: Option<Instant>,
}

enum ForCapture {
    Output(queue::Chunk),
    Resize(u16, u16, std::time::SystemTime),
}

impl Outbox {
    fn add(&mut self, bytes: usize) {
        self.bytes += bytes;
        self.since.get_or_insert_with(Instant::now);
    }

    /// When it must be handed on at the latest.
    fn due(&self) -> Option<Instant> {
        self.since.map(|t| t + OUTBOX_WAIT)
    }

    fn flush(&mut self, show: &mut impl FnMut(Shown), tap: Option<&super::capture::CaptureTap>) {
        match self.shown.len() {
            0 => {}
            1 => self.shown.drain(..).for_each(&mut *show),
            _ => show(Shown::Many(std::mem::take(&mut self.shown))),
        }
        // (Nothing is put here for the capture without a tap.)
        if let Some(tap) = tap {
            let mut reads = Vec::new();
            for c in self.capture.drain(..) {
                match c {
                    ForCapture::Output(r) => reads.push(r),
                    ForCapture::Resize(cols, rows, at) => {
                        tap.outputs(std::mem::take(&mut reads));
                        tap.resize(cols, rows, at);
                    }
                }
            }
            tap.outputs(reads);
        }
        self.bytes = 0;
        self.since = None;
    }
}

/// The screen model: reads the queue until the pump is done, feeding the screen and the
/// capture, and gives `show` what the screen shows, in order, ending with [`Shown::End`].
fn model(
    rx: &queue::Receiver,
    prompt_idle: Duration,
    setup: &ScreenSetup,
    tap: Option<&super::capture::CaptureTap>,
    mut show: impl FnMut(Shown),
) {
    let unpack = |v: u32| ((v >> 16) as u16, (v & 0xffff) as u16);
    // The size the agent started with: a resize before this thread got going is one of the
    // changes below, at its time.
    let mut screen = Screen::new(setup.start.0, setup.start.1);
    // When what the screen shows last changed: by the clock (for waiting), and as read
    // (a chunk read `prompt_idle` after the last change settles the screen before it is
    // drawn, however late the screen gets to it — it may be behind after a flood).
    let mut last: Option<(Instant, Arc<str>)> = None;
    let mut last_change: Option<std::time::SystemTime> = None;
    let span = FEED_SPAN.min(prompt_idle / 2);
    // A read taken from the queue that could not join the feed before it.
    let mut held: Option<queue::Chunk> = None;
    let mut outbox = Outbox::default();
    loop {
        let settle_at = last
            .as_ref()
            .filter(|_| screen.changed())
            .map(|(t, _)| *t + prompt_idle);
        let wake_at = settle_at.into_iter().chain(outbox.due()).min();
        let msg = match held.take() {
            Some(chunk) => Ok(chunk),
            None => {
                let wait = |rx: &queue::Receiver| {
                    rx.recv_timeout(wake_at.map(|at| at.saturating_duration_since(Instant::now())))
                };
                if outbox.since.is_some() {
                    // In a burst of output: if nothing waits, the reads that come meanwhile
                    // are fed together, rather than each waking this thread (OUTBOX_WAIT).
                    match rx.recv_timeout(Some(Duration::ZERO)) {
                        Err(RecvTimeoutError::Timeout) => {
                            thread::sleep(BURST_PAUSE);
                            wait(rx)
                        }
                        got => got,
                    }
                } else {
                    wait(rx)
                }
            }
        };
        match msg {
            Ok(chunk) => {
                let gap = last_change
                    .and_then(|t| chunk.at.duration_since(t).ok())
                    .is_some_and(|g| g >= prompt_idle);
                if gap && screen.changed() {
                    if let Some((_, ts)) = &last {
                        outbox.flush(&mut show, tap);
                        settle(&mut screen, &ts.clone(), &mut show);
                    }
                }
                let before = screen.fingerprint();
                // The reads waiting behind this one, fed with it (see FEED_BYTES).
                let first_at = chunk.at;
                let mut at = chunk.at;
                let mut total = chunk.data.len();
                let mut reads = vec![chunk];
                while total < FEED_BYTES {
                    let Ok(next) = rx.recv_timeout(Some(Duration::ZERO)) else {
                        break;
                    };
                    // (A clock stepped back ends the feed too.)
                    if next.at.duration_since(first_at).map_or(true, |d| d > span) {
                        held = Some(next);
                        break;
                    }
                    at = next.at;
                    total += next.data.len();
                    reads.push(next);
                }
                let ts: Arc<str> = format_timestamp(at).into();
                // A resize since the last feed goes between the reads before it and those
                // after (the last size, at the last change's time, if there were several).
                let size = unpack(setup.size.load(Ordering::Acquire));
                let resize = (size != screen.size()).then(|| {
                    let us = setup.resized_at_us.load(Ordering::Relaxed);
                    UNIX_EPOCH + Duration::from_micros(us)
                });
                let split = resize.map_or(reads.len(), |r| reads.partition_point(|c| c.at < r));
                let mut lines = feed_reads(&mut screen, &reads[..split]);
                if resize.is_some() {
                    lines.extend(screen.resize(size.0, size.1));
                }
                lines.extend(feed_reads(&mut screen, &reads[split..]));
                outbox.add(total);
                if !lines.is_empty() {
                    outbox.shown.push(Shown::Lines(joined(&lines), ts.clone()));
                }
                if tap.is_some() {
                    let mut reads = reads.into_iter();
                    let c = &mut outbox.capture;
                    c.extend(reads.by_ref().take(split).map(ForCapture::Output));
                    if let Some(r) = resize {
                        c.push(ForCapture::Resize(size.0, size.1, r.max(first_at)));
                    }
                    c.extend(reads.map(ForCapture::Output));
                }
                if outbox.bytes >= OUTBOX_BYTES {
                    outbox.flush(&mut show, tap);
                }
                if screen.fingerprint() != before || last.is_none() {
                    last_change = Some(at);
                    last = Some((Instant::now(), ts));
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                let settle_now = settle_at.is_some_and(|t| t <= now);
                if settle_now || outbox.due().is_some_and(|t| t <= now) {
                    outbox.flush(&mut show, tap);
                }
                if settle_now {
                    let ts = last
                        .as_ref()
                        .map(|(_, ts)| ts.clone())
                        .unwrap_or_else(|| now_timestamp().into());
                    settle(&mut screen, &ts, &mut show);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                outbox.flush(&mut show, tap);
                let ts: Arc<str> = now_timestamp().into();
                tracing::debug!(
                    "the screen model fast-forwarded over {} lines",
                    screen.skipped_lines()
                );
                let lines = screen.finish();
                if !lines.is_empty() {
                    show(Shown::Lines(joined(&lines), ts.clone()));
                }
                show(Shown::End(ts));
                return;
            }
        }
    }
}

/// Feeds `reads` to the screen as one piece of output; the lines they commit.
fn feed_reads(screen: &mut Screen, reads: &[queue::Chunk]) -> Vec<String> {
    match reads {
        [] => Vec::new(),
        [one] => screen.feed(&one.data),
        many => {
            let mut data = Vec::with_capacity(many.iter().map(|c| c.data.len()).sum());
            for c in many {
                data.extend_from_slice(&c.data);
            }
            screen.feed(&data)
        }
    }
}

/// Nothing drawn for `prompt_idle`: the settled screen's new rows and live rows.
fn settle(screen: &mut Screen, ts: &Arc<str>, show: &mut impl FnMut(Shown)) {
    let settled = screen.settle();
    if !settled.lines.is_empty() {
        show(Shown::Lines(joined(&settled.lines), ts.clone()));
    }
    show(Shown::Live(settled.live, ts.clone()));
}

/// Lines as the rules read them: each ended by `\n`.
fn joined(lines: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for l in lines {
        out.extend_from_slice(l.as_bytes());
        out.push(b'\n');
    }
    out
}
