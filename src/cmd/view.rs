//! What the query commands share: opening the database for reading, turning filter values
//! into typed bounds with one-line errors, and the small pieces of presentation (relative
//! times, elided cells, coloured states and risks, JSON Lines) that every table needs.
//! Tables and JSON themselves come from [`crate::output`].

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use comfy_table::{Cell, Color};
use rusqlite::Connection;
use serde::Serialize;

use crate::cli::DbOpt;
use crate::config::db_path;
use crate::error::{CliError, CliResult};
use crate::output;
use crate::store::query::QueryError;
use crate::store::{self, OpenMode};
use crate::time::{self, Edge};

/// Opens an existing database for a query command. Sessions whose wrapper died are marked
/// `abandoned` first (SPEC §6.4), so `--active` and `prune` never mistake them for live ones;
/// that is best effort, because a query must still work on a database it cannot write.
pub fn open_db(opt: &DbOpt) -> CliResult<(Connection, PathBuf)> {
    let path = db_path(opt)?;
    let conn = store::open(&path, OpenMode::Existing).map_err(CliError::usage)?;
    let _ = store::recover_abandoned(&conn);
    Ok((conn, path))
}

/// Query failures are the user's to fix (a bad id, a bad search) or the database's; both
/// exit 2 with one line, as `db check` does.
pub fn query_error(e: QueryError) -> CliError {
    CliError::usage(e)
}

/// Parses a `--since`/`--until`/`--from`/`--to` value into the stored-timestamp form.
pub fn bound(flag: &str, value: Option<&str>, edge: Edge) -> CliResult<Option<String>> {
    value
        .map(|v| time::parse_bound(v, edge, Utc::now()))
        .transpose()
        .map_err(|e| CliError::usage(anyhow!("--{flag}: {e}")))
}

/// How rows are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Jsonl,
}

impl Format {
    pub fn from_flags(json: bool, jsonl: bool) -> Format {
        if jsonl {
            Format::Jsonl
        } else if json {
            Format::Json
        } else {
            Format::Table
        }
    }
}

/// Prints rows for machines and returns true, or returns false for a table to be built:
/// machine output never waits for, or pays for, presentation.
pub fn emit_machine<T: Serialize>(format: Format, rows: &[T]) -> CliResult<bool> {
    match format {
        Format::Table => Ok(false),
        Format::Json => output::print_json(&rows).map(|_| true),
        Format::Jsonl => print_jsonl(rows).map(|_| true),
    }
}

/// One compact JSON object per line.
pub fn print_jsonl<T: Serialize>(rows: &[T]) -> CliResult<()> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    for r in rows {
        serde_json::to_writer(&mut out, r).map_err(|e| output::io_error(io::Error::other(e)))?;
        out.write_all(b"\n").map_err(output::io_error)?;
    }
    out.flush().map_err(output::io_error)
}

/// Prints a plain line of people's output, quietly ending on a closed pipe.
pub fn line(text: impl std::fmt::Display) -> CliResult<()> {
    writeln!(io::stdout().lock(), "{text}").map_err(output::io_error)
}

/// A stored timestamp for a table: relative on a terminal ("3 min ago"), exact otherwise, so
/// piped output stays precise and sortable.
pub fn when(ts: &str, now: DateTime<Utc>) -> String {
    if output::stdout_is_terminal() {
        time::relative(ts, now)
    } else {
        ts.to_string()
    }
}

/// Text fit for one table cell: control characters (tabs, newlines, stray escapes) become
/// spaces, and anything longer than `max` characters is cut with `…`.
pub fn elide(s: &str, max: usize) -> String {
    let long = s.chars().nth(max).is_some();
    let keep = if long { max.saturating_sub(1) } else { max };
    let mut out: String = s
        .chars()
        .take(keep)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if long {
        out.push('…');
    }
    out
}

/// The widest a free-text cell gets: the terminal decides on a terminal (comfy-table wraps,
/// [`one_line`] then cuts), a fixed width elsewhere keeps piped tables readable.
pub const TEXT_MAX: usize = 120;

/// Keeps every row of a table on one line on a terminal: cells are wrapped to the terminal's
/// width and then cut to their first line, with an ellipsis.
pub fn one_line(t: &mut comfy_table::Table) {
    // A terminal that reports no usable size (a bare pty, some CI runners) would squeeze every
    // column to one character; lay out for a common width instead.
    if output::stdout_is_terminal() && t.width().is_none_or(|w| w < 40) {
        t.set_width(120);
    }
    t.set_truncation_indicator("…");
    for row in t.row_iter_mut() {
        row.max_height(1);
    }
    if !output::stdout_is_terminal() {
        // No terminal, no width to fit (the arrangement is off): the column limits below
        // would only cost a pass over every cell.
        return;
    }
    // A narrow terminal squeezes columns, and a header cut in two ("SESSI" over "ON") or a
    // short value cut ("2 mi…") reads worst of all: every column keeps at least its header's
    // width, and a column of short values (10 characters at most: times, ids, counts) its
    // widest value's. Columns of longer text, and the last column, are cut with an ellipsis;
    // a terminal too narrow even for the rest gets lines that wrap.
    let widths = |cells: std::slice::Iter<'_, Cell>| -> Vec<usize> {
        cells.map(|c| c.content().chars().count()).collect()
    };
    let mut mins: Vec<usize> = t
        .header()
        .map(|h| widths(h.cell_iter()))
        .unwrap_or_default();
    for row in t.row_iter() {
        for (i, w) in widths(row.cell_iter()).into_iter().enumerate() {
            if let Some(m) = mins.get_mut(i) {
                if w <= 10 {
                    *m = (*m).max(w);
                }
            }
        }
    }
    // The last column is the free text one: it takes what is left.
    mins.pop();
    for (col, min) in t.column_iter_mut().zip(mins) {
        // The boundary counts the cell's padding too.
        let width = u16::try_from(min)
            .unwrap_or(u16::MAX)
            .saturating_add(col.padding_width());
        col.set_constraint(comfy_table::ColumnConstraint::LowerBoundary(
            comfy_table::Width::Fixed(width),
        ));
    }
}

/// A session id for a narrow column: long generated ids are cut on a terminal (any unique
/// prefix is accepted back), kept whole elsewhere.
pub fn short_session(id: &str) -> String {
    if output::stdout_is_terminal() && id.chars().count() > 12 {
        id.chars().take(8).collect()
    } else {
        id.to_string()
    }
}

/// A state, coloured by outcome (colour only reaches a terminal; see [`output::table`]).
pub fn state_cell(state: &str) -> Cell {
    state_cell_text(state, state)
}

/// Any text, coloured as [`state_cell`] colours `state`.
pub fn state_cell_text(state: &str, text: &str) -> Cell {
    let c = Cell::new(text);
    match state {
        "completed" => c.fg(Color::Green),
        "failed" | "killed" | "spawn_failed" => c.fg(Color::Red),
        "interrupted" | "abandoned" => c.fg(Color::Yellow),
        "running" | "started" => c.fg(Color::Cyan),
        _ => c,
    }
}

/// A risk level, coloured by severity.
pub fn risk_cell(risk: Option<&str>) -> Cell {
    let r = risk.unwrap_or("");
    risk_cell_text(r, r)
}

/// Any text, coloured as [`risk_cell`] colours `r`.
pub fn risk_cell_text(r: &str, text: &str) -> Cell {
    let c = Cell::new(text);
    match r {
        "critical" | "high" => c.fg(Color::Red),
        "medium" => c.fg(Color::Yellow),
        _ => c,
    }
}

/// An event type, with errors in red so they stand out in a long list.
pub fn type_cell(t: &str) -> Cell {
    let c = Cell::new(t);
    match t {
        "error" => c.fg(Color::Red),
        "warning" => c.fg(Color::Yellow),
        "prompt" => c.fg(Color::Magenta),
        _ => c,
    }
}

/// `command_json` (a JSON array of strings) as a command line a person can read.
pub fn command_text(command_json: &str) -> String {
    match serde_json::from_str::<Vec<String>>(command_json) {
        Ok(words) => words
            .iter()
            .map(|w| {
                if w.is_empty() || w.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c))
                {
                    format!("'{}'", w.replace('\'', r"'\''"))
                } else {
                    w.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) => command_json.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elide_cuts_and_cleans() {
        assert_eq!(elide("short", 10), "short");
        assert_eq!(elide("abcdefghijkl", 5), "abcd…");
        assert_eq!(elide("abcde", 5), "abcde");
        assert_eq!(elide("a\tb\nc", 10), "a b c");
    }

    #[test]
    fn commands_read_like_shell() {
        assert_eq!(
            command_text(r#"["sh","-c","echo 'hi'"]"#),
            r#"sh -c 'echo '\''hi'\'''"#
        );
        assert_eq!(command_text("not json"), "not json");
    }
}
