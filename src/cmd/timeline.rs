//! `wrapper timeline [--agent A]`: what the agents (or one agent) did, in time order: their
//! sessions' state changes (started, running, completed, …) interleaved with their events.

use chrono::Utc;
use clap::Args;
use comfy_table::Cell;

use crate::cli::DbOpt;
use crate::cmd::view::{self, Format};
use crate::error::CliResult;
use crate::output;
use crate::store::query::{self, TimelineFilter};
use crate::time::Edge;

/// One agent's state changes and events in time order
#[derive(Debug, Args)]
pub struct TimelineArgs {
    /// Only this agent's sessions [default: every agent]
    #[arg(long, value_name = "AGENT")]
    pub agent: Option<String>,
    /// Start here (inclusive) and show the first N entries: a duration ago, a date or a time
    #[arg(long, value_name = "WHEN")]
    pub from: Option<String>,
    /// End here (exclusive; a plain date includes that day); without --from, the last N before it
    #[arg(long, value_name = "WHEN")]
    pub to: Option<String>,
    /// Most entries; 0 for all
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub limit: u64,
    /// One JSON array (fields: timestamp, session_id, kind, what, pattern, risk_level, detail, line_number)
    #[arg(long)]
    pub json: bool,
    /// One JSON object per line
    #[arg(long, conflicts_with = "json")]
    pub jsonl: bool,
    #[command(flatten)]
    pub db: DbOpt,
}

pub fn run(args: TimelineArgs) -> CliResult<i32> {
    let filter = TimelineFilter {
        agent: args.agent,
        from: view::bound("from", args.from.as_deref(), Edge::Start)?,
        to: view::bound("to", args.to.as_deref(), Edge::End)?,
        limit: args.limit,
    };
    let (conn, _) = view::open_db(&args.db)?;
    let rows = query::timeline(&conn, &filter).map_err(view::query_error)?;
    if view::emit_machine(Format::from_flags(args.json, args.jsonl), &rows)? {
        return Ok(0);
    }
    if rows.is_empty() {
        match &filter.agent {
            Some(a) => view::nothing(&format!("nothing recorded for agent {a:?} in that window"))?,
            None => view::nothing("nothing recorded in that window")?,
        }
        view::empty_range_hint(("--from", &filter.from), ("--to", &filter.to));
        return Ok(0);
    }
    let now = Utc::now();
    let mut t = output::table(&["TIME", "SESSION", "WHAT", "PATTERN", "RISK", "DETAIL"]);
    for e in &rows {
        let what = if e.kind == "state" {
            view::state_cell_text(&e.what, &format!("[{}]", e.what))
        } else {
            view::type_cell(&e.what)
        };
        t.add_row(vec![
            Cell::new(view::when(&e.timestamp, now)),
            Cell::new(view::short_session(&e.session_id)),
            what,
            Cell::new(e.pattern.as_deref().unwrap_or("")),
            view::risk_cell(e.risk_level.as_deref()),
            Cell::new(view::elide(
                e.detail.as_deref().unwrap_or(""),
                view::TEXT_MAX,
            )),
        ]);
    }
    view::fit(&mut t, &["RISK", "PATTERN", "SESSION"]);
    output::print_table(t)?;
    Ok(0)
}
