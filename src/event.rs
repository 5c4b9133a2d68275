//! The records that flow from extraction to storage: events and code blocks.
//!
//! They carry exactly the columns of `extraction_events` and `code_blocks` (SPEC §5) minus the
//! two that are constant for a session (`agent_name`, `session_id`), which the sink adds.
//! Strings shared by many events (timestamp, rule name, the line itself) are reference-counted
//! so that producing an event costs no copy of them.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// Which of the child's output streams a line came from: its stdout or stderr pipe in pipe
/// mode, or the pseudo-terminal in PTY mode (where the child's stdout and stderr are one
/// stream, as on a terminal). Stored as `stdout`, `stderr`, `pty`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
    Pty,
}

impl Stream {
    /// Every stream, in [`Stream::index`] order.
    pub const ALL: [Stream; 3] = [Stream::Stdout, Stream::Stderr, Stream::Pty];

    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Pty => "pty",
        }
    }

    /// The stream stored as `s`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Stream> {
        Stream::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The stream with [`Stream::index`] `i`; `None` for anything else.
    pub fn from_index(i: usize) -> Option<Stream> {
        Stream::ALL.get(i).copied()
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `T` per [`Stream`], indexed by the stream: what used to be two-slot arrays indexed by
/// a number, which a third stream would have silently missed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PerStream<T>(pub [T; 3]);

impl<T> PerStream<T> {
    /// The same value for every stream.
    pub fn all(v: T) -> Self
    where
        T: Clone,
    {
        PerStream([v.clone(), v.clone(), v])
    }

    /// `f(stream)` for every stream.
    pub fn from_fn(f: impl FnMut(Stream) -> T) -> Self {
        PerStream(Stream::ALL.map(f))
    }

    /// `(stream, value)` for every stream, in [`Stream::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Stream, &T)> {
        Stream::ALL.into_iter().zip(self.0.iter())
    }
}

impl<T> std::ops::Index<Stream> for PerStream<T> {
    type Output = T;
    fn index(&self, s: Stream) -> &T {
        &self.0[s.index()]
    }
}

impl<T> std::ops::IndexMut<Stream> for PerStream<T> {
    fn index_mut(&mut self, s: Stream) -> &mut T {
        &mut self.0[s.index()]
    }
}

/// How risky it would be to say yes to a prompt or to run a command.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
    Critical,
}

impl RiskLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
            RiskLevel::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "low" => Some(RiskLevel::Low),
            "medium" => Some(RiskLevel::Medium),
            "high" => Some(RiskLevel::High),
            "critical" => Some(RiskLevel::Critical),
            _ => None,
        }
    }
}

/// One row of `extraction_events`.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub timestamp: Arc<str>,
    pub stream: Stream,
    pub event_type: Arc<str>,
    pub pattern: Arc<str>,
    pub matched_value: Option<String>,
    pub original_line: Option<Arc<str>>,
    pub line_number: u64,
    pub metadata_json: Option<String>,
    pub code_block_language: Option<String>,
    pub risk_level: Option<RiskLevel>,
    pub auto_confirmable: bool,
}

/// One row of `code_blocks`.
#[derive(Debug, Clone, Serialize)]
pub struct CodeBlock {
    pub timestamp: Arc<str>,
    pub language: Option<String>,
    pub content: String,
    pub line_start: u64,
    pub line_end: u64,
    pub context_json: String,
    pub parseable: bool,
    pub digest: String,
}

/// What extraction hands to the sink.
#[derive(Debug, Clone)]
pub enum Record {
    Event(Event),
    CodeBlock(CodeBlock),
    /// The session's facts as the agent reports them (its id, model, tokens, cost).
    Facts(SessionFacts),
    /// An event the agent's own session log confirms, already recorded from its output.
    Merge(Merge),
}

/// What the agent itself says about the session: from its JSON stream or its session log
/// (`extract/json.rs`, `agents/`). Each is the latest known value; `None` is unknown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct SessionFacts {
    pub agent_session_id: Option<String>,
    pub model: Option<String>,
    pub input_tokens: Option<i64>,
    pub cached_input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    /// Where `cost_usd` comes from (Claude's `total_cost_usd` is the client's own estimate).
    pub cost_note: Option<String>,
    /// The agent's session log that was read.
    pub log_path: Option<String>,
}

/// The session log's account of an event the screen showed too: its fields are merged into
/// the event already recorded (`metadata_json`), so the event is stored once.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Merge {
    pub event_type: String,
    /// The output line of the event it confirms.
    pub line_number: u64,
    /// The event's value; `None` when the log's value differs from what the screen showed
    /// (a command's failure, which Codex's text mode shows as ` exited 1 in 9ms:`).
    pub matched_value: Option<String>,
    /// A JSON object whose keys are added to the event's metadata.
    pub metadata_json: String,
    /// The log's whole value, when the screen showed only its start (a long command cut
    /// where the TUI wrapped it): it replaces the event's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_value: Option<String>,
}

/// Formats a moment as SPEC §2 wants it: UTC, RFC 3339, milliseconds, `Z`.
pub fn format_timestamp(t: std::time::SystemTime) -> String {
    let dt: chrono::DateTime<chrono::Utc> = t.into();
    dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The current time, formatted as [`format_timestamp`] does.
pub fn now_timestamp() -> String {
    format_timestamp(std::time::SystemTime::now())
}
