//! asciicast v2 (what asciinema 2.x, agg and svg-term read) and v3 (asciinema 3).
//!
//! v2: a header object, then `[seconds since start, code, data]`; v3: a header with `term`,
//! then `[seconds since the previous entry, code, data]` and an exit entry. Output frames are
//! valid UTF-8 (the capture never splits a character), so `data` is the bytes as the user
//! saw them; only bytes that were never UTF-8 become U+FFFD, as in asciinema's own recorder.

use serde_json::{json, Value};

use super::{Encoder, Entry, Header};

/// Seconds with microseconds, as asciinema writes them.
fn secs(us: u64) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

fn line(time: &str, code: &str, data: &str) -> Vec<u8> {
    let mut out = format!("[{time}, \"{code}\", ").into_bytes();
    // A JSON string of `data`: serde_json escapes exactly what JSON needs.
    let _ = serde_json::to_writer(&mut out, data);
    out.extend_from_slice(b"]\n");
    out
}

fn code_and_data(e: &Entry) -> Option<(&'static str, String)> {
    match e {
        Entry::Output { data, .. } => Some(("o", String::from_utf8_lossy(data).into_owned())),
        Entry::Resize { cols, rows, .. } => Some(("r", format!("{cols}x{rows}"))),
        Entry::Marker { label, .. } => Some(("m", label.clone())),
        Entry::Exit { .. } => None,
    }
}

fn header_object(version: u8, h: &Header) -> Value {
    let mut v = if version == 2 {
        json!({ "version": 2, "width": h.cols, "height": h.rows, "timestamp": h.timestamp })
    } else {
        json!({
            "version": 3,
            "term": { "cols": h.cols, "rows": h.rows },
            "timestamp": h.timestamp,
        })
    };
    if let Some(obj) = v.as_object_mut() {
        if let Some(t) = &h.title {
            obj.insert("title".into(), t.clone().into());
        }
        if let Some(c) = &h.command {
            obj.insert("command".into(), c.clone().into());
        }
        if version == 2 {
            obj.insert("env".into(), json!({ "TERM": "xterm-256color" }));
        }
    }
    v
}

/// asciicast v2.
#[derive(Debug, Default)]
pub struct V2;

impl Encoder for V2 {
    fn header(&mut self, h: &Header) -> Vec<u8> {
        let mut out = header_object(2, h).to_string().into_bytes();
        out.push(b'\n');
        out
    }

    fn entry(&mut self, e: &Entry) -> Vec<u8> {
        match code_and_data(e) {
            Some((code, data)) => line(&secs(e.at_us()), code, &data),
            None => Vec::new(),
        }
    }
}

/// asciicast v3: intervals instead of absolute times, and an exit entry.
#[derive(Debug, Default)]
pub struct V3 {
    last_us: u64,
}

impl Encoder for V3 {
    fn header(&mut self, h: &Header) -> Vec<u8> {
        self.last_us = 0;
        let mut out = header_object(3, h).to_string().into_bytes();
        out.push(b'\n');
        out
    }

    fn entry(&mut self, e: &Entry) -> Vec<u8> {
        let at = e.at_us().max(self.last_us);
        let interval = secs(at - self.last_us);
        self.last_us = at;
        match e {
            Entry::Exit { code, .. } => line(&interval, "x", &code.to_string()),
            _ => match code_and_data(e) {
                Some((code, data)) => line(&interval, code, &data),
                None => Vec::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cast::encode_all;

    fn entries() -> Vec<Entry> {
        vec![
            Entry::Output {
                at_us: 0,
                stream: "stdout",
                data: "héllo \x1b[31mred\x1b[0m\r\n".into(),
            },
            Entry::Marker {
                at_us: 1_500_000,
                label: "error: boom".into(),
            },
            Entry::Output {
                at_us: 2_000_001,
                stream: "stderr",
                data: b"\"quoted\"\n".to_vec(),
            },
            Entry::Exit {
                at_us: 2_500_000,
                code: 3,
            },
        ]
    }

    fn header() -> Header {
        Header {
            cols: 100,
            rows: 30,
            timestamp: 1_700_000_000,
            title: Some("codex".into()),
            command: Some("codex exec".into()),
        }
    }

    #[test]
    fn v2_lines() {
        let out = String::from_utf8(encode_all(&mut V2, &header(), entries())).expect("utf8");
        let lines: Vec<&str> = out.lines().collect();
        let h: Value = serde_json::from_str(lines[0]).expect("header");
        assert_eq!(
            (h["version"].as_u64(), h["width"].as_u64()),
            (Some(2), Some(100))
        );
        assert_eq!(
            lines[1],
            r#"[0.000000, "o", "héllo \u001b[31mred\u001b[0m\r\n"]"#
        );
        assert_eq!(lines[2], r#"[1.500000, "m", "error: boom"]"#);
        assert_eq!(lines[3], r#"[2.000001, "o", "\"quoted\"\n"]"#);
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn v3_lines_are_intervals_and_end_with_exit() {
        let out =
            String::from_utf8(encode_all(&mut V3::default(), &header(), entries())).expect("utf8");
        let lines: Vec<&str> = out.lines().collect();
        let h: Value = serde_json::from_str(lines[0]).expect("header");
        assert_eq!(h["term"]["cols"].as_u64(), Some(100));
        assert_eq!(lines[2], r#"[1.500000, "m", "error: boom"]"#);
        assert_eq!(lines[3], r#"[0.500001, "o", "\"quoted\"\n"]"#);
        assert_eq!(lines[4], r#"[0.499999, "x", "3"]"#);
    }
}
