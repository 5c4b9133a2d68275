//! Deterministic benchmark input with the mix of `../shared/bench/gen_log.py` (prose, commands,
//! errors, warnings, tracebacks, test results, prompts, URLs, code blocks, coloured lines with
//! non-ASCII), generated here so the benches run without `../shared`.

pub fn agent_log(lines: usize, non_ascii: bool) -> Vec<u8> {
    let words = "the agent reads the file and applies a patch to fix the failing test then runs the suite again checking output for regressions in module parser"
        .split(' ')
        .collect::<Vec<_>>();
    let paths = [
        "src/main.rs",
        "src/lib/parser.rs",
        "tests/test_api.py",
        "pkg/server/handler.go",
        "web/src/App.tsx",
    ];
    // A small xorshift: deterministic, no dependency.
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move |n: u64| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s % n
    };
    let mut out = Vec::with_capacity(lines * 48);
    let mut i = 0;
    while i < lines {
        let r = rnd(100);
        let line = if r < 55 {
            let n = 6 + rnd(9) as usize;
            (0..n)
                .map(|_| words[rnd(words.len() as u64) as usize])
                .collect::<Vec<_>>()
                .join(" ")
        } else if r < 62 {
            format!("$ cargo test -p core -- --nocapture {}", rnd(999))
        } else if r < 67 {
            format!(
                "error[E0{}]: mismatched types in {}:{}:{}",
                100 + rnd(900),
                paths[rnd(5) as usize],
                rnd(900),
                rnd(80)
            )
        } else if r < 71 {
            format!(
                "warning: unused variable `x{}` at {}:{}",
                rnd(99),
                paths[rnd(5) as usize],
                rnd(900)
            )
        } else if r < 75 {
            format!(
                "Traceback (most recent call last): File \"{}\", line {}",
                paths[rnd(5) as usize],
                rnd(500)
            )
        } else if r < 79 {
            format!(
                "test result: FAILED. {} passed; {} failed; 0 ignored",
                rnd(200),
                1 + rnd(9)
            )
        } else if r < 81 {
            "Do you want to run this command? [y/N] rm -rf build/".to_string()
        } else if r < 84 {
            format!(
                "https://github.com/example/repo/issues/{} referenced in {}",
                rnd(9999),
                paths[rnd(5) as usize]
            )
        } else if r < 87 {
            let body: Vec<String> = (0..2 + rnd(6))
                .map(|k| format!("    let v{k} = compute({k}, {});", rnd(9)))
                .collect();
            i += body.len() + 1;
            format!("```rust\n{}\n```", body.join("\n"))
        } else if non_ascii {
            format!(
                "\x1b[32m✓\x1b[0m step {} done in 0.{}s → café",
                rnd(99),
                rnd(999)
            )
        } else {
            format!("\x1b[32mok\x1b[0m step {} done in 0.{}s", rnd(99), rnd(999))
        };
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        i += 1;
    }
    out
}

pub fn count_lines(data: &[u8]) -> u64 {
    data.iter().filter(|b| **b == b'\n').count() as u64
}
