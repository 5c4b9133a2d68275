//! The properties the fuzz targets check, shared by the libFuzzer targets (`fuzz_targets/`)
//! and the plain random-input loop (`src/bin/random_loop.rs`) that runs on a stable toolchain.

use wrapper::extract::codeblock::CodeBlockParser;
use wrapper::extract::rules::RuleBook;
use wrapper::lines::{clean_line, LineSplitter};

/// Splits `data` whole and in chunks chosen by the input itself; both must give the same
/// lines, every line must respect `max_line`, and cleaning must never leave NUL or ESC.
pub fn lines(input: &[u8]) {
    if input.len() < 2 {
        return;
    }
    let max_line = 1 + (input[0] as usize % 64);
    let seed = input[1];
    let data = &input[2..];
    let whole = split(data, max_line, &[data.len().max(1)]);
    let sizes: Vec<usize> = data
        .iter()
        .map(|b| 1 + (b.wrapping_add(seed) as usize % 17))
        .collect();
    let chunked = split(data, max_line, &sizes);
    assert_eq!(whole, chunked, "chunking changed the lines");
    for (line, _) in &whole {
        assert!(line.len() <= max_line);
        assert!(!line.contains(&b'\n'));
        let text = clean_line(line);
        assert!(!text.contains('\0'), "NUL survived cleaning");
        assert!(!text.contains('\u{1b}'), "ESC survived cleaning");
    }
}

fn split(data: &[u8], max_line: usize, sizes: &[usize]) -> Vec<(Vec<u8>, bool)> {
    let mut s = LineSplitter::new(max_line);
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        s.feed(&rest[..n], |l, t| out.push((l.to_vec(), t)));
        rest = &rest[n..];
        i += 1;
    }
    s.finish(|l, t| out.push((l.to_vec(), t)));
    out
}

/// Feeds arbitrary lines to the code-block parser: never panics, blocks never end before
/// they start, line numbers stay in range.
pub fn codeblock(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let mut p = CodeBlockParser::default();
    let mut n = 0u64;
    for line in text.split('\n') {
        n += 1;
        if let Some(b) = p.line(line, n) {
            assert!(b.line_start <= b.line_end && b.line_end <= n);
        }
    }
    if let Some(b) = p.finish(n) {
        assert!(!b.closed);
        assert!(b.line_start <= b.line_end);
    }
}

/// Loads arbitrary text as a pattern file: an error or a rule book, never a panic; a book
/// that loads has a version.
pub fn patterns(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    if let Ok(book) = RuleBook::parse_text("fuzz.toml", text) {
        assert_eq!(book.version().len(), 12);
    }
}
