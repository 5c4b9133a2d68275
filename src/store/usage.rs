//! What the agents themselves report: their own session id, model, tokens and cost, and the
//! session log wrapper read (SPEC §10). Written by the writer from `Record::Facts` and
//! `Record::Merge`, read by `wrapper stats` and `wrapper show`.
//!
//! Kept apart from `query.rs` because it is its own question — "what did my agents cost this
//! week", the one people ask of ccusage — answered from `process_sessions` alone: no event is
//! scanned, so it costs the same on a billion events.

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use serde::Serialize;

use super::query::QueryResult;
use crate::event::{Merge, SessionFacts};

/// Stores the facts on the session: a fact not reported (`None`) keeps what is there.
pub fn write_facts(conn: &Connection, session_id: &str, f: &SessionFacts) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE process_sessions SET \
         agent_session_id = coalesce(?1, agent_session_id), \
         agent_model = coalesce(?2, agent_model), \
         input_tokens = coalesce(?3, input_tokens), \
         cached_input_tokens = coalesce(?4, cached_input_tokens), \
         output_tokens = coalesce(?5, output_tokens), \
         cost_usd = coalesce(?6, cost_usd), \
         cost_note = coalesce(?7, cost_note), \
         agent_log_path = coalesce(?8, agent_log_path) \
         WHERE session_id = ?9",
    )?
    .execute(params![
        f.agent_session_id,
        f.model,
        f.input_tokens,
        f.cached_input_tokens,
        f.output_tokens,
        f.cost_usd,
        f.cost_note,
        f.log_path,
        session_id
    ])?;
    Ok(())
}

/// Merges the session log's account of an event into the event it confirms: the one on that
/// output line with that type (and value), not yet confirmed. Returns whether one was found.
/// The session's spans whose lines reach that line find it (`store::session_spans`).
pub fn merge_event(conn: &Connection, session_id: &str, m: &Merge) -> rusqlite::Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE extraction_events SET metadata_json = \
             json_patch(coalesce(metadata_json, '{}'), ?1), \
             matched_value = coalesce(?6, matched_value) \
             WHERE id = (SELECT e.id FROM event_session_spans s CROSS JOIN extraction_events e \
               ON e.id BETWEEN s.first_id AND s.last_id \
               WHERE s.session_id = ?2 AND ?3 BETWEEN s.min_line AND s.max_line \
               AND e.session_id = ?2 AND e.line_number = ?3 AND e.event_type = ?4 \
               AND (?5 IS NULL OR e.matched_value = ?5) \
               AND json_extract(coalesce(e.metadata_json, '{}'), '$.log_line') IS NULL \
               ORDER BY e.id LIMIT 1)",
        )?
        .execute(params![
            m.metadata_json_for_merge(),
            session_id,
            m.line_number as i64,
            m.event_type,
            m.matched_value,
            m.full_value
        ])?;
    Ok(n > 0)
}

impl Merge {
    /// The log's fields, minus `source`: the event keeps saying where it was first seen,
    /// and gains `log_line` (and `confirmed_by`) to say the log has it too.
    fn metadata_json_for_merge(&self) -> String {
        let mut v: serde_json::Value =
            serde_json::from_str(&self.metadata_json).unwrap_or_else(|_| serde_json::json!({}));
        if let Some(o) = v.as_object_mut() {
            o.remove("source");
            o.insert("confirmed_by".into(), "log".into());
        }
        v.to_string()
    }
}

/// Token and cost totals of a group of sessions.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Totals {
    pub sessions: i64,
    /// Sessions for which the agent reported usage.
    pub sessions_with_usage: i64,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
}

const TOTALS: &str = "count(*), count(coalesce(input_tokens, output_tokens, cost_usd)), \
     coalesce(sum(input_tokens), 0), coalesce(sum(cached_input_tokens), 0), \
     coalesce(sum(output_tokens), 0), coalesce(sum(cost_usd), 0.0)";

impl Totals {
    /// From the six [`TOTALS`] columns starting at `at`.
    fn from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<Totals> {
        Ok(Totals {
            sessions: r.get(at)?,
            sessions_with_usage: r.get(at + 1)?,
            input_tokens: r.get(at + 2)?,
            cached_input_tokens: r.get(at + 3)?,
            output_tokens: r.get(at + 4)?,
            cost_usd: r.get(at + 5)?,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentUsage {
    pub agent_name: String,
    #[serde(flatten)]
    pub totals: Totals,
}

#[derive(Debug, Clone, Serialize)]
pub struct DayUsage {
    /// UTC day, `YYYY-MM-DD`, of the sessions' start.
    pub day: String,
    pub agent_name: String,
    #[serde(flatten)]
    pub totals: Totals,
}

/// One session's usage, as the agent reported it (`null`: not reported).
#[derive(Debug, Clone, Serialize, Default)]
pub struct SessionUsage {
    pub session_id: String,
    pub agent_name: String,
    pub started_at: String,
    pub agent_session_id: Option<String>,
    pub agent_model: Option<String>,
    pub input_tokens: Option<i64>,
    pub cached_input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub cost_note: Option<String>,
    pub agent_log_path: Option<String>,
}

const SESSION_USAGE: &str = "session_id, agent_name, started_at, agent_session_id, agent_model, \
     input_tokens, cached_input_tokens, output_tokens, cost_usd, cost_note, agent_log_path";

impl SessionUsage {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<SessionUsage> {
        Ok(SessionUsage {
            session_id: r.get("session_id")?,
            agent_name: r.get("agent_name")?,
            started_at: r.get("started_at")?,
            agent_session_id: r.get("agent_session_id")?,
            agent_model: r.get("agent_model")?,
            input_tokens: r.get("input_tokens")?,
            cached_input_tokens: r.get("cached_input_tokens")?,
            output_tokens: r.get("output_tokens")?,
            cost_usd: r.get("cost_usd")?,
            cost_note: r.get("cost_note")?,
            agent_log_path: r.get("agent_log_path")?,
        })
    }

    pub fn has_usage(&self) -> bool {
        self.input_tokens.is_some() || self.output_tokens.is_some() || self.cost_usd.is_some()
    }
}

/// Which sessions `usage` adds up.
#[derive(Debug, Clone, Default)]
pub struct UsageFilter {
    pub agent: Option<String>,
    pub since: Option<String>,
    /// Most sessions to list one by one (newest first); 0 for all.
    pub sessions: u64,
}

/// Tokens and cost in total, per agent, per day and per session.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Usage {
    pub total: Totals,
    pub by_agent: Vec<AgentUsage>,
    pub by_day: Vec<DayUsage>,
    /// The newest sessions with reported usage.
    pub sessions: Vec<SessionUsage>,
}

pub fn usage(conn: &Connection, f: &UsageFilter) -> QueryResult<Usage> {
    let mut clauses: Vec<&str> = Vec::new();
    let mut p: Vec<Value> = Vec::new();
    if let Some(a) = &f.agent {
        clauses.push("agent_name = ?");
        p.push(Value::Text(a.clone()));
    }
    if let Some(s) = &f.since {
        clauses.push("started_at >= ?");
        p.push(Value::Text(s.clone()));
    }
    let w = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    let total = conn.query_row(
        &format!("SELECT {TOTALS} FROM process_sessions{w}"),
        params_from_iter(p.iter()),
        |r| Totals::from_row(r, 0),
    )?;
    let mut stmt = conn.prepare(&format!(
        "SELECT agent_name, {TOTALS} FROM process_sessions{w} GROUP BY agent_name ORDER BY agent_name"
    ))?;
    let by_agent = stmt
        .query_map(params_from_iter(p.iter()), |r| {
            Ok(AgentUsage {
                agent_name: r.get(0)?,
                totals: Totals::from_row(r, 1)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare(&format!(
        "SELECT substr(started_at, 1, 10) AS day, agent_name, {TOTALS} FROM process_sessions{w} \
         GROUP BY day, agent_name ORDER BY day DESC, agent_name"
    ))?;
    let by_day = stmt
        .query_map(params_from_iter(p.iter()), |r| {
            Ok(DayUsage {
                day: r.get(0)?,
                agent_name: r.get(1)?,
                totals: Totals::from_row(r, 2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let with_usage = if w.is_empty() {
        " WHERE coalesce(input_tokens, output_tokens, cost_usd) IS NOT NULL".to_string()
    } else {
        format!("{w} AND coalesce(input_tokens, output_tokens, cost_usd) IS NOT NULL")
    };
    let mut sp = p.clone();
    sp.push(Value::Integer(if f.sessions == 0 {
        -1
    } else {
        i64::try_from(f.sessions).unwrap_or(i64::MAX)
    }));
    let mut stmt = conn.prepare(&format!(
        "SELECT {SESSION_USAGE} FROM process_sessions{with_usage} ORDER BY started_at DESC LIMIT ?"
    ))?;
    let sessions = stmt
        .query_map(params_from_iter(sp.iter()), SessionUsage::from_row)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Usage {
        total,
        by_agent,
        by_day,
        sessions,
    })
}

/// One session's usage (its id must exist: resolve it first).
pub fn session_usage(conn: &Connection, session_id: &str) -> QueryResult<Option<SessionUsage>> {
    Ok(conn
        .query_row(
            &format!("SELECT {SESSION_USAGE} FROM process_sessions WHERE session_id = ?1"),
            [session_id],
            SessionUsage::from_row,
        )
        .optional()?)
}
