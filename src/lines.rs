//! Bytes to lines, the way a terminal would show them (SPEC §2).
//!
//! The splitter sees the child's raw bytes after they have already been passed through, so
//! nothing here can alter what the user sees. It owns three decisions:
//!
//! * where a line ends (`\n`), and what of it is visible: a trailing `\r` is dropped and text
//!   before the last `\r` is a progress redraw that the terminal overwrote, so it is discarded;
//! * how much of a line is kept: at most `max_line` bytes, the rest only counted, so memory
//!   stays bounded even for a 1 GB line with no newline;
//! * how a line becomes text: escape sequences stripped, invalid UTF-8 replaced by U+FFFD, NUL
//!   bytes removed.
//!
//! Most lines have no `\r`, no escape and are valid UTF-8; they take a zero-copy path.

use std::borrow::Cow;

use memchr::memchr;

/// Default cap on the bytes of one line kept for extraction.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// Splits one stream into lines. Feed it chunks in order; it calls back once per line.
#[derive(Debug)]
pub struct LineSplitter {
    /// The visible part of the current, unfinished line (after its last `\r`).
    buf: Vec<u8>,
    max_line: usize,
    /// The current line grew past `max_line`; what is in `buf` is its head.
    truncated: bool,
    /// A `\r` was seen and not yet resolved: followed by `\n` it is a CRLF, followed by
    /// anything else it starts a redraw of the line.
    pending_cr: bool,
    /// How many times an unfinished line was overwritten by a `\r` redraw, ever. Whoever
    /// acted on a partial line (a prompt fired on it) compares this to know whether the text
    /// it saw is still there.
    redraws: u64,
}

impl LineSplitter {
    pub fn new(max_line: usize) -> Self {
        LineSplitter {
            buf: Vec::new(),
            max_line: max_line.max(1),
            truncated: false,
            pending_cr: false,
            redraws: 0,
        }
    }

    /// Splits `data` and calls `on_line(bytes, truncated)` for every line it completes.
    /// An unfinished tail stays buffered (bounded by `max_line`) for the next call.
    pub fn feed(&mut self, data: &[u8], mut on_line: impl FnMut(&[u8], bool)) {
        self.feed_counted(data, |line, truncated, _| on_line(line, truncated));
    }

    /// [`feed`](Self::feed), also passing [`redraws`](Self::redraws) as it was when each
    /// line ended.
    pub fn feed_counted(&mut self, data: &[u8], mut on_line: impl FnMut(&[u8], bool, u64)) {
        let mut rest = data;
        while let Some(nl) = memchr(b'\n', rest) {
            let segment = &rest[..nl];
            if self.buf.is_empty() && !self.pending_cr && memchr(b'\r', segment).is_none() {
                // Fast path: the whole line is in this chunk and needs no redraw handling.
                if segment.len() > self.max_line {
                    on_line(&segment[..self.max_line], true, self.redraws);
                } else {
                    on_line(segment, false, self.redraws);
                }
            } else {
                self.push_segment(segment);
                on_line(&self.buf, self.truncated, self.redraws);
                self.reset();
            }
            rest = &rest[nl + 1..];
        }
        self.push_segment(rest);
    }

    /// The visible text of the unfinished line, if it has any (used for idle prompts).
    pub fn partial(&self) -> Option<(&[u8], bool)> {
        if self.buf.is_empty() {
            None
        } else {
            Some((&self.buf, self.truncated))
        }
    }

    /// How many times an unfinished line was overwritten by a `\r` redraw so far.
    pub fn redraws(&self) -> u64 {
        self.redraws
    }

    /// Ends the stream: an unfinished line with visible text becomes a last line.
    pub fn finish(&mut self, mut on_line: impl FnMut(&[u8], bool)) {
        if !self.buf.is_empty() {
            on_line(&self.buf, self.truncated);
        }
        self.reset();
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.truncated = false;
        self.pending_cr = false;
        // A single huge line must not pin its buffer for the rest of the session.
        if self.buf.capacity() > 4 * DEFAULT_MAX_LINE {
            self.buf.shrink_to(DEFAULT_MAX_LINE);
        }
    }

    /// Adds bytes that contain no `\n` to the unfinished line, applying `\r` redraws.
    fn push_segment(&mut self, segment: &[u8]) {
        let mut rest = segment;
        while !rest.is_empty() {
            if self.pending_cr {
                if rest[0] == b'\r' {
                    rest = &rest[1..];
                    continue;
                }
                // Text after a carriage return overwrites the line: start it again.
                self.buf.clear();
                self.truncated = false;
                self.pending_cr = false;
                self.redraws += 1;
            }
            match memchr(b'\r', rest) {
                Some(i) => {
                    self.append(&rest[..i]);
                    self.pending_cr = true;
                    rest = &rest[i + 1..];
                }
                None => {
                    self.append(rest);
                    return;
                }
            }
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        let room = self.max_line - self.buf.len();
        if bytes.len() > room {
            self.buf.extend_from_slice(&bytes[..room]);
            self.truncated = true;
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }
}

/// Turns a raw line into the text that rules see and the store keeps: escape sequences
/// stripped, invalid UTF-8 decoded lossily, NUL bytes removed. Borrows when nothing changes.
pub fn clean_line(raw: &[u8]) -> Cow<'_, str> {
    // One pass finds either byte: most lines have neither.
    let special = memchr::memchr2(0x1b, 0, raw).is_some();
    if special && memchr(0x1b, raw).is_some() {
        return Cow::Owned(strip_csi(raw).unwrap_or_else(|| strip_escapes(raw)));
    }
    // `from_utf8` validates faster than the lossy decoder walks; most lines are valid.
    let text = match std::str::from_utf8(raw) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(raw),
    };
    if special {
        // A NUL, and no escape.
        return Cow::Owned(text.replace('\0', ""));
    }
    text
}

/// The coloured line that build tools and agents print (`\e[32m✓\e[0m step 7 done`), without
/// the parser: valid UTF-8 text without NUL, and complete CSI sequences (`ESC [`, parameter
/// bytes 0x30–0x3F, intermediate bytes 0x20–0x2F, a final byte 0x40–0x7E), which `vte` also
/// drops whole. Anything else (another kind of escape, a control byte inside a sequence, a
/// sequence cut off at the end, invalid UTF-8, a NUL) is `None`, and [`strip_escapes`] reads
/// the line. Written by hand because the parser, fed one line at a time, was ~10% of the
/// thread that cleans lines on the standard benchmark input (one line in nine is coloured);
/// a test holds it to the parser's output on generated lines.
fn strip_csi(raw: &[u8]) -> Option<String> {
    if memchr(0, raw).is_some() {
        return None;
    }
    let mut out = String::with_capacity(raw.len());
    let mut at = 0;
    loop {
        let esc = memchr(0x1b, &raw[at..]).map_or(raw.len(), |i| at + i);
        out.push_str(std::str::from_utf8(&raw[at..esc]).ok()?);
        if esc == raw.len() {
            return Some(out);
        }
        if raw.get(esc + 1) != Some(&b'[') {
            return None;
        }
        let mut p = esc + 2;
        while matches!(raw.get(p), Some(0x30..=0x3f)) {
            p += 1;
        }
        while matches!(raw.get(p), Some(0x20..=0x2f)) {
            p += 1;
        }
        if !matches!(raw.get(p), Some(0x40..=0x7e)) {
            return None;
        }
        at = p + 1;
    }
}

/// Strips CSI, OSC, DCS and other escape sequences with the `vte` parser (the one Alacritty
/// uses), so that every sequence a terminal understands is recognised, whatever its length.
///
/// `strip-ansi-escapes` wraps the same parser but also drops tabs and other control
/// characters, which would glue `FAIL\tpkg\t0.02s` into one word; this keeps them.
fn strip_escapes(raw: &[u8]) -> String {
    struct Collect(String);
    impl vte::Perform for Collect {
        fn print(&mut self, c: char) {
            self.0.push(c);
        }
        fn execute(&mut self, byte: u8) {
            // C0 controls other than NUL are kept as the fast path keeps them.
            if byte != 0 && byte != 0x7f {
                self.0.push(byte as char);
            }
        }
    }
    let mut out = Collect(String::with_capacity(raw.len()));
    let mut parser = vte::Parser::new();
    parser.advance(&mut out, raw);
    out.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> Vec<(String, bool)> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |l, t| {
                out.push((String::from_utf8_lossy(l).into_owned(), t))
            });
        }
        s.finish(|l, t| out.push((String::from_utf8_lossy(l).into_owned(), t)));
        out
    }

    #[test]
    fn splits_on_newline_across_chunks() {
        let got = split(&[b"ab", b"c\nde", b"f\n", b"tail"], 100);
        let want: Vec<(String, bool)> = ["abc", "def", "tail"]
            .iter()
            .map(|s| (s.to_string(), false))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn carriage_returns_keep_what_the_terminal_shows() {
        let got = split(&[b"10%\r50%\r100%\r\nok\r\n", b"a\r", b"\nb\r\r\n"], 100);
        let lines: Vec<&str> = got.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(lines, ["100%", "ok", "a", "b"]);
        // A carriage return split from its redraw by a chunk boundary.
        let got = split(&[b"old\r", b"new\n"], 100);
        assert_eq!(got[0].0, "new");
    }

    #[test]
    fn long_lines_are_cut_and_marked() {
        let got = split(&[b"abcdefgh\n", b"abc", b"defgh", b"ij\nxy\n"], 4);
        assert_eq!(
            got,
            vec![
                ("abcd".into(), true),
                ("abcd".into(), true),
                ("xy".into(), false)
            ]
        );
    }

    #[test]
    fn partial_line_is_visible_until_completed() {
        let mut s = LineSplitter::new(100);
        s.feed(b"Proceed? [y/N] ", |_, _| panic!("no line yet"));
        assert_eq!(s.partial().map(|p| p.0), Some(&b"Proceed? [y/N] "[..]));
        let mut n = 0;
        s.feed(b"y\n", |l, _| {
            assert_eq!(l, b"Proceed? [y/N] y");
            n += 1
        });
        assert_eq!(n, 1);
        assert!(s.partial().is_none());
    }

    /// The fast path for coloured lines gives what the parser gives, on every line it takes;
    /// and it takes the common ones. Lines are generated from bytes that matter to either:
    /// escapes, every class of CSI byte, controls, DEL, NUL, C1 in and out of UTF-8, bad UTF-8.
    #[test]
    fn the_csi_fast_path_agrees_with_the_parser() {
        const BYTES: &[u8] = &[
            0x1b, 0x1b, b'[', b'[', b'0', b'3', b'2', b';', b':', b'<', b'?', b'm', b'K', b'H',
            b'~', b' ', b'!', b'/', b'a', b'\t', 0x07, 0x08, 0x18, 0x7f, 0, b']', b'P', b'\\',
            0xe2, 0x9c, 0x93, 0xc2, 0x85, 0xff, 0x80, b'x',
        ];
        let mut rng = crate::test_rng::XorShift::new(0x9e37_79b9_7f4a_7c15);
        let mut taken = 0;
        for _ in 0..200_000 {
            let len = rng.below(12);
            let line: Vec<u8> = (0..len).map(|_| BYTES[rng.below(BYTES.len())]).collect();
            if let Some(fast) = strip_csi(&line) {
                assert_eq!(fast, strip_escapes(&line), "line {line:?}");
                taken += 1;
            }
            assert!(!clean_line(&line).as_bytes().contains(&0));
        }
        assert!(
            taken > 10_000,
            "the fast path took only {taken} generated lines"
        );
        for line in [
            &b"\x1b[32m\xe2\x9c\x93\x1b[0m step 98 done in 0.179s"[..],
            b"\x1b[1;31merror\x1b[0m: \x1b[1mmismatched types\x1b[m",
            b"\x1b[2K\x1b[1G\x1b[38;5;208mwarn\x1b[39m x",
            b"\x1b[?25l\x1b[?25h",
        ] {
            assert_eq!(strip_csi(line), Some(strip_escapes(line)), "{line:?}");
        }
        for line in [
            &b"\x1b]0;title\x07text"[..],
            b"\x1b(Btext",
            b"\x1b[31",
            b"a\x1b[3\x07m",
            b"\x1b[31m\xff",
        ] {
            assert_eq!(strip_csi(line), None, "{line:?}");
        }
    }

    #[test]
    fn cleaning_strips_escapes_and_nul_and_bad_utf8() {
        assert_eq!(clean_line(b"\x1b[31merror\x1b[0m: x"), "error: x");
        assert_eq!(clean_line(b"\x1b]0;title\x07FAIL\tpkg"), "FAIL\tpkg");
        assert_eq!(clean_line(b"a\0b"), "ab");
        assert_eq!(clean_line(b"bad \xff byte"), "bad \u{fffd} byte");
        assert!(matches!(clean_line(b"plain"), Cow::Borrowed(_)));
    }
}
