//! The text rules' regexes as a few `RegexSet`s instead of one.
//!
//! One set of every rule is one lazy DFA whose states are *combinations* of the rules'
//! partial matches. Rules anchored at the line start die within a few bytes on most lines,
//! but in one set they are combined with the unanchored rules (paths, URLs, prompts) that
//! run to the end of every line, and with the `.+$` tails of the anchored ones that did
//! start: on varied text the number of combinations outgrows the DFA's cache, which is then
//! cleared and rebuilt over and over. On the text of a PTY session (lines of output and
//! typed echo mixed on the screen) one set spent most of its time building DFA states:
//! 20 µs a line against 3.6 µs on the benchmark's lines (docs/PERFORMANCE.md).
//!
//! Apart, each set's states are combinations within its own kind only: the anchored set
//! reaches a dead state after a line's first bytes unless a rule's start matches, and the
//! unanchored set is a handful of rules. Which rules match is the same either way; only the
//! cost changes.

use regex::{RegexSet, RegexSetBuilder};
use regex_syntax::hir::Look;

/// Compile-size limit of each set (a hostile rule file is refused by the per-rule limit).
const SET_SIZE_LIMIT: usize = 256 << 20;

/// Rules matched per line: indexes into the rules the sets were built from.
#[derive(Debug)]
pub struct RuleSets {
    groups: Vec<(RegexSet, Vec<usize>)>,
}

impl RuleSets {
    /// Sets over `sources` (each a rule's regex as the set sees it), grouped by whether the
    /// rule is anchored at the start of the line.
    pub fn new(sources: &[String]) -> Result<RuleSets, String> {
        let (mut anchored, mut floating) = (Vec::new(), Vec::new());
        for (i, s) in sources.iter().enumerate() {
            if starts_anchored(s) {
                anchored.push(i);
            } else {
                floating.push(i);
            }
        }
        let mut groups = Vec::new();
        for members in [anchored, floating] {
            if members.is_empty() {
                continue;
            }
            let set = RegexSetBuilder::new(members.iter().map(|&i| sources[i].as_str()))
                .size_limit(SET_SIZE_LIMIT)
                .build()
                .map_err(|e| format!("the rule set cannot be compiled as a whole: {e}"))?;
            groups.push((set, members));
        }
        Ok(RuleSets { groups })
    }

    /// No rules.
    pub fn empty() -> RuleSets {
        RuleSets { groups: Vec::new() }
    }

    /// The rules whose regex matches somewhere in `text`, in ascending order.
    pub fn matches(&self, text: &str) -> Vec<usize> {
        let mut hits = Vec::new();
        for (set, members) in &self.groups {
            let m = set.matches(text);
            if m.matched_any() {
                hits.extend(m.iter().map(|j| members[j]));
            }
        }
        if self.groups.len() > 1 {
            hits.sort_unstable();
        }
        hits
    }
}

/// Whether every match of `src` starts at the start of the text (or of a line).
fn starts_anchored(src: &str) -> bool {
    regex_syntax::parse(src).is_ok_and(|hir| {
        let prefix = hir.properties().look_set_prefix();
        prefix.contains(Look::Start) || prefix.contains(Look::StartLF)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets(srcs: &[&str]) -> RuleSets {
        RuleSets::new(&srcs.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("sets")
    }

    #[test]
    fn matches_are_the_same_as_one_set_in_rule_order() {
        let srcs = [
            r"https?://\S+",
            r"^error(?:\[E\d+\])?: (?P<value>.+)$",
            r"(?i:^warning: .+)",
            r"[A-Za-z0-9_./-]+\.rs:\d+",
            r"(?m)^\$ (?P<value>.+)$",
        ];
        let s = sets(&srcs);
        assert_eq!(s.groups.len(), 2);
        let one = RegexSet::new(srcs).expect("one set");
        for line in [
            "error[E0308]: mismatched types in src/main.rs:3 see https://x.org/a",
            "WARNING: unused in lib.rs:9",
            "$ cargo test",
            "nothing here",
            "",
        ] {
            let want: Vec<usize> = one.matches(line).iter().collect();
            assert_eq!(s.matches(line), want, "{line:?}");
        }
    }

    #[test]
    fn anchoring_is_read_from_the_regex_not_its_text() {
        assert!(starts_anchored(r"^a"));
        assert!(starts_anchored(r"(?:^a|^b)"));
        assert!(starts_anchored(r"(?i:^a)"));
        assert!(starts_anchored(r"(?m)^a"));
        assert!(!starts_anchored(r"a^?"));
        assert!(!starts_anchored(r"(?:^a|b)"));
        assert!(!starts_anchored(r"\^a"));
        assert!(RuleSets::empty().matches("x").is_empty());
    }
}
