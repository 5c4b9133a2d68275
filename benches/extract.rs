//! Inner loops of the run path: line splitting + cleaning (MB/s), extraction with the built-in
//! rules (lines/s, ASCII and mixed non-ASCII input), code-block parsing.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wrapper::event::Stream;
use wrapper::extract::codeblock::CodeBlockParser;
use wrapper::extract::rules::RuleBook;
use wrapper::extract::{Extractor, Matcher, Redactor};
use wrapper::lines::{clean_line, LineSplitter, DEFAULT_MAX_LINE};

#[path = "data.rs"]
mod data;

const LINES: usize = 200_000;

fn split_and_clean(c: &mut Criterion) {
    let input = data::agent_log(LINES, true);
    let mut g = c.benchmark_group("lines");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("split", |b| {
        b.iter(|| {
            let mut s = LineSplitter::new(DEFAULT_MAX_LINE);
            let mut n = 0usize;
            for chunk in input.chunks(64 * 1024) {
                s.feed(chunk, |l, _| n += l.len());
            }
            black_box(n)
        })
    });
    g.bench_function("split_and_clean", |b| {
        b.iter(|| {
            let mut s = LineSplitter::new(DEFAULT_MAX_LINE);
            let mut n = 0usize;
            for chunk in input.chunks(64 * 1024) {
                s.feed(chunk, |l, _| n += clean_line(l).len());
            }
            black_box(n)
        })
    });
    g.finish();
}

fn extraction(c: &mut Criterion) {
    let book = RuleBook::builtin().expect("built-in rules load");
    let matcher = Arc::new(Matcher::new(&book, Some("codex")).expect("rules compile"));
    let redactor = Arc::new(Redactor::new(&book, true).expect("redact rules compile"));
    let ts: Arc<str> = "2026-11-22T10:30:00.123Z".into();
    let mut g = c.benchmark_group("extract_builtin");
    for (name, non_ascii) in [("ascii", false), ("mixed_non_ascii", true)] {
        let input = data::agent_log(LINES, non_ascii);
        g.throughput(Throughput::Elements(data::count_lines(&input)));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut x = Extractor::new(matcher.clone(), redactor.clone(), DEFAULT_MAX_LINE);
                let mut events = 0usize;
                for chunk in input.chunks(64 * 1024) {
                    x.feed(Stream::Stdout, chunk, &ts);
                    events += x.take().len();
                }
                black_box(events)
            })
        });
    }
    g.finish();
}

fn code_blocks(c: &mut Criterion) {
    let input = data::agent_log(LINES, false);
    let text = String::from_utf8(input).expect("utf8");
    let lines: Vec<&str> = text.lines().collect();
    let mut g = c.benchmark_group("code_blocks");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("parse", |b| {
        b.iter(|| {
            let mut p = CodeBlockParser::default();
            let mut n = 0;
            for (i, l) in lines.iter().enumerate() {
                n += p.line(l, i as u64).is_some() as usize;
            }
            black_box(n)
        })
    });
    g.finish();
}

/// What a recording session compiles before and while the agent starts: the built-in rule
/// book (TOML), the masking rules, the rule set's hash, and the extraction matcher.
fn startup(c: &mut Criterion) {
    let book = RuleBook::builtin().expect("built-in rules load");
    let mut g = c.benchmark_group("startup");
    g.bench_function("rulebook_load", |b| {
        b.iter(|| black_box(RuleBook::builtin().expect("load").rules.len()))
    });
    g.bench_function("redactor_new", |b| {
        b.iter(|| black_box(Redactor::new(&book, true).expect("compile")))
    });
    g.bench_function("rules_version", |b| b.iter(|| black_box(book.version())));
    g.bench_function("matcher_new", |b| {
        b.iter(|| black_box(Matcher::new(&book, Some("codex")).expect("compile").len()))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = split_and_clean, extraction, code_blocks, startup
}
criterion_main!(benches);
