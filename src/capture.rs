//! Output capture, the pure codec: what the agent printed, read by read, becomes redacted
//! frames with time offsets, grouped into compressed blocks (SPEC §10, issue 13).
//!
//! Three things make this more than "compress every read":
//!
//! * **Secrets are masked before anything is stored**, with the same `[[redact]]` rules as
//!   events. A key can arrive split over two reads, or coloured in the middle
//!   (`sk-abc\e[31mdef\e[0m`), so masking works on whole *segments* (text up to a `\n` or
//!   `\r`) of a stream, on their visible text (escape sequences taken out), and puts the
//!   sequences that were inside a masked stretch back right after the mask: colours and
//!   modes stay balanced and a masked capture still plays correctly. The unfinished tail of a
//!   stream waits for its end (at most [`MAX_PENDING`] bytes) before it is masked and stored.
//!   Payloads of OSC/DCS strings (window titles, hyperlinks) are masked on their own.
//! * **Frames never split a UTF-8 character or an escape sequence**: a read that ends inside
//!   one gives the incomplete tail to the next read's frame. Every frame is then valid on its
//!   own, which asciicast's JSON strings need, and replay can start or step at any frame.
//! * **Order across streams is read order**, though one stream may be holding back a tail: a
//!   small reorder buffer releases frames by read sequence (bounded by [`MAX_REORDER`]).
//!
//! Compressing each 4 KiB read alone is about 2× worse than compressing many together, so
//! frames are grouped into blocks of about [`BLOCK_TARGET`] bytes, each compressed once with
//! zstd (measurements in docs/PERFORMANCE.md). No I/O and no threads here: the run path feeds
//! an [`Encoder`] on its capture thread, the store keeps [`Block`]s, readers [`decode`] them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use memchr::{memchr, memrchr2};
use regex::{RegexSet, RegexSetBuilder};

use crate::event::Stream;
use crate::extract::redact::{PemTracker, Spans};
use crate::extract::rules::RuleBook;
use crate::extract::Redactor;

/// Uncompressed bytes per block before it is sealed.
pub const BLOCK_TARGET: usize = 256 * 1024;
/// Longest unfinished segment (no `\n`/`\r`) held back for masking; past it the segment is
/// cut at its last blank (a secret straddling that cut can escape the rules).
pub const MAX_PENDING: usize = 64 * 1024;
/// Bytes of later frames that may wait behind a stream's unfinished segment before that
/// segment is cut as if it had grown past [`MAX_PENDING`].
pub const MAX_REORDER: usize = 1 << 20;
/// The compressor named in `capture_blocks.codec`.
pub const CODEC: &str = "zstd";
/// A block stored uncompressed (only if the compressor failed).
pub const RAW_CODEC: &str = "raw";
/// zstd level 1: on the standard input 0.21× (level 3: 0.20×) at a third of level 3's CPU.
const ZSTD_LEVEL: i32 = 1;

/// What a frame holds: output of one stream, or a terminal resize (`COLSxROWS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Output(Stream),
    Resize,
}

impl Kind {
    /// The spelling stored in `capture_frames.kind`: the stream's name, or `resize`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Output(s) => s.as_str(),
            Kind::Resize => "resize",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        if s == "resize" {
            return Some(Kind::Resize);
        }
        use serde::de::IntoDeserializer;
        let de: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            s.into_deserializer();
        serde::Deserialize::deserialize(de).ok().map(Kind::Output)
    }
}

/// One stored frame's index row: where it is in time and how long it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameMeta {
    /// 0, 1, 2, … per session, in the order the bytes were read.
    pub seq: u64,
    /// Microseconds since the capture started.
    pub offset_us: u64,
    pub kind: Kind,
    pub len: usize,
}

/// A frame with its bytes, as readers get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub seq: u64,
    pub offset_us: u64,
    pub kind: Kind,
    pub data: Vec<u8>,
}

impl Frame {
    /// A resize frame's size.
    pub fn size(&self) -> Option<(u16, u16)> {
        (self.kind == Kind::Resize)
            .then(|| parse_size(std::str::from_utf8(&self.data).ok()?))
            .flatten()
    }
}

/// `COLSxROWS` (e.g. `120x40`).
pub fn parse_size(s: &str) -> Option<(u16, u16)> {
    let (c, r) = s.trim().split_once(['x', 'X'])?;
    let (c, r) = (c.parse::<u16>().ok()?, r.parse::<u16>().ok()?);
    (c > 0 && r > 0).then_some((c, r))
}

/// Consecutive frames, compressed together.
#[derive(Debug, Clone)]
pub struct Block {
    pub frames: Vec<FrameMeta>,
    /// Sum of the frames' lengths.
    pub raw_len: usize,
    pub codec: &'static str,
    pub data: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("capture block uses codec {0:?}, which this wrapper cannot read")]
    UnknownCodec(String),
    #[error("capture block is damaged: {0}")]
    Damaged(String),
}

/// Decompresses a block's bytes (`raw_len` of them).
pub fn decode(codec: &str, data: &[u8], raw_len: usize) -> Result<Vec<u8>, CodecError> {
    let out = match codec {
        CODEC => zstd::bulk::decompress(data, raw_len.max(1))
            .map_err(|e| CodecError::Damaged(e.to_string()))?,
        RAW_CODEC => data.to_vec(),
        _ => return Err(CodecError::UnknownCodec(codec.to_string())),
    };
    if out.len() != raw_len {
        return Err(CodecError::Damaged(format!(
            "{} bytes where the index says {raw_len}",
            out.len()
        )));
    }
    Ok(out)
}

/// Cuts a decoded block into its frames.
pub fn split_block(frames: &[FrameMeta], raw: &[u8]) -> Result<Vec<Frame>, CodecError> {
    let mut at = 0;
    let mut out = Vec::with_capacity(frames.len());
    for f in frames {
        let end = at + f.len;
        let data = raw
            .get(at..end)
            .ok_or_else(|| CodecError::Damaged(format!("frame {} runs past its block", f.seq)))?;
        out.push(Frame {
            seq: f.seq,
            offset_us: f.offset_us,
            kind: f.kind,
            data: data.to_vec(),
        });
        at = end;
    }
    Ok(out)
}

/// The `[[redact]]` rules as the capture applies them.
pub struct Masker {
    redactor: Arc<Redactor>,
    /// The same rules in multi-line mode, to skip a whole region of many lines at once when
    /// none of them can match (`^`/`$` then hold at every line end, so a line that matches
    /// alone matches inside the region). `None`: every segment is checked on its own.
    prefilter: Option<RegexSet>,
    enabled: bool,
}

impl Masker {
    /// Masks with `redactor`, built from `book` (whose `[[redact]]` rules the prefilter
    /// mirrors). `enabled = false` (`--no-redact`) stores the bytes as they are.
    pub fn new(redactor: Arc<Redactor>, book: &RuleBook, enabled: bool) -> Masker {
        let enabled = enabled && !book.redact.is_empty();
        let prefilter = if enabled
            && !book
                .redact
                .iter()
                .any(|r| r.regex_src.contains("\\A") || r.regex_src.contains("\\z"))
        {
            RegexSetBuilder::new(book.redact.iter().map(|r| format!("(?mR:{})", r.regex_src)))
                .size_limit(64 << 20)
                .build()
                .ok()
        } else {
            None
        };
        Masker {
            redactor,
            prefilter,
            enabled,
        }
    }

    /// A masker from the rules alone (tests, tools).
    pub fn from_book(book: &RuleBook, enabled: bool) -> Result<Masker, String> {
        let r = Redactor::new(book, enabled)?;
        Ok(Masker::new(Arc::new(r), book, enabled))
    }

    /// Stores everything as it is.
    pub fn off() -> Masker {
        Masker {
            redactor: Arc::new(Redactor::off()),
            prefilter: None,
            enabled: false,
        }
    }

    /// Whether no segment of `text` (visible text of whole segments) can need masking.
    fn clean(&self, text: &str) -> bool {
        match &self.prefilter {
            // The decoded text too, as the redactor searches it (JSON strings' escapes).
            Some(set) => {
                !set.is_match(text)
                    && !crate::extract::redact::Unescaped::text_of(text)
                        .is_some_and(|d| set.is_match(&d))
            }
            None => false,
        }
    }

    fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.redactor.redact(text)
    }
}

/// Where a byte scanner is, between calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Scan {
    #[default]
    Ground,
    /// Inside a UTF-8 character, this many continuation bytes to go.
    Utf8(u8),
    Esc,
    EscInter,
    Csi,
    /// OSC, DCS, SOS, PM, APC: a string ended by BEL (OSC) or ST (`ESC \`).
    Str,
    StrEsc,
}

/// What one byte did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// A visible character (or control) is complete here: a safe place to cut after it.
    Text,
    /// Inside a sequence or a character: no cut here.
    Inside,
    /// An escape sequence ended with this byte.
    EscEnd,
    /// An invalid byte (stray continuation, bad lead): shown as U+FFFD; safe after.
    Invalid,
}

impl Scan {
    /// Advances over one byte. `esc_start` is set when a new escape sequence begins.
    #[inline]
    fn step(&mut self, b: u8, esc_start: &mut bool) -> Step {
        *esc_start = false;
        match *self {
            Scan::Ground => match b {
                0x1b => {
                    *self = Scan::Esc;
                    *esc_start = true;
                    Step::Inside
                }
                0x00..=0x7f => Step::Text,
                0xc2..=0xdf => {
                    *self = Scan::Utf8(1);
                    Step::Inside
                }
                0xe0..=0xef => {
                    *self = Scan::Utf8(2);
                    Step::Inside
                }
                0xf0..=0xf4 => {
                    *self = Scan::Utf8(3);
                    Step::Inside
                }
                _ => Step::Invalid,
            },
            Scan::Utf8(n) => {
                if b & 0xc0 == 0x80 {
                    if n == 1 {
                        *self = Scan::Ground;
                        Step::Text
                    } else {
                        *self = Scan::Utf8(n - 1);
                        Step::Inside
                    }
                } else {
                    // The character was cut short: what came so far is invalid, and this
                    // byte starts afresh. Callers treat Invalid as "safe after the previous
                    // bytes"; reprocess this one.
                    *self = Scan::Ground;
                    let s = self.step(b, esc_start);
                    if s == Step::Text {
                        Step::Invalid
                    } else {
                        s
                    }
                }
            }
            Scan::Esc => match b {
                b'[' => {
                    *self = Scan::Csi;
                    Step::Inside
                }
                b']' | b'P' | b'X' | b'^' | b'_' => {
                    *self = Scan::Str;
                    Step::Inside
                }
                0x1b => {
                    *esc_start = true;
                    Step::Inside
                }
                0x20..=0x2f => {
                    *self = Scan::EscInter;
                    Step::Inside
                }
                0x00..=0x1f => Step::Inside,
                _ => {
                    *self = Scan::Ground;
                    Step::EscEnd
                }
            },
            Scan::EscInter => match b {
                0x20..=0x2f | 0x00..=0x1a | 0x1c..=0x1f => Step::Inside,
                0x1b => {
                    *self = Scan::Esc;
                    *esc_start = true;
                    Step::Inside
                }
                _ => {
                    *self = Scan::Ground;
                    Step::EscEnd
                }
            },
            Scan::Csi => match b {
                0x40..=0x7e => {
                    *self = Scan::Ground;
                    Step::EscEnd
                }
                0x1b => {
                    *self = Scan::Esc;
                    *esc_start = true;
                    Step::Inside
                }
                0x00..=0x3f => Step::Inside,
                _ => {
                    *self = Scan::Ground;
                    Step::EscEnd
                }
            },
            Scan::Str => match b {
                0x07 => {
                    *self = Scan::Ground;
                    Step::EscEnd
                }
                0x1b => {
                    *self = Scan::StrEsc;
                    Step::Inside
                }
                _ => Step::Inside,
            },
            Scan::StrEsc => {
                if b == b'\\' {
                    *self = Scan::Ground;
                    Step::EscEnd
                } else {
                    // Not ST: the string was abandoned and a new sequence starts.
                    *self = Scan::Esc;
                    let mut ignored = false;
                    let s = self.step(b, &mut ignored);
                    *esc_start = true;
                    s
                }
            }
        }
    }
}

/// A part of the visible text that is not one-to-one with the raw bytes.
#[derive(Debug, Clone)]
struct Span {
    /// Where it sits in the visible text, and how long it is there (0 for an escape).
    vis: usize,
    vis_len: usize,
    raw: usize,
    raw_len: usize,
    /// An OSC/DCS/… string: its payload may need masking too.
    string: bool,
}

/// The visible text of raw bytes that start and end at safe places.
struct Visible {
    text: String,
    spans: Vec<Span>,
}

fn visible(raw: &[u8]) -> Visible {
    let mut text = String::with_capacity(raw.len());
    let mut spans = Vec::new();
    let mut scan = Scan::Ground;
    // Where the character or sequence being read started.
    let mut unit = 0;
    let mut started = false;
    let zero_width = |spans: &mut Vec<Span>, text: &String, lo: usize, hi: usize| {
        if hi > lo {
            let string = matches!(raw.get(lo + 1), Some(b']' | b'P' | b'X' | b'^' | b'_'));
            spans.push(Span {
                vis: text.len(),
                vis_len: 0,
                raw: lo,
                raw_len: hi - lo,
                string,
            });
        }
    };
    let mut i = 0;
    while i < raw.len() {
        if scan == Scan::Ground {
            // Plain text up to the next escape or invalid byte is visible as it is.
            let run = text_run(&raw[i..]);
            if !run.is_empty() {
                text.push_str(run);
                i += run.len();
                continue;
            }
        }
        let b = raw[i];
        if matches!(scan, Scan::Utf8(_)) && b & 0xc0 != 0x80 {
            // A character cut short: its bytes show as U+FFFD, this byte starts afresh.
            push_invalid(&mut text, &mut spans, unit, i - unit);
            scan = Scan::Ground;
        }
        let before = scan;
        if before == Scan::Ground {
            unit = i;
        }
        let step = scan.step(b, &mut started);
        if started && before != Scan::Ground {
            // A sequence abandoned for a new one: the old bytes are not visible.
            let new_at = if before == Scan::StrEsc { i - 1 } else { i };
            zero_width(&mut spans, &text, unit, new_at);
            unit = new_at;
        }
        match step {
            Step::Text => match std::str::from_utf8(&raw[unit..=i]) {
                Ok(t) => text.push_str(t),
                Err(_) => push_invalid(&mut text, &mut spans, unit, i + 1 - unit),
            },
            Step::EscEnd => zero_width(&mut spans, &text, unit, i + 1),
            Step::Invalid => push_invalid(&mut text, &mut spans, unit, i + 1 - unit),
            Step::Inside => {}
        }
        i += 1;
    }
    match scan {
        Scan::Ground => {}
        Scan::Utf8(_) => push_invalid(&mut text, &mut spans, unit, raw.len() - unit),
        // An unfinished sequence at the end (only after a forced cut).
        _ => zero_width(&mut spans, &text, unit, raw.len()),
    }
    Visible { text, spans }
}

fn push_invalid(text: &mut String, spans: &mut Vec<Span>, raw: usize, raw_len: usize) {
    spans.push(Span {
        vis: text.len(),
        vis_len: '\u{FFFD}'.len_utf8(),
        raw,
        raw_len,
        string: false,
    });
    text.push('\u{FFFD}');
}

/// A replacement of `raw[lo..hi]` by `with`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Edit {
    lo: usize,
    hi: usize,
    with: Vec<u8>,
}

impl Visible {
    /// The raw offset of visible offset `v`: after the escapes sitting at `v` (`after`), or
    /// before them; inside a non-1:1 span, its start (`after` = false) or end.
    fn raw_of(&self, v: usize, after: bool) -> usize {
        let mut shift: isize = 0;
        for s in &self.spans {
            let end = s.vis + s.vis_len;
            if s.vis_len == 0 {
                if s.vis < v || (s.vis == v && after) {
                    shift += s.raw_len as isize;
                    continue;
                }
                break;
            }
            if end <= v {
                shift += s.raw_len as isize - s.vis_len as isize;
                continue;
            }
            if s.vis < v {
                return if after { s.raw + s.raw_len } else { s.raw };
            }
            break;
        }
        (v as isize + shift) as usize
    }
}

/// The edits that mask `raw` (whole segments, starting and ending at safe places).
fn mask_edits(m: &Masker, raw: &[u8], mut wrap: Option<&mut PemTracker>) -> Vec<Edit> {
    // The common case: text without escape sequences or a secret, checked for the whole
    // region at once (invalid UTF-8 as U+FFFD, borrowed when there is none). A key wrapped
    // from the last region is followed segment by segment.
    let following = wrap.as_ref().is_some_and(|w| w.follows_wrapped());
    if !following && memchr(0x1b, raw).is_none() && m.clean(&String::from_utf8_lossy(raw)) {
        return Vec::new();
    }
    let vis = visible(raw);
    let has_strings = vis.spans.iter().any(|s| s.string);
    if !following && !has_strings && m.clean(&vis.text) {
        return Vec::new();
    }
    let mut edits = Vec::new();
    // Segment by segment (a segment ends after `\n` or `\r`), as events are masked line by line.
    let text = vis.text.as_str();
    let mut seg_start = 0;
    for (i, c) in text.char_indices() {
        if c == '\n' || c == '\r' {
            mask_segment(
                m,
                &vis,
                raw,
                (seg_start, i + 1),
                &mut edits,
                wrap.as_deref_mut(),
            );
            seg_start = i + 1;
        }
    }
    if seg_start < text.len() {
        mask_segment(m, &vis, raw, (seg_start, text.len()), &mut edits, wrap);
    }
    if has_strings {
        for s in vis.spans.iter().filter(|s| s.string) {
            let (lo, hi) = (s.raw, s.raw + s.raw_len);
            if edits.iter().any(|e| e.lo <= lo && hi <= e.hi) {
                continue; // moved inside a mask, and masked there
            }
            if let Some(w) = mask_string(m, &raw[lo..hi]) {
                edits.push(Edit { lo, hi, with: w });
            }
        }
        edits.sort_by_key(|e| e.lo);
    }
    edits
}

/// Masks one segment `text[a..b]` (the line terminator included).
fn mask_segment(
    m: &Masker,
    vis: &Visible,
    raw: &[u8],
    (a, b): (usize, usize),
    edits: &mut Vec<Edit>,
    wrap: Option<&mut PemTracker>,
) {
    let seg = &vis.text[a..b];
    // The terminator is not part of what rules see (events see lines without it).
    let body = seg.trim_end_matches(['\n', '\r']);
    let mut masks = Spans::default();
    if let Some(w) = wrap {
        m.redactor.follow_wrapped(w, body, &mut masks);
    }
    let red = m.redactor.redact_masks(body, &masks);
    let Cow::Owned(red) = red else {
        return;
    };
    // One stretch from the first to the last difference: the masked text replaces it, and
    // the sequences inside follow the mask, in order.
    let (vb, rb) = (body.as_bytes(), red.as_bytes());
    let mut p = vb.iter().zip(rb).take_while(|(x, y)| x == y).count();
    while !body.is_char_boundary(p) || !red.is_char_boundary(p) {
        p -= 1;
    }
    let max_s = vb.len().min(rb.len()) - p;
    let mut s = vb
        .iter()
        .rev()
        .zip(rb.iter().rev())
        .take(max_s)
        .take_while(|(x, y)| x == y)
        .count();
    while !body.is_char_boundary(vb.len() - s) || !red.is_char_boundary(rb.len() - s) {
        s -= 1;
    }
    let (v_lo, v_hi) = (a + p, a + vb.len() - s);
    let lo = vis.raw_of(v_lo, true);
    let hi = vis.raw_of(v_hi, false).max(lo);
    let mut with = red.as_bytes()[p..rb.len() - s].to_vec();
    for sp in vis
        .spans
        .iter()
        .filter(|sp| sp.vis_len == 0 && sp.raw >= lo && sp.raw + sp.raw_len <= hi)
    {
        let bytes = &raw[sp.raw..sp.raw + sp.raw_len];
        match sp.string.then(|| mask_string(m, bytes)).flatten() {
            Some(masked) => with.extend_from_slice(&masked),
            None => with.extend_from_slice(bytes),
        }
    }
    edits.push(Edit { lo, hi, with });
}

/// An OSC/DCS/… string with its payload masked, if that changes it.
fn mask_string(m: &Masker, seq: &[u8]) -> Option<Vec<u8>> {
    let (head, tail) = (2, if seq.ends_with(b"\x1b\\") { 2 } else { 1 });
    if seq.len() < head + tail {
        return None;
    }
    let payload = String::from_utf8_lossy(&seq[head..seq.len() - tail]);
    match m.redact(&payload) {
        Cow::Owned(p) => {
            let mut out = seq[..head].to_vec();
            out.extend_from_slice(p.as_bytes());
            out.extend_from_slice(&seq[seq.len() - tail..]);
            Some(out)
        }
        Cow::Borrowed(_) => None,
    }
}

/// Applies sorted, disjoint `edits` to `raw`, and maps each of `cuts` (raw offsets, in
/// order) to the output: a cut inside an edit moves to the edit's end in the output.
fn apply(raw: &[u8], edits: &[Edit], cuts: &mut [usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 64);
    let mut at = 0;
    let mut ci = 0;
    for e in edits {
        while ci < cuts.len() && cuts[ci] <= e.lo {
            cuts[ci] = cuts[ci] - at + out.len();
            ci += 1;
        }
        out.extend_from_slice(&raw[at..e.lo]);
        out.extend_from_slice(&e.with);
        while ci < cuts.len() && cuts[ci] < e.hi {
            cuts[ci] = out.len();
            ci += 1;
        }
        at = e.hi;
    }
    while ci < cuts.len() {
        cuts[ci] = cuts[ci] - at + out.len();
        ci += 1;
    }
    out.extend_from_slice(&raw[at..]);
    out
}

/// A read not yet stored: its sequence number, time, and where its bytes end in `pending`.
#[derive(Debug, Clone, Copy)]
struct Piece {
    seq: u64,
    offset_us: u64,
    end: usize,
}

/// One stream's unfinished segment and the reads it came in.
#[derive(Debug, Default)]
struct StreamState {
    pending: Vec<u8>,
    pieces: Vec<Piece>,
    scan: Scan,
    /// How far `pending` has been scanned, and what was found.
    scanned: usize,
    /// Just after the last complete character or sequence.
    safe: usize,
    /// Just after the last `\n`/`\r` outside a sequence: segments end here.
    seg_end: usize,
    /// Just after the last blank outside a sequence: where an overlong segment is cut.
    blank: usize,
    /// The last read stored whole: a character or sequence left unfinished at the end of the
    /// stream is stored at [`Encoder::finish`] as the rest of that read.
    last_piece: Option<Piece>,
    /// A key the last segment ended with, which the next may continue (a TUI wrapping a long
    /// key onto the next row: `Redactor::follow_wrapped`).
    wrap: PemTracker,
}

impl StreamState {
    fn scan_new(&mut self) {
        let new = &self.pending[self.scanned..];
        let base = self.scanned;
        if self.scan == Scan::Ground && memchr(0x1b, new).is_none() {
            // Fast path: no escape sequence, so only UTF-8 characters can be cut.
            if let Some(i) = memrchr2(b'\n', b'\r', new) {
                self.seg_end = base + i + 1;
            }
            if let Some(i) = memrchr2(b' ', b'\t', new) {
                self.blank = base + i + 1;
            }
            let tail = utf8_incomplete_tail(new);
            self.safe = base + new.len() - tail;
            self.scan = match tail {
                0 => Scan::Ground,
                n => {
                    let lead = new[new.len() - n];
                    let want = if lead >= 0xf0 {
                        3
                    } else if lead >= 0xe0 {
                        2
                    } else {
                        1
                    };
                    Scan::Utf8(want - (n as u8 - 1))
                }
            };
        } else {
            let mut started = false;
            let mut i = 0;
            while i < new.len() {
                if self.scan == Scan::Ground {
                    // Complete characters up to the next escape: safe after each, so after
                    // the run; its last line end and blank are found from the end.
                    let run = text_run(&new[i..]).len();
                    if run > 0 {
                        let r = &new[i..i + run];
                        if let Some(k) = memrchr2(b'\n', b'\r', r) {
                            self.seg_end = base + i + k + 1;
                        }
                        if let Some(k) = memrchr2(b' ', b'\t', r) {
                            self.blank = base + i + k + 1;
                        }
                        self.safe = base + i + run;
                        i += run;
                        continue;
                    }
                }
                let b = new[i];
                let before = self.scan;
                match self.scan.step(b, &mut started) {
                    Step::Text | Step::EscEnd | Step::Invalid => {
                        self.safe = base + i + 1;
                        if before == Scan::Ground {
                            match b {
                                b'\n' | b'\r' => self.seg_end = base + i + 1,
                                b' ' | b'\t' => self.blank = base + i + 1,
                                _ => {}
                            }
                        }
                    }
                    Step::Inside => {
                        if started || before == Scan::Ground {
                            // A sequence or character begins: safe before it.
                            self.safe = self.safe.max(base + i);
                        }
                    }
                }
                i += 1;
            }
        }
        self.scanned = self.pending.len();
    }
}

/// The longest start of `b` that is complete UTF-8 characters before any escape (ESC) or
/// invalid byte: text the byte scanner would pass one `Step::Text` at a time.
fn text_run(b: &[u8]) -> &str {
    let end = memchr(0x1b, b).unwrap_or(b.len());
    match std::str::from_utf8(&b[..end]) {
        Ok(t) => t,
        // Only on invalid input: the valid start, validated again.
        Err(e) => std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or_default(),
    }
}

/// How many bytes at the end of `b` are the start of a UTF-8 character still incomplete.
fn utf8_incomplete_tail(b: &[u8]) -> usize {
    for back in 1..=3.min(b.len()) {
        let c = b[b.len() - back];
        if c & 0xc0 == 0x80 {
            continue; // continuation: look further back
        }
        let need = match c {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => return 0,
        };
        return if need > back { back } else { 0 };
    }
    0
}

/// What a session's capture has taken in and stored, for stats.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub frames: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    pub blocks: u64,
}

/// Turns a session's reads into blocks. Feed it with [`output`](Self::output) and
/// [`resize`](Self::resize) in read order; take sealed blocks with [`take`](Self::take);
/// [`finish`](Self::finish) at the end masks and stores the held-back tails.
pub struct Encoder {
    masker: Masker,
    t0: SystemTime,
    streams: Vec<(Stream, StreamState)>,
    next_in: u64,
    next_out: u64,
    last_us: u64,
    /// Masked frames waiting for an earlier read of another stream: (read seq, part).
    reorder: BTreeMap<(u64, u32), (u64, Kind, Vec<u8>)>,
    reorder_bytes: usize,
    parts: u32,
    cur_frames: Vec<FrameMeta>,
    cur: Vec<u8>,
    sealed: Vec<Block>,
    totals: Totals,
    /// One compression context for every block: a fresh one per block costs an allocation
    /// of several hundred KiB and its clearing each time.
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

impl Encoder {
    /// Offsets count from `t0` (the session's start).
    pub fn new(masker: Masker, t0: SystemTime) -> Encoder {
        Encoder {
            masker,
            t0,
            streams: Vec::new(),
            next_in: 0,
            next_out: 0,
            last_us: 0,
            reorder: BTreeMap::new(),
            reorder_bytes: 0,
            parts: 0,
            cur_frames: Vec::new(),
            cur: Vec::new(),
            sealed: Vec::new(),
            totals: Totals::default(),
            zstd: zstd::bulk::Compressor::new(ZSTD_LEVEL).ok(),
        }
    }

    fn offset(&mut self, at: SystemTime) -> u64 {
        let us = at
            .duration_since(self.t0)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        // Offsets never go back: frames are played in order.
        self.last_us = self.last_us.max(us);
        self.last_us
    }

    /// Bytes of `stream` read at `at`.
    pub fn output(&mut self, stream: Stream, data: &[u8], at: SystemTime) {
        if data.is_empty() {
            return;
        }
        let seq = self.next_in;
        self.next_in += 1;
        let offset_us = self.offset(at);
        self.totals.raw_bytes += data.len() as u64;
        let i = match self.streams.iter().position(|(s, _)| *s == stream) {
            Some(i) => i,
            None => {
                self.streams.push((stream, StreamState::default()));
                self.streams.len() - 1
            }
        };
        let st = &mut self.streams[i].1;
        st.pending.extend_from_slice(data);
        st.scan_new();
        // A read ending inside a character or sequence ends, as a frame, before it.
        st.pieces.push(Piece {
            seq,
            offset_us,
            end: st.safe,
        });
        let cut = if !self.masker.enabled {
            st.safe
        } else if st.pending.len() - st.seg_end > MAX_PENDING {
            if st.blank > st.seg_end {
                st.blank
            } else {
                st.safe
            }
        } else {
            st.seg_end
        };
        self.emit(i, cut);
        self.release();
        while self.reorder_bytes > MAX_REORDER {
            // Another stream holds back a tail while this one floods: cut that tail.
            let Some(j) = self.oldest_holder() else { break };
            let st = &self.streams[j].1;
            let cut = if st.blank > 0 { st.blank } else { st.safe };
            let cut = if cut == 0 { st.pending.len() } else { cut };
            self.emit(j, cut);
            self.release();
        }
    }

    /// The terminal (pty) was resized to `cols`×`rows` at `at`.
    pub fn resize(&mut self, cols: u16, rows: u16, at: SystemTime) {
        let seq = self.next_in;
        self.next_in += 1;
        let offset_us = self.offset(at);
        let data = format!("{cols}x{rows}").into_bytes();
        self.reorder
            .insert((seq, 0), (offset_us, Kind::Resize, data));
        self.release();
    }

    /// Masks and queues `pending[..cut]` of stream `i`, split at its reads' boundaries.
    fn emit(&mut self, i: usize, cut: usize) {
        let (stream, st) = &mut self.streams[i];
        let stream = *stream;
        if cut == 0 {
            return;
        }
        let region = &st.pending[..cut];
        let edits = if self.masker.enabled {
            // Only a terminal's rows are wrapped by the program that draws them.
            let wrap = (stream == Stream::Pty).then_some(&mut st.wrap);
            mask_edits(&self.masker, region, wrap)
        } else {
            Vec::new()
        };
        // Each read's part of the region, by its (safe) end.
        let whole = st.pieces.iter().take_while(|p| p.end <= cut).count();
        let mut cuts: Vec<usize> = st.pieces[..whole].iter().map(|p| p.end).collect();
        let split = whole < st.pieces.len();
        if split {
            cuts.push(cut);
        } else if let Some(last) = cuts.last_mut() {
            // At the end of the stream, the last read takes the unfinished bytes too.
            *last = cut;
        }
        let out = if edits.is_empty() {
            Cow::Borrowed(region)
        } else {
            Cow::Owned(apply(region, &edits, &mut cuts))
        };
        let mut start = 0;
        for (k, &end) in cuts.iter().enumerate() {
            let p = st.pieces[k];
            if end > start {
                self.parts += 1;
                self.reorder_bytes += end - start;
                self.reorder.insert(
                    (p.seq, self.parts),
                    (p.offset_us, Kind::Output(stream), out[start..end].to_vec()),
                );
            }
            start = end.max(start);
        }
        if whole > 0 {
            st.last_piece = Some(st.pieces[whole - 1]);
        }
        st.pieces.drain(..whole);
        for p in &mut st.pieces {
            p.end -= cut;
        }
        st.pending.drain(..cut);
        st.scanned -= cut;
        st.safe = st.safe.saturating_sub(cut);
        st.seg_end = st.seg_end.saturating_sub(cut);
        st.blank = st.blank.saturating_sub(cut);
    }

    /// The stream whose held-back bytes are the oldest.
    fn oldest_holder(&self) -> Option<usize> {
        self.streams
            .iter()
            .enumerate()
            .filter_map(|(i, (_, st))| st.pieces.first().map(|p| (p.seq, i)))
            .min()
            .map(|(_, i)| i)
    }

    /// Moves frames that no held-back read precedes into the current block.
    fn release(&mut self) {
        let held = self
            .streams
            .iter()
            .filter_map(|(_, st)| st.pieces.first().map(|p| p.seq))
            .min();
        while let Some(entry) = self.reorder.first_entry() {
            if held.is_some_and(|h| entry.key().0 > h) {
                break;
            }
            let (offset_us, kind, data) = entry.remove();
            if kind != Kind::Resize {
                self.reorder_bytes -= data.len();
            }
            self.push_frame(offset_us, kind, &data);
        }
    }

    fn push_frame(&mut self, offset_us: u64, kind: Kind, data: &[u8]) {
        // A read cut in two by masking gives two frames; join them again where they meet.
        if let Some(last) = self.cur_frames.last_mut() {
            if last.kind == kind && last.offset_us == offset_us && kind != Kind::Resize {
                last.len += data.len();
                self.cur.extend_from_slice(data);
                return self.seal_if_full();
            }
        }
        self.cur_frames.push(FrameMeta {
            seq: self.next_out,
            offset_us,
            kind,
            len: data.len(),
        });
        self.next_out += 1;
        self.totals.frames += 1;
        if self.cur.capacity() == 0 {
            // A block ends at the first frame past the target: room for that frame, so the
            // buffer never doubles to twice the target.
            self.cur.reserve(BLOCK_TARGET + MAX_PENDING);
        }
        self.cur.extend_from_slice(data);
        self.seal_if_full();
    }

    fn seal_if_full(&mut self) {
        if self.cur.len() >= BLOCK_TARGET {
            self.seal();
        }
    }

    /// Closes the current block however small (the writer's flush interval passed).
    pub fn seal(&mut self) {
        if self.cur_frames.is_empty() {
            return;
        }
        // The buffer is kept for the next block: no new allocation per block.
        let raw_len = self.cur.len();
        let (data, codec) = match self.zstd.as_mut().map(|z| z.compress(&self.cur)) {
            Some(Ok(data)) => (data, CODEC),
            _ => (self.cur.clone(), RAW_CODEC),
        };
        self.cur.clear();
        self.totals.stored_bytes += data.len() as u64;
        self.totals.blocks += 1;
        self.sealed.push(Block {
            frames: std::mem::take(&mut self.cur_frames),
            raw_len,
            codec,
            data,
        });
    }

    /// Whether frames wait in the current, unsealed block.
    pub fn has_unsealed(&self) -> bool {
        !self.cur_frames.is_empty()
    }

    /// The blocks sealed so far.
    pub fn take(&mut self) -> Vec<Block> {
        std::mem::take(&mut self.sealed)
    }

    /// Masks and stores every held-back tail, seals the last block.
    pub fn finish(&mut self) -> Vec<Block> {
        for i in 0..self.streams.len() {
            let st = &mut self.streams[i].1;
            let n = st.pending.len();
            if n > 0 && st.pieces.is_empty() {
                // Every read was stored up to its last safe place (no masking holds lines
                // back): the unfinished bytes after it go with the last read.
                if let Some(p) = st.last_piece {
                    st.pieces.push(Piece { end: n, ..p });
                }
            }
            self.emit(i, n);
        }
        self.release();
        self.seal();
        self.take()
    }

    pub fn totals(&self) -> Totals {
        self.totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn masker() -> Masker {
        let mut book =
            RuleBook::load(&crate::extract::rules::builtin_redact_sources()).expect("load");
        book.verify().expect("verify");
        Masker::from_book(&book, true).expect("masker")
    }

    fn t(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
    }

    /// Runs reads through an encoder and returns the stored frames.
    fn run(m: Masker, reads: &[(Stream, &[u8])]) -> Vec<Frame> {
        let mut e = Encoder::new(m, t(0));
        for (i, (s, d)) in reads.iter().enumerate() {
            e.output(*s, d, t(i as u64 * 10));
        }
        let mut frames = Vec::new();
        for b in e.finish() {
            let raw = decode(b.codec, &b.data, b.raw_len).expect("decode");
            frames.extend(split_block(&b.frames, &raw).expect("split"));
        }
        frames
    }

    fn joined(frames: &[Frame], s: Stream) -> Vec<u8> {
        frames
            .iter()
            .filter(|f| f.kind == Kind::Output(s))
            .flat_map(|f| f.data.clone())
            .collect()
    }

    const KEY: &str = "sk-proj-abcdefghijklmnopqrstuvwxyz1234";

    #[test]
    fn plain_output_is_stored_exactly_frame_by_frame() {
        let reads: &[(Stream, &[u8])] = &[
            (Stream::Stdout, b"hello\n"),
            (Stream::Stderr, b"warn: x\n"),
            (Stream::Stdout, b"world\n"),
        ];
        let f = run(masker(), reads);
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].data, b"hello\n");
        assert_eq!(f[1].kind, Kind::Output(Stream::Stderr));
        assert_eq!(f[2].data, b"world\n");
        assert_eq!((f[0].offset_us, f[2].offset_us), (0, 20_000));
        assert_eq!(f.iter().map(|f| f.seq).collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn a_key_split_over_reads_is_masked() {
        let (a, b) = KEY.split_at(12);
        let line1 = format!("token {a}");
        let line2 = format!("{b} ok\n");
        let reads: &[(Stream, &[u8])] = &[
            (Stream::Stdout, line1.as_bytes()),
            (Stream::Stdout, line2.as_bytes()),
        ];
        let f = run(masker(), reads);
        let out = String::from_utf8(joined(&f, Stream::Stdout)).expect("utf8");
        assert_eq!(out, "token [REDACTED:openai_key] ok\n");
        assert!(!out.contains("abcdefgh"));
        // The mask appears at the time the key started.
        assert_eq!(f[0].offset_us, 0);
    }

    #[test]
    fn a_key_coloured_in_the_middle_is_masked_and_colours_stay_balanced() {
        let (a, b) = KEY.split_at(20);
        let line = format!("key: \x1b[1m{a}\x1b[31m{b}\x1b[0m done\r\n");
        let f = run(masker(), &[(Stream::Stdout, line.as_bytes())]);
        let out = String::from_utf8(joined(&f, Stream::Stdout)).expect("utf8");
        assert_eq!(
            out,
            "key: \x1b[1m[REDACTED:openai_key]\x1b[31m\x1b[0m done\r\n"
        );
        // Split mid-escape and mid-key across reads too.
        let bytes = line.as_bytes();
        for cut in 1..bytes.len() {
            let f = run(
                masker(),
                &[
                    (Stream::Stdout, &bytes[..cut]),
                    (Stream::Stdout, &bytes[cut..]),
                ],
            );
            let got = joined(&f, Stream::Stdout);
            assert_eq!(String::from_utf8_lossy(&got), out, "cut at {cut}");
        }
    }

    #[test]
    fn frames_never_split_a_character_or_a_sequence() {
        let text = "é✓ \x1b[38;5;196mred\x1b[0m \x1b]0;title\x07 😀 done";
        let bytes = text.as_bytes();
        for cut in 1..bytes.len() {
            let f = run(
                Masker::off(),
                &[
                    (Stream::Stdout, &bytes[..cut]),
                    (Stream::Stdout, &bytes[cut..]),
                ],
            );
            assert_eq!(joined(&f, Stream::Stdout), bytes, "cut at {cut}");
            for fr in &f {
                let s = std::str::from_utf8(&fr.data).expect("each frame is UTF-8");
                // A frame that ends inside a sequence would leave ESC without its final byte.
                let v = visible(s.as_bytes());
                assert!(
                    v.spans.iter().all(|sp| sp.vis_len == 0 || sp.raw_len == 0),
                    "cut at {cut}: {s:?}"
                );
                assert!(
                    !s.ends_with('\x1b') && !s.ends_with("\x1b["),
                    "cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn visible_text_takes_runs_of_text_whole_and_still_sees_every_byte() {
        // Runs of valid text between escapes are taken at once; sequences, stray bytes and a
        // character cut at the end are read byte by byte, as before.
        let raw = b"ab \xc3\xa9\x1b[31mred\x1b[0m \xff x\xe2\x9c\x93 \x1b]0;t\x07end \xe2\x9c";
        let v = visible(raw);
        assert_eq!(v.text, "ab \u{e9}red \u{FFFD} x\u{2713} end \u{FFFD}");
        let zero: Vec<_> = v
            .spans
            .iter()
            .filter(|s| s.vis_len == 0)
            .map(|s| (s.raw, s.raw_len))
            .collect();
        assert_eq!(zero, vec![(5, 5), (13, 4), (25, 6)]);
        let bad: Vec<_> = v
            .spans
            .iter()
            .filter(|s| s.vis_len > 0)
            .map(|s| (s.raw, s.raw_len))
            .collect();
        assert_eq!(bad, vec![(18, 1), (35, 2)]);
        // The same bytes in two reads cut anywhere give the same frames back.
        for cut in 1..raw.len() {
            let f = run(
                Masker::off(),
                &[(Stream::Stdout, &raw[..cut]), (Stream::Stdout, &raw[cut..])],
            );
            assert_eq!(joined(&f, Stream::Stdout), raw, "cut at {cut}");
        }
    }

    #[test]
    fn order_across_streams_is_read_order_while_a_tail_waits() {
        let reads: &[(Stream, &[u8])] = &[
            (Stream::Stdout, b"Continue? [y/N] "),
            (Stream::Stderr, b"note\n"),
            (Stream::Stdout, b"y\n"),
        ];
        let f = run(masker(), reads);
        let kinds: Vec<_> = f.iter().map(|f| (f.kind, f.data.clone())).collect();
        assert_eq!(
            kinds,
            [
                (Kind::Output(Stream::Stdout), b"Continue? [y/N] ".to_vec()),
                (Kind::Output(Stream::Stderr), b"note\n".to_vec()),
                (Kind::Output(Stream::Stdout), b"y\n".to_vec()),
            ]
        );
    }

    #[test]
    fn secrets_in_osc_strings_and_anchored_rules_are_masked() {
        let line = format!("\x1b]8;;https://x.test/?k={KEY}\x1b\\link\x1b]8;;\x1b\\\n");
        let f = run(masker(), &[(Stream::Stdout, line.as_bytes())]);
        let out = String::from_utf8(joined(&f, Stream::Stdout)).expect("utf8");
        assert!(!out.contains("abcdefghij"), "{out:?}");
        assert!(out.contains("link"), "{out:?}");
        // pem_body_line is anchored (^…$): it must hold for a line in the middle of a read.
        let pem = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW";
        let text = format!("first line\n{pem}\nlast\n");
        let f = run(masker(), &[(Stream::Stdout, text.as_bytes())]);
        let out = String::from_utf8(joined(&f, Stream::Stdout)).expect("utf8");
        assert_eq!(out, "first line\n[REDACTED:pem_body_line]\nlast\n");
    }

    #[test]
    fn an_overlong_line_is_cut_and_invalid_utf8_survives() {
        let mut big = vec![b'a'; MAX_PENDING + 10];
        big.extend_from_slice(b" tail \xff\xfe end");
        let f = run(masker(), &[(Stream::Stdout, &big)]);
        assert_eq!(joined(&f, Stream::Stdout), big);
    }

    #[test]
    fn resizes_are_frames_in_order() {
        let mut e = Encoder::new(masker(), t(0));
        e.output(Stream::Stdout, b"a\n", t(1));
        e.resize(100, 30, t(2));
        e.output(Stream::Stdout, b"b\n", t(3));
        let blocks = e.finish();
        let raw = decode(blocks[0].codec, &blocks[0].data, blocks[0].raw_len).expect("decode");
        let f = split_block(&blocks[0].frames, &raw).expect("split");
        assert_eq!(f[1].size(), Some((100, 30)));
        assert_eq!(Kind::parse("resize"), Some(Kind::Resize));
        assert_eq!(Kind::parse("stderr"), Some(Kind::Output(Stream::Stderr)));
        assert_eq!(Kind::parse("nope"), None);
    }
}
