//! Secret masking (SPEC §5.1): every `[[redact]]` rule's matches become `[REDACTED:<name>]`
//! before any text is stored — events, code blocks, spool files. The user's own terminal is
//! never redacted: passthrough happens before this module sees a byte.

use std::borrow::Cow;

use regex::{Regex, RegexSet, RegexSetBuilder};

use super::rules::{compile, RedactRule, RuleBook};

#[derive(Debug)]
pub struct Redactor {
    /// `None` when redaction is off (`--no-redact`) or there are no rules.
    set: Option<RegexSet>,
    rules: Vec<(RedactRule, Regex)>,
}

impl Redactor {
    /// Stores text as it is.
    pub fn off() -> Redactor {
        Redactor {
            set: None,
            rules: Vec::new(),
        }
    }

    pub fn new(book: &RuleBook, enabled: bool) -> Result<Redactor, String> {
        if !enabled || book.redact.is_empty() {
            return Ok(Redactor::off());
        }
        let set = RegexSetBuilder::new(book.redact.iter().map(|r| r.regex_src.as_str()))
            .size_limit(64 << 20)
            .build()
            .map_err(|e| format!("the redact rules cannot be compiled as a whole: {e}"))?;
        let mut rules = Vec::with_capacity(book.redact.len());
        for r in &book.redact {
            let re = match &r.regex {
                Some(re) => re.clone(),
                None => compile(&r.regex_src, false)
                    .map_err(|e| format!("redact rule `{}` ({}): {e}", r.name, r.origin))?,
            };
            rules.push((r.clone(), re));
        }
        Ok(Redactor {
            set: Some(set),
            rules,
        })
    }

    /// Returns `text` with every secret masked; borrows when there is none.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let Some(set) = &self.set else {
            return Cow::Borrowed(text);
        };
        // Nearly every line holds no secret: `is_match` stops at the first hit and can skip
        // through the text with the rules' literal prefixes, where `matches` must track every
        // rule to the end of the line.
        if !set.is_match(text) {
            return Cow::Borrowed(text);
        }
        // Every rule's matches are found in the original text, and where matches overlap
        // (`API_KEY=sk-…` is both an assignment and an OpenAI key) the text they cover
        // together is masked once, named after the match that starts first (the earlier rule
        // on a tie). Replacing rule after rule instead would let a later rule match into an
        // earlier one's `[REDACTED:…]` and leave `[REDACTED:a]]`-like debris.
        let mut spans: Vec<(usize, usize, usize)> = Vec::new();
        for i in set.matches(text).iter() {
            spans.extend(
                self.rules[i]
                    .1
                    .find_iter(text)
                    .filter(|m| !m.is_empty())
                    .map(|m| (m.start(), i, m.end())),
            );
        }
        spans.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        let mut spans = spans.into_iter().peekable();
        while let Some((start, rule, mut end)) = spans.next() {
            while let Some(&(next, _, next_end)) = spans.peek() {
                if next >= end {
                    break;
                }
                end = end.max(next_end);
                spans.next();
            }
            out.push_str(&text[at..start]);
            out.push_str(&self.rules[rule].0.replacement);
            at = end;
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_matches_are_masked_once_without_debris() {
        let mut book = RuleBook::load(&crate::extract::rules::builtin_sources()).expect("load");
        book.verify().expect("verify");
        let r = Redactor::new(&book, true).expect("redactor");
        assert_eq!(
            r.redact("error: OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwxyz1234 rejected"),
            "error: OPENAI_[REDACTED:secret_assignment] rejected"
        );
        assert_eq!(
            r.redact("key sk-proj-abcdefghijklmnopqrstuvwxyz1234 and DB_PASSWORD=hunter22 here"),
            "key [REDACTED:openai_key] and DB_[REDACTED:secret_assignment] here"
        );
    }
}
