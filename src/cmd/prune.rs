//! `wrapper prune --older-than 30d`: retention. Deletes whole sessions that started before
//! the cutoff and have ended, with everything recorded under them, in one transaction. A
//! live session is never touched, and nothing is deleted unless asked: `--dry-run` shows
//! what would go.

use clap::Args;
use comfy_table::Cell;

use crate::cli::DbOpt;
use crate::cmd::view;
use crate::error::{CliError, CliResult};
use crate::output;
use crate::store::query;
use crate::time::Edge;

/// Delete ended sessions older than a cutoff, with their events and code blocks
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Sessions started before WHEN go: a duration ago (30d, 12h), a date or an RFC 3339 time
    #[arg(
        long,
        value_name = "WHEN",
        required_unless_present = "captures_older_than"
    )]
    pub older_than: Option<String>,
    /// Drop only the captured output (replay, export) of ended sessions started before WHEN;
    /// their events stay
    #[arg(long, value_name = "WHEN")]
    pub captures_older_than: Option<String>,
    /// Show what would be deleted, delete nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Report as one JSON object: sessions (the rows), events, event_counts, code_blocks,
    /// state_changes, dry_run
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub db: DbOpt,
}

pub fn run(args: PruneArgs) -> CliResult<i32> {
    let captures_cutoff = match &args.captures_older_than {
        Some(w) => view::bound("captures-older-than", Some(w), Edge::Start)?,
        None => None,
    };
    let cutoff = match &args.older_than {
        Some(w) => view::bound("older-than", Some(w), Edge::Start)?,
        None => None,
    };
    let (conn, path) = view::open_db(&args.db)?;
    if !args.dry_run && conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
        return Err(CliError::usage(anyhow::anyhow!(
            "database {}: it cannot be written by this user (read-only file, directory or \
             mount), and prune deletes from it; run it as the file's owner, or add --dry-run",
            path.display()
        )));
    }
    let dropped = match &captures_cutoff {
        Some(c) => Some(query::drop_captures(&conn, c, args.dry_run).map_err(view::query_error)?),
        None => None,
    };
    let Some(cutoff) = cutoff else {
        let (Some(d), Some(c)) = (dropped, captures_cutoff) else {
            return Ok(0);
        };
        if args.json {
            output::print_json(&serde_json::json!({ "captures": d }))?;
            return Ok(0);
        }
        view::line(format!(
            "{} the captured output of {} sessions started before {c} ({}){}",
            if d.dry_run { "would drop" } else { "dropped" },
            d.sessions.len(),
            crate::cmd::replay::human_bytes(d.stored_bytes),
            if d.dry_run {
                " (dry run: nothing deleted)"
            } else {
                "; their events stay"
            }
        ))?;
        return Ok(0);
    };
    let report = query::prune(&conn, &cutoff, args.dry_run).map_err(view::query_error)?;
    if args.json {
        let mut v = serde_json::to_value(&report).map_err(anyhow::Error::from)?;
        if let (Some(d), Some(obj)) = (dropped, v.as_object_mut()) {
            obj.insert(
                "captures".into(),
                serde_json::to_value(d).map_err(anyhow::Error::from)?,
            );
        }
        output::print_json(&v)?;
        return Ok(0);
    }
    if let Some(d) = &dropped {
        view::line(format!(
            "{} the captured output of {} more sessions ({})",
            if d.dry_run { "would drop" } else { "dropped" },
            d.sessions.len(),
            crate::cmd::replay::human_bytes(d.stored_bytes),
        ))?;
    }
    if report.sessions.is_empty() {
        view::line(format!(
            "nothing to prune: no ended session started before {cutoff}"
        ))?;
        return Ok(0);
    }
    if args.dry_run {
        let mut t = output::table(&["SESSION", "AGENT", "STATE", "STARTED", "EVENTS"]);
        for s in &report.sessions {
            t.add_row(vec![
                Cell::new(&s.session_id),
                Cell::new(&s.agent_name),
                view::state_cell(&s.state),
                Cell::new(&s.started_at),
                Cell::new(s.total_extraction_events),
            ]);
        }
        output::print_table(t)?;
    }
    view::line(format!(
        "{} {} started before {cutoff}: {}, {}, {}, {} of captured output{}",
        if args.dry_run {
            "would delete"
        } else {
            "deleted"
        },
        view::counted(report.sessions.len(), "session"),
        view::counted(report.events, "event"),
        view::counted(report.code_blocks, "code block"),
        view::counted(report.state_changes, "state change"),
        crate::cmd::replay::human_bytes(report.capture_bytes),
        if args.dry_run {
            " (dry run: nothing deleted)".to_string()
        } else {
            format!(" from {}", path.display())
        }
    ))?;
    Ok(0)
}
