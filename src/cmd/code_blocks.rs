//! `wrapper code-blocks` lists the code blocks agents printed; `wrapper code-blocks get`
//! prints one block's content exactly as stored, ready to redirect into a file.

use std::io::{self, Write};

use chrono::Utc;
use clap::{Args, Subcommand};
use comfy_table::Cell;

use crate::cli::DbOpt;
use crate::cmd::view::{self, Format};
use crate::error::CliResult;
use crate::output;
use crate::store::query::{self, CodeBlockFilter, CodeBlockRecord};

/// List code blocks, newest first, or print one with `get`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CodeBlocksArgs {
    #[command(subcommand)]
    pub command: Option<CodeBlocksCommand>,
    /// Only blocks of this agent
    #[arg(long, value_name = "AGENT")]
    pub agent: Option<String>,
    /// Only blocks in this language (the fence's info string: rust, python, json, ...)
    #[arg(long, value_name = "LANGUAGE")]
    pub language: Option<String>,
    /// Only blocks first seen in this session (full id or unique prefix)
    #[arg(long, value_name = "SESSION")]
    pub session: Option<String>,
    /// Most blocks to list; 0 for all
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: u64,
    /// One JSON array; field names are the columns of code_blocks
    #[arg(long)]
    pub json: bool,
    /// One JSON object per line
    #[arg(long, conflicts_with = "json")]
    pub jsonl: bool,
    #[command(flatten)]
    pub db: DbOpt,
}

#[derive(Debug, Subcommand)]
pub enum CodeBlocksCommand {
    /// Print one block's content, raw, by its digest or a unique prefix of it
    Get {
        /// The digest (SHA-256 hex) or a unique prefix, as `wrapper code-blocks` shows
        #[arg(value_name = "DIGEST-PREFIX")]
        digest: String,
    },
}

pub fn run(args: CodeBlocksArgs) -> CliResult<i32> {
    let (conn, _) = view::open_db(&args.db)?;
    if let Some(CodeBlocksCommand::Get { digest }) = &args.command {
        let block = query::code_block_by_digest(&conn, digest).map_err(view::query_error)?;
        let mut out = io::stdout().lock();
        out.write_all(block.content.as_bytes())
            .map_err(output::io_error)?;
        // Content is stored without the closing fence's newline; give the file its last one.
        if !block.content.is_empty() && !block.content.ends_with('\n') {
            out.write_all(b"\n").map_err(output::io_error)?;
        }
        out.flush().map_err(output::io_error)?;
        return Ok(0);
    }
    let session = args
        .session
        .as_deref()
        .map(|s| query::resolve_session(&conn, s))
        .transpose()
        .map_err(view::query_error)?;
    let filter = CodeBlockFilter {
        agent: args.agent,
        language: args.language,
        session,
        limit: args.limit,
        offset: 0,
    };
    let rows = query::code_blocks(&conn, &filter).map_err(view::query_error)?;
    if view::emit_machine(Format::from_flags(args.json, args.jsonl), &rows)? {
        return Ok(0);
    }
    if rows.is_empty() {
        view::nothing("no code blocks match")?;
        return Ok(0);
    }
    print_blocks(&rows, filter.session.is_none())
}

/// The code-block table, shared with `show` (which leaves out the session column).
pub fn print_blocks(rows: &[CodeBlockRecord], with_session: bool) -> CliResult<i32> {
    let now = Utc::now();
    let mut header = vec!["DIGEST", "LANGUAGE"];
    if with_session {
        header.push("SESSION");
    }
    header.extend(["TIME", "LINES", "BYTES", "SEEN", "OK", "FIRST LINE"]);
    let mut t = output::table(&header);
    for b in rows {
        let mut row = vec![
            Cell::new(b.digest.get(..12).unwrap_or(&b.digest)),
            Cell::new(b.language.as_deref().unwrap_or("")),
        ];
        if with_session {
            row.push(Cell::new(view::short_session(&b.session_id)));
        }
        let lines = match (b.line_start, b.line_end) {
            (Some(a), Some(z)) => format!("{a}-{z}"),
            (Some(a), None) => format!("{a}-"),
            _ => String::new(),
        };
        let first = b
            .content
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        row.extend([
            Cell::new(view::when(&b.timestamp, now)),
            Cell::new(lines),
            Cell::new(b.content.len()),
            Cell::new(b.occurrences),
            Cell::new(if b.parseable { "yes" } else { "no" }),
            Cell::new(view::elide(first, 80)),
        ]);
        t.add_row(row);
    }
    view::fit(&mut t, &["BYTES", "SEEN", "OK", "LINES", "SESSION", "TIME"]);
    output::print_table(t)?;
    Ok(0)
}
