//! The terminal modes a child turned on and has not turned off again, read from its output.
//!
//! A TUI that crashes, or is killed, leaves the user's terminal in whatever modes it set: the
//! alternate screen, a hidden cursor, bracketed paste, mouse reporting, focus reporting, the
//! kitty keyboard protocol. The shell then shows garbage for every mouse move and key press.
//! Restoring termios does not help — these modes live in the terminal emulator, not in the
//! tty driver. Wrapper sees every byte the child writes, so it can track exactly the modes
//! left on and undo those, and only those, at exit ([`Modes::reset_sequence`]). Writing a
//! blanket reset instead would clear modes the user's own shell set before wrapper started.
//!
//! Pure: bytes in, a small set out. The scan looks only at bytes after an ESC (`memchr`), so
//! plain output costs one pass of `memchr`.

/// A DEC private mode tracked here, with the number that turns it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum Mode {
    /// `?1049`, `?1047`, `?47`: the alternate screen.
    AltScreen = 1 << 0,
    /// `?25l`: the cursor hidden (on = hidden).
    HiddenCursor = 1 << 1,
    BracketedPaste = 1 << 2,
    Mouse1000 = 1 << 3,
    Mouse1002 = 1 << 4,
    Mouse1003 = 1 << 5,
    Mouse1006 = 1 << 6,
    Mouse1015 = 1 << 7,
    Focus = 1 << 8,
    Mouse1005 = 1 << 9,
}

/// The modes a child has left on: a bit set plus the kitty keyboard stack depth. `Copy`, so
/// a snapshot can be published to the restore path (the panic hook, Ctrl-Z) cheaply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModeSet {
    bits: u32,
    /// Entries the child pushed onto the kitty keyboard protocol stack (`CSI > flags u`) and
    /// did not pop (`CSI < n u`).
    kitty: u32,
    /// Which alternate-screen number was used to enter it (1049, 1047 or 47).
    alt: u16,
}

impl ModeSet {
    pub fn is_empty(&self) -> bool {
        self.bits == 0 && self.kitty == 0
    }

    fn has(&self, m: Mode) -> bool {
        self.bits & m as u32 != 0
    }

    /// Packs the set into one word (for an atomic): kitty depth, alt number, bits.
    pub fn pack(self) -> u64 {
        (u64::from(self.kitty.min(0xffff)) << 48)
            | (u64::from(self.alt) << 32)
            | u64::from(self.bits)
    }

    pub fn unpack(w: u64) -> ModeSet {
        ModeSet {
            bits: w as u32,
            alt: (w >> 32) as u16,
            kitty: (w >> 48) as u32,
        }
    }

    /// The names of the modes that are on, for the record and for tests.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (m, name) in NAMES {
            if self.has(m) {
                v.push(name);
            }
        }
        if self.kitty > 0 {
            v.push("kitty_keyboard");
        }
        v
    }

    /// Bytes that turn off every mode in the set, innermost first: keyboard protocol, mouse,
    /// focus, paste, then leave the alternate screen and show the cursor again.
    pub fn reset_sequence(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.kitty > 0 {
            out.extend_from_slice(format!("\x1b[<{}u", self.kitty).as_bytes());
        }
        for (m, n) in [
            (Mode::Mouse1015, 1015),
            (Mode::Mouse1006, 1006),
            (Mode::Mouse1005, 1005),
            (Mode::Mouse1003, 1003),
            (Mode::Mouse1002, 1002),
            (Mode::Mouse1000, 1000),
            (Mode::Focus, 1004),
            (Mode::BracketedPaste, 2004),
        ] {
            if self.has(m) {
                out.extend_from_slice(format!("\x1b[?{n}l").as_bytes());
            }
        }
        if self.has(Mode::AltScreen) {
            let n = if self.alt == 0 { 1049 } else { self.alt };
            out.extend_from_slice(format!("\x1b[?{n}l").as_bytes());
        }
        if self.has(Mode::HiddenCursor) {
            out.extend_from_slice(b"\x1b[?25h");
        }
        out
    }

    /// Bytes that turn the set on again (after Ctrl-Z and `fg`), outermost first.
    pub fn set_sequence(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.has(Mode::AltScreen) {
            let n = if self.alt == 0 { 1049 } else { self.alt };
            out.extend_from_slice(format!("\x1b[?{n}h").as_bytes());
        }
        if self.has(Mode::HiddenCursor) {
            out.extend_from_slice(b"\x1b[?25l");
        }
        for (m, n) in [
            (Mode::BracketedPaste, 2004),
            (Mode::Focus, 1004),
            (Mode::Mouse1000, 1000),
            (Mode::Mouse1002, 1002),
            (Mode::Mouse1003, 1003),
            (Mode::Mouse1005, 1005),
            (Mode::Mouse1006, 1006),
            (Mode::Mouse1015, 1015),
        ] {
            if self.has(m) {
                out.extend_from_slice(format!("\x1b[?{n}h").as_bytes());
            }
        }
        // The flags pushed are not kept; the child redraws and re-negotiates on SIGCONT if it
        // cares. Pushing "disambiguate" (1) keeps the stack depth right for the final pop.
        for _ in 0..self.kitty.min(16) {
            out.extend_from_slice(b"\x1b[>1u");
        }
        out
    }
}

const NAMES: [(Mode, &str); 10] = [
    (Mode::AltScreen, "alt_screen"),
    (Mode::HiddenCursor, "hidden_cursor"),
    (Mode::BracketedPaste, "bracketed_paste"),
    (Mode::Mouse1000, "mouse_1000"),
    (Mode::Mouse1002, "mouse_1002"),
    (Mode::Mouse1003, "mouse_1003"),
    (Mode::Mouse1005, "mouse_1005"),
    (Mode::Mouse1006, "mouse_1006"),
    (Mode::Mouse1015, "mouse_1015"),
    (Mode::Focus, "focus"),
];

/// Most parameter bytes of one control sequence kept; longer ones are not mode switches.
const MAX_PARAMS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    Esc,
    Csi,
}

/// Follows a byte stream (split anywhere) and keeps the [`ModeSet`] it leaves on.
#[derive(Debug)]
pub struct Modes {
    set: ModeSet,
    state: State,
    params: Vec<u8>,
    overflow: bool,
}

impl Default for Modes {
    fn default() -> Self {
        Modes::new()
    }
}

impl Modes {
    pub fn new() -> Modes {
        Modes {
            set: ModeSet::default(),
            state: State::Ground,
            params: Vec::with_capacity(MAX_PARAMS),
            overflow: false,
        }
    }

    pub fn current(&self) -> ModeSet {
        self.set
    }

    /// Reads `data`, the next bytes of the stream.
    pub fn feed(&mut self, data: &[u8]) {
        let mut i = 0;
        while i < data.len() {
            match self.state {
                State::Ground => match memchr::memchr(0x1b, &data[i..]) {
                    Some(at) => {
                        self.state = State::Esc;
                        i += at + 1;
                    }
                    None => return,
                },
                State::Esc => {
                    let b = data[i];
                    i += 1;
                    match b {
                        b'[' => {
                            self.state = State::Csi;
                            self.params.clear();
                            self.overflow = false;
                        }
                        // RIS: a full reset turns everything off.
                        b'c' => {
                            self.set = ModeSet::default();
                            self.state = State::Ground;
                        }
                        0x1b => {}
                        _ => self.state = State::Ground,
                    }
                }
                State::Csi => {
                    let b = data[i];
                    i += 1;
                    match b {
                        0x20..=0x3f => {
                            if self.params.len() < MAX_PARAMS {
                                self.params.push(b);
                            } else {
                                self.overflow = true;
                            }
                        }
                        0x40..=0x7e => {
                            if !self.overflow {
                                self.dispatch(b);
                            }
                            self.state = State::Ground;
                        }
                        0x1b => self.state = State::Esc,
                        // C0 controls inside a sequence are executed and the sequence goes on.
                        0x00..=0x1f => {}
                        _ => self.state = State::Ground,
                    }
                }
            }
        }
    }

    fn dispatch(&mut self, fin: u8) {
        let p = std::mem::take(&mut self.params);
        self.dispatch_params(&p, fin);
        self.params = p;
    }

    fn dispatch_params(&mut self, p: &[u8], fin: u8) {
        match (p.first(), fin) {
            (Some(b'?'), b'h' | b'l') => {
                let on = fin == b'h';
                for n in numbers(&p[1..]) {
                    let mode = match n {
                        1049 | 1047 | 47 => {
                            if on {
                                self.set.alt = n as u16;
                            }
                            Mode::AltScreen
                        }
                        25 => {
                            // Shown is the default: `l` (hide) turns our "mode" on.
                            self.toggle(Mode::HiddenCursor, !on);
                            continue;
                        }
                        2004 => Mode::BracketedPaste,
                        1000 => Mode::Mouse1000,
                        1002 => Mode::Mouse1002,
                        1003 => Mode::Mouse1003,
                        1005 => Mode::Mouse1005,
                        1006 => Mode::Mouse1006,
                        1015 => Mode::Mouse1015,
                        1004 => Mode::Focus,
                        _ => continue,
                    };
                    self.toggle(mode, on);
                }
            }
            (Some(b'>'), b'u') => self.set.kitty = self.set.kitty.saturating_add(1),
            (Some(b'<'), b'u') => {
                let n = numbers(&p[1..]).next().unwrap_or(1).max(1);
                self.set.kitty = self.set.kitty.saturating_sub(n);
            }
            // DECSTR (soft reset) shows the cursor again.
            (Some(b'!'), b'p') => self.toggle(Mode::HiddenCursor, false),
            _ => {}
        }
    }

    fn toggle(&mut self, m: Mode, on: bool) {
        if on {
            self.set.bits |= m as u32;
        } else {
            self.set.bits &= !(m as u32);
        }
    }
}

/// The numbers of a `;`-separated parameter list (an empty one counts as 0).
fn numbers(p: &[u8]) -> impl Iterator<Item = u32> + '_ {
    p.split(|&b| b == b';').map(|f| {
        f.iter()
            .take_while(|b| b.is_ascii_digit())
            .fold(0u32, |n, &b| {
                n.saturating_mul(10).saturating_add(u32::from(b - b'0'))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(chunks: &[&[u8]]) -> ModeSet {
        let mut m = Modes::new();
        for c in chunks {
            m.feed(c);
        }
        m.current()
    }

    #[test]
    fn modes_turned_on_and_left_on_are_reset_in_order() {
        let s = after(&[b"\x1b[?1049h\x1b[?25l\x1b[?2004h\x1b[?1000;1006h\x1b[?1004h\x1b[>1u"]);
        assert_eq!(
            String::from_utf8(s.reset_sequence()).unwrap(),
            "\x1b[<1u\x1b[?1006l\x1b[?1000l\x1b[?1004l\x1b[?2004l\x1b[?1049l\x1b[?25h"
        );
    }

    #[test]
    fn modes_turned_off_again_need_no_reset() {
        let s = after(&[
            b"\x1b[?1049h\x1b[?25l hello \x1b[>5u\x1b[>1u",
            b"\x1b[<2u\x1b[?25h\x1b[?1049l",
        ]);
        assert!(s.is_empty(), "{s:?}");
        assert!(s.reset_sequence().is_empty());
    }

    #[test]
    fn sequences_split_across_reads_are_followed() {
        let whole: &[u8] = b"ab\x1b[?2004hcd\x1b[?47h";
        for cut in 0..whole.len() {
            let s = after(&[&whole[..cut], &whole[cut..]]);
            assert_eq!(s.names(), ["alt_screen", "bracketed_paste"], "cut at {cut}");
            assert_eq!(s.reset_sequence(), b"\x1b[?2004l\x1b[?47l");
        }
    }

    #[test]
    fn a_full_reset_clears_everything_and_pack_round_trips() {
        let s = after(&[b"\x1b[?1049h\x1b[>1u\x1b[>1u"]);
        assert_eq!(ModeSet::unpack(s.pack()), s);
        assert_eq!(s.names(), ["alt_screen", "kitty_keyboard"]);
        assert!(after(&[b"\x1b[?1049h\x1bc"]).is_empty());
        // Other sequences and plain text change nothing.
        assert!(after(&[b"\x1b[31mred\x1b[0m \x1b[2J\x1b[?7h\x1b]0;title\x07"]).is_empty());
    }
}
