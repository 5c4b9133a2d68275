//! Query strings and path segments → the typed filters of `store::query`, with the CLI's
//! names (`agent`, `session`, `type`, `pattern`, `risk`, `since`, `until`, `limit`) and, as
//! aliases, the `--json` field names (`agent_name`, `session_id`, `event_type`,
//! `risk_level`). An empty value means "no filter", so the seed's URL templates
//! (`extractions?agent=&type=`) work as written.
//!
//! Every field arrives as text and is parsed here, so a bad value is a 400 that names the
//! parameter (`limit: "abc" is not a whole number`), and an unknown parameter is a 400 too:
//! a misspelt filter silently ignored would return the wrong rows with a 200.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use chrono::Utc;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::ApiError;
use crate::time::{self, Edge};

/// The parsed query string of a request; a rejection is a JSON 400.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(t)| Params(t))
            .map_err(|e| {
                let text = e.body_text();
                let text = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                ApiError::bad_filter(text.to_string())
            })
    }
}

/// One path segment (`/session/{id}`), percent-decoded; a rejection is a JSON 400.
pub struct Segment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(s)| Segment(s))
            .map_err(|e| ApiError::bad_filter(e.body_text()))
    }
}

/// Most rows one page may hold: a page is answered from an index in milliseconds, a
/// million-row page would hold a database connection and the client's memory for long.
pub const MAX_LIMIT: u64 = 1000;

/// `?limit=&page=` (pages count from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: u64,
    pub page: u64,
}

impl Page {
    pub fn parse(limit: Option<&str>, page: Option<&str>, default: u64) -> Result<Page, ApiError> {
        let limit = number("limit", limit)?.unwrap_or(default);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ApiError::bad_filter(format!(
                "limit: {limit} is out of range; ask for 1 to {MAX_LIMIT} rows and page through with page=2, 3, ..."
            )));
        }
        let page = number("page", page)?.unwrap_or(1);
        if page == 0 {
            return Err(ApiError::bad_filter("page: pages count from 1"));
        }
        Ok(Page { limit, page })
    }

    pub fn offset(&self) -> u64 {
        (self.page - 1).saturating_mul(self.limit)
    }
}

/// A non-empty value, or `None`.
pub fn text(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

/// A whole number, or `None` when absent or empty.
pub fn number(name: &str, v: Option<&str>) -> Result<Option<u64>, ApiError> {
    match v.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::bad_filter(format!("{name}: {s:?} is not a whole number"))),
    }
}

/// `true`/`1`/`yes` or `false`/`0`/`no`; absent or empty is false.
pub fn flag(name: &str, v: Option<&str>) -> Result<bool, ApiError> {
    match v.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("false" | "0" | "no") => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some(other) => Err(ApiError::bad_filter(format!(
            "{name}: {other:?} is not true or false"
        ))),
    }
}

/// A time bound, as the CLI's `--since`/`--until` take it.
pub fn bound(name: &str, v: Option<&str>, edge: Edge) -> Result<Option<String>, ApiError> {
    v.filter(|s| !s.is_empty())
        .map(|s| time::parse_bound(s, edge, Utc::now()))
        .transpose()
        .map_err(|e| ApiError::bad_filter(format!("{name}: {e}")))
}

/// The risk levels rules may carry (SPEC §3).
pub fn risk(v: Option<String>) -> Result<Option<String>, ApiError> {
    match text(v) {
        None => Ok(None),
        Some(r) if ["low", "medium", "high", "critical"].contains(&r.as_str()) => Ok(Some(r)),
        Some(r) => Err(ApiError::bad_filter(format!(
            "risk: {r:?} is not a risk level; use low, medium, high or critical"
        ))),
    }
}

/// `?days=N`: sessions started in the last N days, as `--since Nd`.
pub fn days(v: Option<&str>) -> Result<Option<String>, ApiError> {
    match number("days", v)? {
        None => Ok(None),
        Some(0) => Err(ApiError::bad_filter("days: ask for at least 1 day")),
        Some(n) => bound("days", Some(&format!("{n}d")), Edge::Start),
    }
}

/// `GET /api/query/extractions` and `/api/events/stream`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    #[serde(alias = "agent_name")]
    pub agent: Option<String>,
    #[serde(alias = "session_id")]
    pub session: Option<String>,
    #[serde(rename = "type", alias = "event_type")]
    pub event_type: Option<String>,
    pub pattern: Option<String>,
    #[serde(alias = "risk_level")]
    pub risk: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<String>,
    pub page: Option<String>,
    /// Stream only: start after this event id (as `Last-Event-ID` does).
    pub after: Option<String>,
}

/// `GET /api/query/sessions`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionParams {
    #[serde(alias = "agent_name")]
    pub agent: Option<String>,
    pub active: Option<String>,
    pub since: Option<String>,
    pub days: Option<String>,
    pub limit: Option<String>,
    pub page: Option<String>,
    /// Only sessions in this repository (a path or remote URL), as `sessions --repo`.
    pub repo: Option<String>,
    /// Only sessions on this branch, as `sessions --branch`.
    pub branch: Option<String>,
}

/// `GET /api/query/code-blocks`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeBlockParams {
    #[serde(alias = "agent_name")]
    pub agent: Option<String>,
    pub language: Option<String>,
    #[serde(alias = "session_id")]
    pub session: Option<String>,
    pub limit: Option<String>,
    pub page: Option<String>,
}

/// `GET /api/query/session/{id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowParams {
    /// Most code blocks listed, newest first.
    pub blocks: Option<String>,
}

/// `GET /api/query/stats`, `/stats/agent/{name}`, `/stats/pattern/{pattern}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsParams {
    pub since: Option<String>,
    pub days: Option<String>,
}

/// `GET /api/query/timeline`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineParams {
    #[serde(alias = "agent_name")]
    pub agent: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<String>,
}

/// `GET /api/query/search`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    pub q: Option<String>,
    #[serde(alias = "agent_name")]
    pub agent: Option<String>,
    pub raw: Option<String>,
    pub limit: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_numbers() {
        assert_eq!(
            Page::parse(None, None, 50).ok(),
            Some(Page { limit: 50, page: 1 })
        );
        let p = Page::parse(Some("20"), Some("3"), 50).expect("page");
        assert_eq!(p.offset(), 40);
        for (l, p) in [
            ("0", "1"),
            ("1001", "1"),
            ("x", "1"),
            ("10", "0"),
            ("10", "-1"),
        ] {
            let e = Page::parse(Some(l), Some(p), 50).expect_err("refused");
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{l} {p}");
        }
        assert!(number("limit", Some("abc"))
            .expect_err("nan")
            .message
            .contains("limit"));
    }

    #[test]
    fn filters_name_what_is_wrong() {
        assert!(risk(Some("severe".into())).is_err());
        assert_eq!(risk(Some(String::new())).ok(), Some(None));
        assert!(bound("since", Some("soonish"), Edge::Start)
            .expect_err("bad time")
            .message
            .starts_with("since:"));
        assert!(flag("active", Some("maybe")).is_err());
        assert_eq!(flag("active", Some("TRUE")).ok(), Some(true));
        assert!(days(Some("0")).is_err());
        assert!(days(Some("7")).expect("days").is_some());
    }
}
