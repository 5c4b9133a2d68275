//! `wrapper sessions`: the recorded sessions, newest first, with the filters of SPEC §7.

use chrono::Utc;
use clap::Args;

use crate::cli::DbOpt;
use crate::cmd::view::{self, Format};
use crate::error::CliResult;
use crate::output;
use crate::store::git::{self, GitSummary};
use crate::store::query::{self, Session, SessionFilter};
use crate::time::{self, Edge};

/// List recorded sessions, newest first
#[derive(Debug, Args)]
pub struct SessionsArgs {
    /// Only sessions of this agent
    #[arg(long, value_name = "AGENT")]
    pub agent: Option<String>,
    /// Only sessions still running (started or running)
    #[arg(long)]
    pub active: bool,
    /// Only sessions started since WHEN: a duration ago (7d, 12h), a date or an RFC 3339 time
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only sessions in this git repository: a path inside its work tree, or its remote URL
    #[arg(long, value_name = "PATH")]
    pub repo: Option<String>,
    /// Only sessions on this git branch (at the start or at the end)
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
    /// Most sessions to list; 0 for all
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: u64,
    /// One JSON array; field names are the columns of process_sessions
    #[arg(long)]
    pub json: bool,
    /// One JSON object per line
    #[arg(long, conflicts_with = "json")]
    pub jsonl: bool,
    #[command(flatten)]
    pub db: DbOpt,
}

/// A session as `--json` gives it: the columns of `process_sessions`, and `git` (the
/// `session_git` facts, or null).
#[derive(serde::Serialize)]
struct SessionWithGit<'a> {
    #[serde(flatten)]
    session: &'a Session,
    git: Option<&'a GitSummary>,
}

pub fn run(args: SessionsArgs) -> CliResult<i32> {
    let filter = SessionFilter {
        agent: args.agent,
        active: args.active,
        since: view::bound("since", args.since.as_deref(), Edge::Start)?,
        limit: args.limit,
        offset: 0,
        repo: args.repo,
        branch: args.branch,
    };
    let (conn, _) = view::open_db(&args.db)?;
    let rows = query::sessions(&conn, &filter).map_err(view::query_error)?;
    let ids: Vec<&str> = rows.iter().map(|s| s.session_id.as_str()).collect();
    let git = git::summaries(&conn, &ids).map_err(|e| view::query_error(e.into()))?;
    let machine: Vec<SessionWithGit> = rows
        .iter()
        .map(|s| SessionWithGit {
            session: s,
            git: git.get(&s.session_id),
        })
        .collect();
    if view::emit_machine(Format::from_flags(args.json, args.jsonl), &machine)? {
        return Ok(0);
    }
    if rows.is_empty() {
        view::nothing("no sessions match")?;
        return Ok(0);
    }
    let now = Utc::now();
    // A BRANCH column only where some session was in a repository.
    let with_git = !git.is_empty();
    let mut header = vec![
        "SESSION", "AGENT", "STATE", "STARTED", "DURATION", "EXIT", "LINES", "EVENTS",
    ];
    if with_git {
        header.push("BRANCH");
    }
    header.push("COMMAND");
    let mut t = output::table(&header);
    for s in &rows {
        let duration = s
            .ended_at
            .as_deref()
            .and_then(|end| time::duration_ms(&s.started_at, end))
            .map(time::human_duration)
            .unwrap_or_default();
        let exit = match (&s.exit_code, &s.signal) {
            (Some(c), _) => c.to_string(),
            (None, Some(sig)) => sig.clone(),
            _ => String::new(),
        };
        let mut row = vec![
            comfy_table::Cell::new(view::short_session(&s.session_id)),
            comfy_table::Cell::new(&s.agent_name),
            view::state_cell(&s.state),
            comfy_table::Cell::new(view::when(&s.started_at, now)),
            comfy_table::Cell::new(duration),
            comfy_table::Cell::new(exit),
            comfy_table::Cell::new(s.total_lines_processed),
            comfy_table::Cell::new(s.total_extraction_events),
        ];
        if with_git {
            let branch = git
                .get(&s.session_id)
                .and_then(|g| g.branch.clone())
                .unwrap_or_default();
            row.push(comfy_table::Cell::new(branch));
        }
        row.push(comfy_table::Cell::new(view::elide(
            &view::command_text(&s.command_json),
            view::TEXT_MAX,
        )));
        t.add_row(row);
    }
    // Narrow terminals lose the counts and the duration before anything is cut short.
    view::fit(&mut t, &["LINES", "DURATION", "EVENTS", "STARTED"]);
    output::print_table(t)?;
    Ok(0)
}
