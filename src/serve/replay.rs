//! A captured session over HTTP: `GET /api/replay/session/{id}` streams its output as
//! Server-Sent Events with the original timing (scaled by `speed`, from `from` seconds on,
//! pauses cut to `idle_limit`), and `GET /api/export/session/{id}.cast` is the asciicast
//! file that `asciinema play` and the page's player read (`.txt`, `.jsonl`, `?format=
//! asciicast-v3` too).
//!
//! Both reuse the one join of capture and events into `cast::Entry`s (`cmd::export`), so a
//! replay, an export and the terminal player show the same thing. The frames are read on a
//! blocking thread, one compressed block at a time, into a small bounded channel: memory
//! stays at a block or two whatever the session's length, and a slow or paused client holds
//! back the reader instead of filling memory. Neither holds a read transaction for the
//! length of a replay, so wrappers' checkpoints are never held up.

use std::convert::Infallible;
use std::io::Write;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::error::ApiError;
use super::params::{self, Params, Segment};
use super::AppState;
use crate::cast::{self, timing, Entry, Format};
use crate::cmd::export::{self, ExportOptions, Markers};
use crate::store::capture::{self as cap, Mode};
use crate::store::query::{self, QueryError};

/// The session id behind a prefix, with a capture that can be read: 404 otherwise.
fn captured(c: &rusqlite::Connection, given: &str) -> Result<String, ApiError> {
    let id = query::resolve_session(c, given)?;
    match cap::info(c, &id).map_err(QueryError::from)? {
        None => Err(ApiError::not_found(
            "no_capture",
            format!("session {id} has no captured output (recorded with --no-capture, or before capture existed); its events are at /api/query/extractions?session={id}"),
        )),
        Some(i) if i.dropped_at.is_some() => Err(ApiError::not_found(
            "no_capture",
            format!("the captured output of session {id} was dropped by `wrapper prune --captures-older-than`; its events remain"),
        )),
        Some(_) => Ok(id),
    }
}

fn cli(e: crate::error::CliError) -> ApiError {
    ApiError::internal(format!("reading the capture: {e}"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    pub format: Option<String>,
    pub idle_limit: Option<String>,
}

/// `GET /api/export/session/{id}.cast` (or `.txt`, `.jsonl`; `?format=asciicast-v3`).
pub async fn export(
    State(app): State<AppState>,
    Segment(file): Segment,
    Params(p): Params<ExportParams>,
) -> Result<Response, ApiError> {
    let (given, ext) = file.rsplit_once('.').ok_or_else(|| {
        ApiError::not_found(
            "not_found",
            "ask for SESSION.cast, SESSION.txt or SESSION.jsonl",
        )
    })?;
    let format = match (ext, params::text(p.format).as_deref()) {
        ("cast", None | Some("asciicast" | "asciicast-v2")) => Format::Asciicast,
        ("cast", Some("asciicast-v3")) => Format::AsciicastV3,
        ("txt", None) => Format::Txt,
        ("jsonl", None) => Format::Jsonl,
        (_, Some(f)) => {
            return Err(ApiError::bad_filter(format!(
                "format: {f:?} is not asciicast or asciicast-v3 (and only .cast takes it)"
            )))
        }
        _ => {
            return Err(ApiError::not_found(
                "not_found",
                "ask for SESSION.cast, SESSION.txt or SESSION.jsonl",
            ))
        }
    };
    let idle_limit_us = seconds("idle_limit", p.idle_limit.as_deref())?.map(|s| (s * 1e6) as u64);
    let given = given.to_string();
    let is_jsonl = format == Format::Jsonl;
    let id = app
        .db
        .read(move |c| {
            if is_jsonl {
                Ok(query::resolve_session(c, &given)?)
            } else {
                captured(c, &given)
            }
        })
        .await?;
    let opts = ExportOptions {
        format,
        size: None,
        markers: Markers::parse("error,prompt"),
        idle_limit_us,
        raw_newlines: false,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let db = app.db.clone();
    let sid = id.clone();
    tokio::task::spawn_blocking(move || {
        let _ = db.with_connection(|c| {
            let mut out = ChannelWriter {
                tx,
                buf: Vec::new(),
            };
            if let Err(e) = export::write_session(c, &sid, &opts, &mut out) {
                tracing::warn!("export of {sid} stopped: {e}");
            }
            let _ = out.flush();
            Ok(())
        });
    });
    let body = Body::from_stream(stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    }));
    let (ctype, ext) = match format {
        Format::Asciicast | Format::AsciicastV3 => ("application/x-asciicast", "cast"),
        Format::Txt => ("text/plain; charset=utf-8", "txt"),
        Format::Jsonl => ("application/jsonl", "jsonl"),
    };
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{id}.{ext}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

/// Bytes written by an encoder, sent on in pieces of about 64 KiB.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 64 << 10 {
            self.flush()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayParams {
    pub speed: Option<String>,
    pub from: Option<String>,
    pub idle_limit: Option<String>,
}

/// Seconds as a decimal number (`2`, `0.5`), or a duration (`1m30s`).
fn seconds(name: &str, v: Option<&str>) -> Result<Option<f64>, ApiError> {
    let Some(s) = v.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let secs = s
        .parse::<f64>()
        .ok()
        .or_else(|| humantime::parse_duration(s).ok().map(|d| d.as_secs_f64()))
        .filter(|x| x.is_finite() && *x >= 0.0)
        .ok_or_else(|| {
            ApiError::bad_filter(format!(
                "{name}: {s:?} is not a number of seconds (2, 0.5) or a duration (1m30s)"
            ))
        })?;
    Ok(Some(secs))
}

#[derive(Serialize)]
struct Start {
    session_id: String,
    cols: u16,
    rows: u16,
    /// Unix seconds of the session's start.
    timestamp: i64,
    speed: f64,
    from: f64,
}

/// What the blocking reader hands to the timing task.
enum Item {
    Start(Start),
    Entry(Entry),
    Failed(String),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Wire<'a> {
    /// Output as text (lossy UTF-8; capture never splits a UTF-8 sequence between frames).
    Output {
        t: f64,
        stream: &'a str,
        data: String,
    },
    Resize {
        t: f64,
        cols: u16,
        rows: u16,
    },
    Marker {
        t: f64,
        label: &'a str,
    },
    Exit {
        t: f64,
        code: i32,
    },
}

fn wire(e: &Entry) -> Result<Event, axum::Error> {
    let secs = |us: u64| us as f64 / 1e6;
    let (name, w) = match e {
        Entry::Output {
            at_us,
            stream,
            data,
        } => (
            "output",
            Wire::Output {
                t: secs(*at_us),
                stream,
                data: String::from_utf8_lossy(data).into_owned(),
            },
        ),
        Entry::Resize { at_us, cols, rows } => (
            "resize",
            Wire::Resize {
                t: secs(*at_us),
                cols: *cols,
                rows: *rows,
            },
        ),
        Entry::Marker { at_us, label } => (
            "marker",
            Wire::Marker {
                t: secs(*at_us),
                label,
            },
        ),
        Entry::Exit { at_us, code } => (
            "exit",
            Wire::Exit {
                t: secs(*at_us),
                code: *code,
            },
        ),
    };
    Event::default().event(name).json_data(w)
}

/// Reads the session's entries in order, timed for playback, into `tx`.
fn read_entries(
    c: &rusqlite::Connection,
    id: &str,
    speed: f64,
    from: f64,
    idle: Option<f64>,
    tx: &mpsc::Sender<Item>,
) {
    let send = |i: Item| tx.blocking_send(i).is_ok();
    let l = match export::load(c, id, None, &Markers::parse("error,prompt")) {
        Ok(l) => l,
        Err(e) => {
            send(Item::Failed(cli(e).message));
            return;
        }
    };
    let start = Start {
        session_id: id.to_string(),
        cols: l.header.cols,
        rows: l.header.rows,
        timestamp: l.header.timestamp,
        speed,
        from,
    };
    if !send(Item::Start(start)) {
        return;
    }
    let it = match export::entries(c, &l, 0) {
        Ok(it) => it,
        Err(e) => {
            send(Item::Failed(cli(e).message));
            return;
        }
    };
    let mut failed = None;
    let it = it.map_while(|e| match e {
        Ok(e) => Some(e),
        Err(err) => {
            failed = Some(cli(err).message);
            None
        }
    });
    let it = timing::starting_at(it, (from * 1e6) as u64);
    let it: Box<dyn Iterator<Item = Entry>> = match idle {
        Some(s) => Box::new(timing::idle_limit(it, (s * 1e6) as u64)),
        None => Box::new(it),
    };
    let it: Box<dyn Iterator<Item = Entry>> = if l.info.mode == Mode::Pipe {
        Box::new(cast::onlcr(it))
    } else {
        it
    };
    for e in timing::speed(it, speed) {
        if !send(Item::Entry(e)) {
            return;
        }
    }
    if let Some(m) = failed {
        send(Item::Failed(m));
    }
}

/// `GET /api/replay/session/{id}?speed=1.0&from=SECONDS&idle_limit=SECONDS`: `start`, then
/// `output`/`resize`/`marker`/`exit` events at their (scaled) times, then `end`.
pub async fn replay(
    State(app): State<AppState>,
    Segment(given): Segment,
    Params(p): Params<ReplayParams>,
) -> Result<Response, ApiError> {
    let speed = seconds("speed", p.speed.as_deref())?.unwrap_or(1.0);
    if !(0.01..=1000.0).contains(&speed) {
        return Err(ApiError::bad_filter(
            "speed: give a factor from 0.01 to 1000 (1 is the original timing)",
        ));
    }
    let from = seconds("from", p.from.as_deref())?.unwrap_or(0.0);
    let idle = seconds("idle_limit", p.idle_limit.as_deref())?;
    let id = app.db.read(move |c| captured(c, &given)).await?;

    let (itx, mut irx) = mpsc::channel::<Item>(64);
    let db = app.db.clone();
    tokio::task::spawn_blocking(move || {
        let _ = db.with_connection(|c| {
            read_entries(c, &id, speed, from, idle, &itx);
            Ok(())
        });
    });
    let (tx, rx) = mpsc::channel::<Event>(16);
    let mut stop = app.stop.clone();
    tokio::spawn(async move {
        let began = tokio::time::Instant::now();
        loop {
            let next = tokio::select! {
                n = irx.recv() => n,
                _ = stop.wait_for(|s| *s) => return,
            };
            let (ev, last) = match next {
                None => (Ok(Event::default().event("end").data("")), true),
                Some(Item::Failed(m)) => (Ok(Event::default().event("error").data(m)), true),
                Some(Item::Start(s)) => (Event::default().event("start").json_data(&s), false),
                Some(Item::Entry(e)) => {
                    let due = began + Duration::from_micros(e.at_us());
                    tokio::select! {
                        _ = tokio::time::sleep_until(due) => {},
                        _ = stop.wait_for(|s| *s) => return,
                        _ = tx.closed() => return,
                    }
                    (wire(&e), false)
                }
            };
            let Ok(ev) = ev else { continue };
            if tx.send(ev).await.is_err() || last {
                return;
            }
        }
    });
    let events = stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    let mut r = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(app.keep_alive).text(""))
        .into_response();
    r.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(r)
}
