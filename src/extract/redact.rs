//! Secret masking (SPEC §5.1): every `[[redact]]` rule's matches become `[REDACTED:<name>]`
//! before any text is stored — events, code blocks, spool files. The user's own terminal is
//! never redacted: passthrough happens before this module sees a byte.

use std::borrow::Cow;

use regex::{NoExpand, RegexSet, RegexSetBuilder};

use super::rules::{RedactRule, RuleBook};

#[derive(Debug)]
pub struct Redactor {
    /// `None` when redaction is off (`--no-redact`) or there are no rules.
    set: Option<RegexSet>,
    rules: Vec<RedactRule>,
}

impl Redactor {
    pub fn new(book: &RuleBook, enabled: bool) -> Result<Redactor, String> {
        if !enabled || book.redact.is_empty() {
            return Ok(Redactor {
                set: None,
                rules: Vec::new(),
            });
        }
        let set = RegexSetBuilder::new(book.redact.iter().map(|r| r.regex_src.as_str()))
            .size_limit(64 << 20)
            .build()
            .map_err(|e| format!("the redact rules cannot be compiled as a whole: {e}"))?;
        Ok(Redactor {
            set: Some(set),
            rules: book.redact.clone(),
        })
    }

    /// Returns `text` with every secret masked; borrows when there is none.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let Some(set) = &self.set else {
            return Cow::Borrowed(text);
        };
        let hits = set.matches(text);
        if !hits.matched_any() {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_string();
        for i in hits.iter() {
            let r = &self.rules[i];
            if let Cow::Owned(s) = r.regex.replace_all(&out, NoExpand(&r.replacement)) {
                out = s;
            }
        }
        Cow::Owned(out)
    }
}
