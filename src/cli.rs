//! Command-line definitions (clap) and nothing else: the doc comments here are the `--help`.
//!
//! The run form has no subcommand word: `wrapper codex -- make test`. [`parse`] recognises it
//! (the first word that is not an option is not one of wrapper's subcommands) and parses it as
//! `wrapper run codex -- make test`, so there is exactly one definition of the run options.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};

const ABOUT: &str =
    "Run an AI coding agent, show its output untouched, extract events, record the session";

const LONG_ABOUT: &str = "\
Run an AI coding agent (Codex, Claude Code, aider, Gemini CLI, or any command) exactly as if it
ran alone, while every line of its output goes through regex rules that extract events: errors,
warnings, shell commands, prompts with their risk, test results, file paths, code blocks.
With --enable-db the session and its events are recorded in SQLite, to be queried afterwards
with wrapper's own commands or with sqlite3.";

const EXAMPLES: &str = "\
Examples:
  wrapper codex -- codex exec \"fix the failing test\"     run an agent, record nothing
  wrapper claude --enable-db -- claude                   record the session in SQLite
  wrapper codex \"echo 'test error'\" --enable-db          one word with shell syntax runs via sh -c
  wrapper aider --db ./agents.db -- aider --yes          a database of your own
  wrapper patterns test --agent codex < build.log        try the rules on a saved log
  wrapper patterns list                                  the rules in force and where they come from
  sqlite3 \"$(wrapper db path)\" 'select event_type, count(*) from extraction_events group by 1'

Everything after `--` is the agent's command, passed through untouched. Without `--`, wrapper's
own options may still follow the command (wrapper codex sleep 1 --enable-db); an option wrapper
does not know is an error there, so put `--` before commands that take options.

Options for running an agent (all described in `wrapper run --help`): --enable-db, --db PATH,
--patterns PATH (repeatable), --no-default-patterns, --session-id ID, --env NAME,
--batch-size N, --flush-interval DUR, --kill-after DUR, --events-out PATH, --no-redact,
--no-capture,
--max-line SIZE, --prompt-idle DUR, --subreaper, --config PATH, -q/--quiet, -v/--verbose.
Environment: WRAPPER_DB, WRAPPER_ENABLE_DB, WRAPPER_ENV; config file:
$XDG_CONFIG_HOME/wrapper/config.toml.

Exit status: the agent's own; 128+N if it died of signal N; 127 command not found; 126 not
executable; 125 wrapper's own failure after starting; 2 bad usage or configuration.";

#[derive(Debug, Parser)]
#[command(
    name = "wrapper",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXAMPLES,
    override_usage = "wrapper [OPTIONS] <AGENT> [--] <COMMAND>...\n       wrapper <SUBCOMMAND> [ARGS]",
    arg_required_else_help = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an agent (the default: `wrapper codex -- cmd` means `wrapper run codex -- cmd`)
    #[command(after_help = EXAMPLES)]
    Run(RunArgs),
    /// List, check and try pattern files
    Patterns(PatternsArgs),
    /// Load a spool file (written when the database failed mid-run) into the database
    ImportSpool(ImportSpoolArgs),
    /// Database maintenance: where it is, whether it is healthy, migrate it
    Db(DbArgs),
    /// List recorded sessions, newest first
    Sessions(crate::cmd::sessions::SessionsArgs),
    /// Show one session: details, state history, event counts, code blocks
    Show(crate::cmd::show::ShowArgs),
    /// List extracted events, newest first, with filters
    Events(crate::cmd::events::EventsArgs),
    /// List code blocks, or print one with `code-blocks get <DIGEST-PREFIX>`
    CodeBlocks(crate::cmd::code_blocks::CodeBlocksArgs),
    /// Totals: sessions, success rate, events by type, pattern and risk
    Stats(crate::cmd::stats::StatsArgs),
    /// One agent's state changes and events in time order
    Timeline(crate::cmd::timeline::TimelineArgs),
    /// Full-text search over event lines and code blocks
    Search(crate::cmd::search::SearchArgs),
    /// Delete ended sessions older than a cutoff, with everything under them
    Prune(crate::cmd::prune::PruneArgs),
    /// Copy the database safely while wrappers may be writing to it
    Backup(crate::cmd::backup::BackupArgs),
    /// Serve the query API, a live tail of events and a web page over HTTP
    Serve(crate::cmd::serve::ServeArgs),
    /// Play a captured session in the terminal with its original timing
    Replay(crate::cmd::replay::ReplayArgs),
    /// Export a captured session: asciicast v2/v3, a text transcript, or its events
    Export(crate::cmd::export::ExportArgs),
}

/// Options of the run path. All but the agent and command can also be set in config.toml.
#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    /// Record the session, its events and code blocks in SQLite
    #[arg(long)]
    pub enable_db: bool,

    /// Database file [default: $WRAPPER_DB, else $XDG_DATA_HOME/wrapper/wrapper.db]; implies --enable-db
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,

    /// Extra pattern file or directory of *.toml, loaded after the defaults (repeatable)
    #[arg(long = "patterns", value_name = "PATH")]
    pub patterns: Vec<PathBuf>,

    /// Do not load the built-in extraction rules (secrets are still masked; see --no-redact)
    #[arg(long)]
    pub no_default_patterns: bool,

    /// Session id to record (must be unique) [default: a random UUID]
    #[arg(long, value_name = "ID")]
    pub session_id: Option<String>,

    /// Environment label stored on the session [default: $WRAPPER_ENV]
    #[arg(long = "env", value_name = "NAME")]
    pub environment: Option<String>,

    /// Most rows per write transaction [default: 500]
    #[arg(long, value_name = "N", value_parser = parse_batch_size)]
    pub batch_size: Option<usize>,

    /// Longest time an event waits before it is committed [default: 200ms]
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub flush_interval: Option<Duration>,

    /// After forwarding a terminating signal, SIGKILL the agent's process group if still alive [default: 10s]
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub kill_after: Option<Duration>,

    /// Also write every event as one JSON object per line to PATH (`-` for stderr)
    #[arg(long, value_name = "PATH")]
    pub events_out: Option<PathBuf>,

    /// Store text as it is, without masking secrets (for this run only)
    #[arg(long)]
    pub no_redact: bool,

    /// Do not store the raw output for replay and export (stored by default with the database)
    #[arg(long)]
    pub no_capture: bool,

    /// Longest line kept for extraction; longer lines are cut (output is never cut) [default: 64KiB]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_line: Option<usize>,

    /// How long a line without newline must be idle before prompt rules look at it [default: 100ms]
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub prompt_idle: Option<Duration>,

    /// Reap orphaned descendants, as an init would (automatic when wrapper is PID 1)
    #[arg(long)]
    pub subreaper: bool,

    /// Config file [default: $XDG_CONFIG_HOME/wrapper/config.toml]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Only errors from wrapper itself
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More diagnostics from wrapper itself (-vv for debug); RUST_LOG also works
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Name recorded with the session: codex, claude, aider, ...
    #[arg(value_name = "AGENT")]
    pub agent: String,

    /// The agent's command and its arguments
    #[arg(value_name = "COMMAND", required = true, num_args = 1..)]
    pub command: Vec<OsString>,
}

/// Where the database is, for commands that read or maintain it.
#[derive(Debug, Args, Clone, Default)]
pub struct DbOpt {
    /// Database file [default: $WRAPPER_DB, else $XDG_DATA_HOME/wrapper/wrapper.db]
    #[arg(long, value_name = "PATH", global = true)]
    pub db: Option<PathBuf>,

    /// Config file [default: $XDG_CONFIG_HOME/wrapper/config.toml]
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PatternsArgs {
    #[command(subcommand)]
    pub command: PatternsCommand,
}

#[derive(Debug, Subcommand)]
pub enum PatternsCommand {
    /// Show the rules in force and the file each comes from
    List {
        /// Only rules that apply to this agent
        #[arg(long)]
        agent: Option<String>,
        /// Extra pattern files, as for a run
        #[arg(long = "patterns", value_name = "PATH")]
        patterns: Vec<PathBuf>,
        /// Leave out the built-in extraction rules (the built-in [[redact]] rules stay)
        #[arg(long)]
        no_default_patterns: bool,
        /// One JSON array
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbOpt,
    },
    /// Validate pattern files (with none given: every file that a run would load)
    Check {
        /// Files or directories to check
        paths: Vec<PathBuf>,
        #[command(flatten)]
        db: DbOpt,
    },
    /// Run lines from FILE (or stdin) through the rules and print the events
    Test {
        /// Agent name, for rules limited to some agents [default: every rule applies]
        #[arg(long)]
        agent: Option<String>,
        /// Extra pattern files, as for a run
        #[arg(long = "patterns", value_name = "PATH")]
        patterns: Vec<PathBuf>,
        /// Leave out the built-in extraction rules (the built-in [[redact]] rules stay)
        #[arg(long)]
        no_default_patterns: bool,
        /// The lines' stream
        #[arg(long, default_value = "stdout", value_parser = ["stdout", "stderr"])]
        stream: String,
        /// One JSON object per event
        #[arg(long)]
        jsonl: bool,
        /// Input file; `-` or nothing for stdin
        file: Option<PathBuf>,
        #[command(flatten)]
        db: DbOpt,
    },
}

#[derive(Debug, Args)]
pub struct ImportSpoolArgs {
    /// The spool file named in wrapper's warning
    pub path: PathBuf,
    #[command(flatten)]
    pub db: DbOpt,
}

#[derive(Debug, Args)]
pub struct DbArgs {
    #[command(subcommand)]
    pub command: DbCommand,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Print the database path that commands use
    Path(DbOpt),
    /// Check integrity and schema version
    Check(DbOpt),
    /// Create the database if needed and bring its schema up to date
    Migrate(DbOpt),
}

/// Durations like `250ms`, `5s`, `2m`, `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; write a duration like 250ms, 5s or 2m"))
}

/// Sizes like `64KiB`, `1MiB`, `65536`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let n = parse_size::parse_size(s.trim())
        .map_err(|e| format!("{e}; write a size like 64KiB or 1MiB"))?;
    let n = usize::try_from(n).map_err(|_| "size too large".to_string())?;
    if n == 0 {
        return Err("size must be at least 1 byte".into());
    }
    Ok(n)
}

fn parse_batch_size(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("batch size must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}; write a whole number like 500")),
    }
}

/// Parses the process arguments, treating `wrapper <agent> …` as `wrapper run <agent> …`.
pub fn parse(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(rewrite_run_form(args))
}

/// Inserts `run` when the first word that is not an option is not a subcommand.
fn rewrite_run_form(mut args: Vec<OsString>) -> Vec<OsString> {
    let cmd = Cli::command();
    let subcommands: Vec<String> = cmd
        .get_subcommands()
        .flat_map(|s| {
            std::iter::once(s.get_name().to_string()).chain(s.get_all_aliases().map(str::to_string))
        })
        .chain(["help".to_string()])
        .collect();
    let run = cmd
        .find_subcommand("run")
        .expect("the run subcommand exists");
    let takes_value = |flag: &str| {
        run.get_arguments().any(|a| {
            let matches = a.get_long().is_some_and(|l| flag == format!("--{l}"))
                || a.get_short().is_some_and(|s| flag == format!("-{s}"));
            matches && a.get_action().takes_values()
        })
    };
    let mut i = 1;
    while i < args.len() {
        let word = args[i].to_string_lossy();
        if word == "--" {
            break;
        }
        if word.starts_with('-') && word.len() > 1 {
            if matches!(word.as_ref(), "-h" | "--help" | "-V" | "--version") {
                return args;
            }
            if !word.contains('=') && takes_value(&word) {
                i += 1;
            }
            i += 1;
            continue;
        }
        if subcommands.iter().any(|s| *s == word) {
            return args;
        }
        args.insert(1, "run".into());
        return args;
    }
    // Only options (or `--`): let `run` explain what is missing.
    if args.len() > 1 {
        args.insert(1, "run".into());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_run(args: &[&str]) -> RunArgs {
        let cli = parse(args.iter().map(OsString::from).collect()).expect("parses");
        match cli.command {
            Command::Run(r) => r,
            other => panic!("not a run: {other:?}"),
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_forms() {
        let r = parse_run(&[
            "wrapper",
            "codex",
            "--enable-db",
            "--",
            "codex",
            "exec",
            "fix the test",
        ]);
        assert!(r.enable_db);
        assert_eq!(r.command, ["codex", "exec", "fix the test"]);
        let r = parse_run(&["wrapper", "--enable-db", "codex", "--", "make", "test"]);
        assert_eq!((r.agent.as_str(), r.enable_db), ("codex", true));
        let r = parse_run(&["wrapper", "codex", "sleep", "1", "--enable-db"]);
        assert_eq!(r.command, ["sleep", "1"]);
        assert!(r.enable_db);
        let r = parse_run(&[
            "wrapper", "--db", "x.db", "codex", "--", "ls", "--db", "-la",
        ]);
        assert_eq!(r.db, Some(PathBuf::from("x.db")));
        assert_eq!(r.command, ["ls", "--db", "-la"]);
        let r = parse_run(&["wrapper", "run", "sessions", "--", "true"]);
        assert_eq!(r.agent, "sessions");
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("0").is_err());
    }
}
