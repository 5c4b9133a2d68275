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
use std::time::{Duration, Instant};

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
}

/// Messages the screen may be ahead of the rules: each is one read's lines (at most a pty
/// read, 4 KiB) or a settle's rows.
const AHEAD: usize = 64;

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
    let (cols, rows) = unpack(setup.size.load(Ordering::Relaxed));
    let mut screen = Screen::new(cols, rows);
    // When what the screen shows last changed: by the clock (for waiting), and as read
    // (a chunk read `prompt_idle` after the last change settles the screen before it is
    // drawn, however late the screen gets to it — it may be behind after a flood).
    let mut last: Option<(Instant, Arc<str>)> = None;
    let mut last_change: Option<std::time::SystemTime> = None;
    loop {
        let settle_at = last
            .as_ref()
            .filter(|_| screen.changed())
            .map(|(t, _)| *t + prompt_idle);
        let msg = rx.recv_timeout(settle_at.map(|at| at.saturating_duration_since(Instant::now())));
        match msg {
            Ok(chunk) => {
                let gap = last_change
                    .and_then(|t| chunk.at.duration_since(t).ok())
                    .is_some_and(|g| g >= prompt_idle);
                if gap && screen.changed() {
                    if let Some((_, ts)) = &last {
                        settle(&mut screen, &ts.clone(), &mut show);
                    }
                }
                let before = screen.fingerprint();
                let ts: Arc<str> = format_timestamp(chunk.at).into();
                let size = unpack(setup.size.load(Ordering::Relaxed));
                let mut lines = Vec::new();
                if size != screen.size() {
                    if let Some(tap) = tap {
                        tap.resize(size.0, size.1, chunk.at);
                    }
                    lines = screen.resize(size.0, size.1);
                }
                lines.extend(screen.feed(&chunk.data));
                if !lines.is_empty() {
                    show(Shown::Lines(joined(&lines), ts.clone()));
                }
                if let Some(tap) = tap {
                    tap.output(chunk.stream, chunk.data, chunk.at);
                }
                if screen.fingerprint() != before || last.is_none() {
                    last_change = Some(chunk.at);
                    last = Some((Instant::now(), ts));
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                let ts = last
                    .as_ref()
                    .map(|(_, ts)| ts.clone())
                    .unwrap_or_else(|| now_timestamp().into());
                settle(&mut screen, &ts, &mut show);
            }
            Err(RecvTimeoutError::Disconnected) => {
                let ts: Arc<str> = now_timestamp().into();
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
