//! `wrapper export <SESSION> --format asciicast|asciicast-v3|txt|jsonl [-o FILE]`: a captured
//! session as a file that players and people read.
//!
//! Also the one place that joins a session's capture (`store::capture`) with its events
//! (`store::query`) into [`cast::Entry`]s: replay uses [`load`] and [`entries`] too, and so
//! can `wrapper serve` ([`session_bytes`] gives a whole file).

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
use rusqlite::Connection;

use crate::capture::{parse_size, Kind};
use crate::cast::{self, timing, Entry, Format, Header};
use crate::cli::DbOpt;
use crate::cmd::view;
use crate::error::{CliError, CliResult};
use crate::output;
use crate::store::capture::{self as cap, CaptureInfo, Mode};
use crate::store::query::{self, EventFilter, Session};

/// Export a captured session: asciicast (v2, v3), a text transcript, or its events
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Session id, or any unique prefix of one
    #[arg(value_name = "SESSION")]
    pub session: String,
    /// asciicast (v2: asciinema 2.x, agg, svg-term), asciicast-v3, txt (the lines a person
    /// read), jsonl (the session's events)
    #[arg(long, short = 'f', default_value = "asciicast", value_parser = ["asciicast", "asciicast-v3", "txt", "jsonl"])]
    pub format: String,
    /// Write to FILE (created with mode 0600) instead of stdout
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Terminal size in the cast header [default: the pty's; 80x24 in pipe mode]
    #[arg(long, value_name = "COLSxROWS", value_parser = parse_size_arg)]
    pub size: Option<(u16, u16)>,
    /// Event types that become markers, comma-separated; `all` or `none`
    #[arg(long, value_name = "TYPES", default_value = "error,prompt")]
    pub markers: String,
    /// Shorten pauses longer than DUR in the cast (e.g. 2s)
    #[arg(long, value_name = "DUR", value_parser = crate::cli::parse_duration)]
    pub idle_limit: Option<std::time::Duration>,
    /// Keep bare newlines of pipe-mode output as they were written (by default a cast gets
    /// the `\r` the user's terminal added, so players show lines as the user saw them)
    #[arg(long)]
    pub raw_newlines: bool,
    #[command(flatten)]
    pub db: DbOpt,
}

pub fn parse_size_arg(s: &str) -> Result<(u16, u16), String> {
    parse_size(s).ok_or_else(|| format!("{s:?}: write the size as COLSxROWS, e.g. 120x40"))
}

/// Which event types become markers.
#[derive(Debug, Clone)]
pub enum Markers {
    All,
    Types(Vec<String>),
}

impl Markers {
    pub fn parse(s: &str) -> Markers {
        match s.trim() {
            "all" => Markers::All,
            "none" | "" => Markers::Types(Vec::new()),
            list => Markers::Types(list.split(',').map(|t| t.trim().to_string()).collect()),
        }
    }
}

/// A session ready to be played or exported.
pub struct Loaded {
    pub session: Session,
    pub info: CaptureInfo,
    pub header: Header,
    /// Markers in time order.
    pub markers: Vec<Entry>,
    pub exit: Option<Entry>,
}

/// Microseconds since the capture's start of a stored RFC 3339 timestamp.
fn offset_of(ts: &str, t0_us: i64) -> Option<u64> {
    let t = chrono::DateTime::parse_from_rfc3339(ts).ok()?;
    Some((t.timestamp_micros() - t0_us).max(0) as u64)
}

/// Finds the session and its capture. A session without one is a usage error (exit 2)
/// that says why.
pub fn load(
    conn: &Connection,
    given: &str,
    size: Option<(u16, u16)>,
    markers: &Markers,
) -> CliResult<Loaded> {
    let id = query::resolve_session(conn, given).map_err(view::query_error)?;
    let session = query::session(conn, &id).map_err(view::query_error)?;
    let info = cap::info(conn, &id)
        .map_err(|e| CliError::usage(anyhow!("reading the capture of {id}: {e}")))?
        .ok_or_else(|| {
            CliError::usage(anyhow!(
                "session {id} has no captured output: it was recorded with --no-capture, \
                 `capture = false`, without a database, or by a wrapper older than capture; \
                 nothing to play or export (its events: `wrapper export {id} --format jsonl`)"
            ))
        })?;
    if let Some(when) = &info.dropped_at {
        return Err(CliError::usage(anyhow!(
            "the captured output of session {id} was dropped by `wrapper prune \
             --captures-older-than` at {when}; its events remain (`--format jsonl`)"
        )));
    }
    let (cols, rows) = size.or(info.cols.zip(info.rows)).unwrap_or((80, 24));
    let command: Option<String> = serde_json::from_str::<Vec<String>>(&session.command_json)
        .ok()
        .map(|v| v.join(" "));
    let header = Header {
        cols,
        rows,
        timestamp: info.t0_us.div_euclid(1_000_000),
        title: Some(format!("{} {}", session.agent_name, id)),
        command,
    };
    let mut marks = Vec::new();
    let wanted: Vec<Option<String>> = match markers {
        Markers::All => vec![None],
        Markers::Types(t) => t.iter().cloned().map(Some).collect(),
    };
    for t in wanted {
        let evs = query::events(
            conn,
            &EventFilter {
                session: Some(id.clone()),
                event_type: t,
                limit: 0,
                ..Default::default()
            },
        )
        .map_err(view::query_error)?;
        marks.extend(
            evs.into_iter()
                .filter(|e| e.event_type != "code_block")
                .filter_map(|e| {
                    let at_us = offset_of(&e.timestamp, info.t0_us)?;
                    let what = e
                        .matched_value
                        .as_deref()
                        .filter(|v| !v.is_empty())
                        .or(e.original_line.as_deref())
                        .unwrap_or("");
                    let what: String = what.chars().take(100).collect();
                    Some(Entry::Marker {
                        at_us,
                        label: format!("{}: {}", e.event_type, what.trim()),
                    })
                }),
        );
    }
    marks.sort_by_key(Entry::at_us);
    let exit = match (&session.ended_at, session.exit_code) {
        (Some(end), Some(code)) => Some(Entry::Exit {
            at_us: offset_of(end, info.t0_us)
                .unwrap_or(info.duration_us.max(0) as u64)
                .max(info.duration_us.max(0) as u64),
            code: code as i32,
        }),
        _ => None,
    };
    Ok(Loaded {
        session,
        info,
        header,
        markers: marks,
        exit,
    })
}

/// Every entry of a loaded session from offset `from_us` on, frames and markers merged in
/// time order, the exit last.
pub fn entries<'c>(
    conn: &'c Connection,
    l: &Loaded,
    from_us: u64,
) -> CliResult<impl Iterator<Item = CliResult<Entry>> + 'c> {
    let frames = cap::frames_from(conn, &l.info.session_id, from_us)
        .map_err(|e| CliError::usage(anyhow!("reading the capture: {e}")))?
        .map(|f| {
            let f = f.map_err(|e| CliError::usage(anyhow!("reading the capture: {e}")))?;
            Ok(match f.kind {
                Kind::Resize => {
                    let (cols, rows) = f.size().unwrap_or((80, 24));
                    Entry::Resize {
                        at_us: f.offset_us,
                        cols,
                        rows,
                    }
                }
                Kind::Output(s) => Entry::Output {
                    at_us: f.offset_us,
                    stream: s.as_str(),
                    data: f.data,
                },
            })
        });
    let markers: Vec<Entry> = l
        .markers
        .iter()
        .filter(|m| m.at_us() >= from_us)
        .cloned()
        .collect();
    Ok(Merge {
        frames: frames.peekable(),
        markers: markers.into_iter().peekable(),
        exit: l.exit.clone().filter(|e| e.at_us() >= from_us),
    })
}

struct Merge<F: Iterator<Item = CliResult<Entry>>> {
    frames: std::iter::Peekable<F>,
    markers: std::iter::Peekable<std::vec::IntoIter<Entry>>,
    exit: Option<Entry>,
}

impl<F: Iterator<Item = CliResult<Entry>>> Iterator for Merge<F> {
    type Item = CliResult<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        let marker_first = match (self.frames.peek(), self.markers.peek()) {
            (Some(Ok(f)), Some(m)) => m.at_us() <= f.at_us(),
            (Some(Err(_)), _) => false,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if marker_first {
            return self.markers.next().map(Ok);
        }
        self.frames.next().or_else(|| self.exit.take().map(Ok))
    }
}

/// Options of a whole-file export, as `wrapper serve` may ask for one.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub format: Format,
    pub size: Option<(u16, u16)>,
    pub markers: Markers,
    pub idle_limit_us: Option<u64>,
    pub raw_newlines: bool,
}

/// Encodes a session's capture into `out`, entry by entry.
pub fn write_session(
    conn: &Connection,
    given: &str,
    opts: &ExportOptions,
    out: &mut dyn Write,
) -> CliResult<()> {
    if opts.format == Format::Jsonl {
        let id = query::resolve_session(conn, given).map_err(view::query_error)?;
        let mut evs = query::events(
            conn,
            &EventFilter {
                session: Some(id),
                limit: 0,
                ..Default::default()
            },
        )
        .map_err(view::query_error)?;
        evs.reverse();
        return out.write_all(&cast::jsonl(evs)).map_err(output::io_error);
    }
    let l = load(conn, given, opts.size, &opts.markers)?;
    let Some(mut enc) = cast::encoder(opts.format) else {
        return Err(CliError::usage(anyhow!("no encoder for {:?}", opts.format)));
    };
    out.write_all(&enc.header(&l.header))
        .map_err(output::io_error)?;
    let mut failed: Option<CliError> = None;
    let it = entries(conn, &l, 0)?.map_while(|e| match e {
        Ok(e) => Some(e),
        Err(err) => {
            failed = Some(err);
            None
        }
    });
    let it: Box<dyn Iterator<Item = Entry>> = match opts.idle_limit_us {
        Some(max) => Box::new(timing::idle_limit(it, max)),
        None => Box::new(it),
    };
    let it: Box<dyn Iterator<Item = Entry>> =
        if l.info.mode == Mode::Pipe && !opts.raw_newlines && opts.format != Format::Txt {
            Box::new(cast::onlcr(it))
        } else {
            it
        };
    for e in it {
        out.write_all(&enc.entry(&e)).map_err(output::io_error)?;
    }
    out.write_all(&enc.finish()).map_err(output::io_error)?;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(())
}

/// A whole export in memory (for `wrapper serve`).
pub fn session_bytes(conn: &Connection, given: &str, opts: &ExportOptions) -> CliResult<Vec<u8>> {
    let mut out = Vec::new();
    write_session(conn, given, opts, &mut out)?;
    Ok(out)
}

pub fn run(args: ExportArgs) -> CliResult<i32> {
    let format = Format::parse(&args.format)
        .ok_or_else(|| CliError::usage(anyhow!("--format {}: unknown format", args.format)))?;
    let (conn, _) = view::open_db(&args.db)?;
    let opts = ExportOptions {
        format,
        size: args.size,
        markers: Markers::parse(&args.markers),
        idle_limit_us: args.idle_limit.map(|d| d.as_micros() as u64),
        raw_newlines: args.raw_newlines,
    };
    match &args.output {
        None => {
            let stdout = io::stdout();
            let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
            write_session(&conn, &args.session, &opts, &mut out)?;
            out.flush().map_err(output::io_error)?;
        }
        Some(path) => {
            // Checked before the file is created, so a bad session leaves no empty file.
            if format != Format::Jsonl {
                load(&conn, &args.session, opts.size, &Markers::Types(Vec::new()))?;
            }
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| {
                    CliError::usage(anyhow!("{}: cannot create it: {e}", path.display()))
                })?;
            // An existing file keeps its mode on open: the output may hold what the agent
            // printed, so make it private either way.
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| CliError::usage(anyhow!("{}: {e}", path.display())))?;
            let mut out = io::BufWriter::with_capacity(64 * 1024, file);
            write_session(&conn, &args.session, &opts, &mut out)?;
            out.flush()
                .map_err(|e| CliError::usage(anyhow!("{}: {e}", path.display())))?;
        }
    }
    Ok(0)
}
