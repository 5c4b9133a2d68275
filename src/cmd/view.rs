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
///
/// A database this user may read but not write (another user's, on a read-only mount, in a
/// directory they cannot write) is opened read-only: everything that only reads works, and
/// whatever would write says it cannot.
pub fn open_db(opt: &DbOpt) -> CliResult<(Connection, PathBuf)> {
    let path = db_path(opt)?;
    // A file this user may not write is read as a snapshot from the start: opened for
    // writing, SQLite would still make its `-wal` and `-shm` in a directory both may write.
    let writable = nix::unistd::access(&path, nix::unistd::AccessFlags::W_OK).is_ok();
    let first = if writable || !path.exists() {
        store::open(&path, OpenMode::Existing)
    } else {
        store::open_snapshot(&path)
    };
    let conn = match first {
        Err(e) if e.is_not_writable() => {
            tracing::debug!("{e}; opening it read-only");
            match store::open_snapshot(&path) {
                Ok(conn) => conn,
                // Its schema wants migrating, and that needs to write: this one says so.
                Err(ro @ store::StoreError::TooOld { .. }) => return Err(CliError::usage(ro)),
                // Reading failed too: the first error is the one that says why.
                Err(ro) => {
                    tracing::debug!("read-only: {ro}");
                    return Err(CliError::usage(e));
                }
            }
        }
        other => other.map_err(CliError::usage)?,
    };
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

/// `1 session`, `2 sessions`, `0 events`: a count with its noun, in the right number.
pub fn counted(n: impl TryInto<i64>, noun: &str) -> String {
    let n: i64 = n.try_into().unwrap_or(i64::MAX);
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Says that nothing matched: on stderr, so that a script reading stdout gets no rows and no
/// text to mistake for one (exit status stays 0: an empty answer is an answer).
pub fn nothing(what: &str) -> CliResult<()> {
    writeln!(io::stderr().lock(), "{what}").map_err(output::io_error)
}

/// When a time range is empty because its start is not before its end, says so on stderr:
/// `--since 2d --until 3d` is an easy slip (both are "ago") that otherwise just finds nothing.
pub fn empty_range_hint(start: (&str, &Option<String>), end: (&str, &Option<String>)) {
    if let (Some(a), Some(b)) = (start.1, end.1) {
        if a >= b {
            eprintln!(
                "hint: {} ({a}) is not before {} ({b}), so the range is empty; \
                 durations count back from now (--since 3d --until 2d is the day before yesterday)",
                start.0, end.0
            );
        }
    }
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

/// Text from the database as a terminal may show it: each control character (an ESC that
/// would start a sequence, BEL, a C1 control) written out as `\xNN`, as git quotes a path.
/// What an agent controls (a commit subject, a file name) reaches `show` this way, so an
/// OSC 52 in a commit message cannot set the reader's clipboard or clear their screen.
pub fn visible(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
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

/// Keeps every row of a table on one line on a terminal; see [`fit`].
pub fn one_line(t: &mut comfy_table::Table) {
    fit(t, &[]);
}

/// The narrowest a column of free text is squeezed to before columns are dropped.
const TEXT_MIN: usize = 8;

/// Keeps every row of a table on one line and fits it to the terminal's width, in this order
/// of sacrifice: free text (commands, values, details) is elided first, down to a few
/// characters; then the columns named in `drop_first` are left out, the first one first; short
/// values (states, times, ids, counts: 10 characters at most) and headers are never cut, so a
/// state never reads `interrup…`. Off a terminal nothing is fitted: piped tables stay whole.
pub fn fit(t: &mut comfy_table::Table, drop_first: &[&str]) {
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
    let width = usize::from(t.width().unwrap_or(120));
    let header: Vec<String> = t
        .header()
        .map(|h| h.cell_iter().map(|c| c.content()).collect())
        .unwrap_or_default();
    let count = |c: &Cell| c.content().chars().count();
    // Per column: the header's width, the widest value, and whether every value is short.
    let mut widest: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    let mut short: Vec<bool> = vec![true; header.len()];
    for row in t.row_iter() {
        for (i, c) in row.cell_iter().enumerate() {
            if let (Some(w), Some(s)) = (widest.get_mut(i), short.get_mut(i)) {
                let n = count(c);
                *w = (*w).max(n);
                *s &= n <= 10;
            }
        }
    }
    let pads: Vec<usize> = t
        .column_iter()
        .map(|c| usize::from(c.padding_width()))
        .collect();
    // The least each column can take: short columns their widest value, text its minimum.
    let least = |i: usize| -> usize {
        let h = header[i].chars().count();
        let w = if short[i] {
            widest[i]
        } else {
            widest[i].min(TEXT_MIN.max(h))
        };
        w + pads.get(i).copied().unwrap_or(0)
    };
    let mut shown: Vec<bool> = vec![true; header.len()];
    // The preset draws no lines, but every border position is still one blank character: one
    // at the left and one after each column.
    let total = |shown: &[bool]| -> usize {
        let cols: Vec<usize> = (0..header.len()).filter(|&i| shown[i]).collect();
        cols.iter().map(|&i| least(i)).sum::<usize>() + cols.len() + 1
    };
    for name in drop_first {
        if total(&shown) <= width {
            break;
        }
        if let Some(i) = header.iter().position(|h| h == name) {
            shown[i] = false;
        }
    }
    for (i, col) in t.column_iter_mut().enumerate() {
        let constraint = if !shown.get(i).copied().unwrap_or(true) {
            comfy_table::ColumnConstraint::Hidden
        } else {
            let w = if short.get(i).copied().unwrap_or(true) {
                widest[i]
            } else {
                widest[i].min(TEXT_MIN.max(header[i].chars().count()))
            };
            // The boundary counts the cell's padding too.
            let w = u16::try_from(w + usize::from(col.padding_width())).unwrap_or(u16::MAX);
            comfy_table::ColumnConstraint::LowerBoundary(comfy_table::Width::Fixed(w))
        };
        col.set_constraint(constraint);
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
