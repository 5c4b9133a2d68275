//! The capture codec (`src/capture.rs`): masking, framing and zstd compression of an agent's
//! output, in MB/s of output, with the built-in `[[redact]]` rules.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wrapper::capture::{Encoder, Masker};
use wrapper::event::Stream;
use wrapper::extract::rules::RuleBook;

#[path = "data.rs"]
#[allow(dead_code)]
mod data;

const LINES: usize = 200_000;

fn encode(c: &mut Criterion) {
    let book = RuleBook::builtin().expect("built-in rules load");
    let input = data::agent_log(LINES, true);
    let mut g = c.benchmark_group("capture");
    g.throughput(Throughput::Bytes(input.len() as u64));
    for (name, redact) in [("masked", true), ("unmasked", false)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let masker = Masker::from_book(&book, redact).expect("masker");
                let t0 = SystemTime::UNIX_EPOCH;
                let mut e = Encoder::new(masker, t0);
                let mut stored = 0usize;
                for (i, chunk) in input.chunks(64 * 1024).enumerate() {
                    e.output(Stream::Stdout, chunk, t0 + Duration::from_millis(i as u64));
                    stored += e.take().iter().map(|b| b.data.len()).sum::<usize>();
                }
                stored += e.finish().iter().map(|b| b.data.len()).sum::<usize>();
                black_box(stored)
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = encode
}
criterion_main!(benches);
