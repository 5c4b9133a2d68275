//! What wrapper says about a run, besides the agent's own output: with `-v` what it is about to
//! do (where it records, which rules, how it reads the agent), and at the end of a recorded run
//! at a terminal one line saying where the session went and how to look at it — as asciinema
//! does. Off a terminal the agent's stderr stays exactly the agent's: a script reading it must
//! not find wrapper's words in it.

use std::io::IsTerminal;
use std::path::Path;

/// One line at the start, at `-v`: the session, where it is recorded, the rules.
pub fn starting(session_id: &str, db: Option<&Path>, rules: usize, version: &str, mode: &str) {
    match db {
        Some(db) => tracing::info!(
            "session {session_id}: recording to {} ({rules} rules, rule set {version}, {mode})",
            db.display()
        ),
        None => tracing::info!(
            "session {session_id}: not recording (no --enable-db); {rules} rules, {mode}"
        ),
    }
}

/// The closing line of a recorded run, on stderr, at a terminal only (and not with `-q`).
pub fn finished(session_id: &str, db: &Path, lines: u64, events: u64, quiet: bool) {
    if quiet || !std::io::stderr().is_terminal() {
        return;
    }
    let short: String = session_id.chars().take(8).collect();
    let db_opt = if Some(db) == default_db().as_deref() {
        String::new()
    } else {
        format!(" --db {}", shell_word(&db.display().to_string()))
    };
    eprintln!(
        "wrapper: session {short} recorded in {}: {}, {} — see it with: wrapper show {short}{db_opt}",
        db.display(),
        crate::cmd::view::counted(lines, "line"),
        crate::cmd::view::counted(events, "event"),
    );
}

/// The database a query command finds without `--db`.
fn default_db() -> Option<std::path::PathBuf> {
    std::env::var_os("WRAPPER_DB")
        .filter(|v| !v.is_empty())
        .map(Into::into)
        .or_else(|| Some(crate::store::default_path()))
}

/// `s` quoted for a shell when it needs it.
fn shell_word(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
