//! Output for people and for machines (SPEC §7): tables sized to the terminal with colour only
//! on a terminal (and never with `NO_COLOR`), JSON with field names equal to column names.
//! A closed pipe (`wrapper … | head`) ends output quietly, as ripgrep does.

use std::io::{self, IsTerminal, Write};

use anyhow::anyhow;
use comfy_table::{presets, ContentArrangement, Table};
use serde::Serialize;

use crate::error::CliError;

/// Whether stdout is a terminal a person reads.
pub fn stdout_is_terminal() -> bool {
    io::stdout().is_terminal()
}

/// Whether colour may be used on stdout.
pub fn color_enabled() -> bool {
    stdout_is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A table with a header, fitted to the terminal's width when there is one.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING)
        .set_content_arrangement(if stdout_is_terminal() {
            ContentArrangement::Dynamic
        } else {
            ContentArrangement::Disabled
        })
        .set_header({
            // One line, like every row (see `cmd::view::one_line`).
            let mut row = comfy_table::Row::from(header.to_vec());
            row.max_height(1);
            row
        });
    if !color_enabled() {
        // Without colour comfy-table must not think it writes to a terminal — but then it
        // would not look up the terminal's width either: take it first and keep it.
        let width = stdout_is_terminal().then(|| t.width()).flatten();
        t.force_no_tty();
        if let Some(w) = width {
            t.set_width(w);
        }
    }
    t
}

pub fn print_table(t: Table) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    let text = t.to_string();
    // comfy-table pads every line to the column width; trailing blanks only get in the way.
    for line in text.lines() {
        writeln!(out, "{}", line.trim_end()).map_err(io_error)?;
    }
    Ok(())
}

/// One JSON array, pretty on a terminal, compact otherwise.
pub fn print_json<T: Serialize>(v: &T) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    let res = if stdout_is_terminal() {
        serde_json::to_writer_pretty(&mut out, v)
    } else {
        serde_json::to_writer(&mut out, v)
    };
    res.map_err(|e| io_error(io::Error::other(e)))?;
    writeln!(out).map_err(io_error)
}

/// `println!` for command output: a closed pipe (`wrapper … | head`) ends the command quietly
/// instead of panicking. Returns `Result<(), CliError>`.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))
    };
}

/// Writes one line to stdout; see [`outln!`].
pub fn write_line(args: std::fmt::Arguments<'_>) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(io_error)
}

/// Maps an output error: a closed pipe is a quiet, successful end; anything else an error.
pub fn io_error(e: io::Error) -> CliError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        CliError {
            code: 0,
            error: anyhow!("broken pipe"),
        }
    } else {
        CliError {
            code: 1,
            error: anyhow!("writing output: {e}"),
        }
    }
}
