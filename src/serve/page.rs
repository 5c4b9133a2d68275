//! The web page at `/`: one HTML file, one script and one stylesheet, compiled into the
//! binary (`include_str!`), so there is no build step and no file to find at run time. The
//! script is plain JavaScript over the same JSON API scripts use, and builds the DOM with
//! `textContent` only: agent output is untrusted text and never becomes markup.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const APP_CSS: &str = include_str!("page/app.css");
/// asciinema-player 3.18.0 from npm, unmodified (Apache-2.0; see page/vendor/README).
const PLAYER_JS: &str = include_str!("page/vendor/asciinema-player.min.js");
const PLAYER_CSS: &str = include_str!("page/vendor/asciinema-player.css");

/// Only our own files, no inline script, no framing: what the page needs and nothing else.
/// The player compiles its terminal emulator from WebAssembly (`'wasm-unsafe-eval'`, which
/// allows no JavaScript eval) and sizes its rows with inline styles.
pub const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; \
    font-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page and its assets: the only paths served without the token (they hold no data; the
/// script asks the API for everything, with the token, `auth.rs`).
const PUBLIC: &[&str] = &[
    "/",
    "/assets/app.js",
    "/assets/app.css",
    "/assets/asciinema-player.min.js",
    "/assets/asciinema-player.css",
];

/// Whether `path` is one of [`PUBLIC`].
pub fn is_public(path: &str) -> bool {
    PUBLIC.contains(&path)
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

pub async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

pub async fn app_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

pub async fn app_css() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}

pub async fn player_js() -> Response {
    asset(PLAYER_JS, "text/javascript; charset=utf-8")
}

pub async fn player_css() -> Response {
    asset(PLAYER_CSS, "text/css; charset=utf-8")
}
