//! `wrapper show <SESSION>`: one session in full: its row, its state history, its event
//! counts (from `event_counts`, so even a session of millions of events shows at once) and
//! its code blocks.

use chrono::Utc;
use clap::Args;
use comfy_table::Cell;
use serde::Serialize;

use crate::cli::DbOpt;
use crate::cmd::view;
use crate::error::CliResult;
use crate::output;
use crate::store::git::{self, SessionGit};
use crate::store::query::{
    self, CodeBlockFilter, CodeBlockRecord, EventCount, Session, StateChange,
};
use crate::store::usage::{self, SessionUsage};
use crate::time;

/// Show one session: its details, state history, event counts and code blocks
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Session id, or any unique prefix of one
    #[arg(value_name = "SESSION")]
    pub session: String,
    /// Most code blocks to list (newest first); 0 for all
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub blocks: u64,
    /// One JSON object: {session, state_changes, event_counts, code_blocks, code_blocks_total, usage}
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub db: DbOpt,
}

/// `--json` output of `show`.
#[derive(Serialize)]
struct ShowJson {
    session: Session,
    state_changes: Vec<StateChange>,
    event_counts: Vec<EventCount>,
    code_blocks: Vec<CodeBlockRecord>,
    /// All code blocks first seen in the session; `code_blocks` holds the newest `--blocks`.
    code_blocks_total: i64,
    /// What the agent reported: its session id, model, tokens, cost, and its log's path.
    usage: Option<SessionUsage>,
    /// The repository facts (`session_git`, with commits and files), or null.
    git: Option<SessionGit>,
}

pub fn run(args: ShowArgs) -> CliResult<i32> {
    let (conn, _) = view::open_db(&args.db)?;
    let id = query::resolve_session(&conn, &args.session).map_err(view::query_error)?;
    let session = query::session(&conn, &id).map_err(view::query_error)?;
    let state_changes = query::state_changes(&conn, &id).map_err(view::query_error)?;
    let event_counts = query::event_counts(&conn, &id).map_err(view::query_error)?;
    let code_blocks = query::code_blocks(
        &conn,
        &CodeBlockFilter {
            session: Some(id.clone()),
            limit: args.blocks,
            ..Default::default()
        },
    )
    .map_err(view::query_error)?;
    let code_blocks_total = query::code_block_count(&conn, &id).map_err(view::query_error)?;
    let usage = usage::session_usage(&conn, &id).map_err(view::query_error)?;
    let git = git::session_git(&conn, &id).map_err(|e| view::query_error(e.into()))?;
    let data = ShowJson {
        session,
        state_changes,
        event_counts,
        code_blocks,
        code_blocks_total,
        usage,
        git,
    };
    if args.json {
        output::print_json(&data)?;
        return Ok(0);
    }
    print_human(&data)
}

fn print_human(d: &ShowJson) -> CliResult<i32> {
    let now = Utc::now();
    let s = &d.session;
    let mut t = output::table(&["", ""]);
    t.set_header(Vec::<String>::new());
    let mut outcome = s.state.clone();
    if let Some(c) = s.exit_code {
        outcome.push_str(&format!(" (exit {c})"));
    } else if let Some(sig) = &s.signal {
        outcome.push_str(&format!(" ({sig})"));
    }
    let mut kv = |k: &str, v: Cell| {
        t.add_row(vec![Cell::new(k), v]);
    };
    kv("session", Cell::new(&s.session_id));
    kv("agent", Cell::new(&s.agent_name));
    kv("state", view::state_cell_text(&s.state, &outcome));
    kv(
        "started",
        Cell::new(format!(
            "{} ({})",
            s.started_at,
            time::relative(&s.started_at, now)
        )),
    );
    if let Some(end) = &s.ended_at {
        let took = time::duration_ms(&s.started_at, end)
            .map(|ms| format!(" (took {})", time::human_duration(ms)))
            .unwrap_or_default();
        kv("ended", Cell::new(format!("{end}{took}")));
    }
    kv(
        "command",
        Cell::new(view::visible(&view::command_text(&s.command_json))),
    );
    if let Some(env) = &s.environment {
        kv("environment", Cell::new(view::visible(env)));
    }
    if let Some(cwd) = &s.cwd {
        kv("cwd", Cell::new(view::visible(cwd)));
    }
    let host = s.hostname.clone().unwrap_or_default();
    let pid = s.pid.map(|p| format!(" pid {p}")).unwrap_or_default();
    kv("host", Cell::new(format!("{host}{pid}")));
    kv(
        "lines",
        Cell::new(format!(
            "{} lines, {} events",
            s.total_lines_processed, s.total_extraction_events
        )),
    );
    if let Some(v) = &s.extraction_config_version {
        kv("rules", Cell::new(v));
    }
    if let Some(v) = &s.wrapper_version {
        kv("wrapper", Cell::new(v));
    }
    output::print_table(t)?;
    if let Some(u) = &d.usage {
        crate::cmd::usage::print_session(u)?;
    }
    if let Some(g) = &d.git {
        print_git(g)?;
    }

    view::line("\nState history")?;
    let mut t = output::table(&["TIME", "STATE", "EXIT", "DETAIL"]);
    for c in &d.state_changes {
        t.add_row(vec![
            Cell::new(&c.timestamp),
            view::state_cell(&c.state),
            Cell::new(c.exit_code.map(|c| c.to_string()).unwrap_or_default()),
            Cell::new(c.metadata_json.as_deref().unwrap_or("")),
        ]);
    }
    output::print_table(t)?;

    view::line("\nEvents")?;
    if d.event_counts.is_empty() {
        view::line("  none")?;
    } else {
        let mut t = output::table(&["TYPE", "PATTERN", "RISK", "N"]);
        for c in &d.event_counts {
            t.add_row(vec![
                view::type_cell(&c.event_type),
                Cell::new(&c.pattern),
                view::risk_cell(Some(&c.risk_level)),
                Cell::new(c.n),
            ]);
        }
        output::print_table(t)?;
    }

    view::line(format!("\nCode blocks ({})", d.code_blocks_total))?;
    if d.code_blocks.is_empty() {
        view::line("  none")?;
    } else {
        crate::cmd::code_blocks::print_blocks(&d.code_blocks, false)?;
        let hidden = d.code_blocks_total - d.code_blocks.len() as i64;
        if hidden > 0 {
            view::line(format!(
                "  … and {hidden} more (`wrapper code-blocks --session {} --limit 0`)",
                s.session_id
            ))?;
        }
    }
    Ok(0)
}

/// A commit id as people read it.
fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "dirty",
        Some(false) => "clean",
        None => "unknown",
    }
}

fn print_git(g: &SessionGit) -> CliResult<()> {
    view::line("\nGit")?;
    let mut t = output::table(&["", ""]);
    t.set_header(Vec::<String>::new());
    let mut kv = |k: &str, v: String| {
        t.add_row(vec![Cell::new(k), Cell::new(view::visible(&v))]);
    };
    if let Some(root) = &g.repo_root {
        kv("repository", root.clone());
    }
    if let Some(url) = &g.remote_url {
        kv("remote", url.clone());
    }
    let branch = |b: &Option<String>| b.clone().unwrap_or_else(|| "(detached)".into());
    let mut b = branch(&g.branch);
    if g.head_end.is_some() && g.branch_end != g.branch {
        b = format!("{b} → {}", branch(&g.branch_end));
    }
    kv("branch", b);
    let head = |h: &Option<String>| {
        h.as_deref()
            .map_or("(none)".to_string(), |h| short(h).into())
    };
    let mut heads = format!("{} ({})", head(&g.head_start), yes_no(g.dirty_start));
    if g.head_end.is_some() || g.dirty_end.is_some() {
        heads.push_str(&format!(
            " → {} ({})",
            head(&g.head_end),
            yes_no(g.dirty_end)
        ));
    }
    kv("HEAD", heads);
    if let Some(n) = g.commit_count {
        kv("commits", n.to_string());
    }
    if let Some(e) = &g.error {
        kv("note", e.clone());
    }
    output::print_table(t)?;
    if !g.commits.is_empty() {
        let mut t = output::table(&["COMMIT", "COMMITTED", "SUBJECT"]);
        for c in &g.commits {
            t.add_row(vec![
                Cell::new(short(&c.sha)),
                Cell::new(&c.committed_at),
                Cell::new(view::visible(&c.subject)),
            ]);
        }
        output::print_table(t)?;
    }
    if !g.files.is_empty() {
        let mut t = output::table(&["FILE", "CHANGE", "WHERE"]);
        for f in &g.files {
            t.add_row(vec![
                Cell::new(view::visible(&f.path)),
                Cell::new(&f.change),
                Cell::new(if f.committed {
                    "committed"
                } else {
                    "work tree"
                }),
            ]);
        }
        output::print_table(t)?;
        if let Some(n) = g.file_count.filter(|&n| n > g.files.len() as i64) {
            view::line(format!("  … and {} more", n - g.files.len() as i64))?;
        }
    }
    Ok(())
}
