//! A rule's capture groups in one pass over its match, where the regex itself is not one-pass.
//!
//! `regex` finds a match's span with its lazy DFA, then walks the span again for the groups:
//! with a one-pass DFA if the regex is one-pass, otherwise with its bounded backtracker, which
//! costs 10-30 ns a byte. `path_line_col`, the rule that fires most on build output, is not
//! one-pass (where a file name's last `.` is depends on what follows it), and its groups cost
//! ~670 ns of the ~940 ns a capture took (docs/PERFORMANCE.md, issue 17, fifteenth session).
//!
//! What is ambiguous there is *inside* a group, and the groups' places do not depend on it:
//! whatever `path` matched, it cannot hold the `:` that follows it. So each group's body is
//! replaced by "any of the bytes it can hold, any number of times", and every look-around
//! assertion by nothing. Every parse of the match by the rule is then a parse by this relaxed
//! regex, group for group. If the relaxed regex is one-pass (its one-pass DFA builds: at most
//! one way on through any byte), it has at most one parse of the whole match, which must
//! therefore be the rule's: its groups are the rule's groups. The rule's own search still finds
//! the span (the lazy DFA, ~200 ns here); the one-pass DFA then walks only the matched text,
//! and unless it consumed all of it (it prefers a shorter parse, or an engine limit), the
//! groups come from `regex` as before. Written here because neither `regex` nor
//! `regex-automata` offers it; the test below compares it with `regex` on every built-in rule.

use regex_automata::dfa::onepass::{self, DFA};
use regex_automata::nfa::thompson;
use regex_automata::util::captures::Captures;
use regex_automata::{Anchored, Input, MatchKind};
use regex_syntax::hir::{self, Class, ClassBytes, ClassBytesRange, Hir, HirKind};

/// The relaxed regex's one-pass DFA, for a rule whose groups it can give.
#[derive(Debug)]
pub struct Relaxed {
    dfa: DFA,
}

/// One thread's cache and slots for a [`Relaxed`].
#[derive(Debug, Clone)]
pub struct RelaxedCache {
    cache: onepass::Cache,
    caps: Captures,
}

impl Relaxed {
    /// For the capture regex `src` (compiled by `regex` with `case_insensitive`), or `None`
    /// where nothing is gained: no groups, a regex one-pass already (then `regex` uses its own
    /// one-pass DFA), a group inside a group, or a relaxed regex that is not one-pass.
    pub fn new(src: &str, case_insensitive: bool) -> Option<Relaxed> {
        let hir = regex_syntax::ParserBuilder::new()
            .case_insensitive(case_insensitive)
            .build()
            .parse(src)
            .ok()?;
        if hir.properties().explicit_captures_len() == 0 || one_pass(&hir, true).is_some() {
            return None;
        }
        let dfa = one_pass(&relax(&hir)?, false)?;
        // The same groups as the rule's, by index.
        (dfa.get_nfa()
            .group_info()
            .group_len(regex_automata::PatternID::ZERO)
            == hir.properties().explicit_captures_len() + 1)
            .then_some(Relaxed { dfa })
    }

    pub fn create_cache(&self) -> RelaxedCache {
        RelaxedCache {
            cache: self.dfa.create_cache(),
            caps: self.dfa.create_captures(),
        }
    }

    /// The groups of the match `text[start..end]` (found by the rule's own regex), with
    /// offsets into it; `None` where `regex` must find them itself.
    pub fn groups<'c>(
        &self,
        c: &'c mut RelaxedCache,
        text: &str,
        start: usize,
        end: usize,
    ) -> Option<&'c Captures> {
        let matched = text.get(start..end)?;
        let input = Input::new(matched).anchored(Anchored::Yes);
        self.dfa
            .try_search(&mut c.cache, &input, &mut c.caps)
            .ok()?;
        let whole = c.caps.get_match()?;
        (whole.end() == matched.len()).then_some(&c.caps)
    }
}

/// Bounds on what one rule's relaxed regex may take (a rule is already refused at 4 MiB
/// compiled): beyond them the rule keeps `regex`'s own way.
const NFA_LIMIT: usize = 4 << 20;
const DFA_LIMIT: usize = 1 << 20;

/// A one-pass DFA of `hir` (leftmost-first, as `regex`), if it is one-pass.
fn one_pass(hir: &Hir, utf8: bool) -> Option<DFA> {
    let nfa = thompson::Compiler::new()
        .configure(
            thompson::Config::new()
                .utf8(utf8)
                .shrink(false)
                .nfa_size_limit(Some(NFA_LIMIT)),
        )
        .build_from_hir(hir)
        .ok()?;
    onepass::Builder::new()
        .configure(
            onepass::Config::new()
                .match_kind(MatchKind::LeftmostFirst)
                .size_limit(Some(DFA_LIMIT)),
        )
        .build_from_nfa(nfa)
        .ok()
}

/// `hir` with each group's body replaced by its bytes, any number of times, and every
/// assertion by nothing; `None` if a group holds another.
fn relax(h: &Hir) -> Option<Hir> {
    Some(match h.kind() {
        HirKind::Capture(c) => {
            if c.sub.properties().explicit_captures_len() > 0 {
                return None;
            }
            let mut bytes = [false; 256];
            bytes_of(&c.sub, &mut bytes);
            let ranges: Vec<ClassBytesRange> = (0..=255u8)
                .filter(|&b| bytes[b as usize])
                .map(|b| ClassBytesRange::new(b, b))
                .collect();
            let body = if ranges.is_empty() {
                Hir::empty()
            } else {
                Hir::repetition(hir::Repetition {
                    min: 0,
                    max: None,
                    greedy: true,
                    sub: Box::new(Hir::class(Class::Bytes(ClassBytes::new(ranges)))),
                })
            };
            Hir::capture(hir::Capture {
                index: c.index,
                name: c.name.clone(),
                sub: Box::new(body),
            })
        }
        HirKind::Look(_) => Hir::empty(),
        HirKind::Repetition(r) => Hir::repetition(hir::Repetition {
            min: r.min,
            max: r.max,
            greedy: r.greedy,
            sub: Box::new(relax(&r.sub)?),
        }),
        HirKind::Concat(v) => Hir::concat(v.iter().map(relax).collect::<Option<_>>()?),
        HirKind::Alternation(v) => Hir::alternation(v.iter().map(relax).collect::<Option<_>>()?),
        HirKind::Empty | HirKind::Literal(_) | HirKind::Class(_) => h.clone(),
    })
}

/// Marks every byte that a match of `h` can contain (more is sound: a superset).
fn bytes_of(h: &Hir, set: &mut [bool; 256]) {
    match h.kind() {
        HirKind::Literal(l) => l.0.iter().for_each(|&b| set[b as usize] = true),
        HirKind::Class(Class::Bytes(c)) => {
            for r in c.ranges() {
                (r.start()..=r.end()).for_each(|b| set[b as usize] = true);
            }
        }
        HirKind::Class(Class::Unicode(c)) => {
            for r in c.ranges() {
                let (lo, hi) = (u32::from(r.start()), u32::from(r.end()));
                (lo..=hi.min(0x7f)).for_each(|b| set[b as usize] = true);
                if hi >= 0x80 {
                    // Any byte of a longer character's UTF-8 form.
                    set[0x80..].iter_mut().for_each(|b| *b = true);
                }
            }
        }
        HirKind::Repetition(r) => bytes_of(&r.sub, set),
        HirKind::Capture(c) => bytes_of(&c.sub, set),
        HirKind::Concat(v) | HirKind::Alternation(v) => v.iter().for_each(|h| bytes_of(h, set)),
        HirKind::Empty | HirKind::Look(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::XorShift;

    fn pick<'a>(rng: &mut XorShift, v: &[&'a str]) -> &'a str {
        v[rng.below(v.len())]
    }

    /// The groups as `regex` gives them, and as the relaxed path gives them (falling back to
    /// `regex` where it declines, as the extraction thread does).
    fn both(
        re: &regex::Regex,
        rel: &Relaxed,
        c: &mut RelaxedCache,
        text: &str,
    ) -> [Vec<Option<(usize, usize)>>; 2] {
        let want = match re.captures(text) {
            Some(caps) => (0..caps.len())
                .map(|g| caps.get(g).map(|m| (m.start(), m.end())))
                .collect(),
            None => Vec::new(),
        };
        let got = match re.find(text) {
            None => Vec::new(),
            Some(m) => match rel.groups(c, text, m.start(), m.end()) {
                Some(caps) => (0..caps.group_len())
                    .map(|g| {
                        caps.get_group(g)
                            .map(|s| (s.start + m.start(), s.end + m.start()))
                    })
                    .collect(),
                None => want.clone(),
            },
        };
        [want, got]
    }

    /// Every built-in rule that the relaxed path serves, on its own samples, on the samples
    /// of every other rule, and on pieces of them glued together, cut and repeated: the
    /// groups are `regex`'s exactly, and `path_line_col` (the reason for this) is served.
    #[test]
    fn the_same_groups_as_regex_on_every_built_in_rule() {
        let book = crate::extract::rules::RuleBook::builtin().expect("built-ins parse");
        let mut texts: Vec<String> = book
            .rules
            .iter()
            .flat_map(|r| r.samples.iter().chain(&r.counter_samples).cloned())
            .collect();
        let pieces: Vec<String> = texts
            .iter()
            .flat_map(|t| t.split(' ').map(str::to_string))
            .collect();
        let mut rng = XorShift::new(0x9e37_79b9_7f4a_7c15);
        let base = texts.clone();
        for _ in 0..4000 {
            let mut t = base[rng.below(base.len())].clone();
            for _ in 0..rng.next() % 4 {
                let p = &pieces[rng.below(pieces.len())];
                let sep = pick(
                    &mut rng,
                    &[" ", "", ":", "/", ".", ":12:3 ", " (", "\t", "é", "│ "],
                );
                if rng.next() % 2 == 0 {
                    t = format!("{t}{sep}{p}");
                } else {
                    t = format!("{p}{sep}{t}");
                }
            }
            if rng.next() % 3 == 0 && !t.is_empty() {
                let mut cut = rng.below(t.len());
                while !t.is_char_boundary(cut) {
                    cut -= 1;
                }
                t.truncate(cut);
            }
            texts.push(t);
        }
        let mut served = Vec::new();
        let mut checked = 0;
        for r in &book.rules {
            let Some(rel) = Relaxed::new(&r.regex_src, r.case_insensitive) else {
                continue;
            };
            served.push(r.name.to_string());
            let re =
                crate::extract::rules::compile(&r.regex_src, r.case_insensitive).expect("compiles");
            let mut c = rel.create_cache();
            for t in &texts {
                let [want, got] = both(&re, &rel, &mut c, t);
                assert_eq!(got, want, "rule {} on {t:?}", r.name);
                checked += usize::from(!want.is_empty());
            }
        }
        assert!(
            served.iter().any(|n| n == "path_line_col"),
            "served: {served:?}"
        );
        assert!(
            checked > 300,
            "only {checked} matches compared (served: {served:?})"
        );
        // Tiny: the relaxed regex has a state or two per group (1,796 bytes here).
        let path = book.rules.iter().find(|r| &*r.name == "path_line_col");
        let rel = path.and_then(|r| Relaxed::new(&r.regex_src, r.case_insensitive));
        let bytes = rel.map_or(usize::MAX, |r| r.dfa.memory_usage());
        assert!(
            bytes < 64 << 10,
            "path_line_col's one-pass DFA: {bytes} bytes"
        );
    }

    /// Regexes built to trip it: groups whose places an ambiguity inside or around them
    /// decides, lazy and greedy bodies, optional and repeated groups, alternations of groups,
    /// assertions next to groups, non-ASCII, case folding. On every string of a small
    /// alphabet up to length 4 and on 20,000 random longer ones, the groups are `regex`'s; the
    /// ones the relaxed path must decline, it declines.
    #[test]
    fn the_same_groups_as_regex_on_regexes_built_to_trip_it() {
        let regexes = [
            r"(?P<a>[a-z.]*[a-z]\.[a-z]{1,3}):(?P<n>[0-9]+)(?::(?P<c>[0-9]+))?",
            r"(?P<a>a+)(?P<b>a*)",
            r"(?P<a>a+?)(?P<b>a*)b",
            r"x(?P<a>[ab]*)y(?P<b>[ab]*)",
            r"(?:(?P<a>a)|(?P<b>b))+c",
            r"(?P<a>[^:]*):(?P<b>.*)",
            r"\b(?P<w>[a-z]+)\b:",
            r"^(?P<a>.*?)[ ]*$",
            r"(?:x(?P<a>[a-z]+)y)*z",
            r"(?P<a>é+)(?P<b>[^é]*)",
            r"(?i)(?P<a>ab)(?P<b>[0-9]*)",
            r"(?P<a>a|ab)(?P<b>c|bcd)",
            r"(?P<a>[ab]{0,2})b(?P<b>b?)",
            r"(?P<a>[a-c]+)\.(?P<b>[a-c]+)(?:\.(?P<c>[a-c]+))?",
        ];
        let alphabet = ["a", "b", "c", ".", ":", "1", " ", "x", "y", "z", "é", "A"];
        let mut texts = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for t in &frontier {
                for a in alphabet {
                    next.push(format!("{t}{a}"));
                }
            }
            texts.extend(next.iter().cloned());
            frontier = next;
        }
        let mut rng = XorShift::new(42);
        for _ in 0..20000 {
            let n = 5 + rng.next() % 10;
            texts.push((0..n).map(|_| pick(&mut rng, &alphabet)).collect());
        }
        for src in regexes {
            let re = regex::Regex::new(src).expect("compiles");
            let Some(rel) = Relaxed::new(src, false) else {
                continue;
            };
            let mut c = rel.create_cache();
            for t in &texts {
                let [want, got] = both(&re, &rel, &mut c, t);
                assert_eq!(got, want, "{src} on {t:?}");
            }
        }
        // Served: the relaxed regex is one-pass; declined: it is not, or the regex is.
        assert!(Relaxed::new(regexes[0], false).is_some());
        // Served on non-ASCII text too: the walk itself answered.
        let src = r"(?P<a>[a-zé]*[a-z]\.[a-z]+):(?P<n>[0-9]+)";
        let rel = Relaxed::new(src, false).expect("served");
        let mut c = rel.create_cache();
        let caps = rel
            .groups(&mut c, "éx.b:1", 0, "éx.b:1".len())
            .expect("answered");
        assert_eq!(caps.get_group(1).map(|s| s.range()), Some(0..5));
        assert!(
            Relaxed::new(r"(?P<a>[^:]*):(?P<b>.*)", false).is_none(),
            "one-pass already"
        );
        assert!(
            Relaxed::new(r"(?P<a>a+)(?P<b>a*)", false).is_none(),
            "ambiguous"
        );
        assert!(Relaxed::new(r"(?P<o>x(?P<i>y))", false).is_none(), "nested");
        assert!(
            Relaxed::new(r"[a-z]+\.[a-z]+:[0-9]+", false).is_none(),
            "no groups"
        );
    }
}
