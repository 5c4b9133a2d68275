//! Which patterns of a set match somewhere in a line: one walk of a lazy DFA.
//!
//! regex-automata answers this with an overlapping search that returns to its caller at every
//! position where some pattern's match ends, once for each pattern ending there, and is
//! entered again for the next one. A rule with a `.*` or `[^…]+$` tail ends a match at every
//! byte after its start, so on a line that holds an event the search came back dozens of
//! times, and each return and re-entry cost more than the transitions it made (the sets were
//! ~40 instructions per byte of such lines). Only the *set* of patterns is wanted here, and a
//! DFA state names every pattern whose match ends there, so this walk reads a match state's
//! patterns once and keeps going: the same answer, in one pass, with a plain table lookup per
//! byte.
//!
//! Built as `regex::RegexSet` builds its meta regex (the same NFA configuration, the same
//! lazy DFA settings), and answering as its `which_overlapping_matches` does: if the lazy DFA
//! gives up (its cache cleared too often for the bytes it searched) or quits (a Unicode word
//! boundary before a non-ASCII byte), the PikeVM answers instead, as the meta regex's own
//! fallback does.

use regex_automata::hybrid::dfa::{self, DFA};
use regex_automata::hybrid::LazyStateID;
use regex_automata::nfa::thompson::{self, pikevm::PikeVM, WhichCaptures};
use regex_automata::util::look::LookMatcher;
use regex_automata::{Input, MatchKind, PatternSet};
use regex_syntax::hir::Hir;

/// The lazy DFA's cache, as the meta regex sizes it.
const CACHE_CAPACITY: usize = 2 << 20;

#[derive(Debug)]
pub struct WhichSet {
    dfa: DFA,
    pikevm: PikeVM,
}

/// One thread's caches for a [`WhichSet`].
#[derive(Debug, Clone)]
pub struct WhichCache {
    dfa: dfa::Cache,
    pikevm: thompson::pikevm::Cache,
}

impl WhichSet {
    /// Every pattern in `patterns`, as a set; `size_limit` bounds the compiled NFA.
    #[cfg(test)]
    pub fn new(patterns: &[&str], size_limit: usize) -> Result<WhichSet, String> {
        let hirs = patterns
            .iter()
            .map(|p| regex_syntax::parse(p).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        WhichSet::from_hirs(&hirs.iter().collect::<Vec<_>>(), size_limit)
    }

    /// The set of patterns parsed (with `regex_syntax`'s defaults, which are `regex`'s) as
    /// `hirs`: the caller parsed them already for what it reads from their syntax.
    pub fn from_hirs(hirs: &[&Hir], size_limit: usize) -> Result<WhichSet, String> {
        let nfa = thompson::Compiler::new()
            .configure(
                thompson::Config::new()
                    .utf8(true)
                    .nfa_size_limit(Some(size_limit))
                    .shrink(false)
                    .which_captures(WhichCaptures::None)
                    .look_matcher(LookMatcher::new()),
            )
            .build_many_from_hir(hirs)
            .map_err(|e| e.to_string())?;
        let dfa = DFA::builder()
            .configure(
                DFA::config()
                    .match_kind(MatchKind::All)
                    .unicode_word_boundary(true)
                    .cache_capacity(CACHE_CAPACITY)
                    .skip_cache_capacity_check(true)
                    .minimum_cache_clear_count(Some(3))
                    .minimum_bytes_per_state(Some(10)),
            )
            .build_from_nfa(nfa.clone())
            .map_err(|e| e.to_string())?;
        let pikevm = PikeVM::builder()
            .configure(PikeVM::config().match_kind(MatchKind::All))
            .build_from_nfa(nfa)
            .map_err(|e| e.to_string())?;
        Ok(WhichSet { dfa, pikevm })
    }

    pub fn pattern_len(&self) -> usize {
        self.pikevm.pattern_len()
    }

    pub fn create_cache(&self) -> WhichCache {
        WhichCache {
            dfa: self.dfa.create_cache(),
            pikevm: self.pikevm.create_cache(),
        }
    }

    /// Adds to `set` every pattern that matches somewhere in `text`.
    pub fn which(&self, cache: &mut WhichCache, text: &str, set: &mut PatternSet) {
        if self.walk(&mut cache.dfa, text.as_bytes(), set).is_err() {
            set.clear();
            self.pikevm
                .which_overlapping_matches(&mut cache.pikevm, &Input::new(text), set);
        }
    }

    /// The lazy DFA's answer, or `Err` where it cannot give one.
    fn walk(&self, cache: &mut dfa::Cache, hay: &[u8], set: &mut PatternSet) -> Result<(), ()> {
        let dfa = &self.dfa;
        let mut sid = dfa
            .start_state_forward(cache, &Input::new(hay))
            .map_err(drop)?;
        // The match state whose patterns are in `set` already, and the cache generation it
        // belongs to: a cleared cache may give its id to another state.
        let mut recorded: Option<(LazyStateID, usize)> = None;
        cache.search_start(0);
        for (at, &b) in hay.iter().enumerate() {
            sid = if sid.is_tagged() {
                cache.search_update(at);
                dfa.next_state(cache, sid, b).map_err(drop)?
            } else {
                let next = dfa.next_state_untagged(cache, sid, b);
                if next.is_unknown() {
                    cache.search_update(at);
                    dfa.next_state(cache, sid, b).map_err(drop)?
                } else {
                    next
                }
            };
            if sid.is_tagged() {
                if sid.is_match() {
                    record(dfa, cache, sid, &mut recorded, set);
                } else if sid.is_dead() {
                    cache.search_finish(at);
                    return Ok(());
                } else if sid.is_quit() {
                    cache.search_finish(at);
                    return Err(());
                }
            }
        }
        sid = dfa.next_eoi_state(cache, sid).map_err(drop)?;
        if sid.is_match() {
            record(dfa, cache, sid, &mut recorded, set);
        }
        cache.search_finish(hay.len());
        Ok(())
    }
}

/// Puts a match state's patterns into `set`, unless it is the state recorded last.
fn record(
    dfa: &DFA,
    cache: &dfa::Cache,
    sid: LazyStateID,
    recorded: &mut Option<(LazyStateID, usize)>,
    set: &mut PatternSet,
) {
    let now = (sid, cache.clear_count());
    if *recorded == Some(now) {
        return;
    }
    *recorded = Some(now);
    for i in 0..dfa.match_len(cache, sid) {
        let _ = set.try_insert(dfa.match_pattern(cache, sid, i));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::RegexSet;

    fn which(set: &WhichSet, cache: &mut WhichCache, text: &str) -> Vec<usize> {
        let mut ps = PatternSet::new(set.pattern_len());
        set.which(cache, text, &mut ps);
        ps.iter().map(|p| p.as_usize()).collect()
    }

    /// Against `regex::RegexSet` on patterns with tails that end a match at every later byte,
    /// anchors, ASCII and Unicode word boundaries, empty matches, and non-ASCII text.
    #[test]
    fn the_same_patterns_as_a_regex_set() {
        let pats = [
            r"^error(?:\[E[0-9]+\])?: .+$",
            r"[A-Za-z0-9_./-]+\.rs:[0-9]+(?::[0-9]+)?",
            r"(?-u:\b)rm[ \t]+-rf",
            r"\bwörd\b",
            r"https?://[^ ]+",
            r"x*",
            r"[0-9]+ passed; [0-9]+ failed",
            r"\?[ \t]*$",
            r"^$",
        ];
        let ours = WhichSet::new(&pats, 1 << 24).expect("builds");
        let theirs = RegexSet::new(pats).expect("builds");
        let mut cache = ours.create_cache();
        let lines = [
            "",
            "error[E0425]: cannot find value `x` in src/main.rs:12:5",
            "warning: unused at lib/a.rs:3",
            "then rm -rf build and rm  -rf again",
            "ein wörd hier, wörder nicht",
            "see https://example.com/a?b=c and http://x",
            "12 passed; 0 failed",
            "Proceed?   ",
            "naïve café ☕ — no rule here",
            "error: x",
            "xxxx",
        ];
        for line in lines {
            let want: Vec<usize> = theirs.matches(line).into_iter().collect();
            assert_eq!(which(&ours, &mut cache, line), want, "{line:?}");
            // The lazy DFA answered, not the fallback, except where a Unicode word boundary
            // meets a non-ASCII byte.
            let mut ps = PatternSet::new(ours.pattern_len());
            let walked = ours.walk(&mut cache.dfa, line.as_bytes(), &mut ps);
            assert_eq!(walked.is_ok(), line.is_ascii(), "{line:?}");
        }
        // Every line again with the cache warm, and in another order.
        for line in lines.iter().rev() {
            let want: Vec<usize> = theirs.matches(line).into_iter().collect();
            assert_eq!(which(&ours, &mut cache, line), want, "{line:?}");
        }
    }

    /// A tiny cache is cleared over and over (and the DFA gives up, so the PikeVM answers):
    /// the answer stays the same.
    #[test]
    fn a_cache_cleared_mid_line_gives_the_same_answer() {
        let pats = [r"[a-z]{3}[0-9]{2}[a-z]", r"q[^z]{0,20}z", r"(?:ab|cd|ef)+g"];
        let nfa_set = WhichSet::new(&pats, 1 << 24).expect("builds");
        let small = WhichSet {
            dfa: DFA::builder()
                .configure(
                    DFA::config()
                        .match_kind(MatchKind::All)
                        .cache_capacity(0)
                        .skip_cache_capacity_check(true)
                        .minimum_cache_clear_count(Some(3))
                        .minimum_bytes_per_state(Some(10)),
                )
                .build_from_nfa(nfa_set.pikevm.get_nfa().clone())
                .expect("builds"),
            pikevm: nfa_set.pikevm,
        };
        let theirs = RegexSet::new(pats).expect("builds");
        let mut cache = small.create_cache();
        let mut text = String::new();
        for i in 0..200u32 {
            text.push_str(&format!(
                "ab{}q{}x ",
                i % 7,
                "cdef".repeat((i % 5) as usize)
            ));
            if i % 9 == 0 {
                text.push_str("abc12d z abcdg ");
            }
            let want: Vec<usize> = theirs.matches(&text).into_iter().collect();
            assert_eq!(which(&small, &mut cache, &text), want, "{text:?}");
        }
        assert!(cache.dfa.clear_count() > 0, "the cache was never cleared");
    }
}
