//! JSON text written by hand where it is written for every event: strings escaped exactly
//! as `serde_json` escapes them, eight bytes at a time.
//!
//! `serde_json` looks each byte of a string up in a table; for `--events-out` that was a
//! quarter of all the instructions of extraction alone (~2,500 a line of the standard input,
//! docs/PERFORMANCE.md), and an event's metadata is escaped twice (as an object, then as the
//! string `metadata_json`). Text that needs no escape (nearly all of it) is now passed over a
//! word at a time. The output is byte for byte `serde_json`'s: the tests compare the two.

/// Appends `s` as a JSON string, quotes included, as `serde_json::to_writer` would.
///
/// Eight bytes at a time: a word with nothing to escape is passed over; in one with
/// something, the lowest byte flagged is the first to escape (see [`escape_mask`]), so the
/// text before it is copied whole and the search goes on right after it. Text with many
/// quotes (`metadata_json`, a JSON object escaped as a string) then costs one step a quote,
/// not one a byte.
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    // Bytes before `start` are written; `at` is where the search goes on.
    let mut start = 0;
    let mut at = 0;
    while let Some(word) = b.get(at..at + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let mask = escape_mask(u64::from_le_bytes(w));
        if mask == 0 {
            at += 8;
            continue;
        }
        let i = at + (mask.trailing_zeros() / 8) as usize;
        out.extend_from_slice(&b[start..i]);
        push_escape(out, b[i]);
        start = i + 1;
        at = i + 1;
    }
    for (i, &c) in b.iter().enumerate().skip(at) {
        if needs_escape(c) {
            out.extend_from_slice(&b[start..i]);
            push_escape(out, c);
            start = i + 1;
        }
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

/// The high bit of each byte of `w` (little-endian) that is a control character, `"` or `\`,
/// and maybe of bytes above such a byte: the classic zero-byte tests, whose borrow can only
/// spread upwards from a byte that did match. So the mask is 0 exactly when no byte needs an
/// escape, and its lowest bit is always a byte that does.
#[inline]
fn escape_mask(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    let q = w ^ (ONES * b'"' as u64);
    let quote = q.wrapping_sub(ONES) & !q;
    let s = w ^ (ONES * b'\\' as u64);
    let slash = s.wrapping_sub(ONES) & !s;
    (control | quote | slash) & HIGH
}

#[inline]
fn needs_escape(c: u8) -> bool {
    c < 0x20 || c == b'"' || c == b'\\'
}

/// `serde_json`'s escapes: the short ones it has, `\u00XX` (lower-case hex) for the rest.
fn push_escape(out: &mut Vec<u8>, c: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = match c {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        _ => 0,
    };
    if short != 0 {
        out.extend_from_slice(&[b'\\', short]);
    } else {
        out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[(c >> 4) as usize],
            HEX[(c & 0xf) as usize],
        ]);
    }
}

/// Appends `v` as a JSON string, or `null`.
pub fn push_opt_str(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        Some(s) => push_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends an unsigned integer.
pub fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(s: &str) -> String {
        let mut out = Vec::new();
        push_str(&mut out, s);
        String::from_utf8(out).expect("escaped text is UTF-8")
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut cases: Vec<String> = vec![
            String::new(),
            "plain ascii text, longer than one word of eight bytes".into(),
            "\"quoted\" and \\back\\slashed\\".into(),
            "tab\there, newline\nthere, cr\r, bell\u{7}, nul\0, esc\u{1b}[31m".into(),
            "\u{8}\u{c}\u{1f}\u{7f} del is not escaped".into(),
            "naïve — ünïcödé ✓ 中文 \u{2028} \u{2029} 🙂".into(),
            "1234567\"".into(),
            "12345678\"".into(),
            "\"12345678".into(),
        ];
        // Every byte below 0x80 at every position of a word.
        for c in 0u8..0x80 {
            for pos in 0..10 {
                let mut s = "abcdefghij".to_string().into_bytes();
                s[pos] = c;
                cases.push(String::from_utf8(s).expect("ASCII"));
            }
        }
        // Bytes that make a borrow run through a word (0x20, 0x21, 0x23, 0x5b, 0x5d …).
        for c in [0x1fu8, 0x20, 0x21, 0x22, 0x23, 0x5b, 0x5c, 0x5d, 0x80] {
            let s: String = (0..17)
                .map(|i| if i % 3 == 0 { c as char } else { 'x' })
                .collect();
            cases.push(s);
        }
        for s in &cases {
            let theirs = serde_json::to_string(s).expect("a string serialises");
            assert_eq!(ours(s), theirs, "for {s:?}");
        }
    }

    /// Words with several bytes to escape, at every distance from each other and from the
    /// ends: generated strings from the bytes that matter, against `serde_json`.
    #[test]
    fn strings_with_many_escapes_are_escaped_as_serde_json_escapes_them() {
        const CHARS: &[char] = &[
            '"', '\\', '\n', '\0', '\u{1f}', ' ', '!', '#', '[', ']', 'a', '\u{7f}', 'é', '✓',
        ];
        let mut rng = crate::test_rng::XorShift::new(0x2545_f491_4f6c_dd1d);
        for _ in 0..50_000 {
            let len = rng.below(40);
            let s: String = (0..len).map(|_| CHARS[rng.below(CHARS.len())]).collect();
            let theirs = serde_json::to_string(&s).expect("a string serialises");
            assert_eq!(ours(&s), theirs, "for {s:?}");
        }
    }

    #[test]
    fn numbers_and_nulls() {
        let mut out = Vec::new();
        push_u64(&mut out, 0);
        out.push(b' ');
        push_u64(&mut out, u64::MAX);
        out.push(b' ');
        push_opt_str(&mut out, None);
        out.push(b' ');
        push_opt_str(&mut out, Some("x"));
        assert_eq!(out, b"0 18446744073709551615 null \"x\"");
    }
}
