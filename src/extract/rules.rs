//! Pattern files: loading, validating and merging the user-editable rules (SPEC §3).
//!
//! A rule set is built in layers (built-ins, the user's config directory, each `--patterns`
//! path) and every file is checked completely before anything runs: TOML syntax, unknown keys,
//! enum values, regex syntax, duplicate names, and each rule's `samples`/`counter_samples`.
//! Every error names `file:line:col` and the rule, because the person reading it is about to
//! open that file in an editor.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::context::{Context, RawContext};
use crate::event::{PerStream, RiskLevel, Stream};

/// Highest pattern-file format version this wrapper understands.
pub const FORMAT_VERSION: i64 = 1;

/// Compiled size limit for one rule's regex: generous for real rules, but a pathological
/// repetition like `(a{1000}){1000}` is refused instead of eating memory.
const REGEX_SIZE_LIMIT: usize = 4 << 20;

/// Where the built-in files come from: `patterns/*.toml`, compiled into the binary by build.rs.
pub static BUILTIN: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/builtin_patterns.rs"));

/// A pattern file that could not be used, with the place to fix it.
#[derive(Debug, thiserror::Error)]
pub struct PatternError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub rule: Option<String>,
    pub message: String,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.col)?;
        if let Some(rule) = &self.rule {
            write!(f, "rule `{rule}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Where a rule was defined.
#[derive(Debug, Clone, Serialize)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One extraction rule, validated.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: Arc<str>,
    pub event_type: Arc<str>,
    pub regex_src: String,
    /// Compiled when the file was verified at load; built-ins are compiled where they are
    /// used (in the extraction thread, while the agent starts) — see [`RuleBook::load`].
    pub regex: Option<Regex>,
    /// Which streams the rule looks at (all three by default).
    pub streams: PerStream<bool>,
    pub agents: Vec<String>,
    pub risk_level: Option<RiskLevel>,
    pub auto_confirmable: bool,
    pub prompt: bool,
    pub case_insensitive: bool,
    pub description: Option<String>,
    pub samples: Vec<String>,
    pub counter_samples: Vec<String>,
    pub origin: Origin,
    /// Conditions on the previous line or a block (`[pattern.context]`, see context.rs).
    pub context: Option<Arc<Context>>,
}

impl Rule {
    /// Whether this rule applies to the named agent (glob list, `*` and `?`).
    pub fn applies_to(&self, agent: &str) -> bool {
        self.agents.iter().any(|g| glob_match(g, agent))
    }

    /// The pattern as it goes into the shared `RegexSet`, flags included.
    pub fn set_source(&self) -> String {
        if self.case_insensitive {
            format!("(?i:{})", self.regex_src)
        } else {
            self.regex_src.clone()
        }
    }
}

/// One `[[redact]]` rule, validated.
#[derive(Debug, Clone)]
pub struct RedactRule {
    pub name: Arc<str>,
    pub regex: Option<Regex>,
    pub regex_src: String,
    pub replacement: String,
    pub description: Option<String>,
    pub samples: Vec<String>,
    pub counter_samples: Vec<String>,
    pub origin: Origin,
}

/// A rule switched off by `enabled = false`, kept so `patterns list` can say so.
#[derive(Debug, Clone)]
pub struct Disabled {
    pub name: String,
    pub origin: Origin,
}

/// The effective rule set after all layers are merged.
#[derive(Debug, Clone, Default)]
pub struct RuleBook {
    pub rules: Vec<Rule>,
    pub redact: Vec<RedactRule>,
    pub disabled: Vec<Disabled>,
    /// `[[json]]` rules (`extract/json_rules.rs`).
    pub json: Vec<super::json_rules::JsonRule>,
}

/// A file to load: built-in text or a path on disk.
#[derive(Debug, Clone)]
pub enum Source {
    Builtin {
        name: &'static str,
        text: &'static str,
    },
    File(PathBuf),
}

impl RuleBook {
    /// Loads and merges `sources` in order; a later rule with the same name replaces an
    /// earlier one, and `enabled = false` switches a rule off.
    ///
    /// Files on disk are verified completely (regexes compiled, samples checked) before
    /// anything runs. The built-in files are parsed but not compiled here: they cannot change
    /// after the build, the test suite verifies them (and `wrapper patterns check` does), and
    /// compiling ~80 regexes would add tens of milliseconds to every start.
    pub fn load(sources: &[Source]) -> Result<RuleBook, PatternError> {
        let mut book = RuleBook::default();
        for source in sources {
            let file = match source {
                Source::Builtin { name, text } => {
                    parse_file(&format!("<builtin>/{name}"), text, false)?
                }
                Source::File(path) => {
                    let label = path.display().to_string();
                    let bytes = read_regular_file(path).map_err(|e| PatternError {
                        file: label.clone(),
                        line: 1,
                        col: 1,
                        rule: None,
                        message: format!("cannot read pattern file: {e}"),
                    })?;
                    let text = match String::from_utf8(bytes) {
                        Ok(t) => t,
                        Err(e) => {
                            let valid = e.utf8_error().valid_up_to();
                            let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]);
                            let (line, col) = line_col(&prefix, prefix.len());
                            return Err(PatternError {
                                file: label,
                                line,
                                col,
                                rule: None,
                                message: "pattern files must be UTF-8 (invalid byte here)".into(),
                            });
                        }
                    };
                    parse_file(&label, &text, true)?
                }
            };
            book.merge(file);
        }
        Ok(book)
    }

    /// Loads one pattern file's text, as if it were the only source (for tools and fuzzing,
    /// where the text is not `'static`). `label` is what errors call the file.
    pub fn parse_text(label: &str, text: &str) -> Result<RuleBook, PatternError> {
        let mut book = RuleBook::default();
        book.merge(parse_file(label, text, true)?);
        Ok(book)
    }

    /// Compiles every rule not yet compiled and checks its samples: what `load` does for files
    /// on disk, done here for the built-ins (`patterns check|list|test`, the test suite).
    pub fn verify(&mut self) -> Result<(), PatternError> {
        for r in &mut self.rules {
            if r.regex.is_none() {
                let err = |message: String| PatternError {
                    file: r.origin.file.clone(),
                    line: r.origin.line,
                    col: 1,
                    rule: Some(r.name.to_string()),
                    message,
                };
                let re = compile(&r.regex_src, r.case_insensitive).map_err(err)?;
                check_plain_samples(&re, &r.samples, &r.counter_samples).map_err(err)?;
                if let Some(c) = &r.context {
                    c.verify(&|s| compile(s, r.case_insensitive), &re)
                        .map_err(err)?;
                }
                r.regex = Some(re);
            }
        }
        for r in &mut self.redact {
            if r.regex.is_none() {
                let err = |message: String| PatternError {
                    file: r.origin.file.clone(),
                    line: r.origin.line,
                    col: 1,
                    rule: Some(r.name.to_string()),
                    message,
                };
                let re = compile(&r.regex_src, false).map_err(err)?;
                check_plain_samples(&re, &r.samples, &r.counter_samples).map_err(err)?;
                r.regex = Some(re);
            }
        }
        Ok(())
    }

    /// The built-ins alone.
    pub fn builtin() -> Result<RuleBook, PatternError> {
        RuleBook::load(&builtin_sources())
    }

    fn merge(&mut self, file: ParsedFile) {
        for entry in file.rules {
            let name = entry.name().to_string();
            self.rules.retain(|r| *r.name != *name);
            self.disabled.retain(|d| d.name != name);
            match entry {
                Entry::Rule(rule) => self.rules.push(*rule),
                Entry::Disable(d) => self.disabled.push(d),
            }
        }
        for r in file.redact {
            self.redact.retain(|x| x.name != r.name);
            self.redact.push(r);
        }
        for d in file.redact_disabled {
            self.redact.retain(|x| *x.name != *d);
        }
        for (name, rule) in file.json {
            self.json.retain(|r| *r.name != *name);
            self.disabled.retain(|d| d.name != name);
            match rule {
                Ok(r) => self.json.push(r),
                Err(d) => self.disabled.push(d),
            }
        }
    }

    /// A short, stable hash of the effective rules (SPEC §3), stored on each session so that
    /// events can be traced to the rules that made them.
    pub fn version(&self) -> String {
        #[derive(Serialize)]
        struct Canon<'a> {
            name: &'a str,
            event_type: &'a str,
            regex: &'a str,
            streams: PerStream<bool>,
            agents: &'a [String],
            risk_level: Option<RiskLevel>,
            auto_confirmable: bool,
            prompt: bool,
            case_insensitive: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            context: Option<&'a Context>,
        }
        let mut rules: Vec<Canon> = self
            .rules
            .iter()
            .map(|r| Canon {
                name: &r.name,
                event_type: &r.event_type,
                regex: &r.regex_src,
                streams: r.streams,
                agents: &r.agents,
                risk_level: r.risk_level,
                auto_confirmable: r.auto_confirmable,
                prompt: r.prompt,
                case_insensitive: r.case_insensitive,
                context: r.context.as_deref(),
            })
            .collect();
        rules.sort_by(|a, b| a.name.cmp(b.name));
        let mut redact: Vec<(&str, &str)> = self
            .redact
            .iter()
            .map(|r| (&*r.name, r.regex_src.as_str()))
            .collect();
        redact.sort();
        let mut canon = serde_json::json!({ "rules": rules, "redact": redact });
        if !self.json.is_empty() {
            let mut json: Vec<String> = self.json.iter().map(super::json_rules::canon).collect();
            json.sort();
            canon["json"] = json.into();
        }
        let digest = Sha256::digest(canon.to_string().as_bytes());
        format!("{digest:x}")[..12].to_string()
    }
}

/// Largest pattern or config file wrapper reads: far beyond any real one, small enough that
/// a mistaken path (a log, an image) is refused instead of parsed.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// Reads a file that must be a regular file of at most [`MAX_FILE_BYTES`]. A FIFO would block
/// forever and `/dev/zero` never ends; both are refused with a clear error instead.
pub fn read_regular_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    use std::os::unix::fs::OpenOptionsExt;
    let not_regular = |meta: &fs::Metadata| {
        let kind = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file (a FIFO, socket or device)"
        };
        Error::new(ErrorKind::InvalidInput, kind)
    };
    let meta = fs::metadata(path)?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    // O_NONBLOCK: should the path become a FIFO after the check, opening it does not hang.
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    let mut bytes = Vec::new();
    f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("larger than {} MiB", MAX_FILE_BYTES >> 20),
        ));
    }
    Ok(bytes)
}

/// The built-in files, in name order.
pub fn builtin_sources() -> Vec<Source> {
    BUILTIN
        .iter()
        .map(|(name, text)| Source::Builtin { name, text })
        .collect()
}

/// The built-in file of `[[redact]]` rules alone. `--no-default-patterns` leaves out the
/// built-in *extraction* rules, not the masking of secrets: that is switched off only by
/// `--no-redact` (SPEC §5.1), or rule by rule with `enabled = false`. Someone replacing the
/// rules with their own must not find their API keys stored in clear.
pub fn builtin_redact_sources() -> Vec<Source> {
    builtin_sources()
        .into_iter()
        .filter(|s| matches!(s, Source::Builtin { name, .. } if *name == REDACT_FILE))
        .collect()
}

/// The built-in file that holds the `[[redact]]` rules (and only those).
const REDACT_FILE: &str = "redact.toml";

/// Expands a `--patterns` argument: a file as is, a directory as its `*.toml` files sorted.
pub fn expand_path(path: &Path) -> Result<Vec<Source>, PatternError> {
    let err = |message: String| PatternError {
        file: path.display().to_string(),
        line: 1,
        col: 1,
        rule: None,
        message,
    };
    let meta = fs::metadata(path).map_err(|e| err(format!("cannot read pattern path: {e}")))?;
    if !meta.is_dir() {
        return Ok(vec![Source::File(path.to_path_buf())]);
    }
    let mut files: Vec<PathBuf> = fs::read_dir(path)
        .map_err(|e| err(format!("cannot list pattern directory: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    Ok(files.into_iter().map(Source::File).collect())
}

// ---------------------------------------------------------------------------------------------
// Parsing one file

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: Option<Spanned<i64>>,
    #[serde(default)]
    pattern: Vec<Spanned<RawRule>>,
    #[serde(default)]
    redact: Vec<Spanned<RawRedact>>,
    #[serde(default)]
    json: Vec<Spanned<super::json_rules::RawJsonRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    event_type: Option<Spanned<String>>,
    regex: Option<Spanned<String>>,
    streams: Option<Vec<Spanned<String>>>,
    agents: Option<Vec<String>>,
    risk_level: Option<Spanned<String>>,
    auto_confirmable: Option<bool>,
    prompt: Option<bool>,
    case_insensitive: Option<bool>,
    enabled: Option<bool>,
    description: Option<String>,
    samples: Option<Spanned<Vec<Spanned<String>>>>,
    counter_samples: Option<Vec<Spanned<String>>>,
    context: Option<Spanned<RawContext>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedact {
    name: Spanned<String>,
    regex: Option<Spanned<String>>,
    enabled: Option<bool>,
    description: Option<String>,
    samples: Option<Spanned<Vec<Spanned<String>>>>,
    counter_samples: Option<Vec<Spanned<String>>>,
}

enum Entry {
    Rule(Box<Rule>),
    Disable(Disabled),
}

impl Entry {
    fn name(&self) -> &str {
        match self {
            Entry::Rule(r) => &r.name,
            Entry::Disable(d) => &d.name,
        }
    }
}

struct ParsedFile {
    rules: Vec<Entry>,
    redact: Vec<RedactRule>,
    redact_disabled: Vec<String>,
    /// `[[json]]` rules by name: the rule, or `Err` when it is switched off.
    json: Vec<(String, Result<super::json_rules::JsonRule, Disabled>)>,
}

/// Parses and validates one file's text. `label` is what errors call the file. With `verify`,
/// regexes are compiled and samples checked too (see [`RuleBook::load`]).
/// The `name` of the `[[pattern]]` or `[[redact]]` table that holds byte `offset` of `text`,
/// for errors found while the file is deserialised as a whole (an unknown key, a wrong type),
/// before any rule has a name of its own. A plain scan: the last table header at or before
/// the offset, then a `name = "…"` line in that table.
fn rule_named_around(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset]
        .rfind("\n[[")
        .map(|i| i + 1)
        .or_else(|| text.starts_with("[[").then_some(0))?;
    let table = &text[start..];
    let end = table[2..].find("\n[").map_or(table.len(), |i| i + 3);
    table[..end].lines().skip(1).find_map(|line| {
        let value = line
            .trim()
            .strip_prefix("name")?
            .trim_start()
            .strip_prefix('=')?;
        let value = value.trim_start();
        let quote = value.chars().next().filter(|q| *q == '"' || *q == '\'')?;
        let rest = &value[1..];
        rest.find(quote).map(|i| rest[..i].to_string())
    })
}

/// The 1-based line of a byte offset, from the file's newlines found once: [`line_col`] per
/// rule counted from the file's start every time (5 M instructions for the built-in files,
/// a third of loading them, before the agent could start).
struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        LineIndex(memchr::memchr_iter(b'\n', text.as_bytes()).collect())
    }

    fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&nl| nl < offset) + 1
    }
}

fn parse_file(label: &str, text: &str, verify: bool) -> Result<ParsedFile, PatternError> {
    let lines = LineIndex::new(text);
    let at = |offset: usize, rule: Option<&str>, message: String| {
        let (line, col) = line_col(text, offset);
        PatternError {
            file: label.to_string(),
            line,
            col,
            rule: rule.map(str::to_string),
            message,
        }
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        let rule = rule_named_around(text, offset);
        at(offset, rule.as_deref(), e.message().trim().to_string())
    })?;
    if let Some(v) = &raw.version {
        if *v.get_ref() < 1 || *v.get_ref() > FORMAT_VERSION {
            return Err(at(
                v.span().start,
                None,
                format!(
                    "format version {} is not supported (this wrapper reads version {FORMAT_VERSION}); \
                     upgrade wrapper or set `version = 1`",
                    v.get_ref()
                ),
            ));
        }
    }

    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut rules = Vec::with_capacity(raw.pattern.len());
    for spanned in raw.pattern {
        let rule_start = spanned.span().start;
        let raw = spanned.into_inner();
        let name = raw.name.get_ref().clone();
        let rname = Some(name.as_str());
        check_name(&name).map_err(|m| at(raw.name.span().start, rname, m))?;
        if let Some(prev) = seen.insert(name.clone(), raw.name.span().start) {
            let (pl, _) = line_col(text, prev);
            return Err(at(
                raw.name.span().start,
                rname,
                format!("duplicate rule name in this file (first defined on line {pl})"),
            ));
        }
        let origin = Origin {
            file: label.to_string(),
            line: lines.line(rule_start),
        };
        let enabled = raw.enabled.unwrap_or(true);
        if !enabled && raw.regex.is_none() {
            rules.push(Entry::Disable(Disabled { name, origin }));
            continue;
        }
        let event_type = raw.event_type.ok_or_else(|| {
            at(
                rule_start,
                rname,
                "missing `event_type` (e.g. \"error\")".into(),
            )
        })?;
        if event_type.get_ref().trim().is_empty() {
            return Err(at(
                event_type.span().start,
                rname,
                "`event_type` is empty".into(),
            ));
        }
        let regex = raw
            .regex
            .ok_or_else(|| at(rule_start, rname, "missing `regex`".into()))?;
        let case_insensitive = raw.case_insensitive.unwrap_or(false);
        let compiled = if verify {
            Some(
                compile(regex.get_ref(), case_insensitive)
                    .map_err(|m| at(regex.span().start, rname, m))?,
            )
        } else {
            None
        };
        let mut streams = PerStream::all(true);
        if let Some(list) = &raw.streams {
            streams = PerStream::all(false);
            for s in list {
                match Stream::parse(s.get_ref()) {
                    Some(stream) => streams[stream] = true,
                    None => {
                        return Err(at(
                            s.span().start,
                            rname,
                            format!(
                                "unknown stream `{}` (expected \"stdout\", \"stderr\" or \"pty\")",
                                s.get_ref()
                            ),
                        ))
                    }
                }
            }
            if list.is_empty() {
                return Err(at(rule_start, rname, "`streams` is empty".into()));
            }
        }
        let risk_level = match &raw.risk_level {
            None => None,
            Some(r) => Some(RiskLevel::parse(r.get_ref()).ok_or_else(|| {
                at(
                    r.span().start,
                    rname,
                    format!(
                        "unknown risk_level `{}` (expected low, medium, high or critical)",
                        r.get_ref()
                    ),
                )
            })?),
        };
        let samples = check_samples(
            compiled.as_ref(),
            raw.samples,
            raw.counter_samples.as_deref(),
            rule_start,
            &|o, m| at(o, rname, m),
        )?;
        let context = match raw.context {
            None => None,
            Some(c) => {
                let start = c.span().start;
                let ctx = c
                    .into_inner()
                    .validate(&|s| compile(s, case_insensitive), compiled.as_ref())
                    .map_err(|(o, m)| at(o.unwrap_or(start), rname, m))?;
                Some(Arc::new(ctx))
            }
        };
        let rule = Rule {
            name: name.as_str().into(),
            event_type: event_type.get_ref().as_str().into(),
            regex_src: regex.get_ref().clone(),
            regex: compiled,
            streams,
            agents: raw.agents.unwrap_or_else(|| vec!["*".into()]),
            risk_level,
            auto_confirmable: raw.auto_confirmable.unwrap_or(false),
            prompt: raw.prompt.unwrap_or(false),
            case_insensitive,
            description: raw.description,
            samples: samples.0,
            counter_samples: samples.1,
            origin: origin.clone(),
            context,
        };
        if enabled {
            rules.push(Entry::Rule(Box::new(rule)));
        } else {
            rules.push(Entry::Disable(Disabled { name, origin }));
        }
    }

    let mut redact = Vec::new();
    let mut redact_disabled = Vec::new();
    let mut seen_redact: HashMap<String, usize> = HashMap::new();
    for spanned in raw.redact {
        let rule_start = spanned.span().start;
        let raw = spanned.into_inner();
        let name = raw.name.get_ref().clone();
        let rname = Some(name.as_str());
        check_name(&name).map_err(|m| at(raw.name.span().start, rname, m))?;
        if seen_redact
            .insert(name.clone(), raw.name.span().start)
            .is_some()
        {
            return Err(at(
                raw.name.span().start,
                rname,
                "duplicate redact rule name in this file".into(),
            ));
        }
        if !raw.enabled.unwrap_or(true) {
            redact_disabled.push(name);
            continue;
        }
        let regex = raw
            .regex
            .ok_or_else(|| at(rule_start, rname, "missing `regex`".into()))?;
        let compiled = if verify {
            Some(compile(regex.get_ref(), false).map_err(|m| at(regex.span().start, rname, m))?)
        } else {
            None
        };
        // A rule that matches nothing at all would "find" a secret in every text: each agent
        // name would be refused as one, and a mask of nothing stands nowhere.
        if compiled.as_ref().is_some_and(|re| re.is_match("")) {
            return Err(at(
                regex.span().start,
                rname,
                "this regex matches the empty string, so it would find a secret in every \
                 text; make it need at least one character (`+` for `*`)"
                    .into(),
            ));
        }
        let samples = check_samples(
            compiled.as_ref(),
            raw.samples,
            raw.counter_samples.as_deref(),
            rule_start,
            &|o, m| at(o, rname, m),
        )?;
        redact.push(RedactRule {
            replacement: format!("[REDACTED:{name}]"),
            name: name.as_str().into(),
            regex: compiled,
            regex_src: regex.get_ref().clone(),
            description: raw.description,
            samples: samples.0,
            counter_samples: samples.1,
            origin: Origin {
                file: label.to_string(),
                line: lines.line(rule_start),
            },
        });
    }
    let json = parse_json_rules(raw.json, label, &lines, &at)?;
    Ok(ParsedFile {
        rules,
        redact,
        redact_disabled,
        json,
    })
}

type JsonEntries = Vec<(String, Result<super::json_rules::JsonRule, Disabled>)>;

/// The `[[json]]` tables of one file (their own room: `extract/json_rules.rs`).
fn parse_json_rules(
    raw: Vec<Spanned<super::json_rules::RawJsonRule>>,
    label: &str,
    lines: &LineIndex,
    at: &dyn Fn(usize, Option<&str>, String) -> PatternError,
) -> Result<JsonEntries, PatternError> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for spanned in raw {
        let rule_start = spanned.span().start;
        let raw = spanned.into_inner();
        let name = raw.name.get_ref().clone();
        let rname = Some(name.as_str());
        check_name(&name).map_err(|m| at(raw.name.span().start, rname, m))?;
        if seen.insert(name.clone(), rule_start).is_some() {
            return Err(at(
                raw.name.span().start,
                rname,
                "duplicate json rule name in this file".into(),
            ));
        }
        let origin = Origin {
            file: label.to_string(),
            line: lines.line(rule_start),
        };
        if !raw.enabled.unwrap_or(true) {
            out.push((name.clone(), Err(Disabled { name, origin })));
            continue;
        }
        let rule = super::json_rules::parse_rule(raw, rule_start, origin, &|o, m| at(o, rname, m))?;
        out.push((name, Ok(rule)));
    }
    Ok(out)
}

type Samples = (Vec<String>, Vec<String>);

fn check_samples(
    regex: Option<&Regex>,
    samples: Option<Spanned<Vec<Spanned<String>>>>,
    counter: Option<&[Spanned<String>]>,
    rule_start: usize,
    at: &dyn Fn(usize, String) -> PatternError,
) -> Result<Samples, PatternError> {
    let samples = samples.ok_or_else(|| {
        at(
            rule_start,
            "missing `samples`: give at least one real line this rule must match".into(),
        )
    })?;
    if samples.get_ref().is_empty() {
        return Err(at(
            samples.span().start,
            "`samples` is empty: give at least one real line this rule must match".into(),
        ));
    }
    for s in samples.get_ref() {
        if regex.is_some_and(|re| !re.is_match(s.get_ref())) {
            return Err(at(
                s.span().start,
                format!("sample {:?} does not match the regex", s.get_ref()),
            ));
        }
    }
    let mut counters = Vec::new();
    for s in counter.unwrap_or_default() {
        if regex.is_some_and(|re| re.is_match(s.get_ref())) {
            return Err(at(
                s.span().start,
                format!(
                    "counter-sample {:?} matches the regex but must not",
                    s.get_ref()
                ),
            ));
        }
        counters.push(s.get_ref().clone());
    }
    Ok((
        samples
            .into_inner()
            .into_iter()
            .map(Spanned::into_inner)
            .collect(),
        counters,
    ))
}

/// The sample checks of [`check_samples`], for rules whose spans are no longer at hand.
fn check_plain_samples(re: &Regex, samples: &[String], counter: &[String]) -> Result<(), String> {
    if let Some(s) = samples.iter().find(|s| !re.is_match(s)) {
        return Err(format!("sample {s:?} does not match the regex"));
    }
    if let Some(s) = counter.iter().find(|s| re.is_match(s)) {
        return Err(format!(
            "counter-sample {s:?} matches the regex but must not"
        ));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("rule name is empty".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "rule name {name:?} has {c:?}; use letters, digits, `_`, `-` and `.`"
        ));
    }
    Ok(())
}

/// Compiles one rule's regex with the limits that keep a hostile file from hurting.
pub fn compile(src: &str, case_insensitive: bool) -> Result<Regex, String> {
    RegexBuilder::new(src)
        .case_insensitive(case_insensitive)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => {
                "regex is too large once compiled (pathological repetition?); simplify it".into()
            }
            other => format!("invalid regex: {other}"),
        })
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let mut cut = offset;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let before = &text[..cut];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// Shell-style glob on short names: `*` any run, `?` one character. Agent names are short and
/// have no path separators, so this is all the matching they need.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<RuleBook, PatternError> {
        let mut book = RuleBook::default();
        book.merge(parse_file("t.toml", text, true)?);
        Ok(book)
    }

    #[test]
    fn builtin_rules_compile_and_their_samples_hold() {
        let mut book = RuleBook::builtin().expect("built-ins parse");
        book.verify().expect("built-ins verify");
        assert!(book.rules.len() > 40, "{} rules", book.rules.len());
        assert!(book.redact.len() > 10);
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "codex"));
        assert!(glob_match("cl*e", "claude"));
        assert!(glob_match("c?dex", "codex"));
        assert!(!glob_match("aider", "codex"));
    }

    #[test]
    fn whole_file_errors_name_the_rule_they_are_in() {
        let text = "version = 1\n\n[[pattern]]\nname = \"first\"\nregex = 'a'\n\n\
                    [[pattern]]\nevent_type = \"error\"\ncolour = \"red\"\nname = 'second'\nregex = 'b'\n";
        let err = RuleBook::parse_text("t.toml", text).expect_err("unknown key");
        assert_eq!(err.rule.as_deref(), Some("second"), "{err}");
        assert_eq!((err.line, err.col), (9, 1), "{err}");
        assert_eq!(rule_named_around("version = 'x'\n", 3), None);
    }

    #[test]
    fn line_index_gives_line_cols_line() {
        let text = "a\n\néé\nx = 1\n[[pattern]]\nname = 'n'\n";
        let lines = LineIndex::new(text);
        for offset in 0..=text.len() + 2 {
            assert_eq!(lines.line(offset), line_col(text, offset).0, "at {offset}");
        }
    }

    #[test]
    fn line_col_counts_chars() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nx", 3), (2, 1));
    }

    #[test]
    fn sample_mismatch_names_line_and_rule() {
        let e = load_text(
            "version = 1\n[[pattern]]\nname = \"r\"\nevent_type = \"error\"\nregex = 'x'\nsamples = [\"y\"]\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.rule.as_deref()), (6, Some("r")));
        assert!(e.message.contains("does not match"), "{e}");
    }

    #[test]
    fn later_rule_replaces_and_disables() {
        let b = load_text(
            "[[pattern]]\nname = \"a\"\nevent_type = \"e\"\nregex = 'a'\nsamples = ['a']\n\
             [[pattern]]\nname = \"b\"\nevent_type = \"e\"\nregex = 'b'\nsamples = ['b']\n",
        )
        .unwrap();
        let mut book = b.clone();
        book.merge(
            parse_file(
                "u.toml",
                "[[pattern]]\nname = \"a\"\nenabled = false\n[[pattern]]\nname = \"b\"\nevent_type = \"x\"\nregex = 'bb'\nsamples = ['bb']\n",
                true,
            )
            .unwrap(),
        );
        assert_eq!(book.rules.len(), 1);
        assert_eq!(&*book.rules[0].event_type, "x");
        assert_eq!(book.disabled[0].name, "a");
        assert_ne!(b.version(), book.version());
    }
}
