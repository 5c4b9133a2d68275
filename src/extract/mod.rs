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
    /// matched it (`hits`, ascending) and those that already `fired` on it as a partial line:
    /// rules for other streams and rules already fired drop out; prompt rules come last,
    /// riskiest first (no risk level counts lowest, then load order), and none at all if a
    /// prompt already fired — the caller records only the first prompt that matches, since a
    /// line is at most one prompt.
    fn emission_order(
        &self,
        hits: impl Iterator<Item = usize>,
        fired: &[usize],
        stream: Stream,
    ) -> Vec<usize> {
        let prompted = fired.iter().any(|&i| self.rules[i].is_prompt_event());
        let (mut prompts, mut order): (Vec<usize>, Vec<usize>) = hits
            .filter(|&i| !fired.contains(&i) && self.rules[i].rule.streams[stream.index()])
            .partition(|&i| self.rules[i].is_prompt_event());
        if !prompted {
            prompts.sort_by_key(|&i| (std::cmp::Reverse(self.rules[i].rule.risk_level), i));
            order.extend(prompts);
        }
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
#[derive(Debug, Default)]
struct PromptState {
    /// The line number reserved for the partial line when a prompt fired on it.
    line_number: Option<u64>,
    /// Rules (indexes into `Matcher::rules`) that already fired on this partial line.
    fired: Vec<usize>,
    /// Length of the partial line when last checked, so an unchanged line is not rescanned.
    checked_len: usize,
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
    /// Reusable capture slots, one per rule, so matching allocates nothing per line.
    locations: Vec<regex::CaptureLocations>,
}

impl Extractor {
    pub fn new(matcher: Arc<Matcher>, redactor: Arc<Redactor>, max_line: usize) -> Self {
        Extractor {
            splitters: [LineSplitter::new(max_line), LineSplitter::new(max_line)],
            core: Core {
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
        self.splitters[stream.index()].feed(data, |line, truncated| {
            core.line(stream, line, truncated, ts)
        });
    }

    /// Whether `stream` has an unfinished line that prompt rules have not seen in its
    /// current form: the caller should call [`Extractor::idle`] once it has been idle.
    pub fn wants_idle_check(&self, stream: Stream) -> bool {
        match self.splitters[stream.index()].partial() {
            Some((bytes, _)) => {
                !self.core.matcher.prompt_rules.is_empty()
                    && bytes.len() != self.core.prompts[stream.index()].checked_len
            }
            None => false,
        }
    }

    /// Matches the idle partial line of `stream` against the prompt rules.
    pub fn idle(&mut self, stream: Stream, ts: &Arc<str>) {
        if let Some((bytes, truncated)) = self.splitters[stream.index()].partial() {
            self.core.idle_partial(stream, bytes, truncated, ts);
        }
    }

    /// Ends both streams: unfinished lines become last lines, open code blocks are closed.
    pub fn finish(&mut self, ts: &Arc<str>) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let core = &mut self.core;
            self.splitters[stream.index()]
                .finish(|line, truncated| core.line(stream, line, truncated, ts));
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
    fn line(&mut self, stream: Stream, raw: &[u8], truncated: bool, ts: &Arc<str>) {
        let prompt = &mut self.prompts[stream.index()];
        let line_number = match prompt.line_number.take() {
            Some(n) => n,
            None => {
                self.line_number += 1;
                self.line_number
            }
        };
        let fired = std::mem::take(&mut prompt.fired);
        prompt.checked_len = 0;
        let text = clean_line(raw);

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
        let stored = self.redactor.redact(&text);
        let mut line_arc: Option<Arc<str>> = None;
        let mut prompt_done = false;
        for idx in matcher.emission_order(hits.iter(), &fired, stream) {
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
            prompt_done |= emitted && r.is_prompt_event();
        }
    }

    fn idle_partial(&mut self, stream: Stream, raw: &[u8], truncated: bool, ts: &Arc<str>) {
        let matcher = Arc::clone(&self.matcher);
        let state = &mut self.prompts[stream.index()];
        if raw.len() == state.checked_len {
            return;
        }
        state.checked_len = raw.len();
        let text = clean_line(raw);
        let hits = matcher.prompt_set.matches(&text);
        if !hits.matched_any() {
            return;
        }
        let stored = self.redactor.redact(&text);
        let line: Arc<str> = Arc::from(&*stored);
        let order = matcher.emission_order(
            hits.iter().map(|set_idx| matcher.prompt_rules[set_idx]),
            &self.prompts[stream.index()].fired,
            stream,
        );
        let mut prompt_done = false;
        for idx in order {
            let r = &matcher.rules[idx];
            if prompt_done && r.is_prompt_event() {
                continue;
            }
            let state = &mut self.prompts[stream.index()];
            let line_number = match state.line_number {
                Some(n) => n,
                None => {
                    self.line_number += 1;
                    state.line_number = Some(self.line_number);
                    self.line_number
                }
            };
            state.fired.push(idx);
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
            prompt_done |= emitted && r.is_prompt_event();
        }
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
        if let std::borrow::Cow::Owned(s) = self.redactor.redact(&b.content) {
            b.content = s;
        }
        if let std::borrow::Cow::Owned(s) = self.redactor.redact(&b.context) {
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
