//! "Did you mean …?" for a mistyped subcommand.
//!
//! `wrapper <agent> <command>` has no subcommand word, so `wrapper shwo 5e0d` reads as "run the
//! program `5e0d` as agent `shwo`" — and fails with exit 127 after a session was started, or
//! worse, `wrapper completion bash` starts a nested shell that waits for input. Clap cannot
//! catch that (any word is a valid agent name), so before the run form is taken this module
//! asks two questions: is the first word a small edit away from a subcommand, and would the
//! rest *not* run as a command? Only when both hold is the word treated as a typo; `wrapper
//! stat make` (an agent named `stat` running `make`) still runs, because `make` exists.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The subcommand `word` is most likely a typo of, if it is close to one.
pub fn closest<'a>(word: &str, subcommands: &'a [String]) -> Option<&'a str> {
    let word = word.to_lowercase();
    // Short words have few letters to spare: one edit for up to four letters, two beyond.
    let budget = if word.chars().count() <= 4 { 1 } else { 2 };
    subcommands
        .iter()
        .filter(|s| s.as_str() != "help" || word.len() >= 3)
        .map(|s| (strsim::damerau_levenshtein(&word, s), s))
        .filter(|(d, _)| *d <= budget)
        .min_by_key(|(d, _)| *d)
        .map(|(_, s)| s.as_str())
}

/// Whether `word`, as the first word of the agent's command, would start something: a word
/// with shell syntax runs through `/bin/sh -c` (which always starts), a path must exist, a
/// bare name must be an executable on `PATH`.
pub fn would_run(word: &OsStr) -> bool {
    let s = word.to_string_lossy();
    if s.is_empty() {
        return false;
    }
    if crate::run::child::needs_shell(&s) {
        return true;
    }
    if s.contains('/') {
        return Path::new(word).exists();
    }
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(word))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The message for a typo: the corrected command line, and how to run the program anyway.
pub fn message(typo: &str, subcommand: &str, rest: &[String]) -> String {
    let mut corrected = format!("wrapper {subcommand}");
    for w in rest {
        corrected.push(' ');
        corrected.push_str(w);
    }
    let mut msg = format!("unrecognized subcommand '{typo}'\n\n  did you mean: {corrected}?\n");
    if let Some(first) = rest.first() {
        msg.push_str(&format!(
            "\n  (to run `{first}` as an agent named '{typo}': wrapper run {typo} -- {})",
            rest.join(" ")
        ));
    } else {
        msg.push_str(&format!(
            "\n  (to run an agent named '{typo}': wrapper run {typo} -- COMMAND)"
        ));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs() -> Vec<String> {
        [
            "run",
            "show",
            "search",
            "sessions",
            "stats",
            "events",
            "completions",
            "help",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn near_misses_are_found() {
        let s = subs();
        assert_eq!(closest("shwo", &s), Some("show"));
        assert_eq!(closest("serach", &s), Some("search"));
        assert_eq!(closest("sesions", &s), Some("sessions"));
        assert_eq!(closest("completion", &s), Some("completions"));
        assert_eq!(closest("Stats", &s), Some("stats"));
    }

    #[test]
    fn agent_names_are_not_typos() {
        let s = subs();
        for agent in ["codex", "claude", "aider", "gemini", "demo", "ci"] {
            assert_eq!(closest(agent, &s), None, "{agent}");
        }
    }

    #[test]
    fn commands_that_exist_would_run() {
        assert!(would_run(OsStr::new("sh")));
        assert!(would_run(OsStr::new("/bin/sh")));
        assert!(would_run(OsStr::new("echo 'a b'")));
        assert!(!would_run(OsStr::new("5e0d")));
        assert!(!would_run(OsStr::new("./no/such/program")));
    }
}
