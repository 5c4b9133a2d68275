//! `wrapper serve`: the query API, a live tail of events and a page to look at, over HTTP.
//! The only async code in wrapper (tokio + axum live here and in `cmd/serve.rs`).
//!
//! - [`router`] lists every route; [`auth::guard`] stands in front of all of them.
//! - [`api`] answers `/api/query/...` through `store::query`, the layer the CLI uses, so
//!   a filter means the same thing in both and there is one copy of the SQL.
//! - [`tail`] streams events as other processes commit them (Server-Sent Events).
//! - [`page`] is the web page, compiled into the binary.
//! - [`db`] hands out read-only connections: the server never writes the database.
//!
//! The listener and the shutdown signal are given to [`Server::run`], so tests run the same
//! server on a port-0 listener (or call the router directly) and `cmd/serve.rs` decides
//! about sockets, tokens and signals.

pub mod api;
pub mod auth;
pub mod db;
pub mod error;
pub mod page;
pub mod params;
pub mod replay;
pub mod tail;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub use auth::{Access, TcpAccess};
use error::ApiError;

use crate::store::query;
use crate::store::StoreError;

/// What a server is asked to do.
#[derive(Debug, Clone)]
pub struct Settings {
    pub db: PathBuf,
    pub access: Access,
    /// Interval of the keep-alive comments on event streams.
    pub keep_alive: Duration,
    /// How often the tail looks for new commits while a stream is open.
    pub poll: Duration,
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: Arc<db::Db>,
    /// The newest committed event id, kept current by the tail's poller.
    pub head: watch::Sender<i64>,
    /// Turns true when the server is shutting down; open streams end.
    pub stop: watch::Receiver<bool>,
    pub keep_alive: Duration,
}

/// Every route, behind the guard.
pub fn router(state: AppState, access: Arc<Access>) -> Router {
    let api = Router::new()
        .route("/api", get(api::index))
        .route("/api/health", get(api::health))
        .route("/api/query/sessions", get(api::sessions))
        .route("/api/query/session/{id}", get(api::session))
        .route("/api/query/extractions", get(api::extractions))
        .route("/api/query/code-blocks", get(api::code_blocks))
        .route("/api/query/code-blocks/{digest}", get(api::code_block))
        .route("/api/query/stats", get(api::stats))
        .route("/api/query/stats/agent/{name}", get(api::agent_stats))
        .route(
            "/api/query/stats/pattern/{pattern}",
            get(api::pattern_stats),
        )
        .route("/api/query/timeline", get(api::timeline))
        .route("/api/query/search", get(api::search))
        .route("/api/events/stream", get(tail::stream))
        .route("/api/replay/session/{id}", get(replay::replay))
        .route("/api/export/session/{file}", get(replay::export))
        .route("/", get(page::index))
        .route("/assets/app.js", get(page::app_js))
        .route("/assets/app.css", get(page::app_css))
        .route("/assets/asciinema-player.min.js", get(page::player_js))
        .route("/assets/asciinema-player.css", get(page::player_css))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    api.layer(axum::middleware::from_fn_with_state(access, auth::guard))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(page::CSP),
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("the request failed inside wrapper (a bug; see the server's log)")
                .into_response()
        }))
        // Method and path only: a query string can hold the token.
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::extract::Request| {
            tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
        }))
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such endpoint; GET /api lists them")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "the API is read-only: GET only",
    )
}

/// A server ready to run: the database checked, the tail's poller started.
pub struct Server {
    state: AppState,
    access: Arc<Access>,
    stop: watch::Sender<bool>,
    poller: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Opens the database read-only (refusing a missing, foreign or outdated one) and starts
    /// the tail's poller.
    pub fn new(settings: Settings) -> Result<Server, StoreError> {
        let db = Arc::new(db::Db::open(&settings.db)?);
        let first = db
            .read_blocking(|c| Ok(query::last_event_id(c)?))
            .unwrap_or(0);
        let (stop, stop_rx) = watch::channel(false);
        let (head, poller) =
            tail::start_poller(settings.db.clone(), settings.poll, first, stop_rx.clone());
        Ok(Server {
            state: AppState {
                db,
                head,
                stop: stop_rx,
                keep_alive: settings.keep_alive,
            },
            access: Arc::new(settings.access),
            stop,
            poller: Some(poller),
        })
    }

    pub fn router(&self) -> Router {
        router(self.state.clone(), self.access.clone())
    }

    /// Serves on `listener` until `shutdown` completes; then open streams end, requests in
    /// flight finish, and this returns.
    pub async fn run<L>(
        mut self,
        listener: L,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()>
    where
        L: axum::serve::Listener,
        L::Addr: std::fmt::Debug,
    {
        let stop = self.stop.clone();
        let signal = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        let result = axum::serve(listener, self.router())
            .with_graceful_shutdown(signal)
            .await;
        self.finish();
        result
    }

    fn finish(&mut self) {
        let _ = self.stop.send(true);
        if let Some(p) = self.poller.take() {
            let _ = p.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.finish();
    }
}
