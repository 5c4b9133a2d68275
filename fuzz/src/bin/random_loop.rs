//! The fuzz properties without libFuzzer: random inputs (from a seeded generator, mutating the
//! seed corpus in `corpus/<target>/`) for a given time. For stable toolchains, where
//! `cargo fuzz` cannot instrument the build.
//!
//! `cargo run --release --bin random-loop -- <lines|codeblock|patterns|all> [SECONDS] [SEED]`

use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let target = args.get(1).map(String::as_str).unwrap_or("all");
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(60);
    let seed: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let targets: Vec<(&str, fn(&[u8]))> = vec![
        ("lines", wrapper_fuzz::lines),
        ("codeblock", wrapper_fuzz::codeblock),
        ("patterns", wrapper_fuzz::patterns),
    ];
    for (name, f) in targets {
        if target != "all" && target != name {
            continue;
        }
        let corpus = load_corpus(name);
        let mut rng = seed;
        let start = Instant::now();
        let mut runs = 0u64;
        let mut input = Vec::new();
        while start.elapsed() < Duration::from_secs(secs) {
            make_input(&mut rng, &corpus, &mut input);
            // Keep the input at hand: a panic prints it for a regression test.
            let result = std::panic::catch_unwind(|| f(&input));
            if result.is_err() {
                let path = format!("crash-{name}-{runs}.bin");
                let _ = std::fs::write(&path, &input);
                eprintln!("{name}: failing input written to {path}");
                std::process::exit(1);
            }
            runs += 1;
        }
        println!("{name}: {runs} inputs in {secs} s, no failure");
    }
}

fn next(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
}

/// Bytes that matter to the code under test, so random inputs hit the interesting paths.
const DICT: &[&[u8]] = &[
    b"\n",
    b"\r",
    b"\r\n",
    b"\x1b[",
    b"\x1b]",
    b"\x07",
    b"\x1b\\",
    b"\0",
    b"\xff",
    b"\xc3",
    b"```",
    b"~~~",
    b"````",
    b"   ",
    b"json",
    b"[[pattern]]\n",
    b"[[redact]]\n",
    b"name = \"a\"\n",
    b"regex = '''",
    b"'''\n",
    b"samples = [\"",
    b"\"]\n",
    b"version = 1\n",
    b"event_type = \"e\"\n",
    b"(?P<value>",
    b")",
    b"{1000}",
    b"*",
    b"enabled = false\n",
    b"risk_level = \"high\"\n",
];

fn make_input(rng: &mut u64, corpus: &[Vec<u8>], out: &mut Vec<u8>) {
    out.clear();
    if !corpus.is_empty() && next(rng) % 2 == 0 {
        out.extend_from_slice(&corpus[next(rng) as usize % corpus.len()]);
    }
    let edits = 1 + next(rng) % 16;
    for _ in 0..edits {
        let at = if out.is_empty() {
            0
        } else {
            next(rng) as usize % (out.len() + 1)
        };
        match next(rng) % 4 {
            0 => {
                let piece = DICT[next(rng) as usize % DICT.len()];
                out.splice(at..at, piece.iter().copied());
            }
            1 => {
                let n = next(rng) % 32;
                let bytes: Vec<u8> = (0..n).map(|_| next(rng) as u8).collect();
                out.splice(at..at, bytes);
            }
            2 if at < out.len() => {
                let end = (at + (next(rng) % 16) as usize).min(out.len());
                out.drain(at..end);
            }
            _ if at < out.len() => out[at] = next(rng) as u8,
            _ => {}
        }
    }
}

fn load_corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name);
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .collect()
}
