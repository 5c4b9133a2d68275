//! Extraction: lines in, events and code blocks out.
//!
//! The run path and `wrapper patterns test` share this module, so what a user sees when
//! developing a rule is exactly what a session records. Per line the cost is one `RegexSet`
//! scan; captures run only for the rules that matched, and redaction only for lines that
//! produced something to store.

pub mod codeblock;
pub mod redact;
pub mod rules;

use std::sync::Arc;

use regex::{RegexSet, RegexSetBuilder};

use crate::event::{Event, Record, Stream};
use crate::lines::{clean_line, LineSplitter};
use codeblock::CodeBlockParser;
use redact::PemTracker;
pub use redact::Redactor;
use rules::{Rule, RuleBook};

/// The event type and pattern name recorded for a code block's event.
pub const CODE_BLOCK: &str = "code_block";

/// The rules that apply to one agent, compiled for matching.
#[derive(Debug)]
pub struct Matcher {
    set: RegexSet,
    rules: Vec<CompiledRule>,
    /// Rules with `prompt = true`, matched against idle partial lines.
    prompt_set: RegexSet,
    prompt_rules: Vec<usize>,
}

/// The event type of which a line yields at most one event (SPEC §3, prompts with a risk).
const PROMPT: &str = "prompt";

#[derive(Debug)]
struct CompiledRule {
    rule: Rule,
    regex: regex::Regex,
    /// Named groups other than `value`, with their capture index.
    groups: Vec<(usize, Arc<str>)>,
    value_group: Option<usize>,
}

impl Matcher {
    /// Compiles the rules of `book` that apply to `agent` (all of them for `None`).
    pub fn new(book: &RuleBook, agent: Option<&str>) -> Result<Matcher, String> {
        let mut rules: Vec<CompiledRule> = Vec::new();
        for r in book
            .rules
            .iter()
            .filter(|r| agent.is_none_or(|a| r.applies_to(a)))
        {
            let regex = match &r.regex {
                Some(re) => re.clone(),
                None => rules::compile(&r.regex_src, r.case_insensitive)
                    .map_err(|e| format!("rule `{}` ({}): {e}", r.name, r.origin))?,
            };
            let mut groups = Vec::new();
            let mut value_group = None;
            for (i, name) in regex.capture_names().enumerate() {
                match name {
                    Some("value") => value_group = Some(i),
                    Some(n) => groups.push((i, Arc::from(n))),
                    None => {}
                }
            }
            rules.push(CompiledRule {
                rule: r.clone(),
                regex,
                groups,
                value_group,
            });
        }
        let set = build_set(rules.iter().map(|r| r.rule.set_source()))?;
        let prompt_rules: Vec<usize> = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.rule.prompt)
            .map(|(i, _)| i)
            .collect();
        let prompt_set = build_set(prompt_rules.iter().map(|&i| rules[i].rule.set_source()))?;
        Ok(Matcher {
            set,
            rules,
            prompt_set,
            prompt_rules,
        })
    }

    /// No rules at all: lines are still split and counted.
    pub fn empty() -> Matcher {
        Matcher {
            set: RegexSet::empty(),
            rules: Vec::new(),
            prompt_set: RegexSet::empty(),
            prompt_rules: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rules (indexes into `rules`) to try on a line, in order, given the rules that
    /// matched it (`hits`, ascending): rules for other streams and those in `skip` (already
    /// fired on this line while it was partial) drop out; prompt rules come last, riskiest
    /// first (no risk level counts lowest, then load order), and only those `prompt_ok`
    /// allows. The caller records only the first prompt that matches, since a line is at most
    /// one prompt.
    fn emission_order(
        &self,
        hits: impl Iterator<Item = usize>,
        skip: &[usize],
        prompt_ok: impl Fn(usize) -> bool,
        stream: Stream,
    ) -> Vec<usize> {
        let (mut prompts, mut order): (Vec<usize>, Vec<usize>) = hits
            .filter(|&i| !skip.contains(&i) && self.rules[i].rule.streams[stream.index()])
            .partition(|&i| self.rules[i].is_prompt_event());
        prompts.retain(|&i| prompt_ok(i));
        prompts.sort_by_key(|&i| (std::cmp::Reverse(self.rules[i].rule.risk_level), i));
        order.extend(prompts);
        order
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl CompiledRule {
    fn is_prompt_event(&self) -> bool {
        &*self.rule.event_type == PROMPT
    }
}

fn build_set(sources: impl Iterator<Item = String>) -> Result<RegexSet, String> {
    RegexSetBuilder::new(sources)
        .size_limit(256 << 20)
        .build()
        .map_err(|e| format!("the rule set cannot be compiled as a whole: {e}"))
}

/// Per-stream state of a partial line that prompt rules have already looked at.
///
/// A line is at most one prompt — unless the agent asks again on it: text added after a
/// prompt fired that makes another prompt rule match (a second question on the same line),
/// or a `\r` redraw that replaces the text with a different question. A redraw that shows
/// the same thing again (a countdown, a spinner) records nothing new: see [`RedrawKey`].
#[derive(Debug, Default)]
struct PromptState {
    /// The line number reserved for the partial line when a prompt fired on it.
    line_number: Option<u64>,
    /// Rules (indexes into `Matcher::rules`) that fired on the partial line's current text.
    fired: Vec<usize>,
    /// Prompt rules that matched the current text at an idle check, fired or not: only a
    /// rule that starts to match later (on text added since) may add a prompt.
    seen: Vec<usize>,
    /// The events recorded on this line while it was partial, across redraws (at most
    /// [`MAX_RECORDED`]).
    recorded: Vec<RedrawKey>,
    /// Length of the partial line when last checked, so an unchanged line is not rescanned.
    checked_len: usize,
    /// The splitter's redraw count this state describes.
    redraws: u64,
}

/// What makes an event on a redrawn line the same as one recorded before the redraw: the
/// rule, the matched value, and the letters of the line. Digits, punctuation and spinner
/// glyphs change while a prompt counts down or a spinner turns; the words of a question do
/// not, and a different question has different words even where the rule matched only its
/// `[y/N]`.
type RedrawKey = (Arc<str>, Option<String>, String);

/// How many [`RedrawKey`]s a line keeps: a line redrawn forever with ever new text (a
/// progress line a prompt rule matches) must not grow without bound.
const MAX_RECORDED: usize = 64;

fn redraw_key(e: &Event) -> RedrawKey {
    let letters = e
        .original_line
        .as_deref()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_alphabetic())
        .collect();
    (e.pattern.clone(), e.matched_value.clone(), letters)
}

impl PromptState {
    /// Forgets what was seen of text that a `\r` redraw has since overwritten. The line
    /// keeps its number, and what was recorded on it is remembered.
    fn sync(&mut self, redraws: u64) {
        if self.redraws != redraws {
            self.redraws = redraws;
            self.fired.clear();
            self.seen.clear();
            self.checked_len = 0;
        }
    }

    /// Whether a prompt was already recorded on the partial line's current text.
    fn prompted(&self, matcher: &Matcher) -> bool {
        self.fired
            .iter()
            .any(|&i| matcher.rules[i].is_prompt_event())
    }
}

/// Turns the child's bytes into records. One per session; not shared between threads.
pub struct Extractor {
    splitters: [LineSplitter; 2],
    core: Core,
}

struct Core {
    matcher: Arc<Matcher>,
    redactor: Arc<Redactor>,
    blocks: [CodeBlockParser; 2],
    prompts: [PromptState; 2],
    line_number: u64,
    events: u64,
    out: Vec<Record>,
    code_block: Arc<str>,
    /// Private key blocks followed across lines, per stream.
    keys: [PemTracker; 2],
    /// Bytes of a line kept in what is stored. The splitter keeps [`REDACT_SLACK`] more, so
    /// that a secret across the cut is seen whole and masked before the line is cut.
    max_line: usize,
    /// Reusable capture slots, one per rule, so matching allocates nothing per line.
    locations: Vec<regex::CaptureLocations>,
}

/// Bytes read beyond `max_line` so that redaction sees a secret that the cut goes through.
pub const REDACT_SLACK: usize = 4096;

impl Extractor {
    pub fn new(matcher: Arc<Matcher>, redactor: Arc<Redactor>, max_line: usize) -> Self {
        let max_line = max_line.max(1);
        let kept = max_line.saturating_add(REDACT_SLACK);
        Extractor {
            splitters: [LineSplitter::new(kept), LineSplitter::new(kept)],
            core: Core {
                keys: Default::default(),
                max_line,
                locations: matcher
                    .rules
                    .iter()
                    .map(|r| r.regex.capture_locations())
                    .collect(),
                matcher,
                redactor,
                blocks: Default::default(),
                prompts: Default::default(),
                line_number: 0,
                events: 0,
                out: Vec::new(),
                code_block: Arc::from(CODE_BLOCK),
            },
        }
    }

    /// Feeds bytes read from `stream` at time `ts`.
    pub fn feed(&mut self, stream: Stream, data: &[u8], ts: &Arc<str>) {
        let core = &mut self.core;
        self.splitters[stream.index()].feed_counted(data, |line, truncated, redraws| {
            core.line(stream, line, truncated, redraws, ts)
        });
    }

    /// Whether `stream` has an unfinished line that prompt rules have not seen in its
    /// current form: the caller should call [`Extractor::idle`] once it has been idle.
    pub fn wants_idle_check(&self, stream: Stream) -> bool {
        let splitter = &self.splitters[stream.index()];
        match splitter.partial() {
            Some((bytes, _)) => {
                let state = &self.core.prompts[stream.index()];
                !self.core.matcher.prompt_rules.is_empty()
                    && (bytes.len() != state.checked_len || splitter.redraws() != state.redraws)
            }
            None => false,
        }
    }

    /// Matches the idle partial line of `stream` against the prompt rules.
    pub fn idle(&mut self, stream: Stream, ts: &Arc<str>) {
        let splitter = &self.splitters[stream.index()];
        if let Some((bytes, truncated)) = splitter.partial() {
            self.core
                .idle_partial(stream, bytes, truncated, splitter.redraws(), ts);
        }
    }

    /// Ends both streams: unfinished lines become last lines, open code blocks are closed.
    pub fn finish(&mut self, ts: &Arc<str>) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let core = &mut self.core;
            let splitter = &mut self.splitters[stream.index()];
            let redraws = splitter.redraws();
            splitter.finish(|line, truncated| core.line(stream, line, truncated, redraws, ts));
            let last = self.core.line_number;
            if let Some(b) = self.core.blocks[stream.index()].finish(last) {
                self.core.push_block(stream, b, ts);
            }
        }
    }

    /// Takes the records produced so far.
    pub fn take(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.core.out)
    }

    /// Whether records are waiting to be taken.
    pub fn has_records(&self) -> bool {
        !self.core.out.is_empty()
    }

    /// Lines processed so far, both streams.
    pub fn lines(&self) -> u64 {
        self.core.line_number
    }

    /// Events produced so far (code-block events included).
    pub fn events(&self) -> u64 {
        self.core.events
    }
}

impl Core {
    fn line(&mut self, stream: Stream, raw: &[u8], truncated: bool, redraws: u64, ts: &Arc<str>) {
        let prompt = &mut self.prompts[stream.index()];
        prompt.sync(redraws);
        let line_number = match prompt.line_number.take() {
            Some(n) => n,
            None => {
                self.line_number += 1;
                self.line_number
            }
        };
        // The line is done: its partial state goes with it.
        let state = std::mem::replace(
            prompt,
            PromptState {
                redraws,
                ..PromptState::default()
            },
        );
        let text = clean_line(raw);
        // Every line, stored or not: a key's body lines are known only from its BEGIN line.
        let key_spans = if self.redactor.is_on() {
            self.keys[stream.index()].line(&text)
        } else {
            Default::default()
        };

        if let Some(block) = self.blocks[stream.index()].line(&text, line_number) {
            self.push_block(stream, block, ts);
        }

        let matcher = Arc::clone(&self.matcher);
        if matcher.rules.is_empty() {
            return;
        }
        let hits = matcher.set.matches(&text);
        if !hits.matched_any() {
            return;
        }
        let redacted = self.redactor.redact_with(&text, key_spans.as_slice());
        let (stored, cut) = cut_line(redacted, self.max_line);
        let truncated = truncated || cut || raw.len() > self.max_line;
        let mut line_arc: Option<Arc<str>> = None;
        let prompted = state.prompted(&matcher);
        // Rules that are not prompt rules never looked at the partial line, so only prompt
        // rules can add a prompt to a line that already is one.
        let order = matcher.emission_order(
            hits.iter(),
            &state.fired,
            |i| !prompted || (matcher.rules[i].rule.prompt && !state.seen.contains(&i)),
            stream,
        );
        let mut prompt_done = false;
        for idx in order {
            let r = &matcher.rules[idx];
            if prompt_done && r.is_prompt_event() {
                continue;
            }
            let line = line_arc.get_or_insert_with(|| Arc::from(&*stored)).clone();
            let emitted = self.emit(
                idx,
                r,
                stream,
                &stored,
                line,
                line_number,
                truncated,
                false,
                ts,
            );
            if emitted && !state.recorded.is_empty() {
                self.unless_recorded(&state.recorded);
            }
            prompt_done |= emitted && r.is_prompt_event();
        }
    }

    fn idle_partial(
        &mut self,
        stream: Stream,
        raw: &[u8],
        truncated: bool,
        redraws: u64,
        ts: &Arc<str>,
    ) {
        let matcher = Arc::clone(&self.matcher);
        let state = &mut self.prompts[stream.index()];
        state.sync(redraws);
        if raw.len() == state.checked_len {
            return;
        }
        state.checked_len = raw.len();
        let text = clean_line(raw);
        let hits = matcher.prompt_set.matches(&text);
        if !hits.matched_any() {
            return;
        }
        let key_spans = self.keys[stream.index()].peek(&text);
        let redacted = self.redactor.redact_with(&text, key_spans.as_slice());
        let (stored, cut) = cut_line(redacted, self.max_line);
        let truncated = truncated || cut || raw.len() > self.max_line;
        let line: Arc<str> = Arc::from(&*stored);
        let hit_rules: Vec<usize> = hits.iter().map(|i| matcher.prompt_rules[i]).collect();
        // If the line already is a prompt, only a rule that did not match its text before
        // (it matches text added since) may add one.
        let prompted = state.prompted(&matcher);
        let order = matcher.emission_order(
            hit_rules.iter().copied(),
            &state.fired,
            |i| !prompted || !state.seen.contains(&i),
            stream,
        );
        for &i in &hit_rules {
            if !state.seen.contains(&i) {
                state.seen.push(i);
            }
        }
        let mut prompt_done = false;
        for idx in order {
            let r = &matcher.rules[idx];
            if prompt_done && r.is_prompt_event() {
                continue;
            }
            let reserved = self.prompts[stream.index()].line_number;
            let line_number = reserved.unwrap_or(self.line_number + 1);
            let emitted = self.emit(
                idx,
                r,
                stream,
                &stored,
                line.clone(),
                line_number,
                truncated,
                true,
                ts,
            );
            if !emitted {
                continue;
            }
            if reserved.is_none() {
                // The partial line's number, kept for when it is completed.
                self.line_number = line_number;
            }
            let state = &mut self.prompts[stream.index()];
            state.line_number = Some(line_number);
            state.fired.push(idx);
            let mut recorded = std::mem::take(&mut state.recorded);
            if let Some(key) = self.unless_recorded(&recorded) {
                if recorded.len() < MAX_RECORDED {
                    recorded.push(key);
                }
            }
            self.prompts[stream.index()].recorded = recorded;
            prompt_done |= r.is_prompt_event();
        }
    }

    /// Takes back the event just recorded if `recorded` holds it already: the same event on
    /// the same line, shown again by a redraw. Otherwise returns its key.
    fn unless_recorded(&mut self, recorded: &[RedrawKey]) -> Option<RedrawKey> {
        let key = match self.out.last() {
            Some(Record::Event(e)) => redraw_key(e),
            _ => return None,
        };
        if recorded.contains(&key) {
            self.out.pop();
            self.events -= 1;
            return None;
        }
        Some(key)
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        idx: usize,
        r: &CompiledRule,
        stream: Stream,
        text: &str,
        line: Arc<str>,
        line_number: u64,
        truncated: bool,
        partial: bool,
        ts: &Arc<str>,
    ) -> bool {
        // After redaction the rule may no longer match (the secret was what it matched).
        let locs = &mut self.locations[idx];
        if r.regex.captures_read(locs, text).is_none() {
            return false;
        }
        let group = |i: usize| locs.get(i).map(|(a, b)| &text[a..b]);
        let value = r
            .value_group
            .and_then(group)
            .or_else(|| group(0))
            .map(str::to_string);
        let mut meta: Vec<u8> = Vec::new();
        let mut field = |name: &str, value: &dyn Fn(&mut Vec<u8>)| {
            meta.push(if meta.is_empty() { b'{' } else { b',' });
            json_str(&mut meta, name);
            meta.push(b':');
            value(&mut meta);
        };
        for (i, name) in &r.groups {
            if let Some(v) = group(*i) {
                field(name, &|m| json_str(m, v));
            }
        }
        if truncated {
            field("truncated", &|m| m.extend_from_slice(b"true"));
        }
        if partial {
            field("partial", &|m| m.extend_from_slice(b"true"));
        }
        let metadata_json = (!meta.is_empty()).then(|| {
            meta.push(b'}');
            String::from_utf8(meta).unwrap_or_default()
        });
        self.events += 1;
        self.out.push(Record::Event(Event {
            timestamp: ts.clone(),
            stream,
            event_type: r.rule.event_type.clone(),
            pattern: r.rule.name.clone(),
            matched_value: value,
            original_line: Some(line),
            line_number,
            metadata_json,
            code_block_language: None,
            risk_level: r.rule.risk_level,
            auto_confirmable: r.rule.auto_confirmable,
        }));
        true
    }

    fn push_block(&mut self, stream: Stream, mut b: codeblock::FinishedBlock, ts: &Arc<str>) {
        if let std::borrow::Cow::Owned(s) = self.redactor.redact_lines(&b.content) {
            b.content = s;
        }
        if let std::borrow::Cow::Owned(s) = self.redactor.redact_lines(&b.context) {
            b.context = s;
        }
        let block = codeblock::to_record(b, stream, ts.clone());
        let meta = serde_json::json!({
            "digest": block.digest,
            "line_end": block.line_end,
            "parseable": block.parseable,
        });
        self.events += 1;
        self.out.push(Record::Event(Event {
            timestamp: ts.clone(),
            stream,
            event_type: self.code_block.clone(),
            pattern: self.code_block.clone(),
            matched_value: Some(block.digest.clone()),
            original_line: None,
            line_number: block.line_start,
            metadata_json: Some(meta.to_string()),
            code_block_language: block.language.clone(),
            risk_level: None,
            auto_confirmable: false,
        }));
        self.out.push(Record::CodeBlock(block));
    }
}

/// Cuts redacted text to at most `max` bytes (at a character boundary); says whether it cut.
/// Redaction ran on the longer text first, so no secret is half-kept at the cut.
fn cut_line(text: std::borrow::Cow<'_, str>, max: usize) -> (std::borrow::Cow<'_, str>, bool) {
    use std::borrow::Cow;
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    match text {
        Cow::Borrowed(t) => (Cow::Borrowed(&t[..end]), true),
        Cow::Owned(mut t) => {
            t.truncate(end);
            (Cow::Owned(t), true)
        }
    }
}

/// Appends `s` as a JSON string (quoted and escaped).
fn json_str(out: &mut Vec<u8>, s: &str) {
    // Serialising a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::RiskLevel;
    use rules::Source;

    fn extractor(text: &'static str) -> Extractor {
        let book = RuleBook::load(&[Source::Builtin {
            name: "t.toml",
            text,
        }])
        .unwrap();
        let m = Arc::new(Matcher::new(&book, Some("codex")).unwrap());
        let r = Arc::new(Redactor::new(&book, true).unwrap());
        Extractor::new(m, r, 1024)
    }

    const RULES: &str = r#"
[[pattern]]
name = "err"
event_type = "error"
regex = '^error(?:\[(?P<code>E[0-9]+)\])?: (?P<value>.+)$'
samples = ["error[E1]: x"]
[[pattern]]
name = "ask"
event_type = "prompt"
regex = '\[y/N\]'
prompt = true
risk_level = "high"
samples = ["go? [y/N]"]
[[redact]]
name = "key"
regex = 'sk-[a-z]{5,}'
samples = ["sk-abcdef"]
"#;

    fn events(x: &mut Extractor) -> Vec<Event> {
        x.take()
            .into_iter()
            .filter_map(|r| match r {
                Record::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn value_and_metadata_groups() {
        let mut x = extractor(RULES);
        let ts: Arc<str> = "t".into();
        x.feed(
            Stream::Stderr,
            b"hello\nerror[E0308]: mismatched types\n",
            &ts,
        );
        let ev = events(&mut x);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].matched_value.as_deref(), Some("mismatched types"));
        assert_eq!(ev[0].metadata_json.as_deref(), Some(r#"{"code":"E0308"}"#));
        assert_eq!(ev[0].line_number, 2);
        assert_eq!(ev[0].stream, Stream::Stderr);
    }

    #[test]
    fn prompt_fires_once_on_idle_partial_then_not_again() {
        let mut x = extractor(RULES);
        let ts: Arc<str> = "t".into();
        x.feed(Stream::Stdout, b"first\nDelete? [y/N] ", &ts);
        assert!(x.wants_idle_check(Stream::Stdout));
        x.idle(Stream::Stdout, &ts);
        assert!(!x.wants_idle_check(Stream::Stdout));
        let ev = events(&mut x);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].line_number, 2);
        x.feed(Stream::Stdout, b"y\nnext\n", &ts);
        assert!(events(&mut x).is_empty());
        assert_eq!(x.lines(), 3);
    }

    const PROMPT_RULES: &str = r#"
[[pattern]]
name = "confirm"
event_type = "prompt"
regex = '\[y/N\]'
prompt = true
risk_level = "medium"
samples = ["go? [y/N]"]
[[pattern]]
name = "unrated"
event_type = "prompt"
regex = '\?'
prompt = true
samples = ["go?"]
[[pattern]]
name = "risky"
event_type = "prompt"
regex = 'rm -rf.*\[y/N\]'
prompt = true
risk_level = "high"
samples = ["rm -rf x? [y/N]"]
[[pattern]]
name = "cmd"
event_type = "command"
regex = '(?P<value>rm -rf \S+)'
samples = ["rm -rf x"]
"#;

    #[test]
    fn a_line_is_one_prompt_with_the_highest_risk_and_other_events_stay() {
        let ts: Arc<str> = "t".into();
        // Whole lines.
        let mut x = extractor(PROMPT_RULES);
        x.feed(
            Stream::Stdout,
            b"Run rm -rf build? [y/N]\nSave? [y/N]\nwhy?\n",
            &ts,
        );
        let got: Vec<(String, Option<RiskLevel>, u64)> = events(&mut x)
            .into_iter()
            .map(|e| (e.pattern.to_string(), e.risk_level, e.line_number))
            .collect();
        assert_eq!(
            got,
            [
                ("cmd".to_string(), None, 1),
                ("risky".to_string(), Some(RiskLevel::High), 1),
                ("confirm".to_string(), Some(RiskLevel::Medium), 2),
                ("unrated".to_string(), None, 3),
            ]
        );
        // The same on an idle partial line, and nothing more when it is completed.
        let mut x = extractor(PROMPT_RULES);
        x.feed(Stream::Stdout, b"Run rm -rf build? [y/N] ", &ts);
        x.idle(Stream::Stdout, &ts);
        let ev = events(&mut x);
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(&*ev[0].pattern, "risky");
        x.feed(Stream::Stdout, b"y\n", &ts);
        let rest: Vec<String> = events(&mut x)
            .into_iter()
            .map(|e| e.pattern.to_string())
            .collect();
        assert_eq!(rest, ["cmd"], "no second prompt for the same line");
    }

    fn patterns(x: &mut Extractor) -> Vec<(String, u64)> {
        events(x)
            .into_iter()
            .map(|e| (e.pattern.to_string(), e.line_number))
            .collect()
    }

    fn owned(v: &[(&str, u64)]) -> Vec<(String, u64)> {
        v.iter().map(|(p, n)| (p.to_string(), *n)).collect()
    }

    /// A prompt redrawn with `\r` into a different prompt is a second question, on the same
    /// line; redrawn into the same prompt (a countdown, a spinner) it is not.
    #[test]
    fn a_redrawn_line_can_be_a_new_prompt_but_not_the_same_one_again() {
        let ts: Arc<str> = "t".into();
        let mut x = extractor(PROMPT_RULES);
        x.feed(Stream::Stdout, b"first\nSave a.txt? (30s) [y/N] ", &ts);
        x.idle(Stream::Stdout, &ts);
        assert_eq!(patterns(&mut x), owned(&[("confirm", 2)]));
        // The same prompt drawn again, its countdown ticking: nothing new.
        for tick in [b"\rSave a.txt? (29s) [y/N] ", b"\rSave a.txt? (28s) [y/N] "] {
            x.feed(Stream::Stdout, tick, &ts);
            assert!(x.wants_idle_check(Stream::Stdout));
            x.idle(Stream::Stdout, &ts);
            assert_eq!(patterns(&mut x), owned(&[]));
        }
        // A different question matched by the same rule (whose value is only `[y/N]`).
        x.feed(Stream::Stdout, b"\rDelete b.txt? [y/N] ", &ts);
        x.idle(Stream::Stdout, &ts);
        assert_eq!(patterns(&mut x), owned(&[("confirm", 2)]));
        // A different prompt over it, checked while idle.
        x.feed(Stream::Stdout, b"\rRun rm -rf build? [y/N] ", &ts);
        x.idle(Stream::Stdout, &ts);
        assert_eq!(patterns(&mut x), owned(&[("risky", 2)]));
        // One that arrives with its newline in the same read, never idle...
        x.feed(Stream::Stdout, b"\rOverwrite c.txt? [y/N]\nnext\n", &ts);
        assert_eq!(patterns(&mut x), owned(&[("confirm", 2)]));
        // ...and a question the line already asked is not recorded twice.
        x.feed(Stream::Stdout, b"Save? [y/N] ", &ts);
        x.idle(Stream::Stdout, &ts);
        x.feed(Stream::Stdout, b"\rOther? [y/N] \rSave? [y/N]\n", &ts);
        assert_eq!(patterns(&mut x), owned(&[("confirm", 4)]));
        assert_eq!(x.lines(), 4);
    }

    /// The same holds for rules that look at partial lines but record another event type:
    /// a spinner redrawing "Waiting for input" is one event, not one per frame.
    #[test]
    fn a_spinner_redrawing_a_partial_line_records_its_event_once() {
        let ts: Arc<str> = "t".into();
        let mut x = extractor(
            r#"
[[pattern]]
name = "waiting"
event_type = "question"
regex = 'Waiting for input'
prompt = true
samples = ["Waiting for input |"]
"#,
        );
        for frame in [
            &b"Waiting for input |"[..],
            b"\rWaiting for input /",
            b"\rWaiting for input -",
        ] {
            x.feed(Stream::Stdout, frame, &ts);
            x.idle(Stream::Stdout, &ts);
        }
        x.feed(Stream::Stdout, b"\rWaiting for input \\\n", &ts);
        assert_eq!(patterns(&mut x), owned(&[("waiting", 1)]));
    }

    /// Text added to a line after its prompt fired can ask again: a prompt rule that starts
    /// to match only then records a second prompt; rules that matched before do not.
    #[test]
    fn a_second_question_added_to_a_prompt_line_is_recorded() {
        let ts: Arc<str> = "t".into();
        let mut x = extractor(PROMPT_RULES);
        x.feed(Stream::Stdout, b"Save? [y/N] ", &ts);
        x.idle(Stream::Stdout, &ts);
        assert_eq!(patterns(&mut x), owned(&[("confirm", 1)]));
        x.feed(Stream::Stdout, b"y. Now rm -rf build? [y/N] ", &ts);
        assert!(x.wants_idle_check(Stream::Stdout));
        x.idle(Stream::Stdout, &ts);
        assert_eq!(patterns(&mut x), owned(&[("risky", 1)]));
        x.feed(Stream::Stdout, b"n\n", &ts);
        assert_eq!(patterns(&mut x), owned(&[("cmd", 1)]));
    }

    /// A rule that fires on a partial line only counts once its event is recorded: one that
    /// the redaction of its match took away reserves no line number.
    #[test]
    fn a_prompt_that_records_nothing_reserves_no_line_number() {
        let ts: Arc<str> = "t".into();
        let mut x = extractor(
            r#"
[[pattern]]
name = "token"
event_type = "prompt"
regex = 'sk-[a-z]{5,}\?'
prompt = true
samples = ["sk-abcdef?"]
[[pattern]]
name = "oops"
event_type = "error"
regex = '^oops'
samples = ["oops"]
[[redact]]
name = "key"
regex = 'sk-[a-z]{5,}'
samples = ["sk-abcdef"]
"#,
        );
        x.feed(Stream::Stdout, b"use sk-abcdef? ", &ts);
        x.idle(Stream::Stdout, &ts);
        assert_eq!(patterns(&mut x), owned(&[]));
        // Lines are numbered in the order they end: stderr's line is the first.
        x.feed(Stream::Stderr, b"oops\n", &ts);
        x.feed(Stream::Stdout, b"\n", &ts);
        assert_eq!(patterns(&mut x), owned(&[("oops", 1)]));
        assert_eq!(x.lines(), 2);
    }

    #[test]
    fn secrets_are_redacted_in_stored_text() {
        let mut x = extractor(RULES);
        let ts: Arc<str> = "t".into();
        x.feed(Stream::Stdout, b"error: key sk-secretvalue leaked\n", &ts);
        let ev = events(&mut x);
        assert_eq!(
            ev[0].matched_value.as_deref(),
            Some("key [REDACTED:key] leaked")
        );
        assert!(!ev[0].original_line.as_deref().unwrap().contains("secret"));
    }

    #[test]
    fn code_block_yields_record_and_event() {
        let mut x = extractor(RULES);
        let ts: Arc<str> = "t".into();
        x.feed(Stream::Stdout, b"```python\nprint(1)\n```\n", &ts);
        let recs = x.take();
        assert_eq!(recs.len(), 2);
        match (&recs[0], &recs[1]) {
            (Record::Event(e), Record::CodeBlock(b)) => {
                assert_eq!(&*e.event_type, CODE_BLOCK);
                assert_eq!(e.code_block_language.as_deref(), Some("python"));
                assert_eq!(e.matched_value.as_deref(), Some(b.digest.as_str()));
                assert_eq!(b.content, "print(1)");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
