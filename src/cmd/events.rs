//! `wrapper events`: extracted events, newest first, filtered by agent, session, type,
//! pattern, risk and time (SPEC §7). The first page comes straight off an index (see
//! `store::query::events`), however many millions of events there are.

use chrono::Utc;
use clap::Args;
use comfy_table::Cell;

use crate::cli::DbOpt;
use crate::cmd::view::{self, Format};
use crate::error::CliResult;
use crate::output;
use crate::store::query::{self, EventFilter};
use crate::time::Edge;

/// List extracted events, newest first
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events of this agent
    #[arg(long, value_name = "AGENT")]
    pub agent: Option<String>,
    /// Only events of this session (full id or unique prefix)
    #[arg(long, value_name = "SESSION")]
    pub session: Option<String>,
    /// Only events of this type (error, warning, command, prompt, test_result, ...)
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Only events of this rule (its name, as `wrapper patterns list` shows)
    #[arg(long, value_name = "PATTERN")]
    pub pattern: Option<String>,
    /// Only events of exactly this risk level
    #[arg(long, value_name = "RISK", value_parser = ["low", "medium", "high", "critical"])]
    pub risk: Option<String>,
    /// Only events at or after WHEN: a duration ago (7d, 12h), a date or an RFC 3339 time
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only events before WHEN (a plain date includes that whole day)
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Most events to list; 0 for all
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: u64,
    /// One JSON array; field names are the columns of extraction_events
    #[arg(long)]
    pub json: bool,
    /// One JSON object per line (the same objects as --events-out writes, plus `id`)
    #[arg(long, conflicts_with = "json")]
    pub jsonl: bool,
    #[command(flatten)]
    pub db: DbOpt,
}

pub fn run(args: EventsArgs) -> CliResult<i32> {
    let since = view::bound("since", args.since.as_deref(), Edge::Start)?;
    let until = view::bound("until", args.until.as_deref(), Edge::End)?;
    let (conn, _) = view::open_db(&args.db)?;
    let session = args
        .session
        .as_deref()
        .map(|s| query::resolve_session(&conn, s))
        .transpose()
        .map_err(view::query_error)?;
    let one_session = session.is_some();
    let filter = EventFilter {
        agent: args.agent,
        session,
        event_type: args.event_type,
        pattern: args.pattern,
        risk: args.risk,
        since,
        until,
        limit: args.limit,
        offset: 0,
    };
    let rows = query::events(&conn, &filter).map_err(view::query_error)?;
    if view::emit_machine(Format::from_flags(args.json, args.jsonl), &rows)? {
        return Ok(0);
    }
    if rows.is_empty() {
        view::nothing("no events match")?;
        view::empty_range_hint(("--since", &filter.since), ("--until", &filter.until));
        return Ok(0);
    }
    let now = Utc::now();
    let mut header = vec!["TIME"];
    if !one_session {
        header.push("SESSION");
    }
    header.extend(["LINE", "TYPE", "PATTERN", "RISK", "VALUE"]);
    let mut t = output::table(&header);
    for e in &rows {
        let mut row = vec![Cell::new(view::when(&e.timestamp, now))];
        if !one_session {
            row.push(Cell::new(view::short_session(&e.session_id)));
        }
        let value = e
            .matched_value
            .as_deref()
            .or(e.original_line.as_deref())
            .unwrap_or("");
        row.extend([
            Cell::new(e.line_number.map(|n| n.to_string()).unwrap_or_default()),
            view::type_cell(&e.event_type),
            Cell::new(&e.pattern),
            view::risk_cell(e.risk_level.as_deref()),
            Cell::new(view::elide(value, view::TEXT_MAX)),
        ]);
        t.add_row(row);
    }
    view::fit(&mut t, &["LINE", "RISK", "SESSION", "PATTERN"]);
    output::print_table(t)?;
    Ok(0)
}
