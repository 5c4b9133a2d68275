//! Fast-forward over plain lines: what the virtual terminal need not draw.
//!
//! A program that prints lines on a pty (a build, a test run, `cat` of a log) makes the
//! screen model draw every character of every line, only for each row to scroll off the top
//! a screenful later and be read back as the same text: on the benchmark's log through
//! `--pty --db` the screen thread was a third of the run's CPU, most of it avt printing
//! characters (docs/PERFORMANCE.md, fourteenth session).
//!
//! When a read holds more complete lines than the screen has rows, and the terminal is in a
//! state where those lines can only scroll (the cursor on the bottom row of the primary
//! screen, the scroll region the whole screen, the ASCII character set), every line but the
//! last `rows` is certain to leave the screen before the read ends. Such a line is fed to the
//! terminal as its SGR sequences (so the pen is what it would be), and its text is kept
//! aside; each run of such lines is one [`MARKER`] and one `\r\n`, and when the row holding
//! the marker leaves the screen, the run's lines are committed in its place. The rows the
//! skipped lines would have filled would only have scrolled off again: the terminal ends with
//! the rows of the lines drawn after them, with the same pen, so what it shows afterwards is
//! what it would have shown, and the lines committed are the same, in the same order (the
//! tests hold the two side by side on generated output, comparing avt's full state dump after
//! every read).
//!
//! Only what is certain is skipped: a read with anything but printable characters, SGR
//! sequences and line ends in it, a line with a wide character, a lone `\r` or `\n`, or as
//! wide as the screen, is drawn as it is.

use avt::parser::Function;
use avt::Charset;
use unicode_width::UnicodeWidthChar;

/// Printed in place of a skipped line's text: a noncharacter (U+FDD0, reserved for a
/// program's internal use), which no program prints; a read that holds one is drawn as it
/// is, and the screen stops fast-forwarding for good (a row showing one could be taken for a
/// marker later).
pub(super) const MARKER: char = '\u{FDD0}';

/// What of the terminal's state decides whether a line can only scroll: its scroll region
/// and character sets (avt does not tell; followed here from the operations it runs).
#[derive(Clone, Copy, Default)]
pub(super) struct Plain {
    /// A scroll region smaller than the screen is set.
    margins: bool,
    /// G0, G1 hold the line-drawing set, not ASCII.
    g0_drawing: bool,
    g1_drawing: bool,
    /// G1 is shifted in (SO).
    shifted: bool,
}

impl Plain {
    /// Whether `f` is one of the operations [`Plain::follow`] follows (inlined into avt's
    /// loop over every character: a match, no call).
    #[inline(always)]
    pub(super) fn follows(f: &Function) -> bool {
        matches!(
            f,
            Function::Decstbm(..)
                | Function::Gzd4(_)
                | Function::G1d4(_)
                | Function::So
                | Function::Si
                | Function::Ris
                | Function::Decstr
        )
    }

    /// Whether a line printed now can only scroll: the whole screen scrolls, ASCII shows.
    pub(super) fn ok(self) -> bool {
        !self.margins
            && !(if self.shifted {
                self.g1_drawing
            } else {
                self.g0_drawing
            })
    }

    /// Before `f` runs on a terminal of `rows` rows (as avt's engine runs it).
    #[cold]
    #[inline(never)]
    pub(super) fn follow(&mut self, f: &Function, rows: usize) {
        match *f {
            Function::Decstbm(top, bottom) => {
                let top = usize::from(top.max(1)) - 1;
                let bottom = if bottom == 0 {
                    rows
                } else {
                    usize::from(bottom)
                } - 1;
                // An invalid region is ignored.
                if top < bottom && bottom < rows {
                    self.margins = top != 0 || bottom != rows - 1;
                }
            }
            Function::Gzd4(c) => self.g0_drawing = c != Charset::Ascii,
            Function::G1d4(c) => self.g1_drawing = c != Charset::Ascii,
            Function::So => self.shifted = true,
            Function::Si => self.shifted = false,
            Function::Ris | Function::Decstr => *self = Plain::default(),
            _ => {}
        }
    }
}

/// What to feed instead of a read, and what the markers in it stand for.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Reduced {
    /// The read with each run of skipped lines replaced by their SGR sequences, one marker
    /// and one `\r\n`.
    pub fed: String,
    /// The skipped lines' text, in order.
    pub lines: Vec<String>,
    /// How many of `lines` each marker stands for, in order.
    pub runs: Vec<usize>,
}

/// What to feed instead of `text`; `None` when nothing can be skipped. The caller has checked
/// the terminal's state (see the module).
///
/// A run of skipped lines takes one row: the rows between are only scrolled off again, so
/// what the terminal ends with is the same, and the run's lines are committed together where
/// its row leaves the screen, in their order among the rows that do.
pub(super) fn reduce(text: &str, cols: usize, rows: usize) -> Option<Reduced> {
    let b = text.as_bytes();
    // Cheap first: enough line ends for anything to be skipped.
    let ends: Vec<usize> = memchr::memmem::find_iter(b, b"\r\n").collect();
    // The first line continues whatever the cursor is on; the last `rows` are drawn.
    if ends.len() <= rows + 1 || !plain(text) {
        return None;
    }
    let last_skippable = ends[ends.len() - 1 - rows];
    let mut r = Reduced {
        fed: String::with_capacity(text.len() / 4),
        lines: Vec::new(),
        runs: Vec::new(),
    };
    let mut start = ends[0] + 2;
    r.fed.push_str(&text[..start]);
    // Lines in the run being skipped (its marker not yet written).
    let mut run = 0;
    for &end in &ends[1..] {
        let line = &text[start..end];
        match (end <= last_skippable).then(|| shown(line, cols)).flatten() {
            Some(t) => {
                push_sgrs(&mut r.fed, line);
                r.lines.push(t);
                run += 1;
            }
            None => {
                end_run(&mut r, &mut run);
                r.fed.push_str(&text[start..end + 2]);
            }
        }
        start = end + 2;
    }
    end_run(&mut r, &mut run);
    r.fed.push_str(&text[start..]);
    (!r.lines.is_empty()).then_some(r)
}

/// Writes the marker of the run of `run` skipped lines, if there is one.
fn end_run(r: &mut Reduced, run: &mut usize) {
    if *run > 0 {
        r.fed.push(MARKER);
        r.fed.push_str("\r\n");
        r.runs.push(std::mem::take(run));
    }
}

/// Whether `text` holds only printable characters, `\r`, `\n` and SGR sequences
/// (`ESC [` digits, `;` and `:`, `m`): nothing that moves the cursor other than to a line's
/// start or down, changes a mode, or could be a marker.
fn plain(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // Runs of printable ASCII first, without the match below.
        i += b[i..]
            .iter()
            .take_while(|c| (0x20..=0x7e).contains(*c))
            .count();
        let Some(&c) = b.get(i) else {
            break;
        };
        match c {
            b'\r' | b'\n' => i += 1,
            0x1b => match sgr_len(&b[i..]) {
                Some(n) => i += n,
                None => return false,
            },
            0x80.. => {
                let Some(c) = text[i..].chars().next() else {
                    return false;
                };
                // C1 controls (a CSI of its own among them), and the marker.
                if ('\u{80}'..='\u{9f}').contains(&c) || c == MARKER {
                    return false;
                }
                i += c.len_utf8();
            }
            _ => return false,
        }
    }
    true
}

/// The length of the SGR sequence at the start of `b`, if there is one.
fn sgr_len(b: &[u8]) -> Option<usize> {
    if b.get(1) != Some(&b'[') {
        return None;
    }
    let params = b[2..]
        .iter()
        .take_while(|c| c.is_ascii_digit() || **c == b';' || **c == b':')
        .count();
    (b.get(2 + params) == Some(&b'm')).then_some(3 + params)
}

/// The line as the transcript would commit it (its characters, SGR sequences left out,
/// trailing whitespace trimmed), if the terminal draws it on one row of one cell per
/// character: no `\r` or `\n` inside, no wide character, narrower than the screen.
fn shown(line: &str, cols: usize) -> Option<String> {
    let b = line.as_bytes();
    // Most lines: printable ASCII alone, a cell a byte.
    if b.iter().all(|c| (0x20..=0x7e).contains(c)) {
        return (b.len() < cols).then(|| line.trim_end().to_owned());
    }
    let mut text = String::with_capacity(line.len());
    let mut cells = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            0x1b => {
                i += sgr_len(&b[i..])?;
                continue;
            }
            b'\r' | b'\n' => return None,
            _ => {}
        }
        let c = line[i..].chars().next()?;
        // avt gives every character one cell but those Unicode calls wide.
        if c > '\u{7e}' && c.width() == Some(2) {
            return None;
        }
        cells += 1;
        if cells >= cols {
            return None;
        }
        text.push(c);
        i += c.len_utf8();
    }
    let trimmed = text.trim_end().len();
    text.truncate(trimmed);
    Some(text)
}

/// The SGR sequences of `line`, in order.
fn push_sgrs(out: &mut String, line: &str) {
    let b = line.as_bytes();
    let mut from = 0;
    while let Some(p) = memchr::memchr(0x1b, &b[from..]) {
        let at = from + p;
        let n = sgr_len(&b[at..]).unwrap_or(1);
        out.push_str(&line[at..at + n]);
        from = at + n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lines_certain_to_scroll_off_are_skipped() {
        let text: String = (0..10).map(|i| format!("line {i}\r\n")).collect();
        // 3 rows: the first line and the last three are drawn.
        let r = reduce(&text, 20, 3).expect("skips");
        assert_eq!(
            r.lines,
            ["line 1", "line 2", "line 3", "line 4", "line 5", "line 6"]
        );
        assert_eq!(r.runs, [6]);
        assert_eq!(
            r.fed,
            format!("line 0\r\n{MARKER}\r\nline 7\r\nline 8\r\nline 9\r\n")
        );
        // Not enough lines: nothing skipped.
        assert!(reduce(&text, 20, 9).is_none());
    }

    #[test]
    fn colours_are_kept_and_anything_else_draws_the_read_as_it_is() {
        let lines = [
            "a",
            "\x1b[32m✓\x1b[0m ok  ",
            "wide 漢",
            "0123456789",
            "x\ry",
            "",
        ];
        let text: String =
            lines.iter().map(|l| format!("{l}\r\n")).collect::<String>() + &"tail\r\n".repeat(2);
        let r = reduce(&format!("head\r\n{text}"), 10, 2).expect("skips");
        // The wide character, the full-width line and the `\r` are drawn.
        assert_eq!(r.lines, ["a", "✓ ok", ""]);
        assert_eq!(r.runs, [2, 1]);
        assert_eq!(
            r.fed,
            format!(
                "head\r\n\x1b[32m\x1b[0m{MARKER}\r\nwide 漢\r\n0123456789\r\nx\ry\r\n\
                 {MARKER}\r\n{}",
                "tail\r\n".repeat(2)
            )
        );
        for bad in [
            "\x1b[2J",
            "\t",
            "\x1b[>4;2m",
            "\u{9b}1m",
            "\x07",
            "\u{fdd0}",
        ] {
            let t = format!("head\r\n{bad}\r\n{}", "l\r\n".repeat(8));
            assert!(reduce(&t, 10, 2).is_none(), "{bad:?}");
        }
    }
}
