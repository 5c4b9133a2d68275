//! The screen: what a person reads on a terminal, from the bytes a program wrote to it.
//!
//! A TUI does not print lines. Codex draws on the alternate screen, row by row, with cursor
//! moves and no newlines (through a line splitter a whole screen is one 3,000-character
//! "line"); Claude Code redraws an inline region at the bottom, ending rows with `\r` and a
//! cursor move, so "text after the last `\r`" throws away the rows it printed. The only
//! faithful reading is the one a terminal does: a virtual terminal ([`avt`], asciinema's)
//! is fed the bytes, and text is taken from the screen it maintains:
//!
//! * **committed lines** — rows that scroll off the top of the primary screen, or that are
//!   cleared into history, in order (soft-wrapped rows joined: `transcript.rs`); at the end,
//!   the rows still on the primary screen;
//! * **alternate screen** — it has no history, so its rows are read when the screen settles
//!   (nothing drawn for `prompt_idle`) and once more just before the program leaves it: the
//!   rows not already read at the previous settle (matched in order, so rows that merely
//!   moved are not read twice) become lines;
//! * **live rows** — the visible rows of the primary screen at a settle: the bottom of an
//!   inline TUI (approval dialogs, the input box), offered to prompt rules while the agent
//!   waits; the caller records each distinct question once.
//!
//! Pure: no I/O, no threads, no clock — the caller says when the screen has settled.
//! Bytes may be split anywhere, also inside a UTF-8 sequence.

mod fast;
pub mod modes;
mod transcript;

use std::collections::VecDeque;

use avt::parser::Function;
use avt::{Observation, Observer, Operation, ScreenKind, Terminal};

use transcript::Transcript;

/// The virtual terminal and what has been read from it.
pub struct Screen {
    term: Terminal,
    watch: Watch,
    /// The tail of a UTF-8 sequence split across reads.
    pending: Vec<u8>,
    /// The alternate screen's non-blank rows as read at the last settles.
    alt_read: AltRead,
    /// A hash of the visible text now, and at the last settle: redraws that change nothing
    /// (a TUI repainting every frame) do not keep the screen from settling.
    shown: u64,
    settled: u64,
    /// Whether plain lines may be fast-forwarded (`fast.rs`): until the program prints the
    /// marker itself.
    fast: bool,
    /// Lines fast-forwarded so far.
    skipped_lines: u64,
}

/// What a settle yields.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// New rows of the alternate screen, in order: lines for extraction.
    pub lines: Vec<String>,
    /// The primary screen's visible non-blank rows: prompt candidates.
    pub live: Vec<String>,
}

/// Follows the terminal as it runs: the transcript of the primary screen, and the
/// alternate screen's rows just before it is left.
#[derive(Default)]
struct Watch {
    transcript: Transcript,
    alt_before: Option<Vec<String>>,
    left_alt: Vec<Vec<String>>,
    dirty: bool,
    /// What the terminal's state is for fast-forwarding (`fast.rs`).
    state: fast::Plain,
    /// The text of lines fed as markers, committed when their rows leave the screen.
    skipped: VecDeque<String>,
    /// How many of them each marker on the screen stands for, top to bottom.
    runs: VecDeque<usize>,
}

/// avt calls `before` and `after` for every character it prints, so they are kept to a test
/// that inlines into its loop; what they do when it holds is out of line.
impl Observer for Watch {
    type Output = Vec<String>;

    #[inline(always)]
    fn before(&mut self, cx: &mut Observation<'_>, op: &Operation) {
        if let Operation::Function(f) = op {
            if let Function::Decrst(_) | Function::Ris | Function::Decstr = f {
                self.leaving(cx, f);
            }
            if fast::Plain::follows(f) {
                self.state.follow(f, cx.terminal().size().1);
            }
        }
    }

    #[inline(always)]
    fn after(&mut self, cx: &mut Observation<'_>, _op: &Operation) {
        if self.alt_before.is_some() {
            self.left(cx);
        }
    }

    fn dirty(&mut self, _rows: std::ops::Range<usize>) {
        self.dirty = true;
    }

    fn evicted(&mut self, _cx: &mut Observation<'_>, line: &avt::Line) {
        if !self.runs.is_empty()
            && line
                .cells()
                .first()
                .is_some_and(|c| c.char() == fast::MARKER)
        {
            if let Some(n) = self.runs.pop_front() {
                for text in self.skipped.drain(..n.min(self.skipped.len())) {
                    self.transcript.push_text(text);
                }
                return;
            }
        }
        self.transcript.push(line);
    }

    fn end(&mut self, _cx: &mut Observation<'_>) -> Vec<String> {
        self.transcript.take()
    }
}

impl Watch {
    /// A reset, or a mode change that may leave the alternate screen, is about to run.
    #[cold]
    #[inline(never)]
    fn leaving(&mut self, cx: &mut Observation<'_>, f: &Function) {
        if matches!(f, Function::Ris) {
            // A hard reset clears the primary screen: its rows are lines first.
            self.transcript.finish_primary(cx.terminal());
        }
        if cx.terminal().active_screen_kind() == ScreenKind::Alternate {
            self.alt_before = Some(visible_rows(cx.terminal()));
        }
    }

    /// After such an operation: if the alternate screen was left, its last rows are kept.
    #[cold]
    #[inline(never)]
    fn left(&mut self, cx: &mut Observation<'_>) {
        if let Some(rows) = self.alt_before.take() {
            if cx.terminal().active_screen_kind() == ScreenKind::Primary {
                self.left_alt.push(rows);
            }
        }
    }
}

/// A hash of the visible text and which screen is active (FNV-1a over the characters: run
/// after every read that drew something, so it must be cheap, and it needs no resistance to
/// crafted collisions — a collision only delays a settle).
///
/// Each row is hashed up to its last cell that is not a plain blank: every row has the
/// screen's width, so what follows is the same run of blanks wherever the text is the same,
/// and a wide terminal's rows are mostly that (on a 400-column screen, hashing every cell was
/// an eighth of PTY mode's CPU in a flood).
fn fingerprint(t: &Terminal) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |v: u32| {
        h ^= u64::from(v);
        h = h.wrapping_mul(PRIME);
    };
    mix(u32::from(t.active_screen_kind() == ScreenKind::Alternate));
    for line in t.screen().visible_lines() {
        let cells = line.cells();
        // (A cell holding a blank that is not a plain one is the second cell of a wide
        // character, which shows nothing of its own and is not hashed either way.)
        let end = cells
            .iter()
            .rposition(|c| c.char() != ' ')
            .map_or(0, |i| i + 1);
        for c in transcript::shown(&cells[..end]) {
            mix(u32::from(c));
        }
        mix(u32::from('\n'));
    }
    // Never 0, the hash of "nothing shown yet".
    h | 1
}

/// The visible rows' text, trailing blanks trimmed; blank rows dropped.
fn visible_rows(t: &Terminal) -> Vec<String> {
    t.screen()
        .visible_lines()
        .map(|l| l.text().trim_end().to_string())
        .filter(|r| !r.trim().is_empty())
        .collect()
}

impl Screen {
    /// A screen of `cols` × `rows` (zero counts as one).
    pub fn new(cols: u16, rows: u16) -> Screen {
        let term = Terminal::new(usize::from(cols.max(1)), usize::from(rows.max(1)))
            .unwrap_or_else(|_| unreachable_size());
        Screen {
            term,
            watch: Watch::default(),
            pending: Vec::new(),
            alt_read: AltRead::default(),
            shown: 0,
            settled: 0,
            fast: true,
            skipped_lines: 0,
        }
    }

    /// Lines fast-forwarded so far (`fast.rs`).
    pub fn skipped_lines(&self) -> u64 {
        self.skipped_lines
    }

    pub fn size(&self) -> (u16, u16) {
        let (c, r) = self.term.size();
        (c as u16, r as u16)
    }

    /// Feeds the program's next bytes; returns the lines committed by them, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let text = self.decode(bytes);
        let reduced = self.fast_forward(&text);
        let fed = reduced.as_deref().unwrap_or(&text);
        let mut lines = self.term.feed_with(fed, &mut self.watch);
        if !self.watch.runs.is_empty() || !self.watch.skipped.is_empty() {
            // Cannot happen (every marker's row scrolls off within the read, `fast.rs`); should
            // it, no line is lost, and the screen stops fast-forwarding.
            debug_assert!(false, "marker rows left on the screen");
            self.fast = false;
            lines.extend(self.watch.skipped.drain(..));
            self.watch.runs.clear();
        }
        self.after_feed(&mut lines);
        lines
    }

    /// What to feed instead of `text` when lines of it can be skipped (`fast.rs`).
    fn fast_forward(&mut self, text: &str) -> Option<String> {
        if !self.fast {
            return None;
        }
        if text.contains(fast::MARKER) {
            self.fast = false;
            return None;
        }
        let (cols, rows) = self.term.size();
        if !self.watch.state.ok()
            || self.term.active_screen_kind() != ScreenKind::Primary
            || self.term.cursor().row + 1 != rows
        {
            return None;
        }
        let r = fast::reduce(text, cols, rows)?;
        self.skipped_lines += r.lines.len() as u64;
        self.watch.skipped.extend(r.lines);
        self.watch.runs.extend(r.runs);
        Some(r.fed)
    }

    /// The user's terminal changed size.
    pub fn resize(&mut self, cols: u16, rows: u16) -> Vec<String> {
        let mut lines = self.term.resize_with(
            usize::from(cols.max(1)),
            usize::from(rows.max(1)),
            &mut self.watch,
        );
        self.after_feed(&mut lines);
        lines
    }

    fn after_feed(&mut self, lines: &mut Vec<String>) {
        if std::mem::take(&mut self.watch.dirty) {
            self.shown = fingerprint(&self.term);
        }
        for rows in std::mem::take(&mut self.watch.left_alt) {
            lines.extend(self.alt_read.new_rows(&rows));
            self.alt_read.clear();
        }
    }

    /// Whether what the screen shows differs from what it showed at the last
    /// [`Screen::settle`].
    pub fn changed(&self) -> bool {
        self.shown != self.settled
    }

    /// A hash of what the screen shows: equal before and after a feed that changed nothing
    /// visible.
    pub fn fingerprint(&self) -> u64 {
        self.shown
    }

    /// Nothing has been drawn for a while: reads the alternate screen's new rows, and the
    /// primary screen's live rows.
    pub fn settle(&mut self) -> Settled {
        self.settled = self.shown;
        let rows = visible_rows(&self.term);
        match self.term.active_screen_kind() {
            ScreenKind::Alternate => {
                let lines = self.alt_read.new_rows(&rows);
                self.alt_read.push(rows);
                Settled {
                    lines,
                    live: Vec::new(),
                }
            }
            ScreenKind::Primary => Settled {
                lines: Vec::new(),
                live: rows,
            },
        }
    }

    /// The program has ended: the rows still on the primary screen become lines (and the
    /// alternate screen's unread rows, if it never left it).
    pub fn finish(mut self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.term.active_screen_kind() == ScreenKind::Alternate {
            let rows = visible_rows(&self.term);
            lines.extend(self.alt_read.new_rows(&rows));
        }
        let rest = self.decode(&[]);
        if !rest.is_empty() {
            lines.extend(self.term.feed_with(rest.as_str(), &mut self.watch));
        }
        lines.extend(self.watch.transcript.finish(&self.term));
        lines
    }

    /// UTF-8 text of `bytes` after what was held back; an incomplete sequence at the end is
    /// held back for the next read, invalid bytes become U+FFFD.
    fn decode(&mut self, bytes: &[u8]) -> String {
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(bytes);
        let mut out = String::with_capacity(buf.len());
        let mut rest = &buf[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    break;
                }
                Err(e) => {
                    let (ok, bad) = rest.split_at(e.valid_up_to());
                    // SAFETY-free: `valid_up_to` bytes are valid UTF-8.
                    out.push_str(std::str::from_utf8(ok).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{fffd}');
                            rest = &bad[n..];
                        }
                        None => {
                            // Incomplete at the end: keep it for the next read.
                            if bytes.is_empty() {
                                out.push('\u{fffd}');
                            } else {
                                self.pending = bad.to_vec();
                            }
                            break;
                        }
                    }
                }
            }
        }
        out
    }
}

#[cold]
fn unreachable_size() -> Terminal {
    // Sizes are clamped to at least 1 × 1, which avt accepts.
    match Terminal::new(1, 1) {
        Ok(t) => t,
        Err(e) => panic!("avt refused a 1x1 terminal: {e}"),
    }
}

/// The alternate screen as read at the last settle, each row as [`same_text`] compares it.
#[derive(Default)]
struct AltRead {
    last: Vec<String>,
}

impl AltRead {
    fn push(&mut self, rows: Vec<String>) {
        self.last = rows.iter().map(|r| same_text(r).into_owned()).collect();
    }

    fn clear(&mut self) {
        self.last.clear();
    }

    /// The rows of `now` not read before, in order.
    fn new_rows(&self, now: &[String]) -> Vec<String> {
        let keys: Vec<String> = now.iter().map(|r| same_text(r).into_owned()).collect();
        new_rows(&self.last, &keys)
            .into_iter()
            .map(|j| now[j].clone())
            .collect()
    }
}

/// A row as compared with the rows read before, so that a row redrawn with another look is
/// not read again. Found on Claude Code 2.1.3xx: it blinks the bullet of a running call
/// (`● Running 1 shell command…`, then the row without the `●`), which made a new line at
/// every settle while a call ran or waited for approval; and it draws `⎿  $ cmd` with a space
/// while the call waits and with a no-break space once it is refused, which read a refused
/// `rm -rf build` twice, as two commands. So a no-break space counts as a space, and a
/// leading `●`/`⏺` as blank.
fn same_text(row: &str) -> std::borrow::Cow<'_, str> {
    let body = row.trim_start_matches(' ');
    let bullet = body.starts_with(['●', '⏺']);
    if !bullet && !row.contains('\u{a0}') {
        return std::borrow::Cow::Borrowed(row);
    }
    let mut key = row.replace('\u{a0}', " ");
    if bullet {
        let at = row.len() - body.len();
        let glyph = body.chars().next().map_or(0, char::len_utf8);
        key.replace_range(at..at + glyph, " ");
    }
    std::borrow::Cow::Owned(key)
}

/// Which rows of `now` are not in `before`, in order: rows matched by the longest common
/// subsequence (rows that stayed or moved up together) are not new.
fn new_rows(before: &[String], now: &[String]) -> Vec<usize> {
    let (n, m) = (before.len(), now.len());
    if n == 0 {
        return (0..m).collect();
    }
    // lcs[i][j]: LCS length of before[i..] and now[j..]. Screens are small (rows ≤ a few
    // hundred), so the table is too.
    let mut lcs = vec![vec![0u16; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if before[i] == now[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while j < m {
        if i < n && before[i] == now[j] {
            i += 1;
            j += 1;
        } else if i < n && lcs[i + 1][j] >= lcs[i][j + 1] {
            i += 1;
        } else {
            out.push(j);
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blinking_row_or_one_drawn_with_another_space_is_read_once() {
        let mut a = AltRead::default();
        let screen = |bullet: &str, space: &str| {
            s(&[
                "● Now I'll remove the stale build outputs.",
                &format!("{bullet} Removing build outputs"),
                &format!("  ⎿ {space}$ rm -rf build"),
            ])
        };
        let mut read = Vec::new();
        for i in 0..10 {
            let now = screen(
                if i % 2 == 0 { "●" } else { " " },
                if i < 5 { " " } else { "\u{a0}" },
            );
            read.extend(a.new_rows(&now));
            a.push(now);
        }
        assert_eq!(
            read,
            s(&[
                "● Now I'll remove the stale build outputs.",
                "● Removing build outputs",
                "  ⎿  $ rm -rf build",
            ])
        );
        // A second copy of a row is new (the same command run again), and so is a row that
        // comes back after it was gone (the same question asked again).
        let mut again = screen("●", " ");
        again.push("  ⎿  $ rm -rf build".into());
        assert_eq!(a.new_rows(&again), s(&["  ⎿  $ rm -rf build"]));
        a.push(s(&["● Done."]));
        assert_eq!(
            a.new_rows(&screen("●", " "))[1..],
            s(&["● Removing build outputs", "  ⎿  $ rm -rf build"])
        );
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn lines_that_scroll_off_are_committed_in_order_and_the_rest_at_the_end() {
        let mut sc = Screen::new(20, 3);
        let mut lines = sc.feed(b"one\r\ntwo\r\nthree\r\nfour\r\n");
        assert_eq!(lines, s(&["one", "two"]));
        lines.extend(sc.finish());
        assert_eq!(lines, s(&["one", "two", "three", "four"]));
    }

    /// Claude Code's way: a row ended by `\r` and a cursor move, then redrawn in place. What
    /// stays is what a person read; nothing before a `\r` is thrown away.
    #[test]
    fn cursor_moves_and_redraws_give_what_the_screen_shows() {
        let mut sc = Screen::new(40, 5);
        sc.feed("● Bash(gcc broken.c)\r\x1b[1B  ⎿  Error: Exit code 1\r\x1b[1B".as_bytes());
        sc.feed(b"spinner |\r\x1b[2Kspinner /\r\x1b[2K> input");
        assert_eq!(
            sc.finish(),
            s(&["● Bash(gcc broken.c)", "  ⎿  Error: Exit code 1", "> input"])
        );
    }

    /// Codex's history insert: a scroll region above the live area, lines inserted at its
    /// bottom scroll its top off the screen.
    #[test]
    fn a_history_insert_through_a_scroll_region_commits_every_line() {
        let mut sc = Screen::new(30, 6);
        sc.feed(b"\x1b[5;6H> input box\r\n  status");
        let mut lines = Vec::new();
        for i in 1..=30 {
            lines.extend(
                sc.feed(format!("\x1b[1;4r\x1b[4;1H\r\n• line {i}\x1b[r\x1b[5;3H").as_bytes()),
            );
        }
        lines.extend(sc.finish());
        let got: Vec<&String> = lines.iter().filter(|l| l.starts_with("• line")).collect();
        assert_eq!(got.len(), 30, "{lines:?}");
        for (i, l) in got.iter().enumerate() {
            assert_eq!(**l, format!("• line {}", i + 1));
        }
    }

    #[test]
    fn utf8_split_across_reads_is_joined() {
        let text = "é✓ → ok\r\n".as_bytes();
        for cut in 1..text.len() {
            let mut sc = Screen::new(20, 4);
            sc.feed(&text[..cut]);
            sc.feed(&text[cut..]);
            assert_eq!(sc.finish(), s(&["é✓ → ok"]), "cut at {cut}");
        }
        let mut sc = Screen::new(20, 4);
        sc.feed(b"bad \xff byte\r\n");
        assert_eq!(sc.finish(), s(&["bad \u{fffd} byte"]));
    }

    #[test]
    fn the_alternate_screen_is_read_when_it_settles_and_when_it_is_left() {
        let mut sc = Screen::new(30, 5);
        sc.feed(b"before\r\n\x1b[?1049h\x1b[H\x1b[2Jtitle\x1b[3;1Hfirst row");
        let st = sc.settle();
        assert_eq!(st.lines, s(&["title", "first row"]));
        assert!(!sc.changed());
        // Repainted as it was: still settled.
        sc.feed(b"\x1b[H\x1b[2Jtitle\x1b[3;1Hfirst row");
        assert!(!sc.changed());
        // Redrawn with the same rows moved up and one new: only the new one.
        sc.feed(b"\x1b[H\x1b[2Jtitle\x1b[2;1Hfirst row\x1b[3;1Hsecond row");
        assert!(sc.changed());
        assert_eq!(sc.settle().lines, s(&["second row"]));
        // Drawn and left before any settle: read on the way out.
        sc.feed(b"\x1b[4;1Hthird row");
        let lines = sc.feed(b"\x1b[?1049lafter\r\n");
        assert_eq!(lines, s(&["third row"]));
        assert_eq!(sc.finish(), s(&["before", "after"]));
    }

    /// The fingerprint tells screens apart exactly as their visible text does (every cell, the
    /// blanks at the rows' ends too) and which screen is active: over generated output with
    /// wide characters, blanks written over text, erasing, the alternate screen and text in the
    /// last column, two states have the same fingerprint if and only if they show the same.
    #[test]
    fn the_fingerprint_follows_the_visible_text_and_nothing_else() {
        const PIECES: &[&str] = &[
            "a",
            "ab ",
            " ",
            "   ",
            "漢",
            "x漢",
            "\r\n",
            "\r",
            "\x1b[H",
            "\x1b[2J",
            "\x1b[K",
            "\x1b[1;31m",
            "\x1b[0m",
            "\x1b[?1049h",
            "\x1b[?1049l",
            "\x1b[2;5H",
            "\x1b[1;8H",
            "\x1b[3C",
            "\x08",
            "\x1b[2@",
            "\x1b[P",
            "\u{3000}",
        ];
        let mut rng = crate::test_rng::XorShift::new(0xf1a9);
        let mut seen: std::collections::HashMap<(bool, Vec<String>), u64> = Default::default();
        let mut prints: std::collections::HashMap<u64, (bool, Vec<String>)> = Default::default();
        for case in 0..200 {
            let mut sc = Screen::new(8, 3);
            for _ in 0..(1 + rng.below(20)) {
                let chunk: String = (0..1 + rng.below(6))
                    .map(|_| PIECES[rng.below(PIECES.len())])
                    .collect();
                sc.feed(chunk.as_bytes());
                let shown = (
                    sc.term.active_screen_kind() == ScreenKind::Alternate,
                    sc.term.screen().visible_lines().map(|l| l.text()).collect(),
                );
                let f = fingerprint(&sc.term);
                if let Some(g) = seen.insert(shown.clone(), f) {
                    assert_eq!(
                        g, f,
                        "case {case}: the same screen, two fingerprints: {shown:?}"
                    );
                }
                if let Some(other) = prints.insert(f, shown.clone()) {
                    assert_eq!(other, shown, "case {case}: two screens, one fingerprint");
                }
            }
        }
        assert!(seen.len() > 500, "too few distinct screens: {}", seen.len());
    }

    /// Fast-forwarding changes nothing but the cost: over generated output (plain lines of
    /// every width, colours, wide characters, and everything that makes a line more than a
    /// line — cursor moves, scroll regions, character sets, the alternate screen, resets, the
    /// marker itself), a screen that fast-forwards and one that draws everything commit the
    /// same lines after every read, end with the same lines, and are in the same state after
    /// every read (avt's dump of the whole terminal: every cell, pen, mode, cursor).
    #[test]
    fn fast_forwarding_commits_the_same_lines_and_leaves_the_same_terminal() {
        const LINES: &[&str] = &[
            "ok",
            "",
            "   ",
            "word word word",
            "trailing   ",
            "\x1b[32m✓\x1b[0m step done",
            "\x1b[1;31merror\x1b[0m: bad",
            "\x1b[38;2;1;2;3mrgb",
            "\x1b[41m",
            "é combining e\u{301}",
            "漢字 wide",
            "0123456789abc",
            "0123456789",
            "012345678",
            "a\u{a0}\u{a0}",
            "bell\x07",
            "tab\there",
            "cr\rover",
            "lf\nonly",
        ];
        const ODD: &[&str] = &[
            "\x1b[2J",
            "\x1b[H",
            "\x1b[3A",
            "\x1b[2;4r",
            "\x1b[r",
            "\x1b[1;99r",
            "\x1b(0",
            "\x1b(B",
            "\x1b)0",
            "\x0e",
            "\x0f",
            "\x1b7",
            "\x1b8",
            "\x1b[?1049h",
            "\x1b[?1049l",
            "\x1bc",
            "\x1b[!p",
            "\x1b[4h",
            "\x1b[4l",
            "\x1b[?7l",
            "\x1b[?7h",
            "\x1b[?6h",
            "\x1b[K",
            "\x1b[S",
            "\x1bM",
            "\x1b[L",
            "progress 50%\r",
            "\u{fdd0}",
        ];
        let mut rng = crate::test_rng::XorShift::new(0xfa57);
        let mut forwarded = 0;
        for case in 0..300 {
            let (cols, rows) = [(10, 3), (12, 4), (20, 6), (6, 2), (10, 1)][case % 5];
            let mut fast = Screen::new(cols, rows);
            let mut slow = Screen::new(cols, rows);
            slow.fast = false;
            let mut fed = String::new();
            for read in 0..(3 + rng.below(12)) {
                let mut chunk = String::new();
                for _ in 0..rng.below(30) {
                    if rng.below(12) == 0 {
                        chunk.push_str(ODD[rng.below(ODD.len())]);
                    } else {
                        chunk.push_str(LINES[rng.below(LINES.len())]);
                        chunk.push_str("\r\n");
                    }
                }
                if read % 7 == 6 {
                    let (c, r) = [(10, 3), (14, 5), (8, 2)][rng.below(3)];
                    assert_eq!(fast.resize(c, r), slow.resize(c, r), "case {case}: resize");
                }
                fed.push_str(&chunk);
                // Split anywhere, inside a character too.
                let cut = rng.below(chunk.len() + 1);
                for part in [&chunk.as_bytes()[..cut], &chunk.as_bytes()[cut..]] {
                    let before = fast.skipped_lines;
                    let (a, b) = (fast.feed(part), slow.feed(part));
                    forwarded += usize::from(fast.skipped_lines > before);
                    assert_eq!(a, b, "case {case} ({cols}x{rows}): lines after {fed:?}");
                    assert_eq!(
                        fast.term.dump(),
                        slow.term.dump(),
                        "case {case} ({cols}x{rows}): terminal after {fed:?}"
                    );
                    assert_eq!(fast.fingerprint(), slow.fingerprint(), "case {case}");
                }
            }
            assert_eq!(
                fast.finish(),
                slow.finish(),
                "case {case}: the end of {fed:?}"
            );
        }
        assert!(forwarded > 200, "too few reads fast-forwarded: {forwarded}");
    }

    #[test]
    fn a_flood_of_lines_is_fast_forwarded_and_commits_every_line() {
        let mut sc = Screen::new(80, 24);
        let mut lines = Vec::new();
        let text: String = (0..1000)
            .map(|i| format!("\x1b[2mline\x1b[0m {i}\r\n"))
            .collect();
        for chunk in text.as_bytes().chunks(4096) {
            lines.extend(sc.feed(chunk));
        }
        // (Not the first read: the cursor starts at the top.)
        assert!(sc.skipped_lines > 600, "{}", sc.skipped_lines);
        lines.extend(sc.finish());
        let want: Vec<String> = (0..1000).map(|i| format!("line {i}")).collect();
        assert_eq!(lines, want);
    }

    #[test]
    fn live_rows_of_the_primary_screen_are_offered_at_a_settle() {
        let mut sc = Screen::new(40, 6);
        sc.feed(b"output\r\n\r\n Do you want to proceed?\r\n > 1. Yes\r\n   2. No");
        let st = sc.settle();
        assert!(st.lines.is_empty());
        assert_eq!(
            st.live,
            s(&[
                "output",
                " Do you want to proceed?",
                " > 1. Yes",
                "   2. No"
            ])
        );
    }
}
