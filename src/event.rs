//! The records that flow from extraction to storage: events and code blocks.
//!
//! They carry exactly the columns of `extraction_events` and `code_blocks` (SPEC §5) minus the
//! two that are constant for a session (`agent_name`, `session_id`), which the sink adds.
//! Strings shared by many events (timestamp, rule name, the line itself) are reference-counted
//! so that producing an event costs no copy of them.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// Which of the child's output streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
