//! Time as people type it on the query side (`--since 7d`, `--until 2026-11-01`,
//! `--from 2026-11-22T10:30:00Z`) and as people read it ("3 min ago").
//!
//! Stored timestamps are UTC RFC 3339 with milliseconds and `Z` (SPEC §2), so a bound formatted
//! the same way compares correctly as a string and SQLite can use the timestamp indexes.
//! humantime parses the durations; chrono parses dates and zoned timestamps, which humantime
//! cannot (it only knows UTC).

use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, NaiveDateTime, Utc};

/// Which end of a range a bound is, because a plain date means a different instant at each:
/// `--since 2026-11-01` starts at that day's midnight, `--until 2026-11-01` includes that day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// Inclusive lower bound.
    Start,
    /// Exclusive upper bound.
    End,
}

/// Formats an instant exactly as stored timestamps are.
pub fn format(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Parses a bound given relative to `now`: a duration (`7d`, `12h`, `90m`, `1h 30m`) meaning
/// that long ago, an RFC 3339 timestamp (any offset), a date-time without offset (UTC), or a
/// plain date. Returns the stored-timestamp form.
pub fn parse_bound(s: &str, edge: Edge, now: DateTime<Utc>) -> Result<String, String> {
    let s = s.trim();
    let hint = "write a duration like 7d or 12h, a date like 2026-11-01, \
                or a timestamp like 2026-11-22T10:30:00Z";
    if s.is_empty() {
        return Err(format!("empty time; {hint}"));
    }
    if let Ok(d) = humantime::parse_duration(s) {
        let d = ChronoDuration::from_std(d).map_err(|_| format!("{s:?} is too long ago"))?;
        let t = now
            .checked_sub_signed(d)
            .ok_or_else(|| format!("{s:?} is too long ago"))?;
        return Ok(format(t));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(format(t.with_timezone(&Utc)));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(format(t.and_utc()));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let day = match edge {
            Edge::Start => Some(d),
            // An exclusive end: the next midnight, so the named day is included.
            Edge::End => d.succ_opt(),
        };
        let t = day
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .ok_or_else(|| format!("{s:?} is out of range"))?;
        return Ok(format(t.and_utc()));
    }
    Err(format!("cannot read {s:?} as a time; {hint}"))
}

/// A stored timestamp as a person reads it: "12 s ago", "3 min ago", "5 h ago", "2 d ago",
/// and the date for anything older than a month. Unparseable text is shown as it is.
pub fn relative(ts: &str, now: DateTime<Utc>) -> String {
    let Ok(t) = DateTime::parse_from_rfc3339(ts) else {
        return ts.to_string();
    };
    let secs = (now - t.with_timezone(&Utc)).num_seconds();
    let (ago, secs) = if secs < 0 {
        (false, -secs)
    } else {
        (true, secs)
    };
    let amount = match secs {
        0..=4 => return "just now".into(),
        5..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        3600..=86_399 => format!("{} h", secs / 3600),
        86_400..=2_592_000 => format!("{} d", secs / 86_400),
        _ => return ts.get(..10).unwrap_or(ts).to_string(),
    };
    if ago {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

/// Milliseconds between two stored timestamps, when both parse.
pub fn duration_ms(from: &str, to: &str) -> Option<i64> {
    let a = DateTime::parse_from_rfc3339(from).ok()?;
    let b = DateTime::parse_from_rfc3339(to).ok()?;
    Some((b - a).num_milliseconds())
}

/// A duration for a person: `850ms`, `12.3s`, `4m 05s`, `2h 10m`.
pub fn human_duration(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{}h {:02}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T10:30:00.123Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn durations_are_relative_to_now() {
        assert_eq!(
            parse_bound("7d", Edge::Start, now()).as_deref(),
            Ok("2026-11-15T10:30:00.123Z")
        );
        assert_eq!(
            parse_bound("12h", Edge::Start, now()).as_deref(),
            Ok("2026-11-21T22:30:00.123Z")
        );
    }

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(
            parse_bound("2026-11-01", Edge::Start, now()).as_deref(),
            Ok("2026-11-01T00:00:00.000Z")
        );
        assert_eq!(
            parse_bound("2026-11-01", Edge::End, now()).as_deref(),
            Ok("2026-11-02T00:00:00.000Z")
        );
        assert_eq!(
            parse_bound("2026-11-01T12:00:00+02:00", Edge::Start, now()).as_deref(),
            Ok("2026-11-01T10:00:00.000Z")
        );
        assert_eq!(
            parse_bound("2026-11-01 12:00", Edge::Start, now()).as_deref(),
            Ok("2026-11-01T12:00:00.000Z")
        );
        assert!(parse_bound("yesterday-ish", Edge::Start, now()).is_err());
        assert!(parse_bound("2026-13-01", Edge::Start, now()).is_err());
        assert!(parse_bound("", Edge::Start, now()).is_err());
    }

    #[test]
    fn relative_times() {
        assert_eq!(relative("2026-11-22T10:27:00.000Z", now()), "3 min ago");
        assert_eq!(relative("2026-11-22T10:30:00.000Z", now()), "just now");
        assert_eq!(relative("2026-11-20T10:30:00.000Z", now()), "2 d ago");
        assert_eq!(relative("2026-01-01T00:00:00.000Z", now()), "2026-01-01");
        assert_eq!(relative("garbage", now()), "garbage");
        assert_eq!(human_duration(65_000), "1m 05s");
    }
}
