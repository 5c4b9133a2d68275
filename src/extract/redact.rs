//! Secret masking (SPEC §5.1): every `[[redact]]` rule's matches become `[REDACTED:<name>]`
//! before any text is stored — events, code blocks, spool files. The user's own terminal is
//! never redacted: passthrough happens before this module sees a byte.

use std::borrow::Cow;

use regex::{NoExpand, Regex, RegexSet, RegexSetBuilder};

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
        let hits = set.matches(text);
        let mut out = text.to_string();
        for i in hits.iter() {
            let (r, re) = &self.rules[i];
            if let Cow::Owned(s) = re.replace_all(&out, NoExpand(&r.replacement)) {
                out = s;
            }
        }
        Cow::Owned(out)
    }
}
