//! Command line + environment + config file → one validated configuration (SPEC §8).
//!
//! Precedence: command line > environment (`WRAPPER_DB`, `WRAPPER_ENV`, `WRAPPER_ENABLE_DB`) >
//! `config.toml` > defaults. Everything is parsed and checked here, before anything is spawned,
//! so a bad value is an exit-2 error that names where it came from.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::cli::{parse_duration, parse_size, DbOpt, RunArgs};
use crate::error::CliError;
use crate::extract::rules::{
    builtin_redact_sources, builtin_sources, expand_path, line_col, Source,
};
use crate::lines::DEFAULT_MAX_LINE;
use crate::store::writer::EventsOut;

pub const DEFAULT_BATCH_SIZE: usize = 500;
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(200);
pub const DEFAULT_KILL_AFTER: Duration = Duration::from_secs(10);
pub const DEFAULT_PROMPT_IDLE: Duration = Duration::from_millis(100);

/// `config.toml`: defaults for every run option. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub enable_db: Option<bool>,
    pub db: Option<PathBuf>,
    pub patterns: Option<Vec<PathBuf>>,
    pub no_default_patterns: Option<bool>,
    pub environment: Option<String>,
    pub batch_size: Option<usize>,
    pub flush_interval: Option<String>,
    pub kill_after: Option<String>,
    pub max_line: Option<toml::Value>,
    pub prompt_idle: Option<String>,
    pub events_out: Option<PathBuf>,
    pub redact: Option<bool>,
    pub subreaper: Option<bool>,
    /// `"auto"`, `"always"` or `"never"` (SPEC §10).
    pub pty: Option<String>,
    /// Store the raw output for replay and export (with the database; default true).
    pub capture: Option<bool>,
    /// OTLP/HTTP endpoint for sessions and events as log records (`crate::otel`).
    pub otlp_endpoint: Option<String>,
    /// Extra HTTP headers for OTLP requests (e.g. an API key).
    pub otlp_headers: Option<std::collections::BTreeMap<String, String>>,
    /// Record the repository's facts (`crate::git`); default true.
    pub git: Option<bool>,
    /// Time limit of each git probe phase, e.g. "2s".
    pub git_timeout: Option<String>,
}

/// A loaded config file with where it came from.
#[derive(Debug, Default)]
pub struct LoadedConfig {
    pub file: FileConfig,
    pub path: Option<PathBuf>,
    /// Short hash of the file's text, stored on sessions as `environment_config_version`.
    pub version: Option<String>,
}

/// The config directory: `$XDG_CONFIG_HOME/wrapper` (or `~/.config/wrapper`).
pub fn config_dir() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("wrapper"))
}

/// Loads `explicit` (which must exist) or the default file (which may be absent).
pub fn load_file(explicit: Option<&Path>) -> Result<LoadedConfig, CliError> {
    let (path, required) = match explicit {
        Some(p) => (p.to_path_buf(), true),
        None => match config_dir() {
            Some(d) => (d.join("config.toml"), false),
            None => return Ok(LoadedConfig::default()),
        },
    };
    let text = match crate::extract::rules::read_regular_file(&path) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| {
            CliError::usage(anyhow!("{}: config file is not UTF-8", path.display()))
        })?,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LoadedConfig::default())
        }
        // The default file that exists but cannot be read (HOME pointing at another user's
        // home, a mode of 000): nobody asked for it, so it must not stop every run. Said once,
        // and the run goes on with the defaults. An explicit --config stays an error.
        Err(e) if !required && e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!(
                "wrapper: warning: cannot read the default config file {} (permission denied); \
                 going on without it (fix its permissions, or pass --config FILE)",
                path.display()
            );
            return Ok(LoadedConfig::default());
        }
        Err(e) => {
            return Err(CliError::usage(anyhow!(
                "cannot read config file {}: {e}",
                path.display()
            )))
        }
    };
    let file: FileConfig = toml::from_str(&text).map_err(|e| {
        let (line, col) = line_col(&text, e.span().map(|s| s.start).unwrap_or(0));
        CliError::usage(anyhow!(
            "{}:{line}:{col}: {}",
            path.display(),
            e.message().trim()
        ))
    })?;
    let version = format!("{:x}", Sha256::digest(text.as_bytes()))[..12].to_string();
    Ok(LoadedConfig {
        file,
        path: Some(path),
        version: Some(version),
    })
}

/// Everything the run path needs, validated.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub agent: String,
    pub command: Vec<OsString>,
    /// `Some` when the session is recorded.
    pub db: Option<PathBuf>,
    pub pattern_sources: Vec<Source>,
    pub session_id: Option<String>,
    pub environment: Option<String>,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub kill_after: Duration,
    pub events_out: Option<EventsOut>,
    pub redact: bool,
    /// Store the raw output (only with a database).
    pub capture: bool,
    pub max_line: usize,
    pub prompt_idle: Duration,
    pub subreaper: bool,
    pub pty: PtyChoice,
    pub config_version: Option<String>,
    /// Where to export OTLP log records, if anywhere.
    pub otlp: Option<crate::otel::OtlpConfig>,
    /// Why inherited OTLP settings were ignored (printed once by the run).
    pub otlp_warning: Option<String>,
    /// The git probe's time limit per phase; `None` when switched off.
    pub git_timeout: Option<Duration>,
}

/// Whether the agent runs on a pseudo-terminal (`--pty`, `--no-pty`, config `pty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PtyChoice {
    /// A pty when wrapper's stdin and stdout are terminals and it runs in the foreground.
    Auto,
    Always,
    Never,
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn env_bool(name: &str) -> Result<Option<bool>, CliError> {
    match env_var(name).as_deref() {
        None => Ok(None),
        Some("1" | "true" | "yes" | "on") => Ok(Some(true)),
        Some("0" | "false" | "no" | "off") => Ok(Some(false)),
        Some(other) => Err(CliError::usage(anyhow!(
            "{name}={other:?} is not a boolean (use 1 or 0)"
        ))),
    }
}

impl RunConfig {
    pub fn resolve(args: RunArgs) -> Result<RunConfig, CliError> {
        let loaded = load_file(args.config.as_deref())?;
        let file = &loaded.file;
        let cfg_name = loaded
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let file_dur = |key: &str, v: &Option<String>| -> Result<Option<Duration>, CliError> {
            v.as_deref()
                .map(|s| parse_duration(s).map_err(|e| anyhow!("{cfg_name}: `{key}`: {e}")))
                .transpose()
                .map_err(CliError::usage)
        };

        // Database: --db, then $WRAPPER_DB, imply recording; otherwise --enable-db (or the env /
        // config equivalents) records to the config's or the default path.
        let env_db = env_var("WRAPPER_DB").map(PathBuf::from);
        let enable = args.enable_db
            || args.db.is_some()
            || env_db.is_some()
            || env_bool("WRAPPER_ENABLE_DB")?
                .or(file.enable_db)
                .unwrap_or(false);
        let db = enable.then(|| {
            args.db
                .clone()
                .or(env_db)
                .or_else(|| file.db.clone())
                .unwrap_or_else(crate::store::default_path)
        });

        let pattern_sources = collect_sources(
            file,
            &args.patterns,
            args.no_default_patterns,
            args.no_user_patterns,
        )?;

        let max_line = match (&args.max_line, &file.max_line) {
            (Some(n), _) => *n,
            (None, Some(toml::Value::Integer(n))) if *n > 0 => *n as usize,
            (None, Some(toml::Value::String(s))) => parse_size(s)
                .map_err(|e| CliError::usage(anyhow!("{cfg_name}: `max_line`: {e}")))?,
            (None, Some(_)) => {
                return Err(CliError::usage(anyhow!(
                    "{cfg_name}: `max_line` must be a size like \"64KiB\""
                )))
            }
            (None, None) => DEFAULT_MAX_LINE,
        };
        let events_out = args
            .events_out
            .clone()
            .or_else(|| file.events_out.clone())
            .map(|p| {
                if p.as_os_str() == "-" {
                    EventsOut::Stderr
                } else {
                    EventsOut::File(p)
                }
            });
        if let Some(id) = &args.session_id {
            if id.trim().is_empty() {
                return Err(CliError::usage(anyhow!("--session-id is empty")));
            }
        }
        if args.agent.trim().is_empty() {
            return Err(CliError::usage(anyhow!("the agent name is empty")));
        }
        if args.command.first().is_none_or(|c| c.is_empty()) {
            return Err(CliError::usage(anyhow!(
                "no command to run after the agent name"
            )));
        }
        let batch_size = args
            .batch_size
            .or(file.batch_size)
            .unwrap_or(DEFAULT_BATCH_SIZE);
        if batch_size == 0 {
            return Err(CliError::usage(anyhow!(
                "{cfg_name}: `batch_size` must be at least 1"
            )));
        }
        let pty = if args.pty {
            PtyChoice::Always
        } else if args.no_pty {
            PtyChoice::Never
        } else {
            match file.pty.as_deref() {
                None | Some("auto") => PtyChoice::Auto,
                Some("always") => PtyChoice::Always,
                Some("never") => PtyChoice::Never,
                Some(other) => {
                    return Err(CliError::usage(anyhow!(
                        "{cfg_name}: `pty`: {other:?} is not one of \"auto\", \"always\", \"never\""
                    )))
                }
            }
        };
        let (otlp, otlp_warning) = resolve_otlp(args.otlp_endpoint.as_deref(), file, &cfg_name)?;
        let git_timeout = (!args.no_git && file.git.unwrap_or(true))
            .then(|| file_dur("git_timeout", &file.git_timeout))
            .transpose()?
            .map(|d| d.unwrap_or(crate::git::DEFAULT_TIMEOUT));
        Ok(RunConfig {
            otlp,
            otlp_warning,
            git_timeout,
            agent: args.agent,
            command: args.command,
            db,
            pattern_sources,
            session_id: args.session_id,
            environment: args
                .environment
                .or_else(|| env_var("WRAPPER_ENV"))
                .or_else(|| file.environment.clone()),
            batch_size,
            flush_interval: args
                .flush_interval
                .or(file_dur("flush_interval", &file.flush_interval)?)
                .unwrap_or(DEFAULT_FLUSH_INTERVAL),
            kill_after: args
                .kill_after
                .or(file_dur("kill_after", &file.kill_after)?)
                .unwrap_or(DEFAULT_KILL_AFTER),
            events_out,
            redact: !args.no_redact && file.redact.unwrap_or(true),
            capture: !args.no_capture && file.capture.unwrap_or(true),
            max_line,
            prompt_idle: args
                .prompt_idle
                .or(file_dur("prompt_idle", &file.prompt_idle)?)
                .unwrap_or(DEFAULT_PROMPT_IDLE),
            subreaper: args.subreaper || file.subreaper.unwrap_or(false),
            pty,
            config_version: loaded.version,
        })
    }
}

/// `--otlp-endpoint` > the standard `OTEL_EXPORTER_OTLP_*` variables > config (`crate::otel`).
fn resolve_otlp(
    flag: Option<&str>,
    file: &FileConfig,
    cfg_name: &str,
) -> Result<(Option<crate::otel::OtlpConfig>, Option<String>), CliError> {
    use crate::otel::{OtlpConfig, Resolved};
    let headers: Vec<(String, String)> = file
        .otlp_headers
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let resolved = OtlpConfig::resolve(flag, file.otlp_endpoint.as_deref(), &headers, |k| {
        std::env::var(k).ok()
    })
    .map_err(|e| {
        let e = e
            .replace(
                "config `otlp_endpoint`",
                &format!("{cfg_name}: `otlp_endpoint`"),
            )
            .replace(
                "config `otlp_headers`",
                &format!("{cfg_name}: `otlp_headers`"),
            );
        CliError::usage(anyhow!(e))
    })?;
    Ok(match resolved {
        Resolved::On(c) => (Some(c), None),
        Resolved::Off => (None, None),
        Resolved::OffWithWarning(w) => (None, Some(w)),
    })
}

/// The database path for query and maintenance commands: --db > $WRAPPER_DB > config > default.
pub fn db_path(opt: &DbOpt) -> Result<PathBuf, CliError> {
    if let Some(p) = &opt.db {
        return Ok(p.clone());
    }
    if let Some(p) = env_var("WRAPPER_DB") {
        return Ok(PathBuf::from(p));
    }
    let loaded = load_file(opt.config.as_deref())?;
    Ok(loaded.file.db.unwrap_or_else(crate::store::default_path))
}

/// The pattern sources a run would load, for `patterns list|check|test`.
pub fn pattern_sources(
    opt: &DbOpt,
    extra: &[PathBuf],
    no_defaults: bool,
) -> Result<Vec<Source>, CliError> {
    let loaded = load_file(opt.config.as_deref())?;
    collect_sources(&loaded.file, extra, no_defaults, false)
}

/// The directory of the user's own pattern files, loaded by every run.
pub fn user_patterns_dir() -> Option<PathBuf> {
    config_dir().map(|d| d.join("patterns"))
}

/// A broken pattern file stops the run before anything starts (SPEC §3). When the file is in
/// the user's pattern directory — loaded by every run, so one bad edit stops every agent — the
/// error also says how to get going again.
pub fn pattern_error(e: crate::extract::rules::PatternError) -> CliError {
    let in_user_dir = user_patterns_dir().is_some_and(|d| Path::new(&e.file).starts_with(&d));
    if in_user_dir {
        CliError::usage(anyhow!(
            "{e}\n  this file is in your pattern directory, which every run loads: fix the line \
             above (`wrapper patterns check {}` re-checks it), or move the file away; \
             to run without your pattern directory this once, add --no-user-patterns",
            e.file
        ))
    } else {
        CliError::usage(e)
    }
}

/// Load order (SPEC §3): built-ins, the user's config directory, the config file's
/// `patterns`, then each `--patterns` path in order.
fn collect_sources(
    file: &FileConfig,
    extra: &[PathBuf],
    no_defaults: bool,
    no_user: bool,
) -> Result<Vec<Source>, CliError> {
    let mut sources = Vec::new();
    if no_defaults || file.no_default_patterns.unwrap_or(false) {
        sources.extend(builtin_redact_sources());
    } else {
        sources.extend(builtin_sources());
    }
    if let Some(dir) = user_patterns_dir().filter(|_| !no_user) {
        if dir.is_dir() {
            sources.extend(expand_path(&dir).map_err(CliError::usage)?);
        }
    }
    for p in file.patterns.iter().flatten().chain(extra) {
        sources.extend(expand_path(p).map_err(CliError::usage)?);
    }
    Ok(sources)
}
