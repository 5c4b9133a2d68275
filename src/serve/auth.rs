//! Who may talk to the server. One middleware in front of every route, the fallback
//! included, so no handler can forget it and an unknown path tells a stranger nothing.
//!
//! Over the unix socket the file's mode (0600, in a 0700 directory) is the access control:
//! only this user can connect, and no browser can reach a socket. Over TCP, in this order:
//! 1. `Host` must name this server: a loopback name (`localhost`, `127.0.0.1`, `[::1]`), the
//!    address it listens on, or a name given with `--allow-host`. Checked even on 127.0.0.1:
//!    with DNS rebinding a web page makes `evil.example` resolve to 127.0.0.1 and then reads
//!    the API with its own `Host`; the token stops it too, but not a token leaked in a URL.
//! 2. `Origin`, when a browser sends one, must be this server's own (`http://host:port`), so
//!    a page on another port of localhost cannot drive it either. No CORS headers are sent.
//! 3. The token: `Authorization: Bearer <token>`. The page (`/` and its assets, which hold
//!    no data) loads without it: the printed URL carries the token in its fragment
//!    (`/#token=…`), which a browser never sends to any server; the page's script keeps it in
//!    this tab's `sessionStorage`, takes it out of the address bar and sends it as the header
//!    with every request, the event streams included (read with `fetch`, as `EventSource`
//!    cannot send headers). No cookie: browsers send a cookie to every port of a host, so a
//!    server on another port of localhost would have received the token; storage is kept
//!    apart by origin, port included. An older URL, `GET …?token=<token>`, answers 303 to the
//!    same URL without it and with the token in the fragment.
//!
//! Tokens are compared in constant time and never logged (the request log has paths only).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// How clients are let in.
#[derive(Debug, Clone)]
pub enum Access {
    /// A unix socket: the file mode decides.
    Socket,
    /// TCP: token, Host and Origin checks.
    Tcp(TcpAccess),
}

#[derive(Debug, Clone)]
pub struct TcpAccess {
    token: String,
    /// Names `Host` may carry, lowercase, without the port.
    hosts: Vec<String>,
    port: u16,
}

/// The names every loopback server answers to.
pub const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "[::1]"];

impl TcpAccess {
    /// `extra_hosts`: the listen address (when not a wildcard) and `--allow-host` names.
    pub fn new(token: String, port: u16, extra_hosts: &[String]) -> TcpAccess {
        let mut hosts: Vec<String> = LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect();
        for h in extra_hosts {
            let h = h.trim().to_ascii_lowercase();
            if !h.is_empty() && !hosts.contains(&h) {
                hosts.push(h);
            }
        }
        TcpAccess { token, hosts, port }
    }

    fn check_host(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
            return Err(forbidden("the request has no Host header"));
        };
        let name = strip_port(host).to_ascii_lowercase();
        if self.hosts.contains(&name) {
            Ok(())
        } else {
            Err(forbidden(format!(
                "Host {host:?} is not a name of this server (it answers to {}; start it with --allow-host NAME for another)",
                self.hosts.join(", ")
            )))
        }
    }

    fn check_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let ok = origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("http://"))
            .is_some_and(|hp| {
                let port = match hp.rsplit_once(':') {
                    Some((_, p)) if !p.ends_with(']') => p.parse::<u16>().ok(),
                    _ => Some(80),
                };
                port == Some(self.port) && self.hosts.contains(&strip_port(hp).to_ascii_lowercase())
            });
        if ok {
            Ok(())
        } else {
            Err(forbidden(format!(
                "Origin {:?} is not this server's; pages of other sites may not use the API",
                String::from_utf8_lossy(origin.as_bytes())
            )))
        }
    }

    fn token_matches(&self, given: &str) -> bool {
        bool::from(given.as_bytes().ct_eq(self.token.as_bytes()))
    }

    fn presented_token<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        let v = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())?;
        let (scheme, t) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| t.trim())
    }
}

/// `localhost:8080` → `localhost`, `[::1]:8080` → `[::1]`, `[::1]` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this server needs its token: send `Authorization: Bearer <token>`, or open the URL `wrapper serve` printed (…/#token=…)",
    )
}

/// The middleware: lets a request through, or answers it with the refusal.
pub async fn guard(State(access): State<Arc<Access>>, req: Request, next: Next) -> Response {
    let Access::Tcp(tcp) = access.as_ref() else {
        return next.run(req).await;
    };
    let headers = req.headers();
    if let Err(e) = tcp
        .check_host(headers)
        .and_then(|()| tcp.check_origin(headers))
    {
        return e.into_response();
    }
    if tcp
        .presented_token(headers)
        .is_some_and(|t| tcp.token_matches(t))
    {
        return next.run(req).await;
    }
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        if let Some(r) = token_into_fragment(tcp, &req) {
            return r;
        }
        // (A wrong token in the query is refused, not ignored: the user is told.)
        let token_in_query = req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("token=")));
        if super::page::is_public(req.uri().path()) && !token_in_query {
            return next.run(req).await;
        }
    }
    unauthorized().into_response()
}

/// `GET /path?token=T&x=1` with the right token (the URL older versions printed): 303 to
/// `/path?x=1#token=T`, where the page's script takes it from.
fn token_into_fragment(tcp: &TcpAccess, req: &Request) -> Option<Response> {
    let query = req.uri().query()?;
    let mut found = false;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.split_once('=') {
            Some(("token", t)) => {
                found |= tcp.token_matches(t);
                false
            }
            _ => true,
        })
        .collect();
    if !found {
        return None;
    }
    // A path a browser would read as another host (`//evil.example/`, `/\evil.example`)
    // goes to this server's page instead: the token never leaves in a redirect.
    let path = req.uri().path();
    let mut location = if path.starts_with("//") || path.contains('\\') {
        "/".to_string()
    } else {
        path.to_string()
    };
    if !rest.is_empty() {
        location.push('?');
        location.push_str(&rest.join("&"));
    }
    location.push_str("#token=");
    location.push_str(&tcp.token);
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_str(&location).ok()?);
    Some(r)
}

/// A new random token: 32 bytes from the OS, as hex.
pub fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A token given with `--token` / `WRAPPER_SERVE_TOKEN`: long enough not to be guessed, and
/// only characters that travel unchanged in a URL and a header.
pub fn check_token(t: &str) -> Result<(), String> {
    if t.len() < 16 {
        return Err("the token must be at least 16 characters long".into());
    }
    if !t
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
    {
        return Err("the token may hold only letters, digits and - _ . ~".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_without_ports() {
        assert_eq!(strip_port("localhost:8080"), "localhost");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn tokens() {
        let t = random_token().expect("random");
        assert_eq!(t.len(), 64);
        assert!(check_token(&t).is_ok());
        assert_ne!(t, random_token().expect("random"));
        assert!(check_token("short").is_err());
        assert!(check_token("has space in it okay").is_err());
    }
}
