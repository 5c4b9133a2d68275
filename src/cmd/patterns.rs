//! `wrapper patterns list|check|test`: see the rules in force, validate pattern files, and try
//! rules on saved output without running an agent (SPEC §3). `test` uses the very extractor a
//! session uses, so what it prints is what a session would record.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::sync::Arc;

use anyhow::anyhow;
use serde_json::json;

use crate::cli::PatternsCommand;
use crate::config::pattern_sources;
use crate::error::{CliError, CliResult};
use crate::event::{now_timestamp, Record, Stream};
use crate::extract::rules::{expand_path, RuleBook};
use crate::extract::{Extractor, Matcher, Redactor};
use crate::lines::DEFAULT_MAX_LINE;
use crate::output;
use crate::store::writer::EventRow;

pub fn run(cmd: PatternsCommand) -> CliResult<i32> {
    match cmd {
        PatternsCommand::List {
            agent,
            patterns,
            no_default_patterns,
            json,
            db,
        } => {
            let mut book = RuleBook::load(&pattern_sources(&db, &patterns, no_default_patterns)?)
                .map_err(CliError::usage)?;
            book.verify().map_err(CliError::usage)?;
            list(&book, agent.as_deref(), json)
        }
        PatternsCommand::Check { paths, db } => {
            let sources = if paths.is_empty() {
                pattern_sources(&db, &[], false)?
            } else {
                let mut s = Vec::new();
                for p in &paths {
                    s.extend(expand_path(p).map_err(CliError::usage)?);
                }
                s
            };
            let files = sources.len();
            let mut book = RuleBook::load(&sources).map_err(CliError::usage)?;
            book.verify().map_err(CliError::usage)?;
            Matcher::new(&book, None).map_err(|e| CliError::usage(anyhow!(e)))?;
            let lints = crate::extract::lint::lint(&book);
            for l in &lints {
                eprintln!("warning: {}: rule `{}`: {}", l.origin, l.rule, l.message);
            }
            crate::outln!(
                "ok: {} rules, {} json rules, {} redact rules, {} disabled, from {files} file(s); rule set version {}{}",
                book.rules.len(),
                book.json.len(),
                book.redact.len(),
                book.disabled.len(),
                book.version(),
                match lints.len() {
                    0 => String::new(),
                    n => format!("; {n} warning(s)"),
                }
            )?;
            Ok(0)
        }
        PatternsCommand::Test {
            agent,
            patterns,
            no_default_patterns,
            stream,
            jsonl,
            file,
            db,
        } => {
            let mut book = RuleBook::load(&pattern_sources(&db, &patterns, no_default_patterns)?)
                .map_err(CliError::usage)?;
            book.verify().map_err(CliError::usage)?;
            let stream = Stream::parse(&stream).ok_or_else(|| {
                CliError::usage(anyhow!(
                    "unknown stream `{stream}` (expected stdout, stderr or pty)"
                ))
            })?;
            let input: Box<dyn Read> =
                match file.as_deref() {
                    None => Box::new(io::stdin().lock()),
                    Some(p) if p.as_os_str() == "-" => Box::new(io::stdin().lock()),
                    Some(p) => Box::new(File::open(p).map_err(|e| {
                        CliError::usage(anyhow!("cannot read {}: {e}", p.display()))
                    })?),
                };
            test(&book, agent.as_deref(), stream, input, jsonl)
        }
    }
}

fn list(book: &RuleBook, agent: Option<&str>, as_json: bool) -> CliResult<i32> {
    let rules: Vec<_> = book
        .rules
        .iter()
        .filter(|r| agent.is_none_or(|a| r.applies_to(a)))
        .collect();
    let json_rules: Vec<_> = book
        .json
        .iter()
        .filter(|r| agent.is_none_or(|a| r.applies_to(a)))
        .collect();
    if as_json {
        let v: Vec<_> = rules
            .iter()
            .map(|r| {
                let streams: Vec<&str> = r
                    .streams
                    .iter()
                    .filter(|(_, on)| **on)
                    .map(|(s, _)| s.as_str())
                    .collect();
                json!({
                    "name": &*r.name,
                    "event_type": &*r.event_type,
                    "regex": r.regex_src,
                    "risk_level": r.risk_level.map(|x| x.as_str()),
                    "prompt": r.prompt,
                    "auto_confirmable": r.auto_confirmable,
                    "streams": streams,
                    "agents": r.agents,
                    "description": r.description,
                    "origin": r.origin.to_string(),
                })
            })
            .chain(json_rules.iter().map(|r| {
                json!({ "name": &*r.name, "event_type": r.event_type.as_deref(), "kind": "json",
                        "agents": r.agents, "description": r.description,
                        "origin": r.origin.to_string() })
            }))
            .chain(book.redact.iter().map(|r| {
                json!({ "name": &*r.name, "event_type": "redact", "regex": r.regex_src,
                        "description": r.description, "origin": r.origin.to_string() })
            }))
            .collect();
        output::print_json(&v)?;
        return Ok(0);
    }
    let mut table = output::table(&["NAME", "TYPE", "RISK", "FLAGS", "FROM"]);
    for r in &rules {
        let mut flags = Vec::new();
        if r.prompt {
            flags.push("prompt".to_string());
        }
        if r.auto_confirmable {
            flags.push("auto".into());
        }
        if r.streams != crate::event::PerStream::all(true) {
            let on: Vec<&str> = r
                .streams
                .iter()
                .filter(|(_, on)| **on)
                .map(|(s, _)| s.as_str())
                .collect();
            flags.push(on.join(","));
        }
        if r.agents != ["*"] {
            flags.push(format!("agents={}", r.agents.join(",")));
        }
        table.add_row(vec![
            r.name.to_string(),
            r.event_type.to_string(),
            r.risk_level.map(|x| x.as_str()).unwrap_or("").to_string(),
            flags.join(" "),
            r.origin.to_string(),
        ]);
    }
    for r in &json_rules {
        let mut flags = vec!["json".to_string()];
        if r.agents != ["*"] {
            flags.push(format!("agents={}", r.agents.join(",")));
        }
        table.add_row(vec![
            r.name.to_string(),
            r.event_type.as_deref().unwrap_or("(facts)").to_string(),
            r.risk_level.map(|x| x.as_str()).unwrap_or("").to_string(),
            flags.join(" "),
            r.origin.to_string(),
        ]);
    }
    for r in &book.redact {
        table.add_row(vec![
            r.name.to_string(),
            "redact".into(),
            String::new(),
            String::new(),
            r.origin.to_string(),
        ]);
    }
    for d in &book.disabled {
        table.add_row(vec![
            d.name.clone(),
            "(disabled)".into(),
            String::new(),
            String::new(),
            d.origin.to_string(),
        ]);
    }
    output::print_table(table)?;
    crate::outln!(
        "{} rules, {} json rules, {} redact rules; rule set version {}",
        rules.len(),
        json_rules.len(),
        book.redact.len(),
        book.version()
    )?;
    Ok(0)
}

fn test(
    book: &RuleBook,
    agent: Option<&str>,
    stream: Stream,
    mut input: Box<dyn Read>,
    jsonl: bool,
) -> CliResult<i32> {
    let matcher = Matcher::new(book, agent).map_err(|e| CliError::usage(anyhow!(e)))?;
    let redactor = Redactor::new(book, true).map_err(|e| CliError::usage(anyhow!(e)))?;
    let mut x = Extractor::new(Arc::new(matcher), Arc::new(redactor), DEFAULT_MAX_LINE);
    let ts: Arc<str> = now_timestamp().into();
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut buf = vec![0u8; 64 * 1024];
    let mut count = 0u64;
    let agent_name = agent.unwrap_or("*");
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CliError::usage(anyhow!("reading input: {e}"))),
        };
        x.feed(stream, &buf[..n], &ts);
        count += print_records(&mut out, x.take(), agent_name, jsonl)?;
    }
    x.finish(&ts);
    count += print_records(&mut out, x.take(), agent_name, jsonl)?;
    out.flush().map_err(output::io_error)?;
    drop(out);
    if !jsonl {
        eprintln!(
            "{}, {}",
            crate::cmd::view::counted(x.lines(), "line"),
            crate::cmd::view::counted(count, "event")
        );
    }
    Ok(0)
}

fn print_records(
    out: &mut impl Write,
    records: Vec<Record>,
    agent: &str,
    jsonl: bool,
) -> CliResult<u64> {
    let mut n = 0;
    for r in records {
        let Record::Event(e) = r else { continue };
        n += 1;
        let res = if jsonl {
            serde_json::to_writer(&mut *out, &EventRow::new(agent, "test", &e))
                .map_err(io::Error::other)
                .and_then(|_| out.write_all(b"\n"))
        } else {
            let risk = e
                .risk_level
                .map(|r| format!(" [{}]", r.as_str()))
                .unwrap_or_default();
            writeln!(
                out,
                "{:>6} {:<6} {:<11} {:<24}{} {}",
                e.line_number,
                e.stream.as_str(),
                e.event_type,
                e.pattern,
                risk,
                e.matched_value.as_deref().unwrap_or("")
            )
        };
        res.map_err(output::io_error)?;
    }
    Ok(n)
}
