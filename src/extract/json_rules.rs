//! JSON-field rules (`[[json]]` in pattern files): select decoded JSON objects by the values
//! of their fields, take an event's value and metadata from field paths, and pair a start
//! object with its end through an id field (SPEC §10, "the agents' own records").
//!
//! A regex over the raw line cannot do this: the raw text is escaped (`\n`, `\"`), one field's
//! value is not delimited by anything a regex can trust, and a command's exit status arrives
//! on a different line than its start. These rules look at the parsed object instead.
//!
//! Agents change their formats between versions, so nothing here is strict about the data:
//! an unknown `type`, a missing field or a field of another type is simply no match. The
//! rule files, on the other hand, are checked as strictly as `[[pattern]]` rules: unknown
//! keys, bad paths and samples that do not match are errors naming file, line and rule.

use std::sync::Arc;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use super::rules::{compile, Origin, PatternError};
use crate::event::RiskLevel;

/// A dotted field path (`item.exit_code`, `message.content.0.text`): a number indexes an array.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldPath {
    src: Arc<str>,
    segs: Vec<Seg>,
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(Box<str>),
    Index(usize),
}

impl FieldPath {
    pub fn parse(src: &str) -> Result<FieldPath, String> {
        if src.is_empty() {
            return Err("empty field path".into());
        }
        let mut segs = Vec::new();
        for part in src.split('.') {
            if part.is_empty() {
                return Err(format!("field path {src:?} has an empty part"));
            }
            segs.push(match part.parse::<usize>() {
                Ok(i) => Seg::Index(i),
                Err(_) => Seg::Key(part.into()),
            });
        }
        Ok(FieldPath {
            src: src.into(),
            segs,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.src
    }

    /// The value at this path, if every step exists; JSON `null` counts as absent.
    pub fn get<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        let mut cur = v;
        for s in &self.segs {
            cur = match (s, cur) {
                (Seg::Key(k), Value::Object(m)) => m.get(&**k)?,
                (Seg::Index(i), Value::Array(a)) => a.get(*i)?,
                // A numeric key in an object (`{"0": …}`) is a key.
                (Seg::Index(i), Value::Object(m)) => m.get(&i.to_string())?,
                _ => return None,
            };
        }
        (!cur.is_null()).then_some(cur)
    }
}

/// One condition: the field at `path` equals one of `any` (`exists` when `any` is empty).
#[derive(Debug, Clone)]
pub struct Cond {
    pub path: FieldPath,
    pub any: Vec<Value>,
}

impl Cond {
    fn holds(&self, v: &Value) -> bool {
        match self.path.get(v) {
            None => false,
            Some(x) => self.any.is_empty() || self.any.iter().any(|a| a == x),
        }
    }
}

/// Which objects (and, with `each`, which elements of an array in them) a rule looks at.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub when: Vec<Cond>,
    pub unless: Vec<Cond>,
    pub each: Option<FieldPath>,
    pub item: Vec<Cond>,
    pub item_unless: Vec<Cond>,
    /// Regexes the text of a field must match, on the object and on the element.
    pub matches: Vec<(FieldPath, Regex)>,
    pub item_matches: Vec<(FieldPath, Regex)>,
    /// Regexes the text of an element's field must not match (`regex` has no look-ahead:
    /// "an error result that is not a refusal").
    pub item_not_matches: Vec<(FieldPath, Regex)>,
    /// The id that pairs a start with its end (looked up in the element, then the object).
    pub id: Option<FieldPath>,
}

impl Selector {
    /// The elements selected in `root`: `root` itself without `each`.
    pub fn select<'v>(&self, root: &'v Value) -> Vec<&'v Value> {
        if !self.when.iter().all(|c| c.holds(root)) || self.unless.iter().any(|c| c.holds(root)) {
            return Vec::new();
        }
        match &self.each {
            None => vec![root],
            Some(p) => match p.get(root) {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter(|el| {
                        self.item.iter().all(|c| c.holds(el))
                            && !self.item_unless.iter().any(|c| c.holds(el))
                            && regexes_hold(&self.item_matches, el)
                            && !self.item_not_matches.iter().any(|m| regex_holds(m, el))
                    })
                    .collect(),
                _ => Vec::new(),
            },
        }
    }

    /// Whether `root` passes the object-level conditions (a cheap first filter).
    pub fn root_matches(&self, root: &Value) -> bool {
        self.when.iter().all(|c| c.holds(root))
            && !self.unless.iter().any(|c| c.holds(root))
            && regexes_hold(&self.matches, root)
    }
}

fn regexes_hold(list: &[(FieldPath, Regex)], v: &Value) -> bool {
    list.iter().all(|m| regex_holds(m, v))
}

/// Whether the text of field `p` of `v` matches `re` (an array of `{text}` blocks: any block).
fn regex_holds((p, re): &(FieldPath, Regex), v: &Value) -> bool {
    match p.get(v) {
        Some(Value::String(s)) => re.is_match(s),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.get("text").and_then(Value::as_str).or(x.as_str()))
            .any(|s| re.is_match(s)),
        Some(other) => re.is_match(&other.to_string()),
        None => false,
    }
}

/// Which records a rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    Both,
    /// Only what the agent prints.
    Output,
    /// Only the agent's own session log.
    Log,
}

/// How a metadata field is computed.
#[derive(Debug, Clone)]
pub enum FieldSpec {
    /// The first of these paths that is present.
    Path(Vec<FieldPath>),
    /// A regex over the field's text: group `value` (or 1, or the whole match); with
    /// `then`, that value instead whenever the regex matches (`status = "denied"` when a
    /// result's text says the call was refused).
    Regex {
        path: FieldPath,
        regex: Regex,
        then: Option<Value>,
    },
    /// The field's text (`true`, `failed`, `1`) mapped through a table.
    Map {
        path: FieldPath,
        map: Vec<(String, Value)>,
    },
    /// `a - b` of two numeric fields (e.g. `completed_at_ms` - `started_at_ms`).
    Diff(FieldPath, FieldPath),
    /// The first of these that gives a value.
    First(Vec<FieldSpec>),
}

/// Session facts a rule can set (`session`) or add to (`add`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    AgentSessionId,
    Model,
    InputTokens,
    CachedInputTokens,
    OutputTokens,
    CostUsd,
}

impl Fact {
    fn parse(s: &str) -> Option<Fact> {
        Some(match s {
            "agent_session_id" => Fact::AgentSessionId,
            "model" => Fact::Model,
            "input_tokens" => Fact::InputTokens,
            "cached_input_tokens" => Fact::CachedInputTokens,
            "output_tokens" => Fact::OutputTokens,
            "cost_usd" => Fact::CostUsd,
            _ => return None,
        })
    }

    const NAMES: &'static str =
        "agent_session_id, model, input_tokens, cached_input_tokens, output_tokens, cost_usd";
}

/// One `[[json]]` rule, validated.
#[derive(Debug, Clone)]
pub struct JsonRule {
    pub name: Arc<str>,
    /// `None`: the rule records no event (it only sets facts, finds code blocks, or keeps
    /// text rules off an object).
    pub event_type: Option<Arc<str>>,
    pub agents: Vec<String>,
    pub select: Selector,
    pub start: Option<Selector>,
    pub from: ReadFrom,
    /// An end whose start was not seen records nothing.
    pub require_start: bool,
    pub value: Vec<FieldPath>,
    pub unwrap_shell: bool,
    pub fields: Vec<(Arc<str>, FieldSpec)>,
    /// Markdown text whose fenced blocks are stored as code blocks.
    pub code_blocks: Option<FieldPath>,
    /// Text that text rules read where the object comes from the agent's session log (a
    /// tool's output, which `claude -p` in text mode never shows and a TUI may fold away).
    pub log_text: Option<FieldPath>,
    /// The text the output may show in place of the value (a field spec, as `fields` take,
    /// never stored): a session log's event merges into the output's event with that text
    /// (Gemini's stderr says `Tool execution denied by policy.` where the log names the
    /// command), and the merged event takes the log's value.
    pub shown_as: Option<FieldSpec>,
    /// Whether text rules also read this object's strings.
    pub text: bool,
    /// Top-level fields of the object text rules do not read (a copy of another field).
    pub text_skip: Vec<String>,
    pub session: Vec<(Fact, FieldPath)>,
    pub add: Vec<(Fact, FieldPath)>,
    pub once_per: Option<FieldPath>,
    /// What the `cost_usd` this rule sets is (e.g. "the client's own estimate").
    pub cost_note: Option<String>,
    pub risk_level: Option<RiskLevel>,
    pub auto_confirmable: bool,
    pub description: Option<String>,
    pub samples: Vec<String>,
    pub counter_samples: Vec<String>,
    pub origin: Origin,
}

impl JsonRule {
    pub fn applies_to(&self, agent: &str) -> bool {
        self.agents
            .iter()
            .any(|g| super::rules::glob_match(g, agent))
    }

    /// Whether `obj` is something this rule acts on: its end, or its start.
    pub fn touches(&self, obj: &Value) -> bool {
        !self.select.select(obj).is_empty()
            || self
                .start
                .as_ref()
                .is_some_and(|s| !s.select(obj).is_empty())
    }
}

/// A `[[json]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJsonRule {
    pub name: Spanned<String>,
    event_type: Option<Spanned<String>>,
    agents: Option<Vec<String>>,
    when: Option<Spanned<toml::Table>>,
    unless: Option<Spanned<toml::Table>>,
    matches: Option<Spanned<toml::Table>>,
    each: Option<Spanned<String>>,
    item: Option<Spanned<toml::Table>>,
    item_unless: Option<Spanned<toml::Table>>,
    item_matches: Option<Spanned<toml::Table>>,
    item_not_matches: Option<Spanned<toml::Table>>,
    id: Option<Spanned<String>>,
    start: Option<Spanned<RawStart>>,
    from: Option<Spanned<String>>,
    require_start: Option<bool>,
    value: Option<Spanned<toml::Value>>,
    unwrap_shell: Option<bool>,
    fields: Option<Spanned<toml::Table>>,
    code_blocks: Option<Spanned<String>>,
    log_text: Option<Spanned<String>>,
    shown_as: Option<Spanned<toml::Value>>,
    text: Option<bool>,
    text_skip: Option<Vec<String>>,
    session: Option<Spanned<toml::Table>>,
    add: Option<Spanned<toml::Table>>,
    once_per: Option<Spanned<String>>,
    cost_note: Option<String>,
    risk_level: Option<Spanned<String>>,
    auto_confirmable: Option<bool>,
    pub enabled: Option<bool>,
    description: Option<String>,
    samples: Option<Spanned<Vec<Spanned<String>>>>,
    counter_samples: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStart {
    when: Option<Spanned<toml::Table>>,
    unless: Option<Spanned<toml::Table>>,
    matches: Option<Spanned<toml::Table>>,
    each: Option<Spanned<String>>,
    item: Option<Spanned<toml::Table>>,
    item_unless: Option<Spanned<toml::Table>>,
    item_matches: Option<Spanned<toml::Table>>,
    item_not_matches: Option<Spanned<toml::Table>>,
    id: Option<Spanned<String>>,
}

type At<'a> = &'a dyn Fn(usize, String) -> PatternError;

fn path_at(s: &Spanned<String>, at: At) -> Result<FieldPath, PatternError> {
    FieldPath::parse(s.get_ref()).map_err(|m| at(s.span().start, m))
}

/// `{ type = "x", item.type = ["a", "b"], exit_code = "*" }` → conditions. Nested tables (from
/// dotted keys) become dotted paths; a list is "any of"; `"*"` is "present".
fn conds(t: &Option<Spanned<toml::Table>>, at: At) -> Result<Vec<Cond>, PatternError> {
    let Some(t) = t else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    flatten(t.get_ref(), "", &mut |path, v| {
        let path = FieldPath::parse(path).map_err(|m| at(t.span().start, m))?;
        let any = match v {
            toml::Value::String(s) if s == "*" => Vec::new(),
            toml::Value::Array(a) => a.iter().map(toml_to_json).collect(),
            other => vec![toml_to_json(other)],
        };
        out.push(Cond { path, any });
        Ok(())
    })?;
    Ok(out)
}

fn flatten(
    t: &toml::Table,
    prefix: &str,
    f: &mut dyn FnMut(&str, &toml::Value) -> Result<(), PatternError>,
) -> Result<(), PatternError> {
    for (k, v) in t {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(inner) => flatten(inner, &path, f)?,
            other => f(&path, other)?,
        }
    }
    Ok(())
}

fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

fn paths_of(v: &toml::Value) -> Result<Vec<FieldPath>, String> {
    match v {
        toml::Value::String(s) => Ok(vec![FieldPath::parse(s)?]),
        toml::Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|x| match x {
                toml::Value::String(s) => FieldPath::parse(s),
                _ => Err("expected a field path or a list of them".into()),
            })
            .collect(),
        _ => Err("expected a field path or a list of them".into()),
    }
}

fn field_spec(v: &toml::Value) -> Result<FieldSpec, String> {
    if let toml::Value::Table(t) = v {
        let path = |key: &str| -> Result<FieldPath, String> {
            match t.get(key) {
                Some(toml::Value::String(s)) => FieldPath::parse(s),
                _ => Err(format!("needs `{key} = \"field.path\"`")),
            }
        };
        if let Some(toml::Value::Array(d)) = t.get("diff") {
            return match d.as_slice() {
                [toml::Value::String(a), toml::Value::String(b)] if t.len() == 1 => {
                    Ok(FieldSpec::Diff(FieldPath::parse(a)?, FieldPath::parse(b)?))
                }
                _ => Err("`diff` takes two field paths: [\"end\", \"start\"]".into()),
            };
        }
        if let Some(r) = t.get("regex") {
            let toml::Value::String(src) = r else {
                return Err("`regex` must be a string".into());
            };
            let then = t.get("then").map(toml_to_json);
            if t.len() != 2 + usize::from(then.is_some()) {
                return Err("a regex field has `path` and `regex`, and may have `then`".into());
            }
            return Ok(FieldSpec::Regex {
                path: path("path")?,
                regex: compile(src, false)?,
                then,
            });
        }
        if let Some(m) = t.get("map") {
            let toml::Value::Table(m) = m else {
                return Err("`map` must be a table".into());
            };
            if t.len() != 2 {
                return Err("a mapped field has exactly `path` and `map`".into());
            }
            return Ok(FieldSpec::Map {
                path: path("path")?,
                map: m
                    .iter()
                    .map(|(k, v)| (k.clone(), toml_to_json(v)))
                    .collect(),
            });
        }
        return Err(
            "a field is a path, a list of paths, or a table with `path` and `regex` (and \
                    `then`), `path` and `map`, or `diff`"
                .into(),
        );
    }
    if let toml::Value::Array(a) = v {
        if a.iter().any(|x| matches!(x, toml::Value::Table(_))) {
            return a
                .iter()
                .map(field_spec)
                .collect::<Result<_, _>>()
                .map(FieldSpec::First);
        }
    }
    paths_of(v).map(FieldSpec::Path)
}

fn facts(t: &Option<Spanned<toml::Table>>, at: At) -> Result<Vec<(Fact, FieldPath)>, PatternError> {
    let Some(t) = t else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for (k, v) in t.get_ref() {
        let fact = Fact::parse(k).ok_or_else(|| {
            at(
                t.span().start,
                format!(
                    "unknown session fact `{k}` (expected one of {})",
                    Fact::NAMES
                ),
            )
        })?;
        let toml::Value::String(p) = v else {
            return Err(at(t.span().start, format!("`{k}` must be a field path")));
        };
        out.push((
            fact,
            FieldPath::parse(p).map_err(|m| at(t.span().start, m))?,
        ));
    }
    Ok(out)
}

struct RawSelector<'a> {
    when: &'a Option<Spanned<toml::Table>>,
    unless: &'a Option<Spanned<toml::Table>>,
    matches: &'a Option<Spanned<toml::Table>>,
    each: &'a Option<Spanned<String>>,
    item: &'a Option<Spanned<toml::Table>>,
    item_unless: &'a Option<Spanned<toml::Table>>,
    item_matches: &'a Option<Spanned<toml::Table>>,
    item_not_matches: &'a Option<Spanned<toml::Table>>,
    id: &'a Option<Spanned<String>>,
}

/// `{ content = '^Exit code (\d+)' }` → (path, regex) pairs.
fn regexes(
    t: &Option<Spanned<toml::Table>>,
    at: At,
) -> Result<Vec<(FieldPath, Regex)>, PatternError> {
    let Some(t) = t else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    flatten(t.get_ref(), "", &mut |path, v| {
        let toml::Value::String(src) = v else {
            return Err(at(
                t.span().start,
                format!("`{path}`: a regex must be a string"),
            ));
        };
        let path = FieldPath::parse(path).map_err(|m| at(t.span().start, m))?;
        let re = compile(src, false).map_err(|m| at(t.span().start, m))?;
        out.push((path, re));
        Ok(())
    })?;
    Ok(out)
}

fn selector(raw: RawSelector, at: At) -> Result<Selector, PatternError> {
    let RawSelector {
        when,
        unless,
        matches,
        each,
        item,
        item_unless,
        item_matches,
        item_not_matches,
        id,
    } = raw;
    let each_path = each.as_ref().map(|e| path_at(e, at)).transpose()?;
    if each_path.is_none() {
        if let Some(t) = item
            .as_ref()
            .or(item_unless.as_ref())
            .or(item_matches.as_ref())
            .or(item_not_matches.as_ref())
        {
            return Err(at(
                t.span().start,
                "`item` conditions need `each` (the array whose elements they select)".into(),
            ));
        }
    }
    Ok(Selector {
        when: conds(when, at)?,
        unless: conds(unless, at)?,
        each: each_path,
        item: conds(item, at)?,
        item_unless: conds(item_unless, at)?,
        matches: regexes(matches, at)?,
        item_matches: regexes(item_matches, at)?,
        item_not_matches: regexes(item_not_matches, at)?,
        id: id.as_ref().map(|i| path_at(i, at)).transpose()?,
    })
}

/// Validates one `[[json]]` table. `rule_start` is its offset in the file, `at` turns an
/// offset and a message into an error naming file, line, column and this rule.
pub(crate) fn parse_rule(
    raw: RawJsonRule,
    rule_start: usize,
    origin: Origin,
    at: At,
) -> Result<JsonRule, PatternError> {
    let name = raw.name.get_ref().clone();
    let select = selector(
        RawSelector {
            when: &raw.when,
            unless: &raw.unless,
            matches: &raw.matches,
            each: &raw.each,
            item: &raw.item,
            item_unless: &raw.item_unless,
            item_matches: &raw.item_matches,
            item_not_matches: &raw.item_not_matches,
            id: &raw.id,
        },
        at,
    )?;
    if select.when.is_empty() && select.matches.is_empty() {
        return Err(at(
            rule_start,
            "missing `when` (or `matches`): say which objects this rule selects \
             (e.g. `when = { type = \"result\" }`)"
                .into(),
        ));
    }
    let start = match &raw.start {
        None => None,
        Some(s) => {
            let r = s.get_ref();
            let sel = selector(
                RawSelector {
                    when: &r.when,
                    unless: &r.unless,
                    matches: &r.matches,
                    each: &r.each,
                    item: &r.item,
                    item_unless: &r.item_unless,
                    item_matches: &r.item_matches,
                    item_not_matches: &r.item_not_matches,
                    id: &r.id,
                },
                at,
            )?;
            if sel.id.is_none() || select.id.is_none() {
                return Err(at(
                    s.span().start,
                    "pairing needs `id` both on the rule (the end's id field) and in `start`"
                        .into(),
                ));
            }
            if sel.when.is_empty() && sel.matches.is_empty() {
                return Err(at(s.span().start, "`start` needs `when`".into()));
            }
            Some(sel)
        }
    };
    let value = match &raw.value {
        None => Vec::new(),
        Some(v) => paths_of(v.get_ref()).map_err(|m| at(v.span().start, m))?,
    };
    let mut fields = Vec::new();
    if let Some(t) = &raw.fields {
        for (k, v) in t.get_ref() {
            let spec =
                field_spec(v).map_err(|m| at(t.span().start, format!("field `{k}`: {m}")))?;
            fields.push((Arc::<str>::from(k.as_str()), spec));
        }
    }
    let event_type = match raw.event_type {
        Some(e) if e.get_ref().trim().is_empty() => {
            return Err(at(e.span().start, "`event_type` is empty".into()))
        }
        Some(e) => Some(Arc::<str>::from(e.get_ref().as_str())),
        None => None,
    };
    let session = facts(&raw.session, at)?;
    let add = facts(&raw.add, at)?;
    let code_blocks = raw
        .code_blocks
        .as_ref()
        .map(|c| path_at(c, at))
        .transpose()?;
    let log_text = raw.log_text.as_ref().map(|c| path_at(c, at)).transpose()?;
    let shown_as = match &raw.shown_as {
        None => None,
        Some(v) => Some(
            field_spec(v.get_ref()).map_err(|m| at(v.span().start, format!("`shown_as`: {m}")))?,
        ),
    };
    let text = raw.text.unwrap_or(true);
    let text_skip = raw.text_skip.unwrap_or_default();
    if event_type.is_none()
        && session.is_empty()
        && add.is_empty()
        && code_blocks.is_none()
        && log_text.is_none()
        && text
        && text_skip.is_empty()
    {
        return Err(at(
            rule_start,
            "this rule does nothing: give it an `event_type`, `session`/`add` facts, \
             `code_blocks`, `log_text`, `text = false` or `text_skip`"
                .into(),
        ));
    }
    let risk_level = match &raw.risk_level {
        None => None,
        Some(r) => Some(RiskLevel::parse(r.get_ref()).ok_or_else(|| {
            at(
                r.span().start,
                format!(
                    "unknown risk_level `{}` (expected low, medium, high or critical)",
                    r.get_ref()
                ),
            )
        })?),
    };
    let from = match &raw.from {
        None => ReadFrom::Both,
        Some(f) => match f.get_ref().as_str() {
            "output" => ReadFrom::Output,
            "log" => ReadFrom::Log,
            other => {
                return Err(at(
                    f.span().start,
                    format!("unknown `from` {other:?} (expected \"output\" or \"log\")"),
                ))
            }
        },
    };
    let rule = JsonRule {
        name: name.as_str().into(),
        event_type,
        agents: raw.agents.unwrap_or_else(|| vec!["*".into()]),
        select,
        start,
        from,
        require_start: raw.require_start.unwrap_or(false),
        value,
        unwrap_shell: raw.unwrap_shell.unwrap_or(false),
        fields,
        code_blocks,
        log_text,
        shown_as,
        text,
        text_skip,
        session,
        add,
        once_per: raw.once_per.as_ref().map(|p| path_at(p, at)).transpose()?,
        cost_note: raw.cost_note,
        risk_level,
        auto_confirmable: raw.auto_confirmable.unwrap_or(false),
        description: raw.description,
        samples: Vec::new(),
        counter_samples: Vec::new(),
        origin,
    };
    check_samples(rule, raw.samples, raw.counter_samples, rule_start, at)
}

/// Samples are JSON lines: each must be one object the rule acts on (as end or start);
/// counter-samples must be objects it leaves alone.
fn check_samples(
    mut rule: JsonRule,
    samples: Option<Spanned<Vec<Spanned<String>>>>,
    counter: Option<Vec<Spanned<String>>>,
    rule_start: usize,
    at: At,
) -> Result<JsonRule, PatternError> {
    let samples = samples.ok_or_else(|| {
        at(
            rule_start,
            "missing `samples`: give at least one real JSON line this rule must match".into(),
        )
    })?;
    if samples.get_ref().is_empty() {
        return Err(at(
            samples.span().start,
            "`samples` is empty: give at least one real JSON line this rule must match".into(),
        ));
    }
    let parse = |s: &Spanned<String>| -> Result<Value, PatternError> {
        match serde_json::from_str::<Value>(s.get_ref()) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err(at(
                s.span().start,
                "a sample must be one JSON object".into(),
            )),
            Err(e) => Err(at(
                s.span().start,
                format!("sample is not a JSON line: {e}"),
            )),
        }
    };
    for s in samples.get_ref() {
        if !rule.touches(&parse(s)?) {
            return Err(at(
                s.span().start,
                format!(
                    "sample {:?} is not selected by the rule",
                    short(s.get_ref())
                ),
            ));
        }
    }
    for s in counter.iter().flatten() {
        if rule.touches(&parse(s)?) {
            return Err(at(
                s.span().start,
                format!(
                    "counter-sample {:?} is selected by the rule but must not be",
                    short(s.get_ref())
                ),
            ));
        }
        rule.counter_samples.push(s.get_ref().clone());
    }
    rule.samples = samples
        .into_inner()
        .into_iter()
        .map(Spanned::into_inner)
        .collect();
    Ok(rule)
}

fn short(s: &str) -> String {
    if s.chars().count() <= 80 {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(80).collect::<String>())
    }
}

/// A stable description of a rule for the rule set's version hash: everything but where it
/// was defined.
pub fn canon(r: &JsonRule) -> String {
    let mut r = r.clone();
    r.origin = Origin {
        file: String::new(),
        line: 0,
    };
    r.description = None;
    format!("{r:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_reach_into_objects_and_arrays_and_null_is_absent() {
        let v = json!({"a": {"b": [10, {"c": "x"}], "n": null}});
        assert_eq!(FieldPath::parse("a.b.0").unwrap().get(&v), Some(&json!(10)));
        assert_eq!(
            FieldPath::parse("a.b.1.c").unwrap().get(&v),
            Some(&json!("x"))
        );
        assert_eq!(FieldPath::parse("a.n").unwrap().get(&v), None);
        assert_eq!(FieldPath::parse("a.b.c").unwrap().get(&v), None);
        assert!(FieldPath::parse("a..b").is_err());
    }
}
