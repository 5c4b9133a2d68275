//! Committed lines of the primary screen: the rows that leave it, soft-wrapped rows joined,
//! trailing blanks trimmed, and at the end (or at a hard reset) the rows still on it.
//!
//! What avt's own `observer::Transcript` gives, row for row (the tests hold the two side by
//! side on generated input), built for a flood: avt's pushes every cell of a row, trailing
//! blanks included, into a buffer, trims the end and copies the rest out — on `cat` of a build
//! log through PTY mode that was ~1,500 instructions a line, 9% of the screen thread
//! (callgrind, docs/PERFORMANCE.md). Here a row that ends a line is read only up to its last
//! character that trimming would keep, into a string of that size that is stored as it is.

use avt::{Line, Terminal};

#[derive(Default)]
pub(super) struct Transcript {
    /// The rows of a line that wrapped and has not ended yet, joined.
    pending: String,
    /// Lines committed since the caller last took them.
    ready: Vec<String>,
}

/// The characters a row shows, in order (the second cell of a wide character holds none).
pub(super) fn shown(cells: &[avt::Cell]) -> impl Iterator<Item = char> + '_ {
    cells.iter().filter(|c| c.width() != 0).map(|c| c.char())
}

impl Transcript {
    /// A row left the screen (scrolled off, or cleared into history).
    pub(super) fn push(&mut self, line: &Line) {
        let cells = line.cells();
        if line.is_wrapped() {
            // Blanks inside a wrapped line are the line's own: kept.
            self.pending.extend(shown(cells));
            return;
        }
        // The line ends with this row. Trimming its end keeps everything up to the row's last
        // shown character that is not whitespace; if the row has none, the row adds nothing
        // and the wrapped rows before it are trimmed instead.
        // (Plain blanks first, one comparison each: most of a row is usually those.)
        let blanks = cells.iter().rev().take_while(|c| c.char() == ' ').count();
        let last = cells[..cells.len() - blanks]
            .iter()
            .rposition(|c| c.width() != 0 && !c.char().is_whitespace());
        let text = match last {
            Some(i) if self.pending.is_empty() => {
                let mut s = String::with_capacity(i + 1);
                s.extend(shown(&cells[..=i]));
                s
            }
            Some(i) => {
                self.pending.extend(shown(&cells[..=i]));
                std::mem::take(&mut self.pending)
            }
            None => {
                let s = self.pending.trim_end().to_owned();
                self.pending.clear();
                s
            }
        };
        self.ready.push(text);
    }

    /// A line that left the screen as the text given (a fast-forwarded line, `fast.rs`: it
    /// always follows a row that ended a line).
    pub(super) fn push_text(&mut self, text: String) {
        if !self.pending.is_empty() {
            let s = self.pending.trim_end().to_owned();
            self.pending.clear();
            self.ready.push(s);
        }
        self.ready.push(text);
    }

    /// The rows still on the primary screen become lines (blank ones at its end do not): at
    /// a hard reset, which clears it, and when the program ends.
    pub(super) fn finish_primary(&mut self, term: &Terminal) {
        let from = self.ready.len();
        for line in term.primary_screen().all_lines() {
            self.push(line);
        }
        while self.ready.len() > from && self.ready.last().is_some_and(String::is_empty) {
            self.ready.pop();
        }
    }

    /// The lines committed since the last call.
    pub(super) fn take(&mut self) -> Vec<String> {
        std::mem::take(&mut self.ready)
    }

    /// Everything not yet taken, the rows still on the primary screen included.
    pub(super) fn finish(mut self, term: &Terminal) -> Vec<String> {
        self.finish_primary(term);
        self.ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::XorShift;
    use avt::parser::Function;
    use avt::{Observation, Observer, Operation};

    /// This transcript as an observer on its own, as `Watch` drives it.
    #[derive(Default)]
    struct Ours(Transcript);

    impl Observer for Ours {
        type Output = Vec<String>;
        fn before(&mut self, cx: &mut Observation<'_>, op: &Operation) {
            if matches!(op, Operation::Function(Function::Ris)) {
                self.0.finish_primary(cx.terminal());
            }
        }
        fn evicted(&mut self, _: &mut Observation<'_>, line: &Line) {
            self.0.push(line);
        }
        fn end(&mut self, _: &mut Observation<'_>) -> Vec<String> {
            self.0.take()
        }
    }

    /// Pieces of output that move rows off the screen in every way a terminal has: wrapping,
    /// blanks and whitespace that trimming removes (U+3000 among them), wide characters,
    /// scroll regions, scrolling, inserted and deleted lines, erasing, the alternate screen,
    /// autowrap off, a hard reset.
    const PIECES: &[&str] = &[
        "a",
        "bc",
        "word ",
        "   ",
        "\t",
        " \u{3000}",
        "漢",
        "字x",
        "é",
        "\r\n",
        "\n",
        "\r",
        "\r\n\r\n",
        "\x1b[2J",
        "\x1b[3J",
        "\x1b[H",
        "\x1b[K",
        "\x1b[1K",
        "\x1b[J",
        "\x1bc",
        "\x1b[?1049h",
        "\x1b[?1049l",
        "\x1b[2;3r",
        "\x1b[r",
        "\x1b[S",
        "\x1b[2T",
        "\x1b[L",
        "\x1b[M",
        "\x1b[3A",
        "\x1b[9C",
        "\x1b[1;31m",
        "\x1b[0m",
        "\x1b[?7l",
        "\x1b[?7h",
        "\x1bD",
        "\x1bM",
        "\x1b[2@",
        "\x1b[P",
        "0123456789abcdef",
        "end \u{3000}\u{3000}",
        "\x1b[4h",
        "\x1b[4l",
        "\x08",
        "\x1b[5G",
    ];

    #[test]
    fn lines_are_avts_transcript_row_for_row_on_generated_output() {
        let mut rng = XorShift::new(0x5eed_7a11);
        for case in 0..400 {
            let (cols, rows) = [(5, 3), (8, 4), (10, 2), (12, 6), (80, 24)][case % 5];
            // PTY mode's terminal keeps no history (every row that scrolls off is evicted at
            // once); with some, the end reads it from the screen's history too.
            let history = [Some(0), Some(0), Some(3), None][case % 4];
            let mut term = Terminal::with_scrollback(cols, rows, history).expect("size");
            let mut theirs = avt::observer::Transcript::new();
            let mut ours = Ours::default();
            let mut fed = String::new();
            for _ in 0..(5 + rng.below(40)) {
                let mut chunk = String::new();
                for _ in 0..(1 + rng.below(12)) {
                    chunk.push_str(PIECES[rng.below(PIECES.len())]);
                }
                fed.push_str(&chunk);
                let (a, b) = term.feed_with(chunk.as_str(), (&mut theirs, &mut ours));
                assert_eq!(b, a, "case {case} ({cols}x{rows}) after {fed:?}");
            }
            let a = theirs.finish(&term);
            let b = ours.0.finish(&term);
            assert_eq!(b, a, "case {case} ({cols}x{rows}) at the end of {fed:?}");
        }
    }

    #[test]
    fn a_row_that_ends_a_line_keeps_its_inner_blanks_and_loses_its_trailing_ones() {
        let mut term = Terminal::new(6, 2).expect("size");
        let mut ours = Ours::default();
        // "ab  cdef" wraps after 6 columns; "gh   " ends a line with blanks.
        let mut got = term.feed_with("ab  cdef\r\ngh   \r\n \u{3000}\r\nz", &mut ours);
        got.extend(ours.0.finish(&term));
        assert_eq!(got, ["ab  cdef", "gh", "", "z"]);
    }
}
