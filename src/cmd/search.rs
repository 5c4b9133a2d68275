//! `wrapper search <QUERY>`: ranked full-text search (SQLite FTS5, bm25) over event lines,
//! matched values and code blocks.
//!
//! The FTS indexes are external-content tables that the insert path never touches (that keeps
//! inserts fast); the run path's writer indexes new rows while it is idle, and this command
//! first indexes whatever is still missing, in short transactions (`store::fts`), then
//! searches.

use std::io::{self, Write};

use chrono::Utc;
use clap::Args;

use crate::cli::DbOpt;
use crate::cmd::view::{self, Format};
use crate::error::CliResult;
use crate::output;
use crate::store::fts;
use crate::store::query::{self, SearchHit, HIT_CLOSE, HIT_OPEN};

/// Full-text search over event lines and code blocks, best matches first
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Words that must all appear (any text; `word*` matches a prefix). With --raw, an FTS5 query
    #[arg(value_name = "QUERY", required = true, num_args = 1..)]
    pub query: Vec<String>,
    /// Only hits from this agent's sessions
    #[arg(long, value_name = "AGENT")]
    pub agent: Option<String>,
    /// Most hits; 0 for all
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: u64,
    /// Use SQLite's FTS5 query syntax as given: AND, OR, NOT, "phrases", NEAR(), prefix*
    #[arg(long)]
    pub raw: bool,
    /// One JSON array (fields: kind, id, session_id, agent_name, timestamp, event_type,
    /// pattern, line_number, language, digest, snippet, rank)
    #[arg(long)]
    pub json: bool,
    /// One JSON object per line
    #[arg(long, conflicts_with = "json")]
    pub jsonl: bool,
    #[command(flatten)]
    pub db: DbOpt,
}

pub fn run(args: SearchArgs) -> CliResult<i32> {
    let text = args.query.join(" ");
    let (conn, _) = view::open_db(&args.db)?;
    let backlog = fts::backlog(&conn).map_err(|e| view::query_error(e.into()))?;
    let loud = backlog > 100_000 && io::IsTerminal::is_terminal(&io::stderr());
    if loud {
        eprintln!(
            "wrapper: indexing {backlog} new rows for search (once; later searches are quick)…"
        );
    }
    // A database this user cannot write (opened read-only) is searched as far as it is
    // indexed, as `wrapper serve` searches it.
    let read_only = conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false);
    if read_only && backlog > 0 {
        eprintln!(
            "wrapper: the database is read-only here, so its {backlog} newest rows are not \
             indexed and not searched (a search by a user who can write it indexes them)"
        );
    } else {
        fts::sync(&conn, |_| {}).map_err(|e| view::query_error(e.into()))?;
    }
    let mut hits = query::search(&conn, &text, args.raw, args.agent.as_deref(), args.limit)
        .map_err(view::query_error)?;
    let format = Format::from_flags(args.json, args.jsonl);
    if format != Format::Table {
        for h in &mut hits {
            h.snippet = plain(&h.snippet);
        }
        view::emit_machine(format, &hits)?;
        return Ok(0);
    }
    if hits.is_empty() {
        view::line(format!("no matches for {text:?}"))?;
        return Ok(0);
    }
    print_hits(&hits)
}

/// The snippet without match markers, for machines.
fn plain(s: &str) -> String {
    s.chars()
        .filter(|&c| c != HIT_OPEN && c != HIT_CLOSE)
        .collect()
}

/// The snippet on one line, matches in bold red on a colour terminal.
fn highlighted(s: &str, color: bool) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            HIT_OPEN if color => out.push_str("\x1b[1;31m"),
            HIT_CLOSE if color => out.push_str("\x1b[0m"),
            HIT_OPEN | HIT_CLOSE => {}
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Two lines per hit: where it is, then the matching fragment. A table cannot hold the
/// highlighting (its widths would count the escape codes), and fragments read better whole.
fn print_hits(hits: &[SearchHit]) -> CliResult<i32> {
    let color = output::color_enabled();
    let now = Utc::now();
    let (dim, reset) = if color {
        ("\x1b[2m", "\x1b[0m")
    } else {
        ("", "")
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    for h in hits {
        let what = match h.kind.as_str() {
            "event" => format!(
                "{} {} line {}",
                h.event_type.as_deref().unwrap_or(""),
                h.pattern.as_deref().unwrap_or(""),
                h.line_number.unwrap_or(0)
            ),
            _ => format!(
                "code block {} {}",
                h.language.as_deref().unwrap_or("(no language)"),
                h.digest.as_deref().and_then(|d| d.get(..12)).unwrap_or("")
            ),
        };
        writeln!(
            out,
            "{dim}{}  {}  {}  {what}{reset}",
            view::when(&h.timestamp, now),
            h.agent_name,
            view::short_session(&h.session_id),
        )
        .and_then(|_| writeln!(out, "    {}", highlighted(&h.snippet, color)))
        .map_err(output::io_error)?;
    }
    out.flush().map_err(output::io_error)?;
    Ok(0)
}
