//! Extraction from the screen model (PTY mode): committed lines, and the live rows on which
//! prompt rules look for a question while the agent waits.
//!
//! A TUI redraws its dialog many times while it waits, and the same dialog comes back for
//! the next command with the same words ("Do you want to proceed?"). So a question is
//! recorded once per appearance: a live row whose words were offered at the previous settle
//! and are still on the screen is the same question; once they have left the screen, they
//! are a new question when they come back. A prompt recorded from a live row is not recorded
//! again when that row later scrolls into history as a committed line.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::Extractor;
use crate::event::{Record, Stream};

/// The screen-side prompt state of an [`Extractor`].
#[derive(Debug, Default)]
pub(super) struct ScreenPrompts {
    /// Words of the live rows offered at the last settle.
    on_screen: HashSet<String>,
    /// Words of prompts recorded from live rows and not yet seen committed.
    recorded: HashMap<String, u32>,
}

/// The letters of a row: what stays the same while a spinner turns or a countdown ticks.
fn words(row: &str) -> String {
    row.chars().filter(|c| c.is_alphabetic()).collect()
}

impl Extractor {
    /// Lines the screen committed (scrolled off, or read from a settled alternate screen),
    /// each ended by `\n`, all at `ts`.
    pub fn screen_lines(&mut self, lines: &[u8], ts: &Arc<str>) {
        let start = self.core.out.len();
        self.feed(Stream::Pty, lines, ts);
        self.drop_prompts_seen_live(start);
    }

    /// Prompts among the records from `start` on that were recorded from a live row already.
    fn drop_prompts_seen_live(&mut self, start: usize) {
        let prompts = &mut self.screen.recorded;
        if prompts.is_empty() {
            return;
        }
        let mut dropped = 0;
        let mut i = start;
        while i < self.core.out.len() {
            let again = match &self.core.out[i] {
                Record::Event(e) if &*e.event_type == super::PROMPT => {
                    let key = words(e.original_line.as_deref().unwrap_or(""));
                    match prompts.get_mut(&key) {
                        Some(n) => {
                            *n -= 1;
                            if *n == 0 {
                                prompts.remove(&key);
                            }
                            true
                        }
                        None => false,
                    }
                }
                _ => false,
            };
            if again {
                self.core.out.remove(i);
                dropped += 1;
            } else {
                i += 1;
            }
        }
        self.core.events -= dropped;
    }

    /// The live rows at a settle: rows with words not on the screen at the previous settle
    /// go to the prompt rules.
    pub fn screen_prompts(&mut self, rows: &[String], ts: &Arc<str>) {
        let now: HashSet<String> = rows.iter().map(|r| words(r)).collect();
        let before = std::mem::replace(&mut self.screen.on_screen, now);
        if self.matcher.prompt_rules.is_empty() {
            return;
        }
        for row in rows {
            let key = words(row);
            if key.is_empty() || before.contains(&key) {
                continue;
            }
            let start = self.core.out.len();
            self.core.prompt_row(&self.matcher, row, ts);
            for r in &self.core.out[start..] {
                if let Record::Event(e) = r {
                    if &*e.event_type == super::PROMPT {
                        let k = words(e.original_line.as_deref().unwrap_or(""));
                        *self.screen.recorded.entry(k).or_default() += 1;
                    }
                }
            }
        }
    }
}

impl super::Core {
    /// Prompt rules on one live row (at most one prompt, the riskiest), numbered as the
    /// line it would become next.
    fn prompt_row(&mut self, matcher: &super::Matcher, row: &str, ts: &Arc<str>) {
        let text = crate::lines::clean_line(row.as_bytes());
        let hits = matcher.prompt_set().matches(&text);
        if !hits.matched_any() {
            return;
        }
        let stored = self.redactor.redact(&text);
        let line: Arc<str> = Arc::from(&*stored);
        let order = matcher.emission_order(
            &hits
                .iter()
                .map(|i| matcher.prompt_rules[i])
                .collect::<Vec<_>>(),
            &[],
            |_| true,
            Stream::Pty,
        );
        let line_number = self.line_number + 1;
        let mut prompt_done = false;
        for idx in order {
            let r = &matcher.rules[idx];
            if prompt_done && r.is_prompt_event() {
                continue;
            }
            let emitted = self.emit(
                idx,
                r,
                Stream::Pty,
                &stored,
                line.clone(),
                line_number,
                false,
                true,
                ts,
                None,
            );
            prompt_done |= emitted && r.is_prompt_event();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::rules::{RuleBook, Source};
    use crate::extract::{Matcher, Redactor};

    fn extractor() -> Extractor {
        let book = RuleBook::load(&[Source::Builtin {
            name: "t.toml",
            text: r#"
[[pattern]]
name = "proceed"
event_type = "prompt"
regex = 'Do you want to proceed\?'
prompt = true
samples = ["Do you want to proceed?"]
[[pattern]]
name = "bash"
event_type = "command"
regex = '● Bash\((?P<value>.+)\)'
samples = ["● Bash(ls)"]
"#,
        }])
        .unwrap();
        let m = Arc::new(Matcher::new(&book, None).unwrap());
        let r = Arc::new(Redactor::new(&book, true).unwrap());
        Extractor::new(m, r, 1024)
    }

    fn names(x: &mut Extractor) -> Vec<String> {
        x.take()
            .into_iter()
            .filter_map(|r| match r {
                Record::Event(e) => Some(format!("{}:{}", e.pattern, e.stream)),
                _ => None,
            })
            .collect()
    }

    fn rows(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_question_is_recorded_once_per_appearance_and_not_again_when_committed() {
        let mut x = extractor();
        let ts: Arc<str> = "t".into();
        let dialog = rows(&["● Bash(gcc a.c)", " Do you want to proceed?", " ❯ 1. Yes"]);
        x.screen_prompts(&dialog, &ts);
        assert_eq!(names(&mut x), ["proceed:pty"]);
        // Redrawn, still there: nothing new.
        x.screen_prompts(&dialog, &ts);
        assert!(names(&mut x).is_empty());
        // Answered: gone from the screen; then the next command asks again.
        x.screen_prompts(&rows(&["● Bash(gcc a.c)", "  ⎿  ok"]), &ts);
        x.screen_prompts(&rows(&["● Bash(make)", " Do you want to proceed?"]), &ts);
        assert_eq!(names(&mut x), ["proceed:pty"]);
        // Both questions scroll into history later: the commands are recorded, the
        // prompts (already recorded) are not recorded twice.
        for l in [
            "● Bash(gcc a.c)",
            " Do you want to proceed?",
            "● Bash(make)",
            " Do you want to proceed?",
        ] {
            x.screen_lines(format!("{l}\n").as_bytes(), &ts);
        }
        assert_eq!(names(&mut x), ["bash:pty", "bash:pty"]);
        assert_eq!(x.events(), 4);
        // A third one seen only in history is recorded.
        x.screen_lines(b" Do you want to proceed?\n", &ts);
        assert_eq!(names(&mut x), ["proceed:pty"]);
    }
}
