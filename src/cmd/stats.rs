//! `wrapper stats`: totals over a time window, per agent or per pattern: sessions, success
//! rate, events by type, by pattern and by risk. Everything comes from `process_sessions` and
//! the `event_counts` table the writer keeps, so it costs the same on a billion events.

use clap::Args;
use comfy_table::Cell;

use crate::cli::DbOpt;
use crate::cmd::view;
use crate::error::CliResult;
use crate::output;
use crate::store::query::{self, Stats, StatsFilter};
use crate::time::Edge;

/// Totals: sessions, success rate, events by type, pattern and risk
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only sessions of this agent
    #[arg(long, value_name = "AGENT", conflicts_with = "pattern")]
    pub agent: Option<String>,
    /// Only this rule's events, and only sessions where it fired
    #[arg(long, value_name = "PATTERN")]
    pub pattern: Option<String>,
    /// Only sessions started since WHEN: a duration ago (7d, 12h), a date or an RFC 3339 time
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// One JSON object (see docs/QUERYING.md for its fields)
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub db: DbOpt,
}

pub fn run(args: StatsArgs) -> CliResult<i32> {
    let filter = StatsFilter {
        agent: args.agent,
        pattern: args.pattern,
        since: view::bound("since", args.since.as_deref(), Edge::Start)?,
    };
    let (conn, _) = view::open_db(&args.db)?;
    let stats = query::stats(&conn, &filter).map_err(view::query_error)?;
    let capture = crate::store::capture::sizes(&conn).unwrap_or_default();
    if args.json {
        let mut v = serde_json::to_value(&stats).map_err(anyhow::Error::from)?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert(
                "capture".into(),
                serde_json::to_value(&capture).map_err(anyhow::Error::from)?,
            );
        }
        output::print_json(&v)?;
        return Ok(0);
    }
    print_human(&stats)?;
    view::line(capture_line(&capture))?;
    Ok(0)
}

/// One line on captured output (all sessions, whatever the filters).
pub fn capture_line(c: &crate::store::capture::Sizes) -> String {
    use crate::cmd::replay::human_bytes;
    let ratio = if c.raw_bytes > 0 {
        format!(
            ", {:.2}× of the output",
            c.stored_bytes as f64 / c.raw_bytes as f64
        )
    } else {
        String::new()
    };
    format!(
        "capture       {} sessions, {} of output stored in {}{ratio}",
        c.sessions,
        human_bytes(c.raw_bytes),
        human_bytes(c.stored_bytes)
    )
}

fn percent(rate: Option<f64>) -> String {
    rate.map(|r| format!("{:.1}%", r * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn print_human(s: &Stats) -> CliResult<i32> {
    view::line(format!(
        "sessions      {} ({} active, {} ended, {} completed)",
        s.sessions, s.active_sessions, s.ended_sessions, s.completed_sessions
    ))?;
    view::line(format!(
        "success rate  {} (completed / ended)",
        percent(s.success_rate)
    ))?;
    view::line(format!("events        {}", s.events))?;
    if !s.by_agent.is_empty() {
        view::line("\nBy agent")?;
        let mut t = output::table(&[
            "AGENT",
            "SESSIONS",
            "ACTIVE",
            "ENDED",
            "COMPLETED",
            "SUCCESS",
            "EVENTS",
        ]);
        for a in &s.by_agent {
            t.add_row(vec![
                Cell::new(&a.agent_name),
                Cell::new(a.sessions),
                Cell::new(a.active_sessions),
                Cell::new(a.ended_sessions),
                Cell::new(a.completed_sessions),
                Cell::new(percent(a.success_rate)),
                Cell::new(a.events),
            ]);
        }
        output::print_table(t)?;
    }
    if !s.by_type.is_empty() {
        view::line("\nBy type")?;
        let mut t = output::table(&["TYPE", "EVENTS"]);
        for c in &s.by_type {
            t.add_row(vec![view::type_cell(&c.event_type), Cell::new(c.n)]);
        }
        output::print_table(t)?;
    }
    if !s.by_pattern.is_empty() {
        view::line("\nBy pattern")?;
        let mut t = output::table(&["PATTERN", "TYPE", "EVENTS"]);
        for c in &s.by_pattern {
            t.add_row(vec![
                Cell::new(&c.pattern),
                view::type_cell(&c.event_type),
                Cell::new(c.n),
            ]);
        }
        output::print_table(t)?;
    }
    if !s.by_risk.is_empty() {
        view::line("\nBy risk")?;
        let mut t = output::table(&["RISK", "EVENTS"]);
        for c in &s.by_risk {
            let label = if c.risk_level.is_empty() {
                "(none)"
            } else {
                &c.risk_level
            };
            t.add_row(vec![
                view::risk_cell_text(&c.risk_level, label),
                Cell::new(c.n),
            ]);
        }
        output::print_table(t)?;
    }
    Ok(0)
}
