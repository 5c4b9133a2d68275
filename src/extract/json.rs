//! JSON Lines: a line that is one JSON object is decoded once, then looked at as data.
//!
//! Agents in automation mode (`codex exec --json`, `claude -p --output-format stream-json`,
//! `gemini --output-format stream-json`) print one JSON object per line, and so do their
//! session logs. Grepping those lines finds nonsense: the escape `\n` before `broken.c:2:12`
//! reads as the path `nbroken.c:2:12`, and a compiler error inside `aggregated_output` is not
//! at the start of any line. So a JSON line is parsed, `[[json]]` rules (`json_rules.rs`) act
//! on its fields, and text rules see its decoded string values split on their newlines, with
//! the same line semantics as any other output — never the raw escaped text.
//!
//! Pure: no I/O. The cost for non-JSON output is one look at the first and last byte.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::json_rules::{Fact, FieldPath, FieldSpec, JsonRule, ReadFrom};
use crate::event::SessionFacts;

/// Longest text kept in one metadata field or value; agents put whole command outputs in
/// their JSON (the output still reaches text rules, line by line, in full).
pub const MAX_FIELD: usize = 4096;

/// Open starts kept for pairing at most; an agent that never ends its items must not grow
/// memory without bound (the oldest are dropped first).
const MAX_OPEN: usize = 4096;

/// Whether a cleaned line may be one JSON object: `{` first and `}` last (blanks aside).
/// This is the whole cost of the JSON path for ordinary output.
#[inline]
pub fn looks_like_object(text: &str) -> bool {
    let b = text.as_bytes();
    let first = b.iter().position(|c| !c.is_ascii_whitespace());
    let last = b.iter().rposition(|c| !c.is_ascii_whitespace());
    matches!((first, last), (Some(f), Some(l)) if b[f] == b'{' && b[l] == b'}')
}

/// Whether a line starts like a JSON object (`{"`): a truncated JSON line still does.
#[inline]
pub fn starts_like_object(text: &str) -> bool {
    text.trim_start().starts_with("{\"")
}

/// Parses a line as one JSON object; anything else (an array, a scalar, broken JSON) is
/// `None` and the line is ordinary text.
pub fn parse_object(text: &str) -> Option<Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

/// [`for_each_string_line`] over an object but its top-level fields named in `skip`.
pub fn for_each_string_line_but(v: &Value, skip: &[String], f: &mut dyn FnMut(&str)) {
    match v {
        Value::Object(m) if !skip.is_empty() => m
            .iter()
            .filter(|(k, _)| !skip.iter().any(|s| s == *k))
            .for_each(|(_, x)| for_each_string_line(x, f)),
        other => for_each_string_line(other, f),
    }
}

/// Calls `f` with every line of every string value in `v` (object keys are not text).
pub fn for_each_string_line(v: &Value, f: &mut dyn FnMut(&str)) {
    match v {
        Value::String(s) => {
            for line in s.split('\n') {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if !line.trim().is_empty() {
                    f(line);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| for_each_string_line(x, f)),
        Value::Object(m) => m.values().for_each(|x| for_each_string_line(x, f)),
        _ => {}
    }
}

/// The lines of a JSON line that does not parse (cut at `max_line`, or broken), with string
/// escapes decoded as far as they go: `\n` splits, `\"` and `\\` are their characters. Text
/// rules then read what the agent meant, not the escapes.
pub fn lossy_lines(text: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            if let Some(cur) = out.last_mut() {
                cur.push(c);
            }
            continue;
        }
        match chars.next() {
            Some('n') => out.push(String::new()),
            Some('t') => out.last_mut().into_iter().for_each(|s| s.push('\t')),
            Some('r') | None => {}
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                if let Some(ch) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    out.last_mut().into_iter().for_each(|s| s.push(ch));
                }
            }
            Some(other) => out.last_mut().into_iter().for_each(|s| s.push(other)),
        }
    }
    out.retain(|l| !l.trim().is_empty());
    out
}

/// The text of a JSON value as an event's value: strings as they are, a list of strings as
/// words, a list of `{text}` blocks as their lines, numbers and booleans printed.
pub fn value_text(v: &Value, unwrap_shell: bool) -> Option<String> {
    let s = match v {
        Value::String(s) => {
            if unwrap_shell {
                unwrap_shell_str(s)
            } else {
                s.clone()
            }
        }
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(a) if a.iter().all(Value::is_string) => {
            let words: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
            match words.as_slice() {
                [sh, flag, inner] if unwrap_shell && is_shell(sh) && is_c_flag(flag) => {
                    inner.to_string()
                }
                _ => words.join(" "),
            }
        }
        Value::Array(a) => {
            let texts: Vec<&str> = a
                .iter()
                .filter_map(|x| x.get("text").and_then(Value::as_str))
                .collect();
            if texts.is_empty() {
                v.to_string()
            } else {
                texts.join("\n")
            }
        }
        Value::Object(_) => v.to_string(),
        Value::Null => return None,
    };
    Some(cap(s))
}

fn is_shell(s: &str) -> bool {
    let base = s.rsplit('/').next().unwrap_or(s);
    matches!(base, "sh" | "bash" | "zsh" | "dash")
}

fn is_c_flag(s: &str) -> bool {
    matches!(s, "-c" | "-lc" | "-ic")
}

/// `/bin/bash -lc 'make test'` → `make test`: the command the agent meant, as Codex prints it
/// in text mode and as its session log records it, so one command has one spelling.
fn unwrap_shell_str(s: &str) -> String {
    let mut parts = s.splitn(3, ' ');
    let (Some(sh), Some(flag), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return s.to_string();
    };
    if !is_shell(sh) || !is_c_flag(flag) {
        return s.to_string();
    }
    let rest = rest.trim();
    for q in ['\'', '"'] {
        if let Some(inner) = rest.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            if q == '\'' {
                return inner.replace("'\\''", "'");
            }
            return inner.replace("\\\"", "\"");
        }
    }
    rest.to_string()
}

/// Cuts `s` to [`MAX_FIELD`] bytes on a character boundary.
pub fn cap(s: String) -> String {
    cap_to(s, MAX_FIELD)
}

/// Cuts `s` to `max` bytes on a character boundary, marking the cut with `…`.
pub fn cap_to(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// What one object produced: events to record, markdown to scan for code blocks, and whether
/// text rules should read it.
#[derive(Debug, Default)]
pub struct Outcome {
    pub hits: Vec<Hit>,
    pub markdown: Vec<String>,
    pub text: bool,
    /// Top-level fields text rules skip.
    pub text_skip: Vec<String>,
    /// Texts of a session log's record that text rules read (a rule's `log_text`).
    pub log_text: Vec<String>,
}

/// One event a `[[json]]` rule found.
#[derive(Debug)]
pub struct Hit {
    pub rule: usize,
    pub value: Option<String>,
    pub metadata: Map<String, Value>,
    /// The rule's `shown_as`: what the output may show in the value's place.
    pub shown_as: Option<String>,
}

/// A start seen, waiting for its end.
#[derive(Debug)]
struct Pending {
    at_ms: Option<i64>,
    element: Value,
    seq: u64,
}

/// The `[[json]]` rules that apply to one agent.
#[derive(Debug, Default)]
pub struct JsonEngine {
    pub rules: Vec<JsonRule>,
}

/// Per-session state: open starts, `once_per` keys seen, and the session facts so far.
#[derive(Debug, Default)]
pub struct JsonState {
    open: HashMap<(usize, String), Pending>,
    seq: u64,
    once: HashSet<(usize, String)>,
    facts: FactsAcc,
}

/// Facts set (last wins) and facts summed; a set value wins over a sum (a client's own total
/// is better than adding up its messages).
#[derive(Debug, Default)]
struct FactsAcc {
    set: HashMap<FactKey, Value>,
    sum: HashMap<FactKey, f64>,
    cost_note: Option<String>,
    changed: bool,
}

type FactKey = u8;

fn fact_key(f: Fact) -> FactKey {
    f as u8
}

impl JsonState {
    /// The session facts known so far, if any changed since the last call.
    pub fn take_facts(&mut self) -> Option<SessionFacts> {
        if !self.facts.changed {
            return None;
        }
        self.facts.changed = false;
        Some(self.facts())
    }

    pub fn facts(&self) -> SessionFacts {
        let acc = &self.facts;
        let num = |f: Fact| -> Option<f64> {
            let k = fact_key(f);
            acc.set
                .get(&k)
                .and_then(Value::as_f64)
                .or_else(|| acc.sum.get(&k).copied())
        };
        let text = |f: Fact| -> Option<String> {
            acc.set.get(&fact_key(f)).and_then(|v| value_text(v, false))
        };
        let int = |f: Fact| num(f).map(|x| x.round() as i64);
        SessionFacts {
            agent_session_id: text(Fact::AgentSessionId),
            model: text(Fact::Model),
            input_tokens: int(Fact::InputTokens),
            cached_input_tokens: int(Fact::CachedInputTokens),
            output_tokens: int(Fact::OutputTokens),
            cost_usd: num(Fact::CostUsd),
            cost_note: acc.cost_note.clone(),
            log_path: None,
        }
    }
}

impl JsonEngine {
    pub fn new(rules: Vec<JsonRule>) -> JsonEngine {
        JsonEngine { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Applies every rule to `obj`, read at `at_ms` (milliseconds since the epoch, for
    /// durations between a start and its end).
    pub fn apply(
        &self,
        st: &mut JsonState,
        obj: &Value,
        at_ms: Option<i64>,
        from_log: bool,
    ) -> Outcome {
        let mut out = Outcome {
            text: true,
            ..Outcome::default()
        };
        let skip = if from_log {
            ReadFrom::Output
        } else {
            ReadFrom::Log
        };
        for (idx, rule) in self.rules.iter().enumerate() {
            if rule.from == skip {
                continue;
            }
            if let Some(start) = &rule.start {
                if start.root_matches(obj) {
                    for el in start.select(obj) {
                        let Some(id) = start.id.as_ref().and_then(|p| id_of(p, el, obj)) else {
                            continue;
                        };
                        if st.open.len() >= MAX_OPEN {
                            drop_oldest(&mut st.open);
                        }
                        st.seq += 1;
                        st.open.insert(
                            (idx, id),
                            Pending {
                                at_ms,
                                element: el.clone(),
                                seq: st.seq,
                            },
                        );
                        if !rule.text {
                            out.text = false;
                        }
                    }
                }
            }
            if !rule.select.root_matches(obj) {
                continue;
            }
            let elements = rule.select.select(obj);
            if !elements.is_empty() {
                out.text &= rule.text;
                out.text_skip.extend(rule.text_skip.iter().cloned());
            }
            for el in elements {
                self.apply_one(st, idx, rule, el, obj, at_ms, &mut out);
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_one(
        &self,
        st: &mut JsonState,
        idx: usize,
        rule: &JsonRule,
        el: &Value,
        root: &Value,
        at_ms: Option<i64>,
        out: &mut Outcome,
    ) {
        let id = rule.select.id.as_ref().and_then(|p| id_of(p, el, root));
        let start = match (&rule.start, &id) {
            (Some(_), Some(id)) => st.open.remove(&(idx, id.clone())),
            _ => None,
        };
        if rule.start.is_some() && rule.require_start && start.is_none() {
            return;
        }
        let start_el = start.as_ref().map(|p| &p.element);
        let look = |p: &FieldPath| -> Option<&Value> {
            p.get(el)
                .or_else(|| p.get(root))
                .or_else(|| start_el.and_then(|s| p.get(s)))
        };
        if let Some(key) = &rule.once_per {
            match look(key).and_then(|v| value_text(v, false)) {
                Some(k) => {
                    if !st.once.insert((idx, k)) {
                        return;
                    }
                }
                None => return,
            }
        }
        for (fact, path) in &rule.session {
            if let Some(v) = look(path) {
                st.facts.set.insert(fact_key(*fact), v.clone());
                st.facts.changed = true;
                if *fact == Fact::CostUsd {
                    st.facts.cost_note = rule.cost_note.clone().or(st.facts.cost_note.take());
                }
            }
        }
        for (fact, path) in &rule.add {
            if let Some(x) = look(path).and_then(Value::as_f64) {
                *st.facts.sum.entry(fact_key(*fact)).or_default() += x;
                st.facts.changed = true;
            }
        }
        if let Some(md) = rule.code_blocks.as_ref().and_then(&look) {
            if let Some(s) = md.as_str() {
                out.markdown.push(s.to_string());
            }
        }
        if let Some(t) = rule.log_text.as_ref().and_then(|p| p.get(el)) {
            // A string, or blocks of text (`[{"type": "text", "text": "…"}]`).
            match t {
                Value::String(s) => out.log_text.push(s.clone()),
                Value::Array(a) => out.log_text.extend(
                    a.iter()
                        .filter_map(|b| b.get("text").and_then(Value::as_str))
                        .map(str::to_string),
                ),
                _ => {}
            }
        }
        if rule.event_type.is_none() {
            return;
        }
        let value = rule
            .value
            .iter()
            .find_map(&look)
            .and_then(|v| value_text(v, rule.unwrap_shell));
        let mut metadata = Map::new();
        for (name, spec) in &rule.fields {
            if let Some(v) = field_value(spec, &look) {
                metadata.insert(name.to_string(), v);
            }
        }
        if let (Some(end), Some(begin)) = (at_ms, start.as_ref().and_then(|p| p.at_ms)) {
            if !metadata.contains_key("duration_ms") {
                metadata.insert("duration_ms".into(), Value::from((end - begin).max(0)));
            }
        }
        if let Some(id) = id {
            metadata.entry("id").or_insert(Value::String(id));
        }
        let shown_as = rule
            .shown_as
            .as_ref()
            .and_then(|spec| field_value(spec, &look))
            .and_then(|v| value_text(&v, false));
        out.hits.push(Hit {
            rule: idx,
            value,
            metadata,
            shown_as,
        });
    }
}

fn id_of(p: &FieldPath, el: &Value, root: &Value) -> Option<String> {
    p.get(el)
        .or_else(|| p.get(root))
        .and_then(|v| value_text(v, false))
}

fn drop_oldest(open: &mut HashMap<(usize, String), Pending>) {
    if let Some(k) = open
        .iter()
        .min_by_key(|(_, p)| p.seq)
        .map(|(k, _)| k.clone())
    {
        open.remove(&k);
    }
}

fn field_value<'v>(
    spec: &FieldSpec,
    look: &dyn Fn(&FieldPath) -> Option<&'v Value>,
) -> Option<Value> {
    match spec {
        FieldSpec::Path(paths) => paths.iter().find_map(look).map(capped_value),
        FieldSpec::Regex { path, regex, then } => {
            let text = value_text(look(path)?, false)?;
            if let Some(v) = then {
                return regex.is_match(&text).then(|| v.clone());
            }
            let caps = regex.captures(&text)?;
            let m = caps
                .name("value")
                .or_else(|| caps.get(1))
                .or_else(|| caps.get(0))?;
            let s = m.as_str();
            Some(match s.parse::<i64>() {
                Ok(n) => Value::from(n),
                Err(_) => Value::String(s.to_string()),
            })
        }
        FieldSpec::Map { path, map } => {
            let v = look(path)?;
            let key = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            map.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
        }
        FieldSpec::First(specs) => specs.iter().find_map(|s| field_value(s, look)),
        FieldSpec::Diff(a, b) => {
            let (a, b) = (look(a)?.as_f64()?, look(b)?.as_f64()?);
            let d = a - b;
            Some(if d.fract() == 0.0 {
                Value::from(d as i64)
            } else {
                Value::from(d)
            })
        }
    }
}

/// A metadata value: scalars as they are, long strings cut, big structures as cut text.
fn capped_value(v: &Value) -> Value {
    match v {
        Value::String(s) if s.len() > MAX_FIELD => Value::String(cap(s.clone())),
        Value::Array(_) | Value::Object(_) => {
            let s = v.to_string();
            if s.len() > MAX_FIELD {
                Value::String(cap(s))
            } else {
                v.clone()
            }
        }
        other => other.clone(),
    }
}

/// Milliseconds since the epoch of an RFC 3339 time (`2026-12-01T16:21:11.767Z`).
pub fn epoch_ms(ts: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|d| d.timestamp_millis())
}

/// Shared handle, as the matcher hands it out.
pub type Engine = Arc<JsonEngine>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Record, Stream};
    use crate::extract::rules::RuleBook;
    use crate::extract::{Extractor, Matcher, Redactor};

    fn builtin(agent: &str) -> Extractor {
        let book = RuleBook::builtin().expect("built-ins");
        let m = Arc::new(Matcher::new(&book, Some(agent)).expect("matcher"));
        let r = Arc::new(Redactor::new(&book, true).expect("redactor"));
        Extractor::new(m, r, 64 * 1024)
    }

    fn events(x: &mut Extractor) -> Vec<Event> {
        x.take()
            .into_iter()
            .filter_map(|r| match r {
                Record::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    fn ts() -> Arc<str> {
        "2026-12-01T16:21:11.000Z".into()
    }

    /// Found by a live run of Claude Code 2.1.332: its TUI shows a long call's first row only
    /// (`⎿  $ for f in …; done && echo '… the next`), and the log has the whole command; that
    /// was two command events, one cut short. The log's account merges into the screen's
    /// event and gives it the whole value.
    #[test]
    fn a_command_the_screen_cut_short_is_merged_with_the_logs_whole_one() {
        let mut x = builtin("claude");
        x.expect_log();
        let full = "for f in broken.c test_ok.py; do echo \"== $f\"; wc -l \"$f\"; done && echo 'all files counted; the next step compares them'";
        let shown = &full[..full.find(" the next").expect("cut") + " the next".len()];
        x.feed(Stream::Pty, format!("  ⎿  $ {shown}\n").as_bytes(), &ts());
        let first = x.take();
        assert!(first.iter().any(|r| matches!(r, Record::Event(e)
            if &*e.event_type == "command" && e.matched_value.as_deref() == Some(shown))));
        let use_ = serde_json::json!({"type":"assistant","timestamp":"2026-12-01T16:21:12.000Z","message":{"role":"assistant","content":[{"type":"tool_use","id":"toolu_9","name":"Bash","input":{"command":full}}]}});
        let result = serde_json::json!({"type":"user","timestamp":"2026-12-01T16:21:13.000Z","message":{"role":"user","content":[{"type":"tool_result","content":"== broken.c","is_error":false,"tool_use_id":"toolu_9"}]}});
        x.feed_log_line(&use_.to_string(), 1, &ts());
        x.feed_log_line(&result.to_string(), 2, &ts());
        let rest = x.take();
        let merges: Vec<&crate::event::Merge> = rest
            .iter()
            .filter_map(|r| match r {
                Record::Merge(m) if m.event_type == "command" => Some(m),
                _ => None,
            })
            .collect();
        assert_eq!(merges.len(), 1, "{rest:#?}");
        assert_eq!(merges[0].matched_value.as_deref(), Some(shown));
        assert_eq!(merges[0].full_value.as_deref(), Some(full));
        assert!(
            !rest
                .iter()
                .any(|r| matches!(r, Record::Event(e) if &*e.event_type == "command")),
            "no second command: {rest:#?}"
        );
    }

    /// Found by a live run: the screen's `    2 passed in 0.00s` (indented) and the log's
    /// `2 passed in 0.00s` were two test results, and output the rollout holds twice gave
    /// two events; one each now.
    #[test]
    fn the_logs_tool_output_merges_with_the_screen_and_counts_once() {
        let mut x = builtin("claude");
        x.expect_log();
        x.feed(Stream::Pty, b"    2 passed in 0.00s\n", &ts());
        let shown: Vec<Event> = events(&mut x);
        assert_eq!(
            shown
                .iter()
                .filter(|e| &*e.event_type == "test_result")
                .count(),
            1,
            "{shown:#?}"
        );
        let result = |id: &str| {
            serde_json::json!({"type":"user","timestamp":"2026-12-01T16:21:13.000Z","message":{"role":"user","content":[{"type":"tool_result","content":"..\n2 passed in 0.00s\nbroken.c:4:19: error: expected ';' before 'return'","is_error":false,"tool_use_id":id}]}})
            .to_string()
        };
        x.feed_log_line(&result("toolu_1"), 1, &ts());
        x.feed_log_line(&result("toolu_2"), 2, &ts());
        let rest = x.take();
        let new_events: Vec<&Event> = rest
            .iter()
            .filter_map(|r| match r {
                Record::Event(e) => Some(e),
                _ => None,
            })
            .collect();
        assert!(
            !new_events.iter().any(|e| &*e.event_type == "test_result"),
            "the summary merged: {rest:#?}"
        );
        assert!(rest
            .iter()
            .any(|r| matches!(r, Record::Merge(m) if m.event_type == "test_result")));
        let errors = new_events
            .iter()
            .filter(|e| &*e.pattern == "compiler_error")
            .count();
        assert_eq!(errors, 1, "once, though the log holds it twice: {rest:#?}");
    }

    #[test]
    fn a_command_in_bash_quoting_compares_as_the_command() {
        assert_eq!(
            crate::extract::comparable(r#"  echo '"'all files'"' && x  "#),
            "echo 'all files' && x"
        );
        assert_eq!(crate::extract::comparable("ls"), "ls");
    }

    /// The issue's own example: `\n` before a path is an escape, not part of the path.
    #[test]
    fn no_event_from_inside_a_json_escape() {
        let mut x = builtin("codex");
        let line = br#"{"type":"item.completed","item":{"id":"item_9","type":"command_execution","command":"/bin/bash -lc 'gcc broken.c'","aggregated_output":"x\nbroken.c:2:12: error: expected ';'\n","exit_code":1,"status":"failed"}}"#;
        x.feed(Stream::Stdout, line, &ts());
        x.feed(
            Stream::Stdout,
            b"
",
            &ts(),
        );
        let ev = events(&mut x);
        let paths: Vec<&str> = ev
            .iter()
            .filter(|e| &*e.event_type == "file_path")
            .filter_map(|e| e.matched_value.as_deref())
            .collect();
        assert_eq!(paths, ["broken.c:2:12"], "{ev:#?}");
        assert!(ev
            .iter()
            .all(|e| !e.matched_value.as_deref().unwrap_or("").contains("nbroken")));
        // The compiler error is found as a line, and the command has its exit status.
        assert!(ev.iter().any(|e| &*e.pattern == "compiler_error"));
        let cmd = ev
            .iter()
            .find(|e| &*e.event_type == "command")
            .expect("command");
        assert_eq!(cmd.matched_value.as_deref(), Some("gcc broken.c"));
        assert!(cmd
            .metadata_json
            .as_deref()
            .unwrap_or("")
            .contains("\"exit_code\":1"));
    }

    #[test]
    fn a_start_and_its_end_make_one_event_with_a_duration() {
        let mut x = builtin("codex");
        x.feed(Stream::Stdout, br#"{"type":"item.started","item":{"id":"item_2","type":"command_execution","command":"/bin/bash -lc ls","aggregated_output":"","exit_code":null,"status":"in_progress"}}
"#, &"2026-12-01T16:21:11.000Z".into());
        x.feed(Stream::Stdout, br#"{"type":"item.completed","item":{"id":"item_2","type":"command_execution","command":"/bin/bash -lc ls","aggregated_output":"a\n","exit_code":0,"status":"completed"}}
"#, &"2026-12-01T16:21:12.250Z".into());
        let cmds: Vec<Event> = events(&mut x)
            .into_iter()
            .filter(|e| &*e.event_type == "command")
            .collect();
        assert_eq!(cmds.len(), 1);
        let meta: Value = serde_json::from_str(cmds[0].metadata_json.as_deref().unwrap()).unwrap();
        assert_eq!(meta["duration_ms"], 1250);
        assert_eq!(meta["exit_code"], 0);
        assert_eq!(meta["source"], "json");
        assert_eq!(cmds[0].line_number, 2);
    }

    #[test]
    fn unknown_types_truncated_lines_and_plain_text_between_json_lines() {
        let mut x = builtin("codex");
        let mut input = Vec::new();
        // A type no rule knows, and a known type with unknown and missing fields.
        input.extend_from_slice(br#"{"type":"thread.resumed","whatever":{"deep":[1,2,3]}}"#);
        input.push(b'\n');
        input.extend_from_slice(
            br#"{"type":"item.completed","item":{"type":"command_execution","new_field":true}}"#,
        );
        input.push(b'\n');
        // Plain text between JSON lines keeps today's path.
        input.extend_from_slice(b"error: plain text error\n");
        // A JSON line cut short (the agent was killed mid-line).
        input.extend_from_slice(
            br#"{"type":"item.completed","item":{"aggregated_output":"ok\nsrc/main.rs:4:2: error: bad\nmo"#,
        );
        input.push(b'\n');
        // Not an object: an array, and JSON-looking text that is not JSON.
        input.extend_from_slice(b"[1,2]\n{not json at all}\n");
        x.feed(Stream::Stdout, &input, &ts());
        x.finish(&ts());
        let ev = events(&mut x);
        let got: Vec<(&str, &str)> = ev
            .iter()
            .map(|e| (&*e.pattern, e.matched_value.as_deref().unwrap_or("")))
            .collect();
        assert!(
            got.contains(&("error_prefix", "error: plain text error"))
                || got.iter().any(|(_, v)| v.contains("plain text error")),
            "{got:?}"
        );
        assert!(
            got.contains(&("path_line_col", "src/main.rs:4:2")),
            "{got:?}"
        );
        // The command without a command field: an event without a value, not a failure.
        assert!(ev
            .iter()
            .all(|e| !e.matched_value.as_deref().unwrap_or("").contains("nsrc")));
        assert_eq!(x.lines(), 6);
    }

    #[test]
    fn code_blocks_in_a_message_are_found_once_and_tokens_become_facts() {
        let mut x = builtin("claude");
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/streams/claude_stream_json.out"
        ))
        .expect("fixture");
        x.feed(Stream::Stdout, text.as_bytes(), &ts());
        x.finish(&ts());
        let recs = x.take();
        let blocks = recs
            .iter()
            .filter(|r| matches!(r, Record::CodeBlock(_)))
            .count();
        assert_eq!(blocks, 1);
        let facts = recs
            .iter()
            .rev()
            .find_map(|r| match r {
                Record::Facts(f) => Some(f.clone()),
                _ => None,
            })
            .expect("facts");
        assert_eq!(facts.input_tokens, Some(7200));
        assert_eq!(facts.output_tokens, Some(126));
        assert_eq!(facts.cost_usd, Some(0.0492));
        assert!(facts.cost_note.unwrap_or_default().contains("estimate"));
    }

    #[test]
    fn only_object_shaped_lines_take_the_json_path() {
        assert!(looks_like_object(r#"{"type":"x"}"#));
        assert!(looks_like_object("  {\"a\":1}  "));
        assert!(!looks_like_object("error: {x}y"));
        assert!(!looks_like_object("[1,2]"));
        assert!(!looks_like_object(""));
        assert!(parse_object("{not json}").is_none());
        assert!(parse_object("{\"a\":1}").is_some());
    }

    #[test]
    fn string_values_are_split_into_lines_and_keys_are_not_text() {
        let v: Value =
            serde_json::from_str(r#"{"out":"a\nbroken.c:2:12: error: x\n","broken.c:9:9":1}"#)
                .unwrap();
        let mut lines = Vec::new();
        for_each_string_line(&v, &mut |l| lines.push(l.to_string()));
        assert_eq!(lines, ["a", "broken.c:2:12: error: x"]);
    }

    #[test]
    fn a_truncated_json_line_is_read_with_its_escapes_decoded() {
        let lines = lossy_lines(r#"{"text":"ok\nbroken.c:2:12: error: \"x\"\nmore tex"#);
        assert_eq!(lines[1], "broken.c:2:12: error: \"x\"");
        assert!(lines.iter().all(|l| !l.contains("nbroken")));
    }

    #[test]
    fn shell_wrappers_are_unwrapped_in_both_spellings() {
        let v: Value = serde_json::json!("/bin/bash -lc 'gcc broken.c -o broken'");
        assert_eq!(value_text(&v, true).unwrap(), "gcc broken.c -o broken");
        let v: Value = serde_json::json!(["/bin/bash", "-lc", "gcc broken.c -o broken"]);
        assert_eq!(value_text(&v, true).unwrap(), "gcc broken.c -o broken");
        let v: Value = serde_json::json!("bash -lc 'echo '\\''hi'\\'''");
        assert_eq!(value_text(&v, true).unwrap(), "echo 'hi'");
        let v: Value = serde_json::json!("ls -la");
        assert_eq!(value_text(&v, true).unwrap(), "ls -la");
    }
}
