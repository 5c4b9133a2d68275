//! Extraction: lines in, events and code blocks out.
//!
//! The run path and `wrapper patterns test` share this module, so what a user sees when
//! developing a rule is exactly what a session records. Per line the cost is one `RegexSet`
//! scan; captures run only for the rules that matched, and redaction only for lines that
//! produced something to store.

pub mod codeblock;
pub mod context;
pub mod json;
pub mod json_rules;
pub mod lint;
mod onepass;
mod prescan;
pub mod redact;
pub mod rules;
mod screen;
mod sets;
mod which;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};

use regex::{RegexSet, RegexSetBuilder};

use crate::event::{Event, Merge, PerStream, Record, SessionFacts, Stream};
use crate::lines::{clean_line, LineSplitter};
use codeblock::CodeBlockParser;
pub use redact::Redactor;
use redact::{KeyFree, PemTracker, Spans};
use rules::{Rule, RuleBook};

/// The event type and pattern name recorded for a code block's event.
pub const CODE_BLOCK: &str = "code_block";

/// The rules that apply to one agent, compiled for matching.
#[derive(Debug)]
pub struct Matcher {
    /// Every text rule, for whole lines (`sets.rs`).
    set: sets::RuleSets,
    rules: Vec<CompiledRule>,
    /// Rules with `prompt = true`, matched against idle partial lines; built the first time
    /// a partial line goes idle (a pipe of finished lines never needs it: 31 M instructions
    /// at start-up for the built-in rules). Their regexes compiled as part of `set` already.
    prompt_set: OnceLock<RegexSet>,
    prompt_rules: Vec<usize>,
    /// `[[json]]` rules for this agent (`json.rs`).
    json: json::JsonEngine,
    /// The blocks that rules with a `context` use (context.rs).
    blocks: context::Blocks,
    /// Whether any rule has a `context`: only then is the previous line kept.
    has_context: bool,
}

/// The event type of which a line yields at most one event (SPEC §3, prompts with a risk).
const PROMPT: &str = "prompt";

#[derive(Debug)]
struct CompiledRule {
    rule: Rule,
    /// The regex whose groups fill the event, compiled the first time the sets find the rule
    /// on a line: most rules never match in a given session, and compiling all of them was
    /// half of what the extraction thread spent before reading its first line (94 M
    /// instructions for the built-in rules). A user's rule was compiled and checked when its
    /// file was read, and a `report = "previous"` rule uses the previous-line regex its
    /// conditions compiled, so those are filled at once; a built-in rule's set source
    /// compiled with the sets, and its samples are tested. `None` only if compiling it failed after all: it then records
    /// nothing (and says so once).
    captures: OnceLock<Option<Captures>>,
    /// Conditions on the previous line or a block. For `report = "previous"`, the capture
    /// regex is the `previous` regex: the event is made from the previous line.
    context: Option<context::Conditions>,
}

#[derive(Debug)]
struct Captures {
    regex: regex::Regex,
    /// Its groups in one pass over its match, where that is sound ([`onepass::Relaxed`]).
    relaxed: Option<onepass::Relaxed>,
    /// Named groups other than `value`, with their capture index.
    groups: Vec<(usize, Arc<str>)>,
    value_group: Option<usize>,
}

impl Captures {
    fn new(regex: regex::Regex, case_insensitive: bool) -> Captures {
        let mut groups = Vec::new();
        let mut value_group = None;
        for (i, name) in regex.capture_names().enumerate() {
            match name {
                Some("value") => value_group = Some(i),
                Some(n) => groups.push((i, Arc::from(n))),
                None => {}
            }
        }
        Captures {
            relaxed: onepass::Relaxed::new(regex.as_str(), case_insensitive),
            regex,
            groups,
            value_group,
        }
    }
}

impl CompiledRule {
    fn captures(&self) -> Option<&Captures> {
        self.captures
            .get_or_init(|| {
                match rules::compile(&self.rule.regex_src, self.rule.case_insensitive) {
                    Ok(re) => Some(Captures::new(re, self.rule.case_insensitive)),
                    Err(e) => {
                        eprintln!(
                            "wrapper: rule `{}` ({}) cannot be compiled and records nothing: {e}",
                            self.rule.name, self.rule.origin
                        );
                        None
                    }
                }
            })
            .as_ref()
    }
}

impl Matcher {
    /// Compiles the rules of `book` that apply to `agent` (all of them for `None`).
    pub fn new(book: &RuleBook, agent: Option<&str>) -> Result<Matcher, String> {
        let mut rules: Vec<CompiledRule> = Vec::new();
        let mut blocks = context::Blocks::default();
        for r in book
            .rules
            .iter()
            .filter(|r| agent.is_none_or(|a| r.applies_to(a)))
        {
            // What is compiled already: a user's regex, or (below) a context's previous-line
            // regex that a `report = "previous"` rule fills its event from.
            let mut eager = r.regex.clone();
            let conditions = match &r.context {
                None => None,
                Some(c) => {
                    let mut conds =
                        context::Conditions::new(c, &|s| rules::compile(s, r.case_insensitive))
                            .map_err(|e| format!("rule `{}` ({}): {e}", r.name, r.origin))?;
                    blocks.register(&mut conds);
                    if let Some(prev) = conds.previous_regex().filter(|_| conds.report_previous) {
                        eager = Some(prev.clone());
                    }
                    Some(conds)
                }
            };
            let captures = OnceLock::new();
            if let Some(re) = eager {
                let _ = captures.set(Some(Captures::new(re, r.case_insensitive)));
            }
            rules.push(CompiledRule {
                rule: r.clone(),
                captures,
                context: conditions,
            });
        }
        blocks.build()?;
        let has_context = rules.iter().any(|r| r.context.is_some());
        let sources: Vec<String> = rules.iter().map(|r| r.rule.set_source()).collect();
        let set = sets::RuleSets::new(&sources)?;
        let prompt_rules: Vec<usize> = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.rule.prompt)
            .map(|(i, _)| i)
            .collect();
        let json_rules: Vec<json_rules::JsonRule> = book
            .json
            .iter()
            .filter(|r| agent.is_none_or(|a| r.applies_to(a)))
            .cloned()
            .collect();
        Ok(Matcher {
            set,
            rules,
            prompt_set: OnceLock::new(),
            prompt_rules,
            json: json::JsonEngine::new(json_rules),
            blocks,
            has_context,
        })
    }

    /// The prompt rules' set, built on first use. Should it not compile after
    /// all, prompts on idle partial lines go unrecorded, and the user is told once.
    fn prompt_set(&self) -> &RegexSet {
        self.prompt_set.get_or_init(|| {
            let sources = self
                .prompt_rules
                .iter()
                .map(|&i| self.rules[i].rule.set_source());
            build_set(sources).unwrap_or_else(|e| {
                eprintln!("wrapper: prompts on unfinished lines are not recorded: {e}");
                RegexSet::empty()
            })
        })
    }

    /// No rules at all: lines are still split and counted.
    pub fn empty() -> Matcher {
        Matcher {
            set: sets::RuleSets::empty(),
            rules: Vec::new(),
            prompt_set: OnceLock::from(RegexSet::empty()),
            prompt_rules: Vec::new(),
            json: json::JsonEngine::default(),
            blocks: context::Blocks::default(),
            has_context: false,
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
        hits: &[usize],
        skip: &[usize],
        prompt_ok: impl Fn(usize) -> bool,
        stream: Stream,
    ) -> Vec<usize> {
        let live = |i: &usize| !skip.contains(i) && self.rules[*i].rule.streams[stream];
        let mut order = Vec::with_capacity(hits.len());
        order.extend(
            hits.iter()
                .copied()
                .filter(|i| live(i) && !self.rules[*i].is_prompt_event()),
        );
        let others = order.len();
        order.extend(
            hits.iter()
                .copied()
                .filter(|i| live(i) && self.rules[*i].is_prompt_event() && prompt_ok(*i)),
        );
        order[others..].sort_by_key(|&i| (std::cmp::Reverse(self.rules[i].rule.risk_level), i));
        order
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.json.is_empty()
    }
}

impl CompiledRule {
    fn is_prompt_event(&self) -> bool {
        &*self.rule.event_type == PROMPT
    }

    fn is_refusal(&self) -> bool {
        &*self.rule.event_type == "denied"
    }

    /// An event a refusal rules out (any on its line, the refused value on the lines after
    /// it): the call did not run, so it neither ran as a command nor failed.
    fn ruled_out_by_refusal(&self) -> bool {
        matches!(&*self.rule.event_type, "error" | "command")
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
    /// The rules, beside the state they are applied with: lent to [`Core`]'s methods for
    /// each line, not cloned (two atomic operations a line, ~3% of the extraction thread).
    matcher: Arc<Matcher>,
    splitters: PerStream<LineSplitter>,
    core: Core,
    /// PTY mode's questions on the screen ([`screen`]).
    screen: screen::ScreenPrompts,
    /// The helper thread for large chunks, started with the first one ([`prescan`]).
    prescan: Option<prescan::Prescan>,
    helper_allowed: bool,
    /// A Vec of records handed back, for the next [`Extractor::take`].
    spare: Option<Vec<Record>>,
}

struct Core {
    redactor: Arc<Redactor>,
    blocks: PerStream<CodeBlockParser>,
    prompts: PerStream<PromptState>,
    line_number: u64,
    events: u64,
    out: Vec<Record>,
    code_block: Arc<str>,
    /// Private key blocks followed across lines, per stream.
    keys: PerStream<PemTracker>,
    /// Bytes of a line kept in what is stored. The splitter keeps [`REDACT_SLACK`] more, so
    /// that a secret across the cut is seen whole and masked before the line is cut.
    max_line: usize,
    /// This thread's caches for the sets and each rule's capture slots, so matching
    /// allocates nothing per line; also used for the blocks it computes ([`prescan`]).
    scan: prescan::Scan,
    json: json::JsonState,
    /// Events already recorded from the output, by type and value (in a session whose log
    /// will be read): a log event found here is merged into that one, not stored again.
    seen: HashMap<(Arc<str>, String), VecDeque<u64>>,
    /// Bytes of the values in `seen`.
    seen_bytes: usize,
    /// What the text rules found in the session log's tool output, by type and value: a
    /// tool's output the log holds twice (Codex's rollout) is one event.
    log_found: HashSet<(Arc<str>, Option<String>)>,
    /// Output lines with an `error` event, for a log's account of a command's failure.
    screen_errors: BTreeSet<u64>,
    /// Digests of the code blocks recorded from the output.
    seen_blocks: HashSet<String>,
    log_path: Option<String>,
    /// The previous line and block flags per stream, for rules with a `context`.
    context: context::Tracker,
    /// Whether a session log will be read: only then is `seen` kept.
    expect_log: bool,
    /// The last refusals recorded (stream, comparable value, line), for the lines after them.
    refused: VecDeque<(Stream, String, u64)>,
}

/// Bytes read beyond `max_line` so that redaction sees a secret that the cut goes through.
pub const REDACT_SLACK: usize = 4096;

/// Where a decoded JSON object came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum JsonSource {
    /// A line of the agent's output.
    Output,
    /// Line `n` of the agent's own session log.
    Log(u64),
}

/// The event type of failures.
const ERROR: &str = "error";

/// How many lines after a command its failure is looked for on the screen.
const FAILURE_LINES: u64 = 3;

/// How many lines after a refusal the same command is not a command that ran or a failure
/// (Codex draws a declined command as `• Exited (status 1) rm …` two lines under `✗ You
/// canceled the request to run rm …`), and how many refusals are kept for that.
const REFUSAL_LINES: u64 = 5;
const REFUSALS_KEPT: usize = 8;

/// Keys kept in [`Core::seen`] at most, so a session of millions of events stays bounded.
const MAX_SEEN: usize = 100_000;

/// Bytes of values kept in [`Core::seen`] at most: every output event is remembered in a
/// session whose log will be read, and their values may be long.
const MAX_SEEN_BYTES: usize = 4 << 20;

/// Output lines kept per event type and value (the same error a million times).
const MAX_SEEN_PER_KEY: usize = 1024;

/// Longest raw JSON line kept as an event's `original_line`.
const MAX_ORIGINAL: usize = 8 * 1024;

impl Extractor {
    pub fn new(matcher: Arc<Matcher>, redactor: Arc<Redactor>, max_line: usize) -> Self {
        let max_line = max_line.max(1);
        let kept = max_line.saturating_add(REDACT_SLACK);
        Extractor {
            splitters: PerStream::from_fn(|_| LineSplitter::new(kept)),
            screen: Default::default(),
            prescan: None,
            helper_allowed: false,
            spare: None,
            core: Core {
                keys: Default::default(),
                max_line,
                context: if matcher.has_context {
                    context::Tracker::new(&matcher.blocks)
                } else {
                    context::Tracker::idle()
                },
                scan: prescan::Scan::new(&matcher),
                redactor,
                blocks: Default::default(),
                prompts: Default::default(),
                line_number: 0,
                events: 0,
                out: Vec::new(),
                code_block: Arc::from(CODE_BLOCK),
                json: json::JsonState::default(),
                seen: HashMap::new(),
                seen_bytes: 0,
                log_found: HashSet::new(),
                screen_errors: BTreeSet::new(),
                seen_blocks: HashSet::new(),
                log_path: None,
                expect_log: false,
                refused: VecDeque::new(),
            },
            matcher,
        }
    }

    /// Feeds line `n` (from 1) of the agent's own session log (`agents/`). Only `[[json]]`
    /// rules read it (its prompts and instructions are not the agent's output); an event the
    /// output already showed is merged into that event instead of being stored again.
    pub fn feed_log_line(&mut self, line: &str, n: u64, fallback_ts: &Arc<str>) {
        if self.matcher.json.is_empty() || !json::looks_like_object(line) {
            return;
        }
        let Some(obj) = json::parse_object(line) else {
            return;
        };
        let ts: Arc<str> = obj
            .get("timestamp")
            .and_then(serde_json::Value::as_str)
            .filter(|t| json::epoch_ms(t).is_some())
            .map(Arc::from)
            .unwrap_or_else(|| fallback_ts.clone());
        self.core.json_object(
            &self.matcher,
            Stream::Stdout,
            &obj,
            line,
            0,
            false,
            &ts,
            JsonSource::Log(n),
        );
    }

    /// Says that the agent's session log will be fed in at the end ([`Extractor::feed_log_line`]):
    /// from now on the events it may confirm are remembered (otherwise that costs nothing).
    pub fn expect_log(&mut self) {
        self.core.expect_log = true;
    }

    /// Records the path of the session log that was read, with the session's facts.
    pub fn set_log_path(&mut self, path: String) {
        self.core.log_path = Some(path);
        let facts = self.core.facts();
        self.core.out.push(Record::Facts(facts));
    }

    /// What the agent has said about the session so far.
    pub fn facts(&self) -> SessionFacts {
        self.core.facts()
    }

    /// Feeds bytes read from `stream` at time `ts`.
    pub fn feed(&mut self, stream: Stream, data: &[u8], ts: &Arc<str>) {
        let (core, m) = (&mut self.core, &*self.matcher);
        let free = KeyFree::of(data);
        self.splitters[stream].feed_counted(data, |line, truncated, redraws| {
            core.line_with(m, stream, line, truncated, redraws, ts, None, free)
        });
    }

    /// Lets [`Extractor::begin`] start a helper thread for large chunks: worth it when
    /// extraction, not what stores its records, is the slower side.
    pub fn allow_helper(&mut self) {
        self.helper_allowed = true;
    }

    /// Takes a chunk that [`Extractor::feed_pending`] will extract: the lines of a large
    /// one are computed on a helper thread from now on, as far as they depend on nothing
    /// else ([`prescan`]), so a caller with more chunks waiting begins the next ones before
    /// feeding this one. Without [`Extractor::allow_helper`] every chunk stays on this
    /// thread. What is extracted is the same as with [`Extractor::feed`].
    pub fn begin(&mut self, stream: Stream, data: Vec<u8>) -> Pending {
        if !self.helper_allowed || !prescan::worth_it(&data) || self.matcher.rules.is_empty() {
            return Pending(stream, Begun::Here(data));
        }
        let core = &self.core;
        let prescan = self.prescan.get_or_insert_with(|| {
            prescan::Prescan::start(
                Arc::clone(&self.matcher),
                Arc::clone(&core.redactor),
                core.max_line,
                core.max_line.saturating_add(REDACT_SLACK),
            )
        });
        Pending(stream, Begun::Ahead(prescan.begin(stream, data)))
    }

    /// Feeds a chunk taken by [`Extractor::begin`], read at time `ts`; returns its bytes.
    pub fn feed_pending(&mut self, pending: Pending, ts: &Arc<str>) -> Vec<u8> {
        let Pending(stream, begun) = pending;
        let mut chunk = match begun {
            Begun::Here(data) => {
                self.feed(stream, &data, ts);
                return data;
            }
            Begun::Ahead(chunk) => chunk,
        };
        let Some(prescan) = self.prescan.as_mut() else {
            // Not reached: a chunk is begun ahead only with a helper in place.
            let data = chunk.bytes().to_vec();
            self.feed(stream, &data, ts);
            return data;
        };
        let (core, m) = (&mut self.core, &*self.matcher);
        let bytes = chunk.bytes();
        let free = KeyFree::of(&bytes);
        self.splitters[stream].feed_counted(&bytes, |line, truncated, redraws| {
            let pre = prescan.line(&mut chunk, line, &mut core.scan);
            core.line_with(m, stream, line, truncated, redraws, ts, pre, free)
        });
        drop(bytes);
        prescan.end(chunk)
    }

    /// Whether `stream` has an unfinished line that prompt rules have not seen in its
    /// current form: the caller should call [`Extractor::idle`] once it has been idle.
    pub fn wants_idle_check(&self, stream: Stream) -> bool {
        let splitter = &self.splitters[stream];
        match splitter.partial() {
            Some((bytes, _)) => {
                let state = &self.core.prompts[stream];
                !self.matcher.prompt_rules.is_empty()
                    && (bytes.len() != state.checked_len || splitter.redraws() != state.redraws)
            }
            None => false,
        }
    }

    /// Matches the idle partial line of `stream` against the prompt rules.
    pub fn idle(&mut self, stream: Stream, ts: &Arc<str>) {
        let splitter = &self.splitters[stream];
        if let Some((bytes, truncated)) = splitter.partial() {
            self.core.idle_partial(
                &self.matcher,
                stream,
                bytes,
                truncated,
                splitter.redraws(),
                ts,
            );
        }
    }

    /// Ends every stream: unfinished lines become last lines, open code blocks are closed.
    pub fn finish(&mut self, ts: &Arc<str>) {
        for stream in Stream::ALL {
            let (core, m) = (&mut self.core, &*self.matcher);
            let splitter = &mut self.splitters[stream];
            let redraws = splitter.redraws();
            // The last line began in an earlier chunk: nothing is known about its bytes.
            splitter.finish(|line, truncated| {
                let free = KeyFree::unknown();
                core.line_with(m, stream, line, truncated, redraws, ts, None, free)
            });
            let last = self.core.line_number;
            if let Some(b) = self.core.blocks[stream].finish(last) {
                self.core.push_block(stream, b, ts, JsonSource::Output);
            }
        }
    }

    /// Takes the records produced so far.
    pub fn take(&mut self) -> Vec<Record> {
        // The next chunk's records go into a Vec of about this one's size, not one grown
        // from nothing by doubling (a copy of every record at each step): one given back
        // if there is one (a new one of this size makes glibc sort its free lists first).
        let room = self.core.out.len().min(1024);
        let next = match self.spare.take() {
            Some(v) if v.capacity() >= room => v,
            _ => Vec::with_capacity(room),
        };
        std::mem::replace(&mut self.core.out, next)
    }

    /// Frees records taken earlier and keeps their Vec for the next [`Extractor::take`].
    pub fn give_back(&mut self, mut records: Vec<Record>) {
        records.clear();
        if self
            .spare
            .as_ref()
            .is_none_or(|s| s.capacity() < records.capacity())
        {
            self.spare = Some(records);
        }
    }

    /// Whether records are waiting to be taken.
    pub fn has_records(&self) -> bool {
        !self.core.out.is_empty()
    }

    /// Lines processed so far, all streams.
    pub fn lines(&self) -> u64 {
        self.core.line_number
    }

    /// Events produced so far (code-block events included).
    pub fn events(&self) -> u64 {
        self.core.events
    }
}

impl Core {
    /// A line, with what of it was computed ahead ([`prescan`]) if anything, and whether its
    /// chunk is known to hold no private key's BEGIN marker.
    #[allow(clippy::too_many_arguments)]
    fn line_with(
        &mut self,
        m: &Matcher,
        stream: Stream,
        raw: &[u8],
        truncated: bool,
        redraws: u64,
        ts: &Arc<str>,
        pre: Option<prescan::Pre<'_>>,
        free: KeyFree,
    ) {
        let prompt = &mut self.prompts[stream];
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
        let (text, verbatim) = match &pre {
            Some(p) => (std::borrow::Cow::Borrowed(p.text), p.verbatim),
            None => {
                let t = clean_line(raw);
                let v = matches!(t, std::borrow::Cow::Borrowed(_));
                (t, v)
            }
        };
        // Every line, stored or not: a key's body lines are known only from its BEGIN line.
        let mut keys = if !self.redactor.is_on() {
            Default::default()
        } else if verbatim && free.covers(raw) {
            self.keys[stream].line_without_begin(&text)
        } else {
            self.keys[stream].line(&text)
        };
        // Only a terminal's rows are wrapped by the program that draws them.
        if stream == Stream::Pty && self.redactor.is_on() {
            self.redactor
                .follow_wrapped(&mut self.keys[stream], &text, &mut keys);
        }

        if let Some(block) = self.blocks[stream].line(&text, line_number) {
            self.push_block(stream, block, ts, JsonSource::Output);
        }
        let spans = &keys;
        // Rules with a `context` see the previous line and the blocks this one is in.
        if m.has_context {
            self.context.observe(&m.blocks, stream, &text);
        }
        self.match_line(
            m,
            stream,
            &text,
            spans,
            line_number,
            truncated,
            &state,
            ts,
            pre,
        );
        if m.has_context {
            self.context.remember(stream, &text, line_number);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn match_line(
        &mut self,
        matcher: &Matcher,
        stream: Stream,
        text: &str,
        keys: &Spans,
        line_number: u64,
        truncated: bool,
        state: &PromptState,
        ts: &Arc<str>,
        pre: Option<prescan::Pre<'_>>,
    ) {
        // JSON Lines are decoded, not grepped (`json.rs`); other lines pay two byte checks.
        if json::looks_like_object(text) {
            if let Some(obj) = json::parse_object(text) {
                self.json_object(
                    matcher,
                    stream,
                    &obj,
                    text,
                    line_number,
                    truncated,
                    ts,
                    JsonSource::Output,
                );
                return;
            }
        }
        if json::starts_like_object(text) {
            // Cut at max_line, or broken: read with its escapes decoded, never as raw text.
            let fresh = PromptState::default();
            let mut pem = PemTracker::default();
            for piece in json::lossy_lines(text) {
                let keys = pem.line(&piece);
                self.text_rules(
                    matcher,
                    stream,
                    &piece,
                    &keys,
                    line_number,
                    truncated,
                    ts,
                    &fresh,
                    None,
                );
            }
            return;
        }
        self.text_rules(
            matcher,
            stream,
            text,
            keys,
            line_number,
            truncated,
            ts,
            state,
            pre,
        );
    }

    /// Runs the text rules over one line of text (a line of output, or one line of a
    /// decoded JSON string), given what prompt rules already did on it while it was partial.
    #[allow(clippy::too_many_arguments)]
    fn text_rules(
        &mut self,
        matcher: &Matcher,
        stream: Stream,
        text: &str,
        keys: &Spans,
        line_number: u64,
        truncated: bool,
        ts: &Arc<str>,
        state: &PromptState,
        pre: Option<prescan::Pre<'_>>,
    ) {
        if matcher.rules.is_empty() {
            return;
        }
        let hits = match &pre {
            Some(p) => p.hits,
            None => matcher.set.matches(&mut self.scan.sets, text),
        };
        if hits.is_empty() {
            return;
        }
        let prompted = state.prompted(matcher);
        // Rules that are not prompt rules never looked at the partial line, so only prompt
        // rules can add a prompt to a line that already is one.
        let mut order = matcher.emission_order(
            hits,
            &state.fired,
            |i| !prompted || (matcher.rules[i].rule.prompt && !state.seen.contains(&i)),
            stream,
        );
        // A line that says a call was refused is a refusal, not also a failure or a command
        // that ran: `Error executing tool run_shell_command: Tool execution denied by
        // policy.` (Gemini's refusal, gemini_tool_denied) reads as a generic `Error …` line
        // too, and Gemini's declined cell `│ -  Shell rm -rf build │` as a dangerous
        // command. Refusal rules go first; once one recorded the line, error and command
        // rules pass it by.
        if order.iter().any(|&i| matcher.rules[i].is_refusal()) {
            order.sort_by_key(|&i| !matcher.rules[i].is_refusal());
        }
        // Masked first, then cut to max_line: no secret is half-kept at the cut. What was
        // computed ahead was masked without state: not what a private key's body needs.
        let pre = pre.filter(|_| keys.is_empty());
        let (stored, cut) = match &pre {
            Some(p) => (std::borrow::Cow::Borrowed(p.stored), p.cut),
            None => cut_line(self.redactor.redact_masks(text, keys), self.max_line),
        };
        let truncated = truncated || cut || text.len() > self.max_line;
        let mut line_arc: Option<Arc<str>> = None;
        let mut prompt_done = false;
        let mut refused = false;
        for idx in order {
            let r = &matcher.rules[idx];
            if (prompt_done && r.is_prompt_event()) || (refused && r.ruled_out_by_refusal()) {
                continue;
            }
            let emitted = match self.previous_line_for(r, stream) {
                Some(Some(prev)) => self.emit_previous(idx, r, stream, prev, false, ts),
                Some(None) => false,
                None => {
                    let line = line_arc.get_or_insert_with(|| Arc::from(&*stored)).clone();
                    self.emit(
                        idx,
                        r,
                        stream,
                        &stored,
                        line,
                        line_number,
                        truncated,
                        false,
                        ts,
                        pre.as_ref().and_then(|p| p.cap(idx)),
                    )
                }
            };
            if emitted && !state.recorded.is_empty() {
                self.unless_recorded(&state.recorded);
            }
            prompt_done |= emitted && r.is_prompt_event();
            refused |= emitted && r.is_refusal();
        }
    }

    fn idle_partial(
        &mut self,
        matcher: &Matcher,
        stream: Stream,
        raw: &[u8],
        truncated: bool,
        redraws: u64,
        ts: &Arc<str>,
    ) {
        let state = &mut self.prompts[stream];
        state.sync(redraws);
        if raw.len() == state.checked_len {
            return;
        }
        state.checked_len = raw.len();
        let text = clean_line(raw);
        let hits = matcher.prompt_set().matches(&text);
        if !hits.matched_any() {
            return;
        }
        let keys = self.keys[stream].peek(&text);
        let redacted = self.redactor.redact_with(&text, keys.as_slice());
        let (stored, cut) = cut_line(redacted, self.max_line);
        let truncated = truncated || cut || raw.len() > self.max_line;
        let line: Arc<str> = Arc::from(&*stored);
        let hit_rules: Vec<usize> = hits.iter().map(|i| matcher.prompt_rules[i]).collect();
        // If the line already is a prompt, only a rule that did not match its text before
        // (it matches text added since) may add one.
        let prompted = state.prompted(matcher);
        let order = matcher.emission_order(
            &hit_rules,
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
            match self.previous_line_for(r, stream) {
                None => {}
                Some(None) => continue,
                Some(Some(prev)) => {
                    // An event about the previous line: it fired on this partial line (so
                    // not again when it completes) but reserves no number for it.
                    if self.emit_previous(idx, r, stream, prev, true, ts) {
                        self.prompts[stream].fired.push(idx);
                        prompt_done |= r.is_prompt_event();
                    }
                    continue;
                }
            }
            let reserved = self.prompts[stream].line_number;
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
                None,
            );
            if !emitted {
                continue;
            }
            if reserved.is_none() {
                // The partial line's number, kept for when it is completed.
                self.line_number = line_number;
            }
            let state = &mut self.prompts[stream];
            state.line_number = Some(line_number);
            state.fired.push(idx);
            let mut recorded = std::mem::take(&mut state.recorded);
            if let Some(key) = self.unless_recorded(&recorded) {
                if recorded.len() < MAX_RECORDED {
                    recorded.push(key);
                }
            }
            self.prompts[stream].recorded = recorded;
            prompt_done |= r.is_prompt_event();
        }
    }

    /// For a rule with a `context`: `Some(None)` when its conditions do not hold on this line,
    /// `Some(Some(previous line, redacted, and its number))` when its event is about the
    /// previous line; `None` when the event is about this line.
    fn previous_line_for(&self, r: &CompiledRule, stream: Stream) -> Option<Option<(String, u64)>> {
        let c = r.context.as_ref()?;
        let si = stream;
        let prev = self.context.previous(si);
        if !c.holds(prev.map(|p| p.0), self.context.inside(si)) {
            return Some(None);
        }
        if !c.report_previous {
            return None;
        }
        Some(prev.map(|(text, n)| (self.redactor.redact(text).into_owned(), n)))
    }

    /// Records rule `idx`'s event about the previous line (`report = "previous"`), given as
    /// its masked text and number.
    fn emit_previous(
        &mut self,
        idx: usize,
        r: &CompiledRule,
        stream: Stream,
        (prev, number): (String, u64),
        partial: bool,
        ts: &Arc<str>,
    ) -> bool {
        let line: Arc<str> = Arc::from(&*prev);
        self.emit(
            idx, r, stream, &prev, line, number, false, partial, ts, None,
        )
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
        pre: Option<prescan::Slots<'_>>,
    ) -> bool {
        // After redaction the rule may no longer match (the secret was what it matched).
        let Some(caps) = r.captures() else {
            return false;
        };
        let slots = match pre {
            Some(s) if !s.matched() => return false,
            Some(s) => Groups::Ahead(s),
            None => match self.scan.captures(idx, caps, text) {
                Some(locs) => Groups::Here(locs),
                None => return false,
            },
        };
        let group = |i: usize| slots.get(i).map(|(a, b)| &text[a..b]);
        let value = caps
            .value_group
            .and_then(group)
            .or_else(|| group(0))
            .map(str::to_string);
        if let Some(v) = &value {
            if r.is_refusal() {
                if self.refused.len() == REFUSALS_KEPT {
                    self.refused.pop_front();
                }
                self.refused
                    .push_back((stream, comparable(v).into_owned(), line_number));
            } else if r.ruled_out_by_refusal()
                && refused_just_before(&self.refused, stream, v, line_number)
            {
                return false;
            }
        }
        // Sized once for its fields (it grew by doubling from empty), and no larger: the
        // text is kept with the event until the writer has stored it.
        let fields: usize = caps
            .groups
            .iter()
            .filter_map(|(i, name)| group(*i).map(|v| name.len() + v.len() + 6))
            .sum();
        let mut meta: Vec<u8> = Vec::with_capacity(if fields == 0 { 0 } else { fields + 24 });
        let mut field = |name: &str, value: &dyn Fn(&mut Vec<u8>)| {
            meta.push(if meta.is_empty() { b'{' } else { b',' });
            crate::json_text::push_str(&mut meta, name);
            meta.push(b':');
            value(&mut meta);
        };
        for (i, name) in &caps.groups {
            if let Some(v) = group(*i) {
                field(name, &|m| crate::json_text::push_str(m, v));
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
        // Every event, not only those of a type the `[[json]]` rules give: the log's tool
        // output goes through the text rules too (`log_text`).
        if let Some(v) = value.as_ref().filter(|_| self.expect_log) {
            let t = r.rule.event_type.clone();
            self.remember(t, v, line_number);
        }
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

    fn push_block(
        &mut self,
        stream: Stream,
        mut b: codeblock::FinishedBlock,
        ts: &Arc<str>,
        source: JsonSource,
    ) {
        if let std::borrow::Cow::Owned(s) = self.redactor.redact_lines(&b.content) {
            b.content = s;
        }
        if let std::borrow::Cow::Owned(s) = self.redactor.redact_lines(&b.context) {
            b.context = s;
        }
        let block = codeblock::to_record(b, stream, ts.clone());
        match source {
            // The log repeats what the output showed: a block seen there is not new.
            JsonSource::Log(_) if self.seen_blocks.contains(&block.digest) => return,
            // Kept only when a log will be read, like `seen`: on a long session without one
            // the digests were ~3 MiB per million lines that nothing ever looked up.
            _ if self.expect_log && self.seen_blocks.len() < MAX_SEEN => {
                self.seen_blocks.insert(block.digest.clone());
            }
            _ => {}
        }
        let log_line = match source {
            JsonSource::Log(n) => Some(n),
            JsonSource::Output => None,
        };
        let meta = block_metadata(&block, log_line);
        self.events += 1;
        self.out.push(Record::Event(Event {
            timestamp: ts.clone(),
            stream,
            event_type: self.code_block.clone(),
            pattern: self.code_block.clone(),
            matched_value: Some(block.digest.clone()),
            original_line: None,
            line_number: block.line_start,
            metadata_json: Some(meta),
            code_block_language: block.language.clone(),
            risk_level: None,
            auto_confirmable: false,
        }));
        self.out.push(Record::CodeBlock(block));
    }

    /// Notes an event recorded from the output that a session log may confirm later.
    fn remember(&mut self, event_type: Arc<str>, value: &str, line_number: u64) {
        if !self.expect_log {
            return;
        }
        if &*event_type == ERROR && self.screen_errors.len() < MAX_SEEN {
            self.screen_errors.insert(line_number);
        }
        let key = (event_type, value.to_string());
        if let Some(lines) = self.seen.get_mut(&key) {
            if lines.len() < MAX_SEEN_PER_KEY {
                lines.push_back(line_number);
            }
        } else if self.seen.len() < MAX_SEEN && self.seen_bytes + value.len() <= MAX_SEEN_BYTES {
            self.seen_bytes += value.len();
            self.seen.insert(key, VecDeque::from([line_number]));
        }
    }

    /// Takes the first output event of this type and value not yet confirmed (or one whose
    /// value the screen shows another way, see [`Extractor::shown_otherwise`]): its line, and
    /// the value it has.
    fn confirm(&mut self, event_type: &Arc<str>, value: &str) -> Option<(u64, String)> {
        let key = (event_type.clone(), value.to_string());
        let key = if self.seen.get(&key).is_some_and(|l| !l.is_empty()) {
            key
        } else {
            self.shown_otherwise(event_type, value)?
        };
        let line = self.seen.get_mut(&key)?.pop_front()?;
        if &**event_type == ERROR {
            self.screen_errors.remove(&line);
        }
        Some((line, key.1))
    }

    /// The output event of this type that shows the log's `value` another way: with the
    /// screen's indentation (`    2 passed in 0.00s`), with the shell quoting the output
    /// kept (`echo '"'all files'"'`), or cut where the TUI wrapped it (Claude Code shows a
    /// call's first row, `⎿  $ for f in …; do … the next`; Codex ends it with `…`), so that
    /// it is one event, with the log's whole value, and not two. The earliest such line; a
    /// cut value shorter than 20 bytes, or a very long session (the scan is linear), is
    /// matched exactly only.
    fn shown_otherwise(&self, event_type: &Arc<str>, value: &str) -> Option<(Arc<str>, String)> {
        const MIN_PREFIX: usize = 20;
        const MAX_SCAN: usize = 10_000;
        if self.seen.len() > MAX_SCAN {
            return None;
        }
        let want = comparable(value);
        self.seen
            .iter()
            .filter(|((t, v), lines)| {
                if t != event_type || lines.is_empty() {
                    return false;
                }
                let shown = comparable(v);
                let cut = shown.strip_suffix('…').unwrap_or(&shown);
                shown == want
                    || (cut.len() >= MIN_PREFIX && cut.len() < want.len() && want.starts_with(cut))
            })
            .min_by_key(|(_, lines)| lines.front().copied())
            .map(|(k, _)| k.clone())
    }

    /// An output error shown just after the command on `line` (Codex's ` exited 1 in 9ms:`),
    /// not yet confirmed: the screen's account of the failure a log reports.
    fn confirm_failure_after(&mut self, line: u64) -> Option<u64> {
        let l = *self
            .screen_errors
            .range(line + 1..=line + FAILURE_LINES)
            .next()?;
        self.screen_errors.remove(&l);
        Some(l)
    }

    fn facts(&self) -> SessionFacts {
        let mut f = self.json.facts();
        f.log_path = self.log_path.clone();
        f
    }

    /// One decoded JSON object: `[[json]]` rules, code blocks in the markdown they point at,
    /// session facts, and (unless a rule says `text = false`) text rules over its strings.
    #[allow(clippy::too_many_arguments)]
    fn json_object(
        &mut self,
        matcher: &Matcher,
        stream: Stream,
        obj: &serde_json::Value,
        raw: &str,
        line_number: u64,
        truncated: bool,
        ts: &Arc<str>,
        source: JsonSource,
    ) {
        let from_log = matches!(source, JsonSource::Log(_));
        let outcome = matcher
            .json
            .apply(&mut self.json, obj, json::epoch_ms(ts), from_log);
        let mut original: Option<Arc<str>> = None;
        // The output line of a command this log record confirms.
        let mut confirmed_command: Option<u64> = None;
        for hit in outcome.hits {
            let rule = &matcher.json.rules[hit.rule];
            let Some(event_type) = rule.event_type.clone() else {
                continue;
            };
            let value = hit
                .value
                .map(|v| self.redactor.redact_lines(&printable(&v)).into_owned());
            let mut meta = hit.metadata;
            for v in meta.values_mut() {
                redact_value(&self.redactor, v);
            }
            meta.insert(
                "source".into(),
                match source {
                    JsonSource::Output => "json".into(),
                    JsonSource::Log(_) => "log".into(),
                },
            );
            if let JsonSource::Log(n) = source {
                meta.insert("log_line".into(), n.into());
                let by_value = value.as_ref().and_then(|v| {
                    let (line, shown) = self.confirm(&event_type, v)?;
                    let full = (shown != *v).then(|| v.clone());
                    Some((line, Some(shown), full))
                });
                // Or by the text the output shows in its place: the event takes the value.
                let by_value = by_value.or_else(|| {
                    let text = printable(hit.shown_as.as_deref()?);
                    let text = self.redactor.redact_lines(&text).into_owned();
                    let (line, shown) = self.confirm(&event_type, &text)?;
                    Some((line, Some(shown), value.clone()))
                });
                let confirmed = by_value.or_else(|| {
                    let after = confirmed_command.filter(|_| &*event_type == ERROR)?;
                    self.confirm_failure_after(after).map(|l| (l, None, None))
                });
                if let Some((line, matched_value, full_value)) = confirmed {
                    if &*event_type == "command" {
                        confirmed_command = Some(line);
                    }
                    self.out.push(Record::Merge(Merge {
                        event_type: event_type.to_string(),
                        line_number: line,
                        matched_value,
                        metadata_json: serde_json::Value::Object(meta).to_string(),
                        full_value,
                    }));
                    continue;
                }
            } else if let Some(v) = &value {
                self.remember(event_type.clone(), v, line_number);
            }
            if truncated {
                meta.insert("truncated".into(), true.into());
            }
            let line = original
                .get_or_insert_with(|| {
                    // A key in one `\n`-escaped string is a whole block on this one line.
                    let keys = PemTracker::default().line(raw);
                    let masked = self.redactor.redact_with(raw, keys.as_slice());
                    let text = json::cap_to(masked.into_owned(), MAX_ORIGINAL);
                    Arc::from(text)
                })
                .clone();
            self.events += 1;
            self.out.push(Record::Event(Event {
                timestamp: ts.clone(),
                stream,
                event_type,
                pattern: rule.name.clone(),
                matched_value: value,
                original_line: Some(line),
                line_number,
                metadata_json: Some(serde_json::Value::Object(meta).to_string()),
                code_block_language: None,
                risk_level: rule.risk_level,
                auto_confirmable: rule.auto_confirmable,
            }));
        }
        for md in outcome.markdown {
            let mut parser = CodeBlockParser::default();
            for l in md.split('\n') {
                if let Some(b) = parser.line(l.strip_suffix('\r').unwrap_or(l), line_number) {
                    self.push_block(stream, b, ts, source);
                }
            }
            if let Some(b) = parser.finish(line_number) {
                self.push_block(stream, b, ts, source);
            }
        }
        if let Some(mut facts) = self.json.take_facts() {
            facts.log_path = self.log_path.clone();
            self.out.push(Record::Facts(facts));
        }
        if outcome.text && source == JsonSource::Output && !matcher.rules.is_empty() {
            // One object often says the same thing twice (Claude's `content` and
            // `tool_use_result`): an event from it is recorded once.
            let first = self.out.len();
            let fresh = PromptState::default();
            // A key in a decoded string spans several of its lines.
            let mut pem = PemTracker::default();
            json::for_each_string_line_but(obj, &outcome.text_skip, &mut |piece| {
                let keys = pem.line(piece);
                self.text_rules(
                    matcher,
                    stream,
                    piece,
                    &keys,
                    line_number,
                    truncated,
                    ts,
                    &fresh,
                    None,
                );
            });
            self.dedupe_since(first);
        }
        if let JsonSource::Log(n) = source {
            if !outcome.log_text.is_empty() && !matcher.rules.is_empty() {
                self.log_text_events(matcher, &outcome.log_text, n, ts);
            }
        }
    }

    /// Text rules over a tool's output as the session log has it (a rule's `log_text`):
    /// `claude -p` in text mode prints none of it, and a TUI may fold it away, so a compiler
    /// error or a test summary in it would otherwise be lost. An event the output showed
    /// already is merged into that one; the others are recorded as the log's (`source`,
    /// `log_line`).
    fn log_text_events(&mut self, matcher: &Matcher, texts: &[String], n: u64, ts: &Arc<str>) {
        let first = self.out.len();
        let fresh = PromptState::default();
        let mut pem = PemTracker::default();
        // What the log says is not the output's: nothing here may be confirmed later.
        let remembering = std::mem::replace(&mut self.expect_log, false);
        for text in texts {
            for piece in text.split('\n') {
                let piece = piece.strip_suffix('\r').unwrap_or(piece);
                let keys = pem.line(piece);
                self.text_rules(
                    matcher,
                    Stream::Stdout,
                    piece,
                    &keys,
                    0,
                    false,
                    ts,
                    &fresh,
                    None,
                );
            }
        }
        self.expect_log = remembering;
        self.dedupe_since(first);
        let found: Vec<Record> = self.out.drain(first..).collect();
        for r in found {
            let Record::Event(mut e) = r else {
                self.out.push(r);
                continue;
            };
            let key = (e.event_type.clone(), e.matched_value.clone());
            let fresh = if self.log_found.len() < MAX_SEEN {
                self.log_found.insert(key)
            } else {
                !self.log_found.contains(&key)
            };
            if !fresh {
                self.events -= 1;
                continue;
            }
            let shown = e
                .matched_value
                .as_deref()
                .and_then(|v| self.confirm(&e.event_type, v));
            match shown {
                Some((line, value)) => {
                    self.events -= 1;
                    self.out.push(Record::Merge(Merge {
                        event_type: e.event_type.to_string(),
                        line_number: line,
                        matched_value: Some(value),
                        metadata_json: serde_json::json!({ "source": "log", "log_line": n })
                            .to_string(),
                        full_value: None,
                    }));
                }
                None => {
                    let mut meta = e
                        .metadata_json
                        .as_deref()
                        .and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok())
                        .filter(serde_json::Value::is_object)
                        .unwrap_or_else(|| serde_json::json!({}));
                    meta["source"] = "log".into();
                    meta["log_line"] = n.into();
                    e.metadata_json = Some(meta.to_string());
                    self.out.push(Record::Event(e));
                }
            }
        }
    }

    /// Drops events after `first` that repeat an earlier one's rule and value.
    fn dedupe_since(&mut self, first: usize) {
        if self.out.len() - first < 2 {
            return;
        }
        let mut keys: HashSet<(Arc<str>, Option<String>)> = HashSet::new();
        let mut kept = Vec::with_capacity(self.out.len() - first);
        for r in self.out.drain(first..) {
            if let Record::Event(e) = &r {
                if !keys.insert((e.pattern.clone(), e.matched_value.clone())) {
                    self.events -= 1;
                    continue;
                }
            }
            kept.push(r);
        }
        self.out.extend(kept);
    }
}

/// A chunk taken by [`Extractor::begin`], to be fed with [`Extractor::feed_pending`].
pub struct Pending(Stream, Begun);

enum Begun {
    /// A small chunk: extracted on the extraction thread alone.
    Here(Vec<u8>),
    /// Its lines are being computed ahead.
    Ahead(prescan::Chunk),
}

/// A rule's capture groups on a line: found here, or computed ahead ([`prescan`]).
enum Groups<'a> {
    Here(prescan::Locs<'a>),
    Ahead(prescan::Slots<'a>),
}

impl Groups<'_> {
    fn get(&self, i: usize) -> Option<(usize, usize)> {
        match self {
            Groups::Here(l) => l.get(i),
            Groups::Ahead(s) => s.get(i),
        }
    }
}

/// A string decoded from JSON as the store keeps it: escape sequences stripped, as they are
/// from every line (SPEC §2), and no other control character but tab and newline. A JSON
/// string carries ESC and BEL as `\u001b` and `\u0007`; decoded and kept, an OSC 52 in a
/// command's text would set the clipboard of whoever reads the event in `sqlite3`.
fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    let unwanted = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !s.chars().any(unwanted) {
        return Cow::Borrowed(s);
    }
    let clean = crate::lines::clean_line(s.as_bytes());
    Cow::Owned(clean.chars().filter(|&c| !unwanted(c)).collect())
}

/// Whether `value` on `line_number` of `stream` is what a refusal at most [`REFUSAL_LINES`]
/// above refused.
fn refused_just_before(
    refused: &VecDeque<(Stream, String, u64)>,
    stream: Stream,
    value: &str,
    line_number: u64,
) -> bool {
    if refused.is_empty() {
        return false;
    }
    let want = comparable(value);
    refused.iter().any(|(s, v, n)| {
        *s == stream && **v == *want && line_number > *n && line_number - *n <= REFUSAL_LINES
    })
}

/// A value as [`Extractor::shown_otherwise`] compares it: trimmed, and a command's quoting
/// as `bash -lc '…'` leaves it (`'"'"'` and `'"'` for a `'` inside) undone.
pub(crate) fn comparable(v: &str) -> std::borrow::Cow<'_, str> {
    let t = v.trim();
    if t.contains("'\"'") {
        std::borrow::Cow::Owned(t.replace("'\"'\"'", "'").replace("'\"'", "'"))
    } else {
        std::borrow::Cow::Borrowed(t)
    }
}

/// Masks secrets in every string inside a metadata value (control characters dropped first,
/// as in [`printable`]).
fn redact_value(r: &Redactor, v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => {
            if let std::borrow::Cow::Owned(p) = printable(s) {
                *s = p;
            }
            if let std::borrow::Cow::Owned(m) = r.redact_lines(s) {
                *s = m;
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| redact_value(r, x)),
        serde_json::Value::Object(m) => m.values_mut().for_each(|x| redact_value(r, x)),
        _ => {}
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

/// A code block event's `metadata_json`: its digest, last line and whether it parses, and
/// for a block from the session log, `"source":"log"` and the log's line. Written directly
/// (a `serde_json::Value` map cost five allocations a block), keys in `serde_json`'s order.
fn block_metadata(block: &crate::event::CodeBlock, log_line: Option<u64>) -> String {
    use crate::json_text::{push_str, push_u64};
    let mut m = Vec::with_capacity(block.digest.len() + 80);
    m.extend_from_slice(b"{\"digest\":");
    push_str(&mut m, &block.digest);
    m.extend_from_slice(b",\"line_end\":");
    push_u64(&mut m, block.line_end);
    if let Some(n) = log_line {
        m.extend_from_slice(b",\"log_line\":");
        push_u64(&mut m, n);
    }
    m.extend_from_slice(if block.parseable {
        b",\"parseable\":true"
    } else {
        b",\"parseable\":false"
    });
    if log_line.is_some() {
        m.extend_from_slice(b",\"source\":\"log\"");
    }
    m.push(b'}');
    // Only ASCII was added to valid UTF-8.
    String::from_utf8(m).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::RiskLevel;
    use rules::Source;

    #[test]
    fn a_blocks_metadata_is_what_serde_json_writes() {
        let block = crate::event::CodeBlock {
            timestamp: "t".into(),
            language: Some("rust".into()),
            content: "fn main() {}".into(),
            line_start: 3,
            line_end: 9,
            context_json: "{}".into(),
            parseable: true,
            digest: "ab\"cd".into(),
        };
        for (parseable, log_line) in [(true, None), (false, Some(17u64))] {
            let b = crate::event::CodeBlock {
                parseable,
                ..block.clone()
            };
            let mut want = serde_json::json!({
                "digest": b.digest,
                "line_end": b.line_end,
                "parseable": b.parseable,
            });
            if let Some(n) = log_line {
                want["source"] = "log".into();
                want["log_line"] = n.into();
            }
            assert_eq!(block_metadata(&b, log_line), want.to_string());
        }
    }

    /// A chunk without a BEGIN marker skips the search on each of its lines, but a marker cut
    /// between two chunks, or with escapes between its dashes, is still found: every cut of
    /// the text gives what feeding it a byte at a time gives, and no key is stored.
    #[test]
    fn a_private_key_is_found_wherever_the_chunks_are_cut() {
        let text: &[u8] = b"error: key follows -----BEGIN OPENSSH PRIVATE KEY-----\n\
            b3BlbnNzaC1rZXktdjEAAAAABG5vbmU\n\
            -----END OPENSSH PRIVATE KEY----- see https://example.com/k\n\
            error: and \x1b[0m-----\x1b[1mBEGIN RSA PRIVATE KEY-----\n\
            MIIEowIBAAKCAQEA7bq98cXnDlVKqz7J0jcUnXwRqnY9\n\
            -----END RSA PRIVATE KEY----- error: after it\n";
        let ts: Arc<str> = Arc::from("2026-12-02T00:00:00.000Z");
        let book = RuleBook::builtin().unwrap();
        let m = Arc::new(Matcher::new(&book, Some("codex")).unwrap());
        let r = Arc::new(Redactor::new(&book, true).unwrap());
        let records = |chunks: &mut dyn Iterator<Item = &[u8]>| {
            let mut x = Extractor::new(Arc::clone(&m), Arc::clone(&r), 1024);
            for c in chunks {
                x.feed(Stream::Stdout, c, &ts);
            }
            x.finish(&ts);
            x.take()
                .iter()
                .map(|r| format!("{r:?}"))
                .collect::<Vec<_>>()
        };
        let want = records(&mut text.chunks(1));
        assert!(want.len() >= 3, "{want:?}");
        for r in &want {
            assert!(
                !r.contains("PRIVATE KEY") && !r.contains("b3Blbn") && !r.contains("MIIEow"),
                "a key was stored: {r}"
            );
        }
        for cut in 1..text.len() {
            let (a, b) = text.split_at(cut);
            assert_eq!(records(&mut [a, b].into_iter()), want, "cut at {cut}");
        }
        assert_eq!(records(&mut std::iter::once(text)), want);
    }

    /// Every output event is remembered for the session log's merge, in a byte budget: a
    /// session of long distinct values stays bounded.
    #[test]
    fn what_is_remembered_for_the_log_stays_within_its_budget() {
        let mut x = extractor(
            "version = 1\n[[pattern]]\nname = \"any\"\nevent_type = \"line\"\nregex = '''(?P<value>.+)'''\nsamples = [\"x\"]\n",
        );
        x.expect_log();
        let ts: Arc<str> = "2026-12-01T00:00:00.000Z".into();
        // Cut to this extractor's max_line of 1 KiB: 6 MiB of distinct values.
        let long = "y".repeat(4000);
        for i in 0..6000 {
            x.feed(Stream::Stdout, format!("{i} {long}\n").as_bytes(), &ts);
            x.take();
        }
        assert!(x.core.seen_bytes <= MAX_SEEN_BYTES, "{}", x.core.seen_bytes);
        let n = x.core.seen.len();
        assert!(
            n < 6000 && n > 3000,
            "{n} values, {} bytes",
            x.core.seen_bytes
        );
    }

    fn extractor(text: &'static str) -> Extractor {
        let book = RuleBook::load(&[Source::Builtin {
            name: "t.toml",
            text,
        }])
        .unwrap();
        extractor_of(book)
    }

    /// Rules as a user's file gives them: every regex compiled when the file is read.
    fn verified_extractor(text: &'static str) -> Extractor {
        extractor_of(RuleBook::parse_text("t.toml", text).unwrap())
    }

    fn extractor_of(book: RuleBook) -> Extractor {
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

    /// PTY mode's lines have their own stream: rules with the default streams see them, a
    /// rule limited to stdout does not, one that lists "pty" does.
    #[test]
    fn pty_lines_match_default_rules_and_those_that_list_pty() {
        let mut x = extractor(
            r#"
[[pattern]]
name = "any"
event_type = "error"
regex = '^error: '
samples = ["error: x"]
[[pattern]]
name = "out"
event_type = "error"
regex = '^error: '
streams = ["stdout"]
samples = ["error: x"]
[[pattern]]
name = "tty"
event_type = "error"
regex = '^error: '
streams = ["pty"]
samples = ["error: x"]
"#,
        );
        let ts: Arc<str> = "t".into();
        x.feed(Stream::Pty, b"error: one\n", &ts);
        let ev = events(&mut x);
        let got: Vec<(&str, Stream)> = ev.iter().map(|e| (&*e.pattern, e.stream)).collect();
        assert_eq!(got, [("any", Stream::Pty), ("tty", Stream::Pty)]);
        x.feed(Stream::Stdout, b"error: two\n", &ts);
        let got: Vec<String> = events(&mut x)
            .iter()
            .map(|e| e.pattern.to_string())
            .collect();
        assert_eq!(got, ["any", "out"]);
    }

    /// A `report = "previous"` rule records the line before its anchor: on a complete line,
    /// and on an idle partial line (the question waiting for an answer) without taking that
    /// line's number or firing again when the line completes.
    #[test]
    fn a_rule_can_report_the_previous_line_and_skip_continuations() {
        let ts: Arc<str> = "t".into();
        const CONTEXT_RULES: &str = r#"
[[pattern]]
name = "proposed"
event_type = "command"
prompt = true
regex = '^Run shell command\?'
samples = ["Run shell command? [Y]"]
[pattern.context]
previous = '^(?P<value>[a-z].*)$'
report = "previous"
[[pattern]]
name = "head"
event_type = "error"
regex = '^npm error (?P<value>.+)$'
samples = ["npm error code E1"]
[pattern.context]
not_previous = '^npm error'
"#;
        // The same with the rules as a user's file gives them (regexes compiled when read).
        for mut x in [extractor(CONTEXT_RULES), verified_extractor(CONTEXT_RULES)] {
            x.feed(
                Stream::Stdout,
                b"npm error code E1
npm error detail
npm error more

vitest run
Run shell command? [Y] ",
                &ts,
            );
            x.idle(Stream::Stdout, &ts);
            let ev = events(&mut x);
            let got: Vec<(String, Option<String>, u64)> = ev
                .iter()
                .map(|e| {
                    (
                        e.pattern.to_string(),
                        e.matched_value.clone(),
                        e.line_number,
                    )
                })
                .collect();
            assert_eq!(
                got,
                [
                    ("head".to_string(), Some("code E1".to_string()), 1),
                    ("proposed".to_string(), Some("vitest run".to_string()), 5),
                ]
            );
            assert_eq!(ev[1].original_line.as_deref(), Some("vitest run"));
            x.feed(
                Stream::Stdout,
                b"y
next
",
                &ts,
            );
            assert!(
                events(&mut x).is_empty(),
                "not again when the line completes"
            );
            assert_eq!(x.lines(), 7);
        }
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
