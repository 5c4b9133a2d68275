//! Fenced code blocks in the output (SPEC §4), found line by line with CommonMark's fence rules.
//!
//! A fence is three or more backticks or tildes after at most three spaces; a backtick fence's
//! info string may not contain a backtick; a block closes only on a fence of the same character
//! that is at least as long and has nothing after it but spaces. Content lines lose up to the
//! opening fence's indentation, as CommonMark says. A block's content is capped so that an
//! unclosed fence at the start of a huge output cannot grow without bound.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::event::{CodeBlock, Stream};

/// Most bytes of content kept for one block; the rest is dropped and the block marked.
pub const MAX_BLOCK_BYTES: usize = 1 << 20;
/// Most characters of the line before a block kept as its context.
const MAX_CONTEXT_CHARS: usize = 512;

#[derive(Debug)]
struct Open {
    fence_char: u8,
    fence_len: usize,
    indent: usize,
    language: Option<String>,
    content: String,
    lines: usize,
    line_start: u64,
    context: String,
    truncated: bool,
}

/// Tracks fences on one stream.
#[derive(Debug, Default)]
pub struct CodeBlockParser {
    open: Option<Open>,
    /// The previous line's text, the context of a block that opens on this line.
    prev: String,
}

/// A block that just ended, before redaction and hashing.
#[derive(Debug)]
pub struct FinishedBlock {
    pub language: Option<String>,
    pub content: String,
    pub line_start: u64,
    pub line_end: u64,
    pub context: String,
    pub closed: bool,
    pub truncated: bool,
}

impl CodeBlockParser {
    /// Feeds one line; returns a block when this line closes one.
    pub fn line(&mut self, text: &str, line_number: u64) -> Option<FinishedBlock> {
        // Cheap rejection: a fence line starts with up to three spaces then ` or ~.
        let fence = fence_of(text);
        if let Some(open) = &mut self.open {
            if let Some(f) = fence {
                if f.ch == open.fence_char && f.len >= open.fence_len && f.rest.trim().is_empty() {
                    let open = self.open.take().expect("checked above");
                    self.remember(text);
                    return Some(finish(open, line_number, true));
                }
            }
            let body = strip_indent(text, open.indent);
            if !open.truncated {
                if open.content.len() + body.len() + 1 > MAX_BLOCK_BYTES {
                    open.truncated = true;
                } else {
                    if open.lines > 0 {
                        open.content.push('\n');
                    }
                    open.content.push_str(body);
                }
            }
            open.lines += 1;
            self.remember(text);
            return None;
        }
        if let Some(f) = fence {
            let info = f.rest.trim();
            if !(f.ch == b'`' && info.contains('`')) {
                let language = info.split_whitespace().next().map(str::to_string);
                self.open = Some(Open {
                    fence_char: f.ch,
                    fence_len: f.len,
                    indent: f.indent,
                    language,
                    content: String::new(),
                    lines: 0,
                    line_start: line_number,
                    context: std::mem::take(&mut self.prev),
                    truncated: false,
                });
                return None;
            }
        }
        self.remember(text);
        None
    }

    /// Ends the stream: a block still open is returned, marked unclosed.
    pub fn finish(&mut self, last_line: u64) -> Option<FinishedBlock> {
        self.open.take().map(|o| {
            let end = last_line.max(o.line_start);
            finish(o, end, false)
        })
    }

    fn remember(&mut self, text: &str) {
        self.prev.clear();
        // Byte length bounds character count, so short lines (nearly all) skip the char walk.
        if text.len() <= MAX_CONTEXT_CHARS {
            self.prev.push_str(text);
            return;
        }
        match text.char_indices().nth(MAX_CONTEXT_CHARS) {
            Some((cut, _)) => self.prev.push_str(&text[..cut]),
            None => self.prev.push_str(text),
        }
    }
}

fn finish(o: Open, line_end: u64, closed: bool) -> FinishedBlock {
    FinishedBlock {
        language: o.language,
        content: o.content,
        line_start: o.line_start,
        line_end,
        context: o.context,
        closed,
        truncated: o.truncated,
    }
}

struct Fence<'a> {
    ch: u8,
    len: usize,
    indent: usize,
    rest: &'a str,
}

fn fence_of(text: &str) -> Option<Fence<'_>> {
    let bytes = text.as_bytes();
    let indent = bytes.iter().take(4).take_while(|&&b| b == b' ').count();
    if indent > 3 {
        return None;
    }
    let ch = *bytes.get(indent)?;
    if ch != b'`' && ch != b'~' {
        return None;
    }
    let len = bytes[indent..].iter().take_while(|&&b| b == ch).count();
    if len < 3 {
        return None;
    }
    Some(Fence {
        ch,
        len,
        indent,
        rest: &text[indent + len..],
    })
}

fn strip_indent(text: &str, indent: usize) -> &str {
    let n = text
        .as_bytes()
        .iter()
        .take(indent)
        .take_while(|&&b| b == b' ')
        .count();
    &text[n..]
}

/// Hex SHA-256 of language + `\n` + content: the block's identity across sessions.
pub fn digest(language: Option<&str>, content: &str) -> String {
    let mut h = Sha256::new();
    h.update(language.unwrap_or("").as_bytes());
    h.update(b"\n");
    h.update(content.as_bytes());
    format!("{:x}", h.finalize())
}

/// Builds the stored record from a finished block whose text has already been redacted.
pub fn to_record(b: FinishedBlock, stream: Stream, timestamp: Arc<str>) -> CodeBlock {
    let parseable = b.closed
        && !b.truncated
        && match b.language.as_deref() {
            Some(l) if l.eq_ignore_ascii_case("json") => {
                serde_json::from_str::<serde::de::IgnoredAny>(&b.content).is_ok()
            }
            _ => true,
        };
    /// `context_json`, its keys in the order a JSON object map keeps them (sorted), written
    /// straight from the fields instead of through a map of values.
    #[derive(serde::Serialize)]
    struct Context<'a> {
        before: &'a str,
        closed: bool,
        stream: &'a str,
        truncated: bool,
    }
    let context_json = serde_json::to_string(&Context {
        before: &b.context,
        closed: b.closed,
        stream: stream.as_str(),
        truncated: b.truncated,
    })
    .unwrap_or_default();
    CodeBlock {
        digest: digest(b.language.as_deref(), &b.content),
        timestamp,
        language: b.language,
        content: b.content,
        line_start: b.line_start,
        line_end: b.line_end,
        context_json,
        parseable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[&str]) -> Vec<FinishedBlock> {
        let mut p = CodeBlockParser::default();
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            out.extend(p.line(l, i as u64 + 1));
        }
        out.extend(p.finish(lines.len() as u64));
        out
    }

    #[test]
    fn finds_a_block_with_language_and_context() {
        let b = run(&["Here:", "```rust title", "fn main() {}", "```", "after"]);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].language.as_deref(), Some("rust"));
        assert_eq!(b[0].content, "fn main() {}");
        assert_eq!((b[0].line_start, b[0].line_end), (2, 4));
        assert_eq!(b[0].context, "Here:");
        assert!(b[0].closed);
    }

    #[test]
    fn closes_only_on_same_char_and_length() {
        let b = run(&["````md", "```", "~~~~", "````"]);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].content, "```\n~~~~");
    }

    #[test]
    fn unclosed_block_is_kept_unparseable() {
        let b = run(&["~~~", "a", "b"]);
        assert_eq!(b.len(), 1);
        assert!(!b[0].closed);
        let rec = to_record(run(&["~~~", "a"]).remove(0), Stream::Stdout, "t".into());
        assert!(!rec.parseable);
    }

    #[test]
    fn indented_fence_strips_indent_and_four_spaces_is_not_a_fence() {
        let b = run(&["  ```", "    x", "  ```", "    ```", "y"]);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].content, "  x");
    }

    #[test]
    fn json_parseability_and_digest() {
        let ok = to_record(
            run(&["```json", "{\"a\":1}", "```"]).remove(0),
            Stream::Stdout,
            "t".into(),
        );
        assert!(ok.parseable);
        let bad = to_record(
            run(&["```json", "{\"a\":", "```"]).remove(0),
            Stream::Stdout,
            "t".into(),
        );
        assert!(!bad.parseable);
        assert_eq!(ok.digest, digest(Some("json"), "{\"a\":1}"));
        assert_eq!(ok.digest.len(), 64);
    }

    #[test]
    fn backtick_info_with_backtick_is_not_a_fence() {
        assert!(run(&["``` a`b", "x"]).is_empty());
    }
}
