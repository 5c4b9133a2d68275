//! Rules that look beyond their own line: the previous line, and whether the line sits inside
//! a block (a diff hunk, say).
//!
//! A one-line regex cannot tell npm's error headline from the 80 `npm error` lines under it, a
//! pytest `E` explanation's first line from its diff continuation, or a shell-trace `+ cmd`
//! from a diff's added line. lnav's multi-line formats solve the first two with one idea: a
//! message starts at a line that matches, and the lines after it that belong to it are its
//! body. A rule says so in its `context` table:
//!
//! ```toml
//! [[pattern]]
//! name = "npm_error"
//! event_type = "error"
//! regex = '''^npm (?:ERR!|error) (?P<value>.+)$'''
//! samples = ["npm error code E404"]
//! [pattern.context]
//! not_previous = '''^npm (?:ERR!|error) '''   # a line right after another one continues it
//! samples = [["npm warn config x", "npm error code E404"]]          # [previous, line]
//! counter_samples = [["npm error code E404", "npm error 404 Not Found"]]
//! ```
//!
//! Keys (all optional, at least one condition):
//! - `previous` — the previous line (same stream) must match this regex;
//! - `not_previous` — the previous line must not match it (no previous line passes);
//! - `inside` / `outside` — `{ start = '…', body = '…' }`: a block opens on a line matching
//!   `start` and goes on while lines match `body`; the first line that does not ends it (and
//!   is outside). The rule fires only inside (the start line included), or only outside;
//! - `report = "previous"` — the event is about the previous line: its line number and text,
//!   its `value` and groups from the `previous` regex (required then). aider prints the
//!   command it proposes on the line *before* `Run shell command?`: the question anchors the
//!   rule, the event is the command.
//!
//! Cost: rules without a `context` table stay in the one-pass `RegexSet` and pay nothing. A
//! rule with one is in the set too; its conditions are checked only when its regex matched,
//! except for block starts and bodies, which one more `RegexSet` pass per line follows (only
//! when some rule uses a block).

use crate::event::{PerStream, Stream};
use regex::Regex;

use super::sets::{RuleSets, Scratch};
use serde::Deserialize;
use toml::Spanned;

/// The `context` table of a rule, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContext {
    previous: Option<Spanned<String>>,
    not_previous: Option<Spanned<String>>,
    inside: Option<BlockSpec>,
    outside: Option<BlockSpec>,
    report: Option<Spanned<String>>,
    samples: Option<Vec<Spanned<[String; 2]>>>,
    counter_samples: Option<Vec<Spanned<[String; 2]>>>,
}

/// A block: opened by a line matching `start`, continued by lines matching `body`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BlockSpec {
    pub start: String,
    pub body: String,
}

/// A rule's context conditions, validated (regex sources; compiled by [`Conditions::new`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Context {
    pub previous: Option<String>,
    pub not_previous: Option<String>,
    pub inside: Option<BlockSpec>,
    pub outside: Option<BlockSpec>,
    pub report_previous: bool,
    #[serde(skip)]
    pub samples: Vec<[String; 2]>,
    #[serde(skip)]
    pub counter_samples: Vec<[String; 2]>,
}

/// An error in a `context` table: the byte offset in the file (when known) and the message.
pub type ContextError = (Option<usize>, String);

impl RawContext {
    /// Validates the table; `compile` is the rule compiler (size limits and all), `main` the
    /// rule's own regex when the file is being verified, for checking the samples.
    pub fn validate(
        self,
        compile: &dyn Fn(&str) -> Result<Regex, String>,
        main: Option<&Regex>,
    ) -> Result<Context, ContextError> {
        let src = |s: &Option<Spanned<String>>| s.as_ref().map(|s| s.get_ref().clone());
        let report_previous = match &self.report {
            None => false,
            Some(r) if r.get_ref() == "previous" => true,
            Some(r) if r.get_ref() == "line" => false,
            Some(r) => {
                return Err((
                    Some(r.span().start),
                    format!(
                        "unknown context.report `{}` (expected \"line\" or \"previous\")",
                        r.get_ref()
                    ),
                ))
            }
        };
        let ctx = Context {
            previous: src(&self.previous),
            not_previous: src(&self.not_previous),
            inside: self.inside,
            outside: self.outside,
            report_previous,
            samples: Vec::new(),
            counter_samples: Vec::new(),
        };
        if ctx.previous.is_none()
            && ctx.not_previous.is_none()
            && ctx.inside.is_none()
            && ctx.outside.is_none()
        {
            return Err((
                None,
                "`context` needs a condition: previous, not_previous, inside or outside".into(),
            ));
        }
        if ctx.report_previous && ctx.previous.is_none() {
            return Err((
                self.report.as_ref().map(|r| r.span().start),
                "context.report = \"previous\" needs context.previous (the regex whose groups fill the event)".into(),
            ));
        }
        let at = |s: &Option<Spanned<String>>| s.as_ref().map(|s| s.span().start);
        if main.is_some() {
            for (s, what) in [
                (&self.previous, "previous"),
                (&self.not_previous, "not_previous"),
            ] {
                if let Some(text) = s {
                    compile(text.get_ref()).map_err(|e| (at(s), format!("context.{what}: {e}")))?;
                }
            }
        }
        let pairs = |v: Option<Vec<Spanned<[String; 2]>>>| -> Vec<[String; 2]> {
            v.unwrap_or_default()
                .into_iter()
                .map(Spanned::into_inner)
                .collect()
        };
        let ctx = Context {
            samples: pairs(self.samples),
            counter_samples: pairs(self.counter_samples),
            ..ctx
        };
        if let Some(main) = main {
            ctx.verify(compile, main).map_err(|e| (None, e))?;
        }
        Ok(ctx)
    }
}

impl Context {
    /// Compiles the conditions and checks the `[previous, line]` samples against them and the
    /// rule's own regex `main`.
    pub fn verify(
        &self,
        compile: &dyn Fn(&str) -> Result<Regex, String>,
        main: &Regex,
    ) -> Result<(), String> {
        let conds = Conditions::new(self, compile)?;
        for [prev, line] in &self.samples {
            if !conds.fires_on_pair(main, prev, line) {
                return Err(format!(
                    "context sample [{prev:?}, {line:?}] does not fire the rule"
                ));
            }
        }
        for [prev, line] in &self.counter_samples {
            if conds.fires_on_pair(main, prev, line) {
                return Err(format!(
                    "context counter-sample [{prev:?}, {line:?}] fires the rule but must not"
                ));
            }
        }
        Ok(())
    }
}

/// A rule's conditions, compiled.
#[derive(Debug, Clone)]
pub struct Conditions {
    previous: Option<Regex>,
    not_previous: Option<Regex>,
    inside: Option<usize>,
    outside: Option<usize>,
    blocks: Vec<BlockSpec>,
    pub report_previous: bool,
}

impl Conditions {
    /// Compiles `ctx`. Block indexes are local until [`Blocks::register`] renumbers them.
    pub fn new(
        ctx: &Context,
        compile: &dyn Fn(&str) -> Result<Regex, String>,
    ) -> Result<Conditions, String> {
        let re = |s: &Option<String>| s.as_deref().map(compile).transpose();
        let block = |b: &Option<BlockSpec>, what: &str| -> Result<(), String> {
            if let Some(b) = b {
                compile(&b.start).map_err(|e| format!("context.{what}.start: {e}"))?;
                compile(&b.body).map_err(|e| format!("context.{what}.body: {e}"))?;
            }
            Ok(())
        };
        block(&ctx.inside, "inside")?;
        block(&ctx.outside, "outside")?;
        let mut blocks = Vec::new();
        let mut slot = |b: &Option<BlockSpec>| {
            b.as_ref().map(|b| {
                blocks.push(b.clone());
                blocks.len() - 1
            })
        };
        let inside = slot(&ctx.inside);
        let outside = slot(&ctx.outside);
        Ok(Conditions {
            previous: re(&ctx.previous)?,
            not_previous: re(&ctx.not_previous)?,
            inside,
            outside,
            blocks,
            report_previous: ctx.report_previous,
        })
    }

    /// The regex whose captures fill the event of a `report = "previous"` rule.
    pub fn previous_regex(&self) -> Option<&Regex> {
        self.previous.as_ref()
    }

    /// Whether the conditions hold for a line whose previous line (same stream) is `prev`
    /// and whose block flags are `inside`.
    pub fn holds(&self, prev: Option<&str>, inside: &[bool]) -> bool {
        if let Some(re) = &self.previous {
            if !prev.is_some_and(|p| re.is_match(p)) {
                return false;
            }
        }
        if let Some(re) = &self.not_previous {
            if prev.is_some_and(|p| re.is_match(p)) {
                return false;
            }
        }
        let flag = |i: usize| inside.get(i).copied().unwrap_or(false);
        self.inside.is_none_or(flag) && self.outside.is_none_or(|i| !flag(i))
    }

    /// A `[previous, line]` sample: the rule's regex matches `line` and the conditions hold
    /// with `previous` as the only line before it.
    fn fires_on_pair(&self, main: &Regex, prev: &str, line: &str) -> bool {
        let mut blocks = Blocks::default();
        let mut me = self.clone();
        blocks.register(&mut me);
        if blocks.build().is_err() {
            return false;
        }
        let mut t = Tracker::new(&blocks);
        t.observe(&blocks, Stream::Stdout, prev);
        t.remember(Stream::Stdout, prev, 1);
        t.observe(&blocks, Stream::Stdout, line);
        main.is_match(line)
            && me.holds(
                t.previous(Stream::Stdout).map(|p| p.0),
                t.inside(Stream::Stdout),
            )
    }
}

/// Every distinct block of a matcher's rules, matched in one pass of their sets per line
/// (`sets.rs`: searched with a scratch the tracker keeps, so no match set is allocated per
/// line, as `regex::RegexSet::matches` does).
#[derive(Debug, Default)]
pub struct Blocks {
    specs: Vec<BlockSpec>,
    /// `start` and `body` of block i at 2i and 2i+1.
    set: Option<RuleSets>,
}

impl Blocks {
    /// Adds the blocks of `c` (shared when two rules use the same one) and points `c` at them.
    pub fn register(&mut self, c: &mut Conditions) {
        let map = |local: Option<usize>, specs: &mut Vec<BlockSpec>| {
            local.map(|i| {
                let spec = &c.blocks[i];
                match specs.iter().position(|s| s == spec) {
                    Some(g) => g,
                    None => {
                        specs.push(spec.clone());
                        specs.len() - 1
                    }
                }
            })
        };
        let inside = map(c.inside, &mut self.specs);
        let outside = map(c.outside, &mut self.specs);
        c.inside = inside;
        c.outside = outside;
        self.set = None;
    }

    /// Compiles the set once all rules are registered.
    pub fn build(&mut self) -> Result<(), String> {
        if self.specs.is_empty() {
            return Ok(());
        }
        let sources: Vec<String> = self
            .specs
            .iter()
            .flat_map(|b| [b.start.clone(), b.body.clone()])
            .collect();
        self.set = Some(
            RuleSets::new(&sources)
                .map_err(|e| format!("context blocks cannot be compiled: {e}"))?,
        );
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }
}

/// What one stream's recent past looks like to the context rules.
#[derive(Debug, Default)]
struct StreamState {
    /// The previous complete line, cleaned (not redacted), and its line number.
    prev: Option<(String, u64)>,
    /// For each block: whether the current line is inside it.
    inside: Vec<bool>,
}

/// Per-extractor state: the previous line and the block flags of each stream.
#[derive(Debug, Default)]
pub struct Tracker {
    streams: PerStream<StreamState>,
    scratch: Scratch,
    /// Whether any rule needs the previous line (otherwise nothing is copied per line).
    keep_previous: bool,
}

impl Tracker {
    pub fn new(blocks: &Blocks) -> Tracker {
        let mut t = Tracker {
            keep_previous: true,
            ..Tracker::default()
        };
        for s in &mut t.streams.0 {
            s.inside = vec![false; blocks.specs.len()];
        }
        t
    }

    /// A tracker that keeps nothing (no rule has a context).
    pub fn idle() -> Tracker {
        Tracker::default()
    }

    /// Updates the block flags of `stream` for `line`, the line about to be matched.
    pub fn observe(&mut self, blocks: &Blocks, stream: Stream, line: &str) {
        let Some(set) = &blocks.set else { return };
        let hits = set.matches(&mut self.scratch, line);
        let matched = |i: usize| hits.binary_search(&i).is_ok();
        let s = &mut self.streams[stream];
        for (i, inside) in s.inside.iter_mut().enumerate() {
            *inside = (*inside && matched(2 * i + 1)) || matched(2 * i);
        }
    }

    /// Makes `line` the previous line of `stream`, once it has been matched.
    pub fn remember(&mut self, stream: Stream, line: &str, line_number: u64) {
        if !self.keep_previous {
            return;
        }
        let s = &mut self.streams[stream];
        match &mut s.prev {
            Some((text, n)) => {
                text.clear();
                text.push_str(line);
                *n = line_number;
            }
            None => s.prev = Some((line.to_string(), line_number)),
        }
    }

    pub fn previous(&self, stream: Stream) -> Option<(&str, u64)> {
        self.streams[stream]
            .prev
            .as_ref()
            .map(|(t, n)| (t.as_str(), *n))
    }

    pub fn inside(&self, stream: Stream) -> &[bool] {
        &self.streams[stream].inside
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(s: &str) -> Result<Regex, String> {
        Regex::new(s).map_err(|e| e.to_string())
    }

    fn ctx(toml_text: &str) -> Result<Context, ContextError> {
        let raw: RawContext = toml::from_str(toml_text).expect("toml");
        raw.validate(
            &compile,
            Some(&compile("^[+]").unwrap_or_else(|e| panic!("{e}"))),
        )
    }

    #[test]
    fn blocks_open_on_start_and_close_on_the_first_line_that_is_not_body() {
        let c = ctx("outside = { start = '^@@ ', body = '^[ +-]' }").expect("valid");
        let mut conds = Conditions::new(&c, &compile).expect("compile");
        let mut blocks = Blocks::default();
        blocks.register(&mut conds);
        blocks.build().expect("set");
        let mut t = Tracker::new(&blocks);
        let mut fired = Vec::new();
        for line in ["+ ls", "@@ -1 +1 @@", "+x", " y", "+ z", "done", "+ echo"] {
            t.observe(&blocks, Stream::Stdout, line);
            fired.push(conds.holds(None, t.inside(Stream::Stdout)));
            t.remember(Stream::Stdout, line, 1);
        }
        assert_eq!(fired, [true, false, false, false, false, true, true]);
    }

    #[test]
    fn previous_conditions_and_their_samples_are_checked() {
        assert!(ctx("not_previous = '^[+]'\nsamples = [['x', '+a']]").is_ok());
        let e = ctx("not_previous = '^[+]'\nsamples = [['+x', '+a']]").expect_err("sample");
        assert!(e.1.contains("does not fire"), "{e:?}");
        let e = ctx("previous = '^x'\ncounter_samples = [['x', '+a']]").expect_err("counter");
        assert!(e.1.contains("must not"), "{e:?}");
        assert!(ctx("report = 'previous'\nnot_previous = 'x'").is_err());
        assert!(ctx("samples = []").is_err(), "a condition is required");
    }
}
