//! wrapper: run an AI coding agent, pass its output through untouched, extract events with
//! user-editable regex rules, and record the session in SQLite.
//!
//! The data flow of the run path, one module each:
//! [`run::child`] spawn → [`run::pump`] read and pass through → [`lines`] split →
//! [`extract`] match → [`store::writer`] batch → SQLite ([`store`]).
//! Beside it, the query side: [`cmd`] (one file per subcommand) and [`output`].

pub mod agents;
pub mod capture;
pub mod cast;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod error;
pub mod event;
pub mod extract;
pub mod git;
pub mod json_text;
pub mod lines;
pub mod otel;
pub mod output;
pub mod run;
pub mod screen;
pub mod serve;
pub mod sink;
pub mod store;
pub mod suggest;
#[cfg(test)]
mod test_rng;
pub mod time;

use std::ffi::OsString;

use cli::Command;
use error::CliError;

/// Parses `args`, runs the command, and returns the process exit code.
pub fn main_with_args(args: Vec<OsString>) -> i32 {
    let cli = match cli::parse(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let verbosity = match &cli.command {
        Command::Run(r) => {
            if r.quiet {
                -1
            } else {
                r.verbose as i8
            }
        }
        _ => 0,
    };
    init_tracing(verbosity);
    let result = match cli.command {
        Command::Run(args) => config::RunConfig::resolve(args).and_then(run::run),
        Command::Patterns(p) => cmd::patterns::run(p.command),
        Command::ImportSpool(a) => cmd::import_spool::run(a),
        Command::Db(a) => cmd::db::run(a),
        Command::Sessions(a) => cmd::sessions::run(a),
        Command::Show(a) => cmd::show::run(a),
        Command::Events(a) => cmd::events::run(a),
        Command::CodeBlocks(a) => cmd::code_blocks::run(a),
        Command::Stats(a) => cmd::stats::run(a),
        Command::Timeline(a) => cmd::timeline::run(a),
        Command::Search(a) => cmd::search::run(a),
        Command::Prune(a) => cmd::prune::run(a),
        Command::Backup(a) => cmd::backup::run(a),
        Command::Completions(a) => {
            cmd::completions::completions(<cli::Cli as clap::CommandFactory>::command(), a.shell)
        }
        Command::Man => cmd::completions::man(<cli::Cli as clap::CommandFactory>::command()),
        Command::Replay(a) => cmd::replay::run(a),
        Command::Export(a) => cmd::export::run(a),
        Command::Serve(a) => cmd::serve::run(a),
    };
    match result {
        Ok(code) => code,
        Err(CliError { code: 0, .. }) => 0,
        Err(e) => {
            eprintln!("wrapper: {e}");
            e.code as i32
        }
    }
}

/// wrapper's own diagnostics go to stderr; warnings and errors only unless asked (SPEC §1).
fn init_tracing(verbosity: i8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbosity {
        i8::MIN..=-1 => "error",
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Escape codes only for a person at a terminal, never into logs or pipes.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .with_target(false)
        .without_time()
        .try_init();
}
