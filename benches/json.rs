//! JSON Lines (SPEC §10): decoding and `[[json]]` rules on a stream of recorded agent JSON
//! (`codex exec --json` and `claude -p --output-format stream-json`, from
//! tests/fixtures/streams/), repeated to 1,000,000 lines (`WRAPPER_BENCH_JSON_LINES` to change).
//! Reported as lines/s. Pipe mode's figures for non-JSON input are `benches/extract.rs`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wrapper::event::{Record, Stream};
use wrapper::extract::json;
use wrapper::extract::rules::RuleBook;
use wrapper::extract::{Extractor, Matcher, Redactor};
use wrapper::lines::DEFAULT_MAX_LINE;

fn lines() -> usize {
    std::env::var("WRAPPER_BENCH_JSON_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// The recorded JSON lines of `files`, repeated until there are `n`.
fn stream(files: &[&str], n: usize) -> Vec<u8> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/streams/");
    let mut src: Vec<String> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(format!("{dir}{f}")).expect("fixture");
        src.extend(
            text.lines()
                .filter(|l| l.starts_with('{'))
                .map(str::to_string),
        );
    }
    let mut out = Vec::new();
    for i in 0..n {
        out.extend_from_slice(src[i % src.len()].as_bytes());
        out.push(b'\n');
    }
    out
}

fn decode(c: &mut Criterion) {
    let n = lines();
    let input = stream(&["codex_exec_json.out", "claude_stream_json.out"], n);
    let mut g = c.benchmark_group("json");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("decode_only", |b| {
        b.iter(|| {
            let mut objects = 0usize;
            for line in input.split(|&c| c == b'\n') {
                let text = std::str::from_utf8(line).unwrap_or("");
                if json::looks_like_object(text) && json::parse_object(text).is_some() {
                    objects += 1;
                }
            }
            black_box(objects)
        })
    });
    let book = RuleBook::builtin().expect("built-in rules load");
    let ts: Arc<str> = "2026-12-01T16:21:11.000Z".into();
    for (agent, files) in [
        ("codex", &["codex_exec_json.out"][..]),
        ("claude", &["claude_stream_json.out"][..]),
    ] {
        let input = stream(files, n);
        let matcher = Arc::new(Matcher::new(&book, Some(agent)).expect("rules compile"));
        let redactor = Arc::new(Redactor::new(&book, true).expect("redact rules compile"));
        g.bench_function(format!("extract_builtin_{agent}"), |b| {
            b.iter(|| {
                let mut x = Extractor::new(matcher.clone(), redactor.clone(), DEFAULT_MAX_LINE);
                let mut events = 0usize;
                for chunk in input.chunks(64 * 1024) {
                    x.feed(Stream::Stdout, chunk, &ts);
                    events += x
                        .take()
                        .iter()
                        .filter(|r| matches!(r, Record::Event(_)))
                        .count();
                }
                x.finish(&ts);
                black_box(events)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
