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
//!
//! Each set is a [`WhichSet`] (a lazy DFA walked once per line, configured as
//! `regex::RegexSet` configures its own), searched with a [`Scratch`] the extraction thread
//! keeps: no pattern set allocated and no cache taken from a pool per line. Before a set is
//! searched, a table lookup per byte asks whether the line could hold a match at all
//! ([`Filter`]): the bytes every match of the floating rules contains, the bytes the
//! anchored rules can start with. Both are read from the rules' syntax, so a user's rules get
//! them too, and a rule that needs nothing turns its set's filter off.

use std::sync::atomic::{AtomicUsize, Ordering};

use regex_automata::PatternSet;
use regex_syntax::hir::{Hir, Look};

use super::which::{WhichCache, WhichSet};

/// Compile-size limit of each set (a hostile rule file is refused by the per-rule limit).
const SET_SIZE_LIMIT: usize = 256 << 20;

/// Tells sets apart, so a [`Scratch`] is never used with a set it was not made for.
static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

/// Rules matched per line: indexes into the rules the sets were built from.
#[derive(Debug)]
pub struct RuleSets {
    id: usize,
    groups: Vec<Group>,
}

#[derive(Debug)]
struct Group {
    re: WhichSet,
    /// Indexes of the rules, by pattern id.
    members: Vec<usize>,
    /// What a line must hold for any member to match ([`Filter`]): other lines are not
    /// searched.
    filter: Option<Filter>,
}

/// What searching needs on one thread: each set's cache and match set, and the hits.
#[derive(Debug, Default)]
pub struct Scratch {
    id: usize,
    caches: Vec<(WhichCache, PatternSet)>,
    hits: Vec<usize>,
}

impl RuleSets {
    /// Sets over `sources` (each a rule's regex as the set sees it), grouped by whether the
    /// rule is anchored at the start of the line and dies early there ([`dies_early`]).
    pub fn new(sources: &[String]) -> Result<RuleSets, String> {
        // Parsed once, for where each rule goes and for what bytes its group needs.
        let hirs: Vec<Result<Hir, String>> = sources
            .iter()
            .map(|s| regex_syntax::parse(s).map_err(|e| e.to_string()))
            .collect();
        let (mut anchored, mut floating) = (Vec::new(), Vec::new());
        for (i, hir) in hirs.iter().enumerate() {
            if hir.as_ref().is_ok_and(dies_early) {
                anchored.push(i);
            } else {
                floating.push(i);
            }
        }
        let mut groups = Vec::new();
        for (members, anchored_group) in [(anchored, true), (floating, false)] {
            if members.is_empty() {
                continue;
            }
            // Built from the syntax parsed above (the compiler would parse every rule again).
            let re = members
                .iter()
                .map(|&i| hirs[i].as_ref().map_err(String::clone))
                .collect::<Result<Vec<&Hir>, String>>()
                .and_then(|hirs| WhichSet::from_hirs(&hirs, SET_SIZE_LIMIT))
                .map_err(|e| format!("the rule set cannot be compiled as a whole: {e}"))?;
            let hirs = members.iter().map(|&i| hirs[i].as_ref().ok());
            let filter = if anchored_group {
                Needed::first_of_all(hirs).map(Filter::First)
            } else {
                Needed::of_all(hirs).map(Filter::Anywhere)
            };
            groups.push(Group {
                re,
                members,
                filter,
            });
        }
        Ok(RuleSets {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            groups,
        })
    }

    /// No rules.
    pub fn empty() -> RuleSets {
        RuleSets {
            id: 0,
            groups: Vec::new(),
        }
    }

    /// The rules whose regex matches somewhere in `text`, in ascending order.
    pub fn matches<'s>(&self, scratch: &'s mut Scratch, text: &str) -> &'s [usize] {
        if scratch.id != self.id || scratch.caches.len() != self.groups.len() {
            *scratch = Scratch {
                id: self.id,
                caches: self
                    .groups
                    .iter()
                    .map(|g| (g.re.create_cache(), PatternSet::new(g.re.pattern_len())))
                    .collect(),
                hits: Vec::new(),
            };
        }
        scratch.hits.clear();
        for (g, (cache, set)) in self.groups.iter().zip(&mut scratch.caches) {
            if g.filter.as_ref().is_some_and(|f| !f.passes(text)) {
                continue;
            }
            g.re.which(cache, text, set);
            // Clearing and walking a match set visits every pattern's slot: only when
            // something matched (most lines match nothing).
            if !set.is_empty() {
                scratch
                    .hits
                    .extend(set.iter().map(|p| g.members[p.as_usize()]));
                set.clear();
            }
        }
        if self.groups.len() > 1 {
            scratch.hits.sort_unstable();
        }
        &scratch.hits
    }
}

/// What a line needs for a group's rules to be worth searching for.
#[derive(Debug)]
enum Filter {
    /// One of these bytes somewhere ([`Needed::of_all`]).
    Anywhere(Needed),
    /// One of these bytes first: every rule of the group matches at the line's start only
    /// ([`Needed::first_of_all`]).
    First(Needed),
}

impl Filter {
    fn passes(&self, text: &str) -> bool {
        match self {
            Filter::Anywhere(n) => n.any_in(text),
            Filter::First(n) => text.as_bytes().first().is_some_and(|&b| n.0[b as usize]),
        }
    }
}

/// Bytes of which every match contains at least one: the floating set reads every byte of
/// every line even on lines that cannot hold a path, a URL, a traceback frame or a question,
/// and a pass looking these bytes up in a table is cheaper per byte and stops at the first it
/// finds. (Measured when the set was searched with regex-automata's overlapping search, at
/// ~1,850 instructions a line of the standard input, the pass cost a tenth of that; the walk
/// in `which.rs` is ~16 instructions a byte, still more than the table's.)
///
/// Found from each rule's syntax (no rule names), soundly: a literal needs any one of its
/// bytes (the rarest is taken), a class one of its members' first bytes, a concatenation
/// what its rarest part needs, an alternation what every branch needs; a part that can match
/// the empty string needs nothing. A group whose bytes include a space or a lower-case
/// letter would find one on nearly every line, so it gets no filter.
#[derive(Debug, Clone, PartialEq)]
struct Needed([bool; 256]);

impl Needed {
    /// What every rule of a group needs, or `None` if some rule needs nothing.
    fn of_all<'a>(hirs: impl Iterator<Item = Option<&'a Hir>>) -> Option<Needed> {
        let mut all = Needed([false; 256]);
        for hir in hirs {
            let one = Needed::of(hir?)?;
            all.add(&one);
        }
        let common = |b: u8| all.0[b as usize];
        if common(b' ') || (b'a'..=b'z').any(common) {
            return None;
        }
        Some(all)
    }

    fn of(hir: &Hir) -> Option<Needed> {
        use regex_syntax::hir::{Class, HirKind};
        let mut n = Needed([false; 256]);
        match hir.kind() {
            HirKind::Empty | HirKind::Look(_) => return None,
            HirKind::Literal(l) => {
                let rarest = l.0.iter().copied().min_by_key(|&b| rank(b))?;
                n.0[rarest as usize] = true;
            }
            HirKind::Class(Class::Bytes(c)) => {
                for r in c.ranges() {
                    (r.start()..=r.end()).for_each(|b| n.0[b as usize] = true);
                }
            }
            HirKind::Class(Class::Unicode(c)) => {
                for r in c.ranges() {
                    let (lo, hi) = (u32::from(r.start()), u32::from(r.end()));
                    (lo..=hi.min(0x7f)).for_each(|b| n.0[b as usize] = true);
                    if hi >= 0x80 {
                        // Every other character's UTF-8 form starts with one of these.
                        (0xc2..=0xf4).for_each(|b| n.0[b] = true);
                    }
                }
            }
            HirKind::Repetition(r) if r.min == 0 => return None,
            HirKind::Repetition(r) => return Needed::of(&r.sub),
            HirKind::Capture(c) => return Needed::of(&c.sub),
            HirKind::Concat(v) => {
                return v.iter().filter_map(Needed::of).min_by_key(Needed::weight)
            }
            HirKind::Alternation(v) => {
                for h in v {
                    n.add(&Needed::of(h)?);
                }
            }
        }
        // A class with no members matches nothing: it needs nothing it could find.
        n.0.contains(&true).then_some(n)
    }

    /// The bytes a match of any of these rules, all anchored at the start, can begin with;
    /// `None` if one can match the empty string there. The anchored set reads only a few
    /// bytes of a line, but a search costs a few hundred instructions however short: a line
    /// that starts with none of these (most narration) is not searched.
    fn first_of_all<'a>(hirs: impl Iterator<Item = Option<&'a Hir>>) -> Option<Needed> {
        let mut all = Needed([false; 256]);
        for hir in hirs {
            let (one, empty) = Needed::first(hir?);
            if empty {
                return None;
            }
            all.add(&one);
        }
        Some(all)
    }

    /// The bytes a non-empty match of `hir` can begin with, and whether it can match the
    /// empty string. Zero-width assertions are taken as passing: the answer stays sound.
    fn first(hir: &Hir) -> (Needed, bool) {
        use regex_syntax::hir::HirKind;
        let mut n = Needed([false; 256]);
        match hir.kind() {
            HirKind::Empty | HirKind::Look(_) => (n, true),
            HirKind::Literal(l) => {
                // A literal in the syntax tree is never empty.
                if let Some(&b) = l.0.first() {
                    n.0[b as usize] = true;
                }
                (n, l.0.is_empty())
            }
            HirKind::Class(_) => (Needed::of(hir).unwrap_or(n), false),
            HirKind::Repetition(r) => {
                let (sub, empty) = Needed::first(&r.sub);
                (sub, empty || r.min == 0)
            }
            HirKind::Capture(c) => Needed::first(&c.sub),
            HirKind::Concat(v) => {
                // The first bytes of each part, up to and including the first that cannot
                // match empty.
                for h in v {
                    let (sub, empty) = Needed::first(h);
                    n.add(&sub);
                    if !empty {
                        return (n, false);
                    }
                }
                (n, true)
            }
            HirKind::Alternation(v) => {
                let mut any_empty = false;
                for h in v {
                    let (sub, empty) = Needed::first(h);
                    n.add(&sub);
                    any_empty |= empty;
                }
                (n, any_empty)
            }
        }
    }

    /// How likely a line is to hold one of these bytes, roughly ([`rank`]).
    fn weight(&self) -> u32 {
        (0..=255u8).filter(|&b| self.0[b as usize]).map(rank).sum()
    }

    fn add(&mut self, other: &Needed) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a |= b;
        }
    }

    fn any_in(&self, text: &str) -> bool {
        text.bytes().any(|b| self.0[b as usize])
    }
}

/// How common a byte is in text, roughly (higher is more common): what a literal's rarest
/// byte and a concatenation's rarest part are chosen by. A space or a lower-case letter
/// outweighs any set of other bytes, as a group needing one gets no filter at all.
fn rank(b: u8) -> u32 {
    match b {
        b' ' => 2000,
        b'e' | b't' | b'a' | b'o' | b'i' | b'n' | b's' | b'r' => 1500,
        b'a'..=b'z' => 1000,
        b'0'..=b'9' => 140,
        b'A'..=b'Z' => 110,
        b'.' | b',' | b'-' | b'_' | b'/' | b':' | b'\t' | b'(' | b')' | b'=' => 90,
        0x21..=0x7e => 50,
        0x80..=0xff => 40,
        _ => 10,
    }
}

/// Whether an anchored rule can read on through ordinary text before anything it requires:
/// `^[ \t]*(?P<value>.*?(?:proceed|…))` reads every line to its end, as does a run of up to
/// seven words before a `...`. In the anchored set such a rule keeps the automaton alive
/// on every line (46 of the standard input's 47 bytes a line on average, where the others
/// die within 6), so it goes with the floating rules, whose set reads every byte anyway:
/// the anchored set's time fell from 18.7 to 7.7 ms per 100,000 lines with the three
/// built-in rules of this kind out of it.
///
/// "Ordinary text" is words and spaces: the rule has a repetition (at most more than once)
/// that can match both a space and a letter, reachable from the start without first
/// matching a literal.
fn reads_on_through_prose(hir: &regex_syntax::hir::Hir) -> bool {
    use regex_syntax::hir::{Hir, HirKind};

    #[derive(PartialEq)]
    enum Walk {
        /// Nothing required yet: what follows is read too.
        Go,
        /// A literal must match first: ordinary text stops here.
        Stop,
        /// A repetition that reads words and spaces.
        Prose,
    }
    /// Whether `hir` can match a space and can match an ASCII letter (over its whole body).
    fn words_and_spaces(hir: &Hir) -> bool {
        let mut bytes = [false; 2]; // space, letter
        fn visit(h: &Hir, b: &mut [bool; 2]) {
            match h.kind() {
                HirKind::Literal(l) => {
                    b[0] |= l.0.contains(&b' ');
                    b[1] |= l.0.iter().any(u8::is_ascii_alphabetic);
                }
                HirKind::Class(c) => {
                    let has = |ch: char| match c {
                        regex_syntax::hir::Class::Unicode(u) => {
                            u.ranges().iter().any(|r| r.start() <= ch && ch <= r.end())
                        }
                        regex_syntax::hir::Class::Bytes(by) => by
                            .ranges()
                            .iter()
                            .any(|r| r.start() <= ch as u8 && ch as u8 <= r.end()),
                    };
                    b[0] |= has(' ');
                    b[1] |= has('a') || has('A');
                }
                HirKind::Repetition(r) => visit(&r.sub, b),
                HirKind::Capture(c) => visit(&c.sub, b),
                HirKind::Concat(v) | HirKind::Alternation(v) => v.iter().for_each(|h| visit(h, b)),
                HirKind::Empty | HirKind::Look(_) => {}
            }
        }
        visit(hir, &mut bytes);
        bytes == [true, true]
    }
    fn walk(h: &Hir) -> Walk {
        match h.kind() {
            HirKind::Literal(_) => Walk::Stop,
            HirKind::Empty | HirKind::Look(_) | HirKind::Class(_) => Walk::Go,
            HirKind::Capture(c) => walk(&c.sub),
            HirKind::Repetition(r) if r.max.is_none_or(|m| m > 1) && words_and_spaces(&r.sub) => {
                Walk::Prose
            }
            HirKind::Repetition(r) => match walk(&r.sub) {
                Walk::Prose => Walk::Prose,
                // An optional part that needs a literal can be skipped.
                Walk::Stop if r.min == 0 => Walk::Go,
                w => w,
            },
            HirKind::Concat(v) => v
                .iter()
                .map(walk)
                .find(|w| *w != Walk::Go)
                .unwrap_or(Walk::Go),
            HirKind::Alternation(v) => {
                let ws: Vec<Walk> = v.iter().map(walk).collect();
                if ws.contains(&Walk::Prose) {
                    Walk::Prose
                } else if ws.iter().all(|w| *w == Walk::Stop) {
                    Walk::Stop
                } else {
                    Walk::Go
                }
            }
        }
    }
    walk(hir) == Walk::Prose
}

/// Whether every match starts at the start of the text. (A multi-line `(?m)^` can match
/// after any line end, so a set holding one is searched along the whole text: such a rule
/// goes with the floating ones.)
fn starts_anchored(hir: &regex_syntax::hir::Hir) -> bool {
    hir.properties().look_set_prefix().contains(Look::Start)
}

/// Whether a rule belongs in the anchored set: anchored, and not reading on through prose.
fn dies_early(hir: &Hir) -> bool {
    starts_anchored(hir) && !reads_on_through_prose(hir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hir(src: &str) -> regex_syntax::hir::Hir {
        regex_syntax::parse(src).expect("parses")
    }

    fn sets(srcs: &[&str]) -> RuleSets {
        RuleSets::new(&srcs.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("sets")
    }

    #[test]
    fn rules_that_read_on_through_prose_are_told_apart() {
        for long in [
            r"^[ \t│]*(?P<value>.*?(?:Do you want to|Proceed\?))",
            r"^(?:> )?(?P<value>[A-Za-z0-9_-]+(?: [A-Za-z0-9_-]+){0,6})\.{3,}Failed$",
        ] {
            assert!(reads_on_through_prose(&hir(long)), "{long}");
        }
        for short in [
            r"^[ \t]*(?:⎿[ \t]+)?(?P<path>[^ \t:]+):(?P<line>[0-9]+): (?P<value>.+)$",
            r"^(?:(?:\([^)]{1,40}\) )?(?:[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+:[^ \t$]*)?\$ |exec )(?P<value>.+)$",
            r"^error(?:\[E\d+\])?: (?P<value>.+)$",
            r"^[ \t]*Tests:[ \t]+(?P<total>[0-9]+) total",
        ] {
            assert!(!reads_on_through_prose(&hir(short)), "{short}");
        }
        // Of the built-in rules, exactly the two "anything, then a question" prompts and the
        // pre-commit hook's "up to seven words, then dots".
        let book = crate::extract::rules::RuleBook::builtin().expect("built-in rules");
        let mut names: Vec<String> = book
            .rules
            .iter()
            .filter(|r| {
                let h = hir(&r.set_source());
                starts_anchored(&h) && reads_on_through_prose(&h)
            })
            .map(|r| r.name.to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "precommit_hook_failed",
                "prompt_critical_risk",
                "prompt_high_risk"
            ]
        );
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
        let s = same_as_one_set(
            &srcs,
            &[
                "error[E0308]: mismatched types in src/main.rs:3 see https://x.org/a",
                "WARNING: unused in lib.rs:9",
                "$ cargo test",
                "nothing here",
                "",
            ],
        );
        assert_eq!(s.groups.len(), 2);
    }

    /// The sets of `srcs`, after checking they give what one `RegexSet` gives on `lines`.
    fn same_as_one_set(srcs: &[&str], lines: &[&str]) -> RuleSets {
        let s = sets(srcs);
        let one = regex::RegexSet::new(srcs).expect("one set");
        let mut scratch = Scratch::default();
        for line in lines {
            let want: Vec<usize> = one.matches(line).iter().collect();
            assert_eq!(s.matches(&mut scratch, line), want, "{line:?}");
        }
        s
    }

    /// The bytes of `n`, as characters in byte order.
    fn chars(n: &Needed) -> String {
        n.0.iter()
            .enumerate()
            .filter(|(_, on)| **on)
            .map(|(b, _)| b as u8 as char)
            .collect()
    }

    fn needed(src: &str) -> Option<String> {
        Needed::of(&hir(src)).as_ref().map(chars)
    }

    #[test]
    fn the_bytes_a_rule_needs_are_read_from_its_syntax() {
        assert_eq!(needed(r"https?://\S+").as_deref(), Some(":"));
        assert_eq!(needed(r"[A-Za-z_]+\.rs:\d+").as_deref(), Some("."));
        // Each branch of an alternation; the rarest part of a concatenation.
        assert_eq!(needed(r"(?:File |at )x\(").as_deref(), Some("("));
        assert_eq!(needed(r"(?:\[y/n\]|\?$)").as_deref(), Some("?["));
        // Case-insensitive literals are classes: both cases are needed.
        assert_eq!(needed(r"(?i:q)").as_deref(), Some("Qq"));
        // Nothing needed: empty matches, optional parts, anchors only.
        for none in [r"", r"^", r"(?:\.rs)?", r"a*", r"(?:x|)", r"\b"] {
            assert_eq!(needed(none), None, "{none:?}");
        }
        // A class beyond ASCII needs the lead bytes of UTF-8.
        let n = Needed::of(&hir(r"[é-ü]")).expect("needs");
        assert!(n.any_in("é") && n.any_in("ü") && !n.any_in("e"));
    }

    #[test]
    fn a_line_without_the_needed_bytes_matches_none_of_the_rules() {
        // Every sample of every built-in rule that its group filters contains a byte the
        // group needs (a rule's samples must match it: `RuleBook::load` checks).
        let book = crate::extract::rules::RuleBook::builtin().expect("built-in rules");
        let floating: Vec<_> = book
            .rules
            .iter()
            .filter(|r| !dies_early(&hir(&r.set_source())))
            .collect();
        let hirs: Vec<Hir> = floating.iter().map(|r| hir(&r.set_source())).collect();
        let n = Needed::of_all(hirs.iter().map(Some))
            .expect("the built-in floating rules need some bytes");
        let mut checked = 0;
        for r in &floating {
            let re = regex::Regex::new(&r.set_source()).expect("rule");
            for s in r.samples.iter().filter(|s| re.is_match(s)) {
                assert!(n.any_in(s), "{}: {s:?}", r.name);
                checked += 1;
            }
        }
        assert!(checked > 20, "{checked} samples");
        // The prose of an agent's narration is not searched by that set.
        assert!(!n.any_in("then the parser checks the module again and reads the output"));
        // A group needing a space or a lower-case letter is not filtered at all.
        let of_all = |srcs: [&str; 2]| Needed::of_all(srcs.map(hir).iter().map(Some));
        assert_eq!(of_all(["foo", r"\d+:"]), None);
        assert_eq!(of_all(["x?", r"\d+:"]), None);
        assert!(of_all([r"\d+:", r"\("]).is_some());
        // The sets give the same rules as one set, filtered group or not.
        let srcs = [
            r"https?://\S+",
            r"[a-z]+\.rs:\d+",
            r"^error: (?P<value>.+)$",
        ];
        let s = same_as_one_set(
            &srcs,
            &[
                "error: in x.rs:3",
                "see http://x.org",
                "plain words",
                "a:b",
                "",
            ],
        );
        assert!(s
            .groups
            .iter()
            .any(|g| matches!(g.filter, Some(Filter::Anywhere(_)))));
    }

    #[test]
    fn the_bytes_an_anchored_rule_can_start_with_are_read_from_its_syntax() {
        let first =
            |src: &str| Needed::first_of_all(std::iter::once(Some(&hir(src)))).map(|n| chars(&n));
        assert_eq!(first(r"^error: .+").as_deref(), Some("e"));
        assert_eq!(first(r"^[ \t]*(?:x )?warning").as_deref(), Some("\t wx"));
        assert_eq!(first(r"^(?i:ok)").as_deref(), Some("Oo"));
        assert_eq!(first(r"^(?:\$ |> )+run").as_deref(), Some("$>"));
        // A rule that can match the empty string at the start leaves a group unfiltered.
        assert_eq!(first(r"^(?:x)?"), None);
        assert_eq!(first(r"^\s*$"), None);
        // Every sample of every built-in rule of the anchored set starts with a byte the
        // set's filter lets through.
        let book = crate::extract::rules::RuleBook::builtin().expect("built-in rules");
        let anchored: Vec<Hir> = book
            .rules
            .iter()
            .map(|r| hir(&r.set_source()))
            .filter(dies_early)
            .collect();
        let n = Needed::first_of_all(anchored.iter().map(Some)).expect("a filter");
        let mut checked = 0;
        for r in &book.rules {
            if !dies_early(&hir(&r.set_source())) {
                continue;
            }
            let re = regex::Regex::new(&r.set_source()).expect("rule");
            for s in r.samples.iter().filter(|s| re.is_match(s)) {
                assert!(Filter::First(n.clone()).passes(s), "{}: {s:?}", r.name);
                checked += 1;
            }
        }
        assert!(checked > 100, "{checked} samples");
    }

    #[test]
    fn anchoring_is_read_from_the_regex_not_its_text() {
        assert!(starts_anchored(&hir(r"^a")));
        assert!(starts_anchored(&hir(r"(?:^a|^b)")));
        assert!(starts_anchored(&hir(r"(?i:^a)")));
        assert!(!starts_anchored(&hir(r"(?m)^a")));
        assert!(!starts_anchored(&hir(r"a^?")));
        assert!(!starts_anchored(&hir(r"(?:^a|b)")));
        assert!(!starts_anchored(&hir(r"\^a")));
        assert!(RuleSets::empty()
            .matches(&mut Scratch::default(), "x")
            .is_empty());
        // A scratch made for one set is remade for another.
        let (a, b) = (sets(&["^a"]), sets(&["b", "^c"]));
        let mut scratch = Scratch::default();
        assert_eq!(a.matches(&mut scratch, "ab"), [0]);
        assert_eq!(b.matches(&mut scratch, "cb"), [0, 1]);
    }
}
