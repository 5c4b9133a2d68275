//! `wrapper completions SHELL` and `wrapper man`: generated from the same clap definitions as
//! `--help`, so they can never disagree with it.

use std::io::{self, Write};

use crate::error::CliResult;
use crate::output;

/// Writes the completion script for `shell` to stdout.
pub fn completions(mut cmd: clap::Command, shell: clap_complete::Shell) -> CliResult<i32> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "wrapper", &mut buf);
    io::stdout()
        .lock()
        .write_all(&buf)
        .map_err(output::io_error)?;
    Ok(0)
}

/// Writes the roff manual page, with one section per subcommand, to stdout.
pub fn man(cmd: clap::Command) -> CliResult<i32> {
    let mut buf = Vec::new();
    let page = clap_mangen::Man::new(cmd.clone());
    page.render(&mut buf)
        .map_err(|e| crate::error::CliError::internal(anyhow::anyhow!("man page: {e}")))?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        buf.extend_from_slice(
            format!(".SH \"WRAPPER {}\"\n", sub.get_name().to_uppercase()).as_bytes(),
        );
        let about = sub
            .get_long_about()
            .or(sub.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        buf.extend_from_slice(roff_escape(&about).as_bytes());
        buf.push(b'\n');
        buf.extend_from_slice(b".PP\n");
        let usage = sub
            .clone()
            .bin_name(format!("wrapper {}", sub.get_name()))
            .render_usage()
            .to_string();
        buf.extend_from_slice(
            format!(
                "\\fB{}\\fR\n",
                roff_escape(usage.trim_start_matches("Usage: "))
            )
            .as_bytes(),
        );
        for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
            let name = match (arg.get_short(), arg.get_long()) {
                (Some(s), Some(l)) => format!("-{s}, --{l}"),
                (None, Some(l)) => format!("--{l}"),
                (Some(s), None) => format!("-{s}"),
                (None, None) => arg.get_id().to_string().to_uppercase(),
            };
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            buf.extend_from_slice(
                format!(
                    ".TP\n\\fB{}\\fR\n{}\n",
                    roff_escape(&name),
                    roff_escape(&help)
                )
                .as_bytes(),
            );
        }
    }
    io::stdout()
        .lock()
        .write_all(&buf)
        .map_err(output::io_error)?;
    Ok(0)
}

/// Text safe in a roff paragraph: backslashes doubled, and a line never starts with a control
/// character (`.` or `'`).
fn roff_escape(s: &str) -> String {
    s.lines()
        .map(|l| {
            let l = l.replace('\\', "\\\\");
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
