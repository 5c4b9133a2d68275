//! The transcript a person read: the lines of the output, escape sequences and overwritten
//! progress redraws taken out, exactly as extraction sees them (`crate::lines`).
//!
//! Pipe mode: each stream is split into lines on its own and lines are written in the order
//! they ended. PTY mode's transcript comes from the screen model (`crate::screen`, when it is
//! there); until then a `pty` stream is split into lines the same way, which is right for
//! line-oriented output and rough for full-screen TUIs.

use crate::lines::{clean_line, LineSplitter, DEFAULT_MAX_LINE};

use super::{Encoder, Entry, Header};

/// Lines per stream, joined in the order they complete.
#[derive(Debug, Default)]
pub struct Txt {
    splitters: Vec<(&'static str, LineSplitter)>,
}

impl Txt {
    fn splitter(&mut self, stream: &'static str) -> &mut LineSplitter {
        let i = match self.splitters.iter().position(|(s, _)| *s == stream) {
            Some(i) => i,
            None => {
                self.splitters
                    .push((stream, LineSplitter::new(4 * DEFAULT_MAX_LINE)));
                self.splitters.len() - 1
            }
        };
        &mut self.splitters[i].1
    }
}

fn push_line(out: &mut Vec<u8>, line: &[u8]) {
    out.extend_from_slice(clean_line(line).as_bytes());
    out.push(b'\n');
}

impl Encoder for Txt {
    fn header(&mut self, _: &Header) -> Vec<u8> {
        self.splitters.clear();
        Vec::new()
    }

    fn entry(&mut self, e: &Entry) -> Vec<u8> {
        let mut out = Vec::new();
        if let Entry::Output { stream, data, .. } = e {
            self.splitter(stream)
                .feed(data, |line, _| push_line(&mut out, line));
        }
        out
    }

    fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        for (_, s) in &mut self.splitters {
            s.finish(|line, _| push_line(&mut out, line));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cast::encode_all;

    #[test]
    fn lines_without_escapes_or_redraws() {
        let e = |s: &'static str, d: &str| Entry::Output {
            at_us: 0,
            stream: s,
            data: d.as_bytes().to_vec(),
        };
        let out = encode_all(
            &mut Txt::default(),
            &Header::default(),
            [
                e("stdout", "\x1b[32m✓ ok\x1b[0m\n50%\r100%\n"),
                e("stderr", "warn\n"),
                e("stdout", "tail"),
            ],
        );
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "✓ ok\n100%\nwarn\ntail\n"
        );
    }
}
