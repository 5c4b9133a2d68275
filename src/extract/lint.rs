//! Warnings about rules that load but will hurt: Unicode-aware `\b`, `\w`, `\d`, `\s` (the
//! regex crate's fast engines give up on `\b` in any line with non-ASCII text, 11x slower
//! measured, SPEC §9), and rules that match nearly every line (a `.*` pattern, an optional
//! everything) and would bury real events. `wrapper patterns check` prints them; they do not
//! make a file invalid.

use regex::Regex;
use regex_syntax::hir::{Class, Hir, HirKind, Look};

use super::rules::{Rule, RuleBook};

/// One warning about one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lint {
    pub rule: String,
    pub origin: String,
    pub message: String,
}

/// A rule matching at least this share of the probe lines matches "nearly every line".
const BROAD_SHARE: f64 = 0.8;

/// Lines of every kind a session shows, for the "matches nearly every line" probe, on top of
/// every rule's own samples and counter-samples.
const PROBES: &[&str] = &[
    "",
    "hello world",
    "   Compiling tiny-kv v0.1.0 (/home/dev/tiny-kv)",
    "    Finished `dev` profile [unoptimized + debuginfo] target(s) in 2.31s",
    "running 4 tests",
    "collected 8 items",
    "Ran all test suites.",
    "  return p->x * p->z;",
    "    at Module._compile (node:internal/modules/cjs/loader:1521:14)",
    "}",
    "• Explored",
    "Reading package lists... Done",
    "✓ done in 3.2s → next step",
    "diff --git a/app.py b/app.py",
    "added 12 packages in 2s",
];

/// Warnings for every rule of `book` (compiled by [`RuleBook::verify`] first).
pub fn lint(book: &RuleBook) -> Vec<Lint> {
    let mut probes: Vec<&str> = PROBES.to_vec();
    for r in &book.rules {
        probes.extend(r.samples.iter().map(String::as_str));
        probes.extend(r.counter_samples.iter().map(String::as_str));
    }
    let mut out = Vec::new();
    for r in &book.rules {
        let mut warn = |message: String| {
            out.push(Lint {
                rule: r.name.to_string(),
                origin: r.origin.to_string(),
                message,
            })
        };
        for m in unicode_classes(r) {
            warn(m);
        }
        if let Some(re) = &r.regex {
            if let Some(m) = broad(re, &probes) {
                warn(m);
            }
        }
    }
    out
}

/// What in the rule's regex is Unicode-aware where ASCII would do.
fn unicode_classes(r: &Rule) -> Vec<String> {
    let hir = match regex_syntax::ParserBuilder::new()
        .case_insensitive(r.case_insensitive)
        .build()
        .parse(&r.regex_src)
    {
        Ok(h) => h,
        Err(_) => return Vec::new(),
    };
    let mut found = Found::default();
    walk(&hir, &mut found);
    let mut out = Vec::new();
    if found.word_boundary {
        out.push(
            "Unicode-aware `\\b` (or `\\B`): on any line with non-ASCII text the fast regex \
             engines give up (11x slower measured); write `(?-u:\\b)`"
                .to_string(),
        );
    }
    let classes: Vec<&str> = [
        (found.word, "`\\w` (use `[A-Za-z0-9_]`)"),
        (found.digit, "`\\d` (use `[0-9]`)"),
        (found.space, "`\\s` (use `[ \\t]`)"),
    ]
    .into_iter()
    .filter_map(|(f, s)| f.then_some(s))
    .collect();
    if !classes.is_empty() {
        out.push(format!(
            "Unicode-aware {}: large classes that slow every line; ASCII classes match what build tools print",
            classes.join(", ")
        ));
    }
    out
}

#[derive(Default)]
struct Found {
    word_boundary: bool,
    word: bool,
    digit: bool,
    space: bool,
}

fn walk(h: &Hir, f: &mut Found) {
    match h.kind() {
        HirKind::Look(Look::WordUnicode | Look::WordUnicodeNegate)
        | HirKind::Look(Look::WordStartUnicode | Look::WordEndUnicode)
        | HirKind::Look(Look::WordStartHalfUnicode | Look::WordEndHalfUnicode) => {
            f.word_boundary = true
        }
        HirKind::Class(Class::Unicode(c)) => {
            let has = |ch: char| c.ranges().iter().any(|r| r.start() <= ch && ch <= r.end());
            // A class holding letters beyond ASCII and `_` is `\w`; Arabic-Indic digits, `\d`;
            // an em space, `\s`. `.` and negated ASCII classes hold `_` and `☃` alike, but
            // also every control character: they are left alone.
            let any_char = has('\u{1}') && has('\u{7f}');
            if !any_char {
                f.word |= has('_') && has('é') && has('ж');
                f.digit |= has('0') && has('\u{0660}') && !has('a');
                f.space |= has(' ') && has('\u{2003}') && !has('a');
            }
        }
        HirKind::Repetition(r) => walk(&r.sub, f),
        HirKind::Capture(c) => walk(&c.sub, f),
        HirKind::Concat(v) | HirKind::Alternation(v) => v.iter().for_each(|x| walk(x, f)),
        _ => {}
    }
}

/// A warning when `re` matches the empty line or at least [`BROAD_SHARE`] of `probes`.
fn broad(re: &Regex, probes: &[&str]) -> Option<String> {
    if re.is_match("") {
        return Some(
            "matches an empty line, so it matches every line: anchor it and require some text"
                .into(),
        );
    }
    let hits = probes.iter().filter(|p| re.is_match(p)).count();
    let share = hits as f64 / probes.len().max(1) as f64;
    (share >= BROAD_SHARE).then(|| {
        format!(
            "matches {hits} of {} sample lines of all kinds ({:.0}%): it will fire on nearly every line",
            probes.len(),
            share * 100.0
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(rules: &str) -> RuleBook {
        let mut b = RuleBook::parse_text("u.toml", rules).expect("parse");
        b.verify().expect("verify");
        b
    }

    #[test]
    fn unicode_classes_and_broad_rules_are_flagged_and_ascii_rules_are_not() {
        let b = book(
            r#"
[[pattern]]
name = "uni_b"
event_type = "e"
regex = '\berror\b'
samples = ["an error here"]
[[pattern]]
name = "uni_w"
event_type = "e"
regex = '^(\w+): \d+ \s*failed'
samples = ["x: 3 failed"]
[[pattern]]
name = "everything"
event_type = "e"
regex = '.*'
samples = ["x"]
[[pattern]]
name = "ascii"
event_type = "e"
regex = '(?-u:\b)error: [A-Za-z0-9_]+ [0-9]+ .*'
samples = ["error: x 1 y"]
"#,
        );
        let lints = lint(&b);
        let of = |n: &str| -> Vec<&str> {
            lints
                .iter()
                .filter(|l| l.rule == n)
                .map(|l| l.message.as_str())
                .collect()
        };
        assert!(
            of("uni_b").iter().any(|m| m.contains("(?-u:\\b)")),
            "{lints:?}"
        );
        let w = of("uni_w");
        assert!(
            w.iter()
                .any(|m| m.contains("\\w") && m.contains("\\d") && m.contains("\\s")),
            "{w:?}"
        );
        assert!(
            of("everything").iter().any(|m| m.contains("every line")),
            "{lints:?}"
        );
        assert!(of("ascii").is_empty(), "{lints:?}");
    }

    #[test]
    fn the_builtin_rules_have_nothing_to_warn_about() {
        let mut b = RuleBook::builtin().expect("built-ins");
        b.verify().expect("verify");
        assert_eq!(lint(&b), Vec::<Lint>::new());
    }
}
