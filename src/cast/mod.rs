//! What a captured session becomes for people and players: asciicast v2 and v3, a plain-text
//! transcript, the events as JSON Lines; and the timing adapters replay and export share.
//!
//! Everything here is pure, after asciinema's `src/encoder/`: an [`Entry`] stream in, bytes
//! out, writing left to the caller. A format is an [`Encoder`] with a header, one call per
//! entry and a trailer, so a large session is encoded entry by entry, never held whole.
//! Speed and idle limit are iterator adapters over entries ([`timing`]), so replay, export
//! and a web player all time a session the same way.

pub mod asciicast;
pub mod timing;
pub mod txt;

use serde::Serialize;

/// The facts a file's header needs.
#[derive(Debug, Clone, Default)]
pub struct Header {
    pub cols: u16,
    pub rows: u16,
    /// Unix seconds of time offset 0.
    pub timestamp: i64,
    pub title: Option<String>,
    pub command: Option<String>,
}

/// One thing that happened at a time offset (microseconds since the start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Bytes the user saw (asciicast "o"); the stream name is kept for formats that care.
    Output {
        at_us: u64,
        stream: &'static str,
        data: Vec<u8>,
    },
    /// The terminal was resized ("r").
    Resize { at_us: u64, cols: u16, rows: u16 },
    /// An event worth jumping to: an error, a prompt ("m").
    Marker { at_us: u64, label: String },
    /// The session ended with this exit code (v3 "x").
    Exit { at_us: u64, code: i32 },
}

impl Entry {
    pub fn at_us(&self) -> u64 {
        match self {
            Entry::Output { at_us, .. }
            | Entry::Resize { at_us, .. }
            | Entry::Marker { at_us, .. }
            | Entry::Exit { at_us, .. } => *at_us,
        }
    }

    fn at_mut(&mut self) -> &mut u64 {
        match self {
            Entry::Output { at_us, .. }
            | Entry::Resize { at_us, .. }
            | Entry::Marker { at_us, .. }
            | Entry::Exit { at_us, .. } => at_us,
        }
    }
}

/// A file format: pure functions from entries to bytes.
pub trait Encoder {
    fn header(&mut self, h: &Header) -> Vec<u8>;
    fn entry(&mut self, e: &Entry) -> Vec<u8>;
    fn finish(&mut self) -> Vec<u8> {
        Vec::new()
    }
}

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Asciicast,
    AsciicastV3,
    Txt,
    Jsonl,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "asciicast" | "asciicast-v2" | "cast" => Some(Format::Asciicast),
            "asciicast-v3" => Some(Format::AsciicastV3),
            "txt" | "text" => Some(Format::Txt),
            "jsonl" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

/// The encoder for a format that is made of entries (`jsonl` is made of events instead).
pub fn encoder(f: Format) -> Option<Box<dyn Encoder>> {
    match f {
        Format::Asciicast => Some(Box::new(asciicast::V2)),
        Format::AsciicastV3 => Some(Box::new(asciicast::V3::default())),
        Format::Txt => Some(Box::new(txt::Txt::default())),
        Format::Jsonl => None,
    }
}

/// Encodes a whole session in memory.
pub fn encode_all(
    enc: &mut dyn Encoder,
    h: &Header,
    entries: impl IntoIterator<Item = Entry>,
) -> Vec<u8> {
    let mut out = enc.header(h);
    for e in entries {
        out.extend(enc.entry(&e));
    }
    out.extend(enc.finish());
    out
}

/// Rows as JSON Lines (the `jsonl` export: a session's events).
pub fn jsonl<T: Serialize>(rows: impl IntoIterator<Item = T>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rows {
        if serde_json::to_writer(&mut out, &r).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

/// Applies what a terminal's `onlcr` does to output written to it: a `\n` not preceded by
/// `\r` becomes `\r\n`. Output read from pipes has bare newlines that the user's terminal
/// turned into line starts; players (asciinema in raw mode, web players) do not, so an export
/// of pipe-mode output needs this to look as the user saw it. PTY output has it already.
pub fn onlcr<I: Iterator<Item = Entry>>(it: I) -> impl Iterator<Item = Entry> {
    let mut after_cr = false;
    it.map(move |mut e| {
        if let Entry::Output { data, .. } = &mut e {
            if memchr::memchr(b'\n', data).is_some() {
                let mut out = Vec::with_capacity(data.len() + data.len() / 32);
                for &b in data.iter() {
                    if b == b'\n' && !after_cr {
                        out.push(b'\r');
                    }
                    out.push(b);
                    after_cr = b == b'\r';
                }
                *data = out;
            } else if let Some(&last) = data.last() {
                after_cr = last == b'\r';
            }
        }
        e
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onlcr_adds_carriage_returns_once() {
        let out = |d: &[u8]| Entry::Output {
            at_us: 0,
            stream: "stdout",
            data: d.to_vec(),
        };
        let got: Vec<Entry> = onlcr([out(b"a\nb\r\nc\r"), out(b"\nd\n")].into_iter()).collect();
        assert_eq!(got, [out(b"a\r\nb\r\nc\r"), out(b"\nd\r\n")]);
    }
}
