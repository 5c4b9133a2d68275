//! The `/api/query/...` endpoints: each parses its parameters into a `store::query` filter,
//! runs the same query the CLI runs, and answers with the CLI's `--json` rows inside a small
//! envelope (`{"extractions": [...], "total": N, "page": P, "limit": L}`).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::error::ApiError;
use super::params::{self, *};
use super::AppState;
use crate::store::fts;
use crate::store::query::{
    self, CodeBlockFilter, CodeBlockRecord, EventCount, EventFilter, EventRecord, SearchHit,
    Session, SessionFilter, StateChange, Stats, StatsFilter, TimelineEntry, TimelineFilter,
    HIT_CLOSE, HIT_OPEN,
};
use crate::time::Edge;

type ApiResult<T> = Result<Json<T>, ApiError>;

#[derive(Serialize)]
pub struct Extractions {
    pub extractions: Vec<EventRecord>,
    pub total: i64,
    pub page: u64,
    pub limit: u64,
}

/// `GET /api/query/extractions?agent=&session=&type=&pattern=&risk=&since=&until=&limit=&page=`
pub async fn extractions(
    State(app): State<AppState>,
    Params(p): Params<EventParams>,
) -> ApiResult<Extractions> {
    if p.after.is_some() {
        return Err(ApiError::bad_filter(
            "after: only /api/events/stream takes it; page with page=2, 3, ...",
        ));
    }
    let page = Page::parse(p.limit.as_deref(), p.page.as_deref(), 50)?;
    let mut f = EventFilter {
        agent: text(p.agent),
        session: None,
        event_type: text(p.event_type),
        pattern: text(p.pattern),
        risk: risk(p.risk)?,
        since: bound("since", p.since.as_deref(), Edge::Start)?,
        until: bound("until", p.until.as_deref(), Edge::End)?,
        limit: page.limit,
        offset: page.offset(),
    };
    let session = text(p.session);
    app.db
        .read(move |c| {
            f.session = session.map(|s| query::resolve_session(c, &s)).transpose()?;
            let extractions = query::events(c, &f)?;
            // The first page of a small result needs no second query.
            let total = if f.offset == 0 && (extractions.len() as u64) < f.limit {
                extractions.len() as i64
            } else {
                query::events_count(c, &f)?
            };
            Ok(Json(Extractions {
                extractions,
                total,
                page: page.page,
                limit: page.limit,
            }))
        })
        .await
}

#[derive(Serialize)]
pub struct Sessions {
    pub sessions: Vec<Session>,
    pub total: i64,
    pub page: u64,
    pub limit: u64,
}

/// `GET /api/query/sessions?agent=&active=&days=&since=&limit=&page=`
pub async fn sessions(
    State(app): State<AppState>,
    Params(p): Params<SessionParams>,
) -> ApiResult<Sessions> {
    let page = Page::parse(p.limit.as_deref(), p.page.as_deref(), 50)?;
    let f = SessionFilter {
        agent: text(p.agent),
        active: flag("active", p.active.as_deref())?,
        since: since_or_days(p.since.as_deref(), p.days.as_deref())?,
        limit: page.limit,
        offset: page.offset(),
        repo: text(p.repo),
        branch: text(p.branch),
    };
    app.db
        .read(move |c| {
            Ok(Json(Sessions {
                sessions: query::sessions(c, &f)?,
                total: query::sessions_count(c, &f)?,
                page: page.page,
                limit: page.limit,
            }))
        })
        .await
}

fn since_or_days(since: Option<&str>, days: Option<&str>) -> Result<Option<String>, ApiError> {
    let since = bound("since", since, Edge::Start)?;
    let days = params::days(days)?;
    match (since, days) {
        (Some(_), Some(_)) => Err(ApiError::bad_filter(
            "since and days say the same thing; give one of them",
        )),
        (s, d) => Ok(s.or(d)),
    }
}

/// A session in full, as `wrapper show --json` prints it.
#[derive(Serialize)]
pub struct SessionDetail {
    pub session: Session,
    pub state_changes: Vec<StateChange>,
    pub event_counts: Vec<EventCount>,
    pub code_blocks: Vec<CodeBlockRecord>,
    pub code_blocks_total: i64,
    /// The captured output's facts, `null` when nothing was captured; play it from
    /// `/api/replay/session/{id}` or `/api/export/session/{id}.cast`.
    pub capture: Option<crate::store::capture::CaptureInfo>,
}

/// `GET /api/query/session/{id}` (a full id or a unique prefix)
pub async fn session(
    State(app): State<AppState>,
    Segment(id): Segment,
    Params(p): Params<ShowParams>,
) -> ApiResult<SessionDetail> {
    let blocks = number("blocks", p.blocks.as_deref())?.unwrap_or(20);
    if blocks > MAX_LIMIT {
        return Err(ApiError::bad_filter(format!(
            "blocks: at most {MAX_LIMIT}; list them all with /api/query/code-blocks?session="
        )));
    }
    app.db
        .read(move |c| {
            let id = query::resolve_session(c, &id)?;
            Ok(Json(SessionDetail {
                session: query::session(c, &id)?,
                state_changes: query::state_changes(c, &id)?,
                event_counts: query::event_counts(c, &id)?,
                code_blocks: query::code_blocks(
                    c,
                    &CodeBlockFilter {
                        session: Some(id.clone()),
                        limit: blocks,
                        ..Default::default()
                    },
                )?,
                code_blocks_total: query::code_block_count(c, &id)?,
                capture: crate::store::capture::info(c, &id).map_err(query::QueryError::from)?,
            }))
        })
        .await
}

#[derive(Serialize)]
pub struct CodeBlocks {
    pub code_blocks: Vec<CodeBlockRecord>,
    pub total: i64,
    pub page: u64,
    pub limit: u64,
}

/// `GET /api/query/code-blocks?agent=&language=&session=&limit=&page=`
pub async fn code_blocks(
    State(app): State<AppState>,
    Params(p): Params<CodeBlockParams>,
) -> ApiResult<CodeBlocks> {
    let page = Page::parse(p.limit.as_deref(), p.page.as_deref(), 50)?;
    let mut f = CodeBlockFilter {
        agent: text(p.agent),
        language: text(p.language),
        session: None,
        limit: page.limit,
        offset: page.offset(),
    };
    let session = text(p.session);
    app.db
        .read(move |c| {
            f.session = session.map(|s| query::resolve_session(c, &s)).transpose()?;
            Ok(Json(CodeBlocks {
                code_blocks: query::code_blocks(c, &f)?,
                total: query::code_blocks_count(c, &f)?,
                page: page.page,
                limit: page.limit,
            }))
        })
        .await
}

/// `GET /api/query/code-blocks/{digest-prefix}`
pub async fn code_block(
    State(app): State<AppState>,
    Segment(digest): Segment,
) -> ApiResult<CodeBlockRecord> {
    app.db
        .read(move |c| Ok(Json(query::code_block_by_digest(c, &digest)?)))
        .await
}

/// `GET /api/query/stats?since=|days=`: the totals `wrapper stats --json` prints.
pub async fn stats(
    State(app): State<AppState>,
    Params(p): Params<StatsParams>,
) -> ApiResult<Stats> {
    let f = StatsFilter {
        since: since_or_days(p.since.as_deref(), p.days.as_deref())?,
        ..Default::default()
    };
    app.db.read(move |c| Ok(Json(query::stats(c, &f)?))).await
}

/// One agent's totals, in the seed's shape.
#[derive(Serialize)]
pub struct AgentSummary {
    pub agent_name: String,
    pub total_sessions: i64,
    pub active_sessions: i64,
    pub ended_sessions: i64,
    pub completed_sessions: i64,
    /// completed / ended; `null` when no session has ended.
    pub success_rate: Option<f64>,
    pub total_extractions: i64,
    pub extractions_by_type: BTreeMap<String, i64>,
    pub extractions_by_pattern: BTreeMap<String, i64>,
    pub extractions_by_risk: BTreeMap<String, i64>,
}

/// `GET /api/query/stats/agent/{name}?since=|days=`
pub async fn agent_stats(
    State(app): State<AppState>,
    Segment(agent): Segment,
    Params(p): Params<StatsParams>,
) -> ApiResult<AgentSummary> {
    let since = since_or_days(p.since.as_deref(), p.days.as_deref())?;
    app.db
        .read(move |c| {
            let f = StatsFilter {
                agent: Some(agent.clone()),
                since,
                ..Default::default()
            };
            let s = query::stats(c, &f)?;
            if s.sessions == 0 && !has_sessions(c, StatsFilter { since: None, ..f })? {
                return Err(ApiError::not_found(
                    "unknown_agent",
                    format!(
                        "no sessions of agent {agent:?} (list the agents with /api/query/stats)"
                    ),
                ));
            }
            Ok(Json(AgentSummary {
                agent_name: agent,
                total_sessions: s.sessions,
                active_sessions: s.active_sessions,
                ended_sessions: s.ended_sessions,
                completed_sessions: s.completed_sessions,
                success_rate: s.success_rate,
                total_extractions: s.events,
                extractions_by_type: s.by_type.into_iter().map(|t| (t.event_type, t.n)).collect(),
                extractions_by_pattern: s
                    .by_pattern
                    .into_iter()
                    .map(|t| (t.pattern, t.n))
                    .collect(),
                extractions_by_risk: s.by_risk.into_iter().map(|t| (t.risk_level, t.n)).collect(),
            }))
        })
        .await
}

fn has_sessions(c: &rusqlite::Connection, f: StatsFilter) -> Result<bool, ApiError> {
    Ok(query::stats(c, &f)?.sessions > 0)
}

/// One rule's totals.
#[derive(Serialize)]
pub struct PatternSummary {
    pub pattern: String,
    pub event_type: Option<String>,
    /// Sessions in which the rule fired.
    pub total_sessions: i64,
    pub ended_sessions: i64,
    pub completed_sessions: i64,
    pub success_rate: Option<f64>,
    pub total_extractions: i64,
    pub extractions_by_agent: BTreeMap<String, i64>,
    pub extractions_by_risk: BTreeMap<String, i64>,
}

/// `GET /api/query/stats/pattern/{pattern}?since=|days=`
pub async fn pattern_stats(
    State(app): State<AppState>,
    Segment(pattern): Segment,
    Params(p): Params<StatsParams>,
) -> ApiResult<PatternSummary> {
    let since = since_or_days(p.since.as_deref(), p.days.as_deref())?;
    app.db
        .read(move |c| {
            let f = StatsFilter {
                pattern: Some(pattern.clone()),
                since,
                ..Default::default()
            };
            let s = query::stats(c, &f)?;
            if s.sessions == 0 && !has_sessions(c, StatsFilter { since: None, ..f })? {
                return Err(ApiError::not_found(
                    "unknown_pattern",
                    format!("no events of pattern {pattern:?} (see /api/query/stats for the patterns that fired)"),
                ));
            }
            Ok(Json(PatternSummary {
                event_type: s.by_pattern.first().map(|b| b.event_type.clone()),
                pattern,
                total_sessions: s.sessions,
                ended_sessions: s.ended_sessions,
                completed_sessions: s.completed_sessions,
                success_rate: s.success_rate,
                total_extractions: s.events,
                extractions_by_agent: s.by_agent.into_iter().map(|a| (a.agent_name, a.events)).collect(),
                extractions_by_risk: s.by_risk.into_iter().map(|t| (t.risk_level, t.n)).collect(),
            }))
        })
        .await
}

#[derive(Serialize)]
pub struct Timeline {
    /// The agent asked for; null for every agent.
    pub agent_name: Option<String>,
    pub timeline: Vec<TimelineEntry>,
}

/// `GET /api/query/timeline?agent=&from=&to=&limit=`
pub async fn timeline(
    State(app): State<AppState>,
    Params(p): Params<TimelineParams>,
) -> ApiResult<Timeline> {
    // As on the command line: one agent's timeline, or every agent's without `agent=`.
    let agent = text(p.agent);
    let page = Page::parse(p.limit.as_deref(), None, 200)?;
    let f = TimelineFilter {
        agent: agent.clone(),
        from: bound("from", p.from.as_deref(), Edge::Start)?,
        to: bound("to", p.to.as_deref(), Edge::End)?,
        limit: page.limit,
    };
    app.db
        .read(move |c| {
            Ok(Json(Timeline {
                agent_name: agent,
                timeline: query::timeline(c, &f)?,
            }))
        })
        .await
}

/// A search hit; `snippet` is plain text as `wrapper search --json` gives it, and
/// `snippet_marked` wraps each match in U+0002 … U+0003 for a page to highlight.
#[derive(Serialize)]
pub struct Hit {
    #[serde(flatten)]
    pub hit: SearchHit,
    pub snippet_marked: String,
}

#[derive(Serialize)]
pub struct Search {
    pub query: String,
    pub hits: Vec<Hit>,
    /// Rows not yet in the full-text index: the server never writes, and the index is
    /// brought up to date by the recording wrappers when idle and by `wrapper search`.
    pub not_indexed: i64,
}

/// `GET /api/query/search?q=&agent=&raw=&limit=`
pub async fn search(
    State(app): State<AppState>,
    Params(p): Params<SearchParams>,
) -> ApiResult<Search> {
    let Some(q) = text(p.q) else {
        return Err(ApiError::bad_filter("q: give the words to search for"));
    };
    let raw = flag("raw", p.raw.as_deref())?;
    let limit = Page::parse(p.limit.as_deref(), None, 20)?.limit;
    let agent = text(p.agent);
    app.db
        .read(move |c| {
            let hits = query::search(c, &q, raw, agent.as_deref(), limit)?;
            let not_indexed = fts::backlog(c).map_err(query::QueryError::from)?;
            let hits = hits
                .into_iter()
                .map(|mut h| {
                    let marked = std::mem::take(&mut h.snippet);
                    h.snippet = marked.replace([HIT_OPEN, HIT_CLOSE], "");
                    Hit {
                        hit: h,
                        snippet_marked: marked,
                    }
                })
                .collect();
            Ok(Json(Search {
                query: q,
                hits,
                not_indexed,
            }))
        })
        .await
}

#[derive(Serialize)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
    pub database: String,
    pub schema_version: i64,
    pub last_event_id: i64,
}

/// `GET /api/health`: the server is up and can read its database.
pub async fn health(State(app): State<AppState>) -> ApiResult<Health> {
    let database = app.db.path().display().to_string();
    app.db
        .read(move |c| {
            Ok(Json(Health {
                status: "ok",
                version: env!("CARGO_PKG_VERSION"),
                database,
                schema_version: crate::store::user_version(c).map_err(query::QueryError::from)?,
                last_event_id: query::last_event_id(c)?,
            }))
        })
        .await
}

/// `GET /api`: what there is to ask.
pub async fn index() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "endpoints": [
            "GET /api/health",
            "GET /api/query/sessions?agent=&active=&days=&since=&limit=&page=",
            "GET /api/query/session/{id}?blocks=",
            "GET /api/query/extractions?agent=&session=&type=&pattern=&risk=&since=&until=&limit=&page=",
            "GET /api/query/code-blocks?agent=&language=&session=&limit=&page=",
            "GET /api/query/code-blocks/{digest-prefix}",
            "GET /api/query/stats?since=|days=",
            "GET /api/query/stats/agent/{name}?since=|days=",
            "GET /api/query/stats/pattern/{pattern}?since=|days=",
            "GET /api/query/timeline?agent=&from=&to=&limit=",
            "GET /api/query/search?q=&agent=&raw=&limit=",
            "GET /api/events/stream?agent=&session=&type=&pattern=&risk=&after=  (Server-Sent Events; Last-Event-ID resumes)",
            "GET /api/replay/session/{id}?speed=&from=&idle_limit=  (Server-Sent Events with the original timing)",
            "GET /api/export/session/{id}.cast|.txt|.jsonl?format=asciicast-v3&idle_limit="
        ],
        "docs": "docs/SERVE.md"
    }))
}
