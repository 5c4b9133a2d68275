//! The live tail: `GET /api/events/stream` as Server-Sent Events, carrying events as any
//! wrapper process commits them.
//!
//! The writers are other processes, so nothing can push to us: one poller thread watches the
//! database (`PRAGMA data_version` changes when another connection commits; reading it costs
//! no I/O) and publishes the newest event id on a `watch` channel. Each client then reads
//! what it has not seen with the same query layer as every other endpoint
//! (`query::events_after`, its filters in SQL), so there is one definition of what a filter
//! means. A `watch` holds only the latest value: a slow client is never "lagged" and never
//! loses events, it just reads a longer batch next time.
//!
//! Every event carries `id: <extraction_events.id>`. A client that reconnects sends
//! `Last-Event-ID` (browsers do it by themselves) and gets exactly the events after it;
//! without one the stream starts at the newest event (or after `?after=ID`). Comments keep
//! idle connections alive through proxies. The stream ends when the server shuts down.

use std::convert::Infallible;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use tokio::sync::{mpsc, watch};

use super::error::ApiError;
use super::params::{self, EventParams, Params};
use super::AppState;
use crate::store::query::{self, EventFilter};
use crate::store::{self, OpenMode};

/// Events read per query while catching up.
const BATCH: u64 = 500;

/// Starts the poller thread; it stops when `stop` turns true. Returns the channel of the
/// newest committed event id.
pub fn start_poller(
    path: std::path::PathBuf,
    interval: Duration,
    first: i64,
    mut stop: watch::Receiver<bool>,
) -> (watch::Sender<i64>, thread::JoinHandle<()>) {
    let (tx, _) = watch::channel(first);
    let head = tx.clone();
    let handle = thread::Builder::new()
        .name("serve-tail".into())
        .spawn(move || {
            let mut conn = None;
            let mut version = None;
            while !*stop.borrow_and_update() {
                // Idle while no client listens; a new client reads the head itself.
                if head.receiver_count() > 0 {
                    poll_once(&path, &mut conn, &mut version, &head);
                }
                thread::sleep(interval);
            }
        })
        .map_err(|e| tracing::error!("cannot start the tail thread: {e}"))
        .ok();
    (tx, handle.unwrap_or_else(|| thread::spawn(|| {})))
}

fn poll_once(
    path: &std::path::Path,
    conn: &mut Option<rusqlite::Connection>,
    version: &mut Option<i64>,
    head: &watch::Sender<i64>,
) {
    if conn.is_none() {
        *conn = store::open(path, OpenMode::ReadOnly).ok();
        *version = None;
    }
    let Some(c) = conn.as_ref() else { return };
    let v: rusqlite::Result<i64> = c.query_row("PRAGMA data_version", [], |r| r.get(0));
    match v {
        Ok(v) if Some(v) == *version => {}
        Ok(v) => match query::last_event_id(c) {
            Ok(id) => {
                *version = Some(v);
                tracing::debug!("tail: data_version {v}, newest event {id}");
                head.send_if_modified(|h| {
                    let changed = id != *h;
                    *h = id;
                    changed
                });
            }
            Err(e) => {
                tracing::debug!("tail: {e}");
                *conn = None;
            }
        },
        Err(e) => {
            tracing::debug!("tail: {e}");
            *conn = None;
        }
    }
}

/// `GET /api/events/stream?agent=&session=&type=&pattern=&risk=&after=`.
pub async fn stream(
    State(app): State<AppState>,
    headers: HeaderMap,
    Params(p): Params<EventParams>,
) -> Result<Response, ApiError> {
    if p.limit.is_some() || p.page.is_some() || p.since.is_some() || p.until.is_some() {
        return Err(ApiError::bad_filter(
            "the stream takes agent, session, type, pattern, risk and after; limit, page, since and until are for /api/query/extractions",
        ));
    }
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::bad_filter("Last-Event-ID: not an event id"))?,
        ),
        None => params::number("after", p.after.as_deref())?
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
    };
    let session = params::text(p.session);
    let mut filter = EventFilter {
        agent: params::text(p.agent),
        event_type: params::text(p.event_type),
        pattern: params::text(p.pattern),
        risk: params::risk(p.risk)?,
        limit: BATCH,
        ..Default::default()
    };
    let db = app.db.clone();
    let (session, start) = db
        .read(move |c| {
            let session = session.map(|s| query::resolve_session(c, &s)).transpose()?;
            let start = match resume {
                Some(id) => id,
                None => query::last_event_id(c)?,
            };
            Ok((session, start))
        })
        .await?;
    filter.session = session;

    let (tx, rx) = mpsc::channel::<Event>(64);
    tokio::spawn(follow(app.clone(), filter, start, tx));
    let events = stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    let mut r = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(app.keep_alive).text(""))
        .into_response();
    // Tell proxies (nginx) not to buffer, and no layer may compress an event stream.
    r.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(r)
}

/// Sends the client every matching event after `cursor`, then each new one as it is
/// committed, until the client goes away or the server stops.
async fn follow(app: AppState, filter: EventFilter, mut cursor: i64, tx: mpsc::Sender<Event>) {
    let mut head = app.head.subscribe();
    let mut stop = app.stop.clone();
    let hello = Event::default()
        .event("ready")
        .retry(Duration::from_secs(2))
        .data(cursor.to_string());
    if tx.send(hello).await.is_err() {
        return;
    }
    let filter = Arc::new(filter);
    loop {
        // Every event up to `target` is visible to a snapshot taken after reading it.
        let target = *head.borrow_and_update();
        loop {
            let f = filter.clone();
            let from = cursor;
            let batch = match app
                .db
                .read(move |c| Ok(query::events_after(c, &f, from)?))
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx
                        .send(Event::default().event("error").data(e.message))
                        .await;
                    return;
                }
            };
            let full = batch.len() as u64 == BATCH;
            for e in batch {
                let id = e.id;
                let ev = match Event::default()
                    .event("extraction")
                    .id(id.to_string())
                    .json_data(&e)
                {
                    Ok(ev) => ev,
                    Err(_) => continue,
                };
                if tx.send(ev).await.is_err() {
                    return;
                }
                cursor = id;
            }
            if !full {
                cursor = cursor.max(target);
                break;
            }
        }
        tokio::select! {
            r = head.changed() => if r.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
            _ = tx.closed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}
