//! Secret masking (SPEC §5.1): every `[[redact]]` rule's matches become `[REDACTED:<name>]`
//! before any text is stored — events, code blocks, spool files. The user's own terminal is
//! never redacted: passthrough happens before this module sees a byte.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::{Regex, RegexSet, RegexSetBuilder};

use super::rules::{compile, RedactRule, RuleBook};

/// Cloning it copies the compiled rules with caches of their own: each thread that masks
/// (extraction, its helper, capture) takes a copy, so that it does not take a lock for every
/// search in the caches of the thread that used the rules first (the main thread, which masks
/// the command line).
#[derive(Debug, Clone)]
pub struct Redactor {
    /// `None` when redaction is off (`--no-redact`) or there are no rules.
    set: Option<RegexSet>,
    /// Each rule with its own regex, compiled the first time the set finds that rule's
    /// secret (most never are): compiling all of them up front doubled the start-up cost of
    /// masking the agent's command line before the spawn. The set compiling proves each one
    /// compiles; should one not, the whole text it was asked about is masked instead.
    rules: Vec<(RedactRule, OnceLock<Option<Regex>>)>,
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
        let rules = book
            .redact
            .iter()
            .map(|r| {
                // A user's rule was compiled (and checked) when its file was read.
                let re = OnceLock::new();
                if let Some(compiled) = &r.regex {
                    let _ = re.set(Some(compiled.clone()));
                }
                (r.clone(), re)
            })
            .collect();
        Ok(Redactor {
            set: Some(set),
            rules,
        })
    }

    /// Follows a key that a TUI wrapped onto the next row with a line break of its own (Ink
    /// and ratatui break a long word at the terminal's width, so a 164-character `sk-proj-…`
    /// key is two or three rows): a line that ends in a run of key characters that a rule
    /// finds a secret in arms `keys`, and the next line's leading run is masked as that rule's
    /// secret where the rule, read across the break, still matches. Every line of a stream
    /// goes through here in order, as through [`PemTracker::line`]; `masks` gets the span.
    pub fn follow_wrapped(&self, keys: &mut PemTracker, line: &str, masks: &mut Spans) {
        let Some(set) = &self.set else { return };
        let mut continues = false;
        if let Some(tail) = keys.wrapped.take() {
            // (The capture's segments start with the line feed of a `\r\n`.)
            let body = line.trim_start_matches([' ', '\t', '\r', '\n']);
            if body.is_empty() {
                // A row with nothing on it yet, or the `\n` of a `\r\n` alone.
                keys.wrapped = Some(tail);
                return;
            }
            let at = line.len() - body.len();
            let run = key_run_len(body.as_bytes());
            // The rest of a key stands alone (a word followed by `:` or `(` is not one) and
            // looks like one: the whole row, or 8 characters or more with a digit in them.
            // Ordinary text after a row that ends in a whole key (`test result: …`,
            // `Finished …`) is left as it is.
            let rest = &body[..run];
            let alone = body[run..].is_empty() || body[run..].starts_with([' ', '\t']);
            let key_like = (run == body.len() && run >= MIN_WRAPPED)
                || (run >= 8 && rest.bytes().any(|b| b.is_ascii_digit()));
            if run > 0 && alone && key_like {
                let joined = format!("{tail}{}", &body[..run]);
                let mut best: Option<(usize, usize)> = None;
                for i in set.matches(&joined).iter() {
                    let Some(re) = self.rule_regex(i) else {
                        continue;
                    };
                    for m in re.find_iter(&joined) {
                        if m.start() < tail.len() && m.end() > tail.len() {
                            let end = m.end() - tail.len();
                            if best.is_none_or(|(_, e)| end > e) {
                                best = Some((i, end));
                            }
                        }
                    }
                }
                if let Some((rule, end)) = best {
                    masks.wrapped = Some((at, at + end, rule));
                    // Still running at the end of this row: the key may go on below.
                    if end == run && at + run == line.len() && joined.len() <= MAX_WRAPPED {
                        keys.wrapped = Some(joined);
                        continues = true;
                    }
                }
            }
        }
        if !continues {
            let bytes = line.as_bytes();
            let start = bytes.len() - bytes.iter().rev().take_while(|&&b| is_key_byte(b)).count();
            let tail = &line[start..];
            // Only a key's own shape (`sk-…`, `ghp_…`: the rules that start at a word
            // boundary) may go on below; an assignment's value (`API_KEY=…`) ends its line.
            if tail.len() >= MIN_WRAPPED
                && set
                    .matches(tail)
                    .iter()
                    .any(|i| self.rules[i].0.regex_src.starts_with("(?-u:\\b)"))
            {
                keys.wrapped = Some(tail.to_string());
            }
        }
    }

    /// Refuses an identifier the user chose (the agent name, `--session-id`) that a rule finds
    /// a secret in: it is copied into every event and spool line, and changing it silently
    /// would break what the user asked for.
    pub fn refuse_secret(&self, what: &str, value: &str) -> Result<(), String> {
        match self.finds(value) {
            Some(rule) => Err(format!(
                "{what} looks like a secret (the redact rule `{rule}` matches it) and would be \
                 stored in every event; choose one that holds no secret"
            )),
            None => Ok(()),
        }
    }

    /// Whether masking is on at all.
    pub fn is_on(&self) -> bool {
        self.set.is_some()
    }

    /// The name of the first rule that finds a secret in `text`, if any.
    pub fn finds(&self, text: &str) -> Option<&str> {
        let set = self.set.as_ref()?;
        set.matches(text)
            .iter()
            .next()
            .map(|i| &*self.rules[i].0.name)
    }

    /// Returns `text` with every secret masked; borrows when there is none.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.redact_with(text, &[])
    }

    /// [`Redactor::redact`], also masking the byte ranges in `extra` (found by state kept
    /// across lines: the body of a private key block) as `[REDACTED:private_key]`.
    pub fn redact_with<'a>(&self, text: &'a str, extra: &[(usize, usize)]) -> Cow<'a, str> {
        self.redact_spans(text, extra, None)
    }

    /// [`Redactor::redact_with`] for a line of output with what is known from the lines
    /// before it: a private key block's body, and the rest of a key that the previous line
    /// ended with (see [`Redactor::follow_wrapped`]).
    pub fn redact_masks<'a>(&self, text: &'a str, masks: &Spans) -> Cow<'a, str> {
        self.redact_spans(text, masks.as_slice(), masks.wrapped)
    }

    fn redact_spans<'a>(
        &self,
        text: &'a str,
        extra: &[(usize, usize)],
        wrapped: Option<(usize, usize, usize)>,
    ) -> Cow<'a, str> {
        let Some(set) = &self.set else {
            return Cow::Borrowed(text);
        };
        // The text as a JSON string's reader sees it, if it holds escapes: see `Unescaped`.
        let decoded = Unescaped::of(text);
        // Nearly every line holds no secret: `is_match` stops at the first hit and can skip
        // through the text with the rules' literal prefixes, where `matches` must track every
        // rule to the end of the line.
        if extra.is_empty()
            && wrapped.is_none()
            && !set.is_match(text)
            && !decoded.as_ref().is_some_and(|d| set.is_match(&d.text))
        {
            return Cow::Borrowed(text);
        }
        // Every rule's matches are found in the original text, and where matches overlap
        // (`API_KEY=sk-…` is both an assignment and an OpenAI key) the text they cover
        // together is masked once, named after the match that starts first (the earlier rule
        // on a tie). Replacing rule after rule instead would let a later rule match into an
        // earlier one's `[REDACTED:…]` and leave `[REDACTED:a]]`-like debris.
        // `usize::MAX` as the rule index stands for a private key block.
        let mut spans: Vec<(usize, usize, usize)> = extra
            .iter()
            .filter(|(a, b)| a < b && *b <= text.len())
            .map(|&(a, b)| (a, usize::MAX, b))
            .collect();
        spans.extend(
            wrapped
                .filter(|&(a, b, _)| a < b && b <= text.len())
                .map(|(a, b, rule)| (a, rule, b)),
        );
        self.push_matches(set, text, |at| at, text.len(), &mut spans);
        // What the rules find in the decoded text is masked where it came from: the escapes
        // inside and around a secret go with it.
        if let Some(d) = &decoded {
            self.push_matches(set, &d.text, |at| d.from[at], text.len(), &mut spans);
        }
        if spans.is_empty() {
            return Cow::Borrowed(text);
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
            match self.rules.get(rule) {
                Some((r, _)) => out.push_str(&r.replacement),
                None => out.push_str(PRIVATE_KEY_MASK),
            }
            at = end;
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }

    /// Every rule's matches in `hay` as `(start, rule, end)` spans of the original text,
    /// `at` mapping an offset of `hay` to it; the whole original (`len`) for a rule whose
    /// regex does not compile.
    fn push_matches(
        &self,
        set: &RegexSet,
        hay: &str,
        at: impl Fn(usize) -> usize,
        len: usize,
        spans: &mut Vec<(usize, usize, usize)>,
    ) {
        for i in set.matches(hay).iter() {
            match self.rule_regex(i) {
                Some(re) => spans.extend(
                    re.find_iter(hay)
                        .filter(|m| !m.is_empty())
                        .map(|m| (at(m.start()), i, at(m.end()))),
                ),
                None => spans.push((0, i, len)),
            }
        }
    }

    /// Rule `i`'s own regex, compiled the first time it is wanted.
    fn rule_regex(&self, i: usize) -> Option<&Regex> {
        let (rule, re) = &self.rules[i];
        re.get_or_init(|| compile(&rule.regex_src, false).ok())
            .as_ref()
    }

    /// Masks a text of many lines (a code block's content), following private key blocks
    /// across its lines.
    pub fn redact_lines<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.is_on() {
            return Cow::Borrowed(text);
        }
        let mut keys = PemTracker::default();
        let mut changed = false;
        let mut out = String::with_capacity(text.len());
        for (i, line) in text.split('\n').enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let spans = keys.line(line);
            let r = self.redact_with(line, spans.as_slice());
            changed |= matches!(r, Cow::Owned(_));
            out.push_str(&r);
        }
        if changed {
            Cow::Owned(out)
        } else {
            Cow::Borrowed(text)
        }
    }

    /// The agent's command line as stored (`process_sessions.command_json`): every argument
    /// through the rules, and the value of a flag whose name says it holds a secret
    /// (`--api-key VALUE`, `--password=VALUE`, `--pass VALUE`, `-H 'X-Api-Token: VALUE'`)
    /// masked whatever its shape; so are the password of `-u`/`--user user:password` (curl,
    /// wget) and the short password flags of the programs that have one (`sshpass -p`,
    /// `redis-cli -a`, `mysql -pVALUE`). Masking off (`--no-redact`), the arguments are stored
    /// as given.
    pub fn redact_argv(&self, args: &[String]) -> Vec<String> {
        if !self.is_on() {
            return args.to_vec();
        }
        let program = args
            .first()
            .map(|a| a.rsplit('/').next().unwrap_or(a))
            .unwrap_or("");
        let short = short_password_flag(program);
        let mut out = Vec::with_capacity(args.len());
        let mut value_of_secret_flag = false;
        let mut value_of_user_flag = false;
        for (i, arg) in args.iter().enumerate() {
            if value_of_secret_flag && !arg.starts_with('-') {
                out.push(ARGV_MASK.to_string());
                value_of_secret_flag = false;
                continue;
            }
            value_of_secret_flag = false;
            if std::mem::take(&mut value_of_user_flag) {
                if let Some(masked) = mask_user_password(arg) {
                    out.push(masked);
                    continue;
                }
            }
            // The program itself is never a flag.
            if i > 0 && arg.starts_with('-') {
                if let Some((flag, attached)) = short {
                    if arg == flag {
                        // `sshpass -p VALUE`; mysql's `-p` alone prompts (what follows is
                        // the database).
                        value_of_secret_flag = !attached;
                        out.push(arg.clone());
                        continue;
                    }
                    if arg.len() > flag.len() && arg.starts_with(flag) && !arg.starts_with("--") {
                        out.push(format!("{flag}{ARGV_MASK}"));
                        continue;
                    }
                }
                let flag = arg.trim_start_matches('-');
                if let Some((name, value)) = flag.split_once('=') {
                    if names_a_secret(name) && !value.is_empty() {
                        let keep = arg.len() - value.len();
                        out.push(format!("{}{ARGV_MASK}", &arg[..keep]));
                        continue;
                    }
                    if names_a_user(name) {
                        if let Some(masked) = mask_user_password(value) {
                            let keep = arg.len() - value.len();
                            out.push(format!("{}{masked}", &arg[..keep]));
                            continue;
                        }
                    }
                } else if names_a_secret(flag) {
                    value_of_secret_flag = true;
                } else if names_a_user(flag) || arg == "-u" || arg == "-U" {
                    value_of_user_flag = true;
                }
            }
            // A header given to curl and the like: `Name: value`, the name saying secret.
            if let Some((name, value)) = arg.split_once(':') {
                if !name.is_empty()
                    && !name.contains(char::is_whitespace)
                    && names_a_secret(name)
                    && !value.trim().is_empty()
                {
                    out.push(format!("{name}: {ARGV_MASK}"));
                    continue;
                }
            }
            out.push(self.redact_lines(arg).into_owned());
        }
        out
    }
}

/// The short flag that takes a password in `program`'s command line, and whether the value
/// must be attached to it (`mysql -pVALUE`: `mysql -p db` prompts, `db` is the database).
fn short_password_flag(program: &str) -> Option<(&'static str, bool)> {
    match program {
        "sshpass" => Some(("-p", false)),
        "redis-cli" | "valkey-cli" | "keydb-cli" => Some(("-a", false)),
        "mysql" | "mysqldump" | "mysqladmin" | "mysqlimport" | "mysqlcheck" | "mariadb"
        | "mariadb-dump" | "mariadb-admin" => Some(("-p", true)),
        _ => None,
    }
}

/// `--user`, `--proxy-user`, `--http-user`: flags whose value may be `user:password`.
fn names_a_user(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "user" | "proxy-user" | "http-user" | "userpass"
    )
}

/// `user:password` with the password masked; `None` when the value has no password, or
/// only digits after the colon (`-u 1000:1000` is a uid and a gid, not a login).
fn mask_user_password(value: &str) -> Option<String> {
    let (user, pass) = value.split_once(':')?;
    // `1000:1000`, `www-data:www-data`: a user and a group.
    if pass.is_empty() || pass.bytes().all(|b| b.is_ascii_digit()) || pass == user {
        return None;
    }
    Some(format!("{user}:{ARGV_MASK}"))
}

/// A text with its backslash escapes decoded, and where each of its bytes came from.
///
/// Agents report command output inside JSON strings (`codex exec --json`'s
/// `aggregated_output`, Claude Code's `tool_result`, their session logs): `cat .env` arrives as
/// `"DEBUG=1\nghp_…\n"`. There the `n` of the escape stands right before the key, so a rule
/// that starts at a word boundary (`(?-u:\b)ghp_`) never matches, and `\u003d` or `\/` hide
/// the `=` and `/` an assignment or a URL rule looks for. The rules search the decoded text
/// too, and what they find there is masked in the original, escapes and all. Decoded twice
/// at most: JSON text inside a JSON string (a tool's JSON output in a session log) carries
/// its escapes escaped.
pub(crate) struct Unescaped {
    pub(crate) text: String,
    /// For each byte of `text` (and one past its end), the offset in the original text of
    /// the character or escape it was decoded from.
    from: Vec<usize>,
}

impl Unescaped {
    /// `None` when `text` holds no escape (the common case: one `memchr`).
    pub(crate) fn of(text: &str) -> Option<Unescaped> {
        let once = Unescaped::once(text, true)?;
        match Unescaped::once(&once.text, true) {
            None => Some(once),
            Some(twice) => Some(Unescaped {
                from: twice.from.iter().map(|&j| once.from[j]).collect(),
                text: twice.text,
            }),
        }
    }

    /// The decoded text alone, for a check over a whole region (the capture's prefilter):
    /// no map of where each byte came from.
    pub(crate) fn text_of(text: &str) -> Option<String> {
        let once = Unescaped::once(text, false)?.text;
        Some(Unescaped::once(&once, false).map_or(once, |twice| twice.text))
    }

    /// One pass of decoding; `map` keeps [`Unescaped::from`].
    fn once(text: &str, map: bool) -> Option<Unescaped> {
        let first = memchr::memchr(b'\\', text.as_bytes())?;
        let mut out = Unescaped {
            text: String::with_capacity(text.len()),
            from: Vec::with_capacity(if map { text.len() + 1 } else { 0 }),
        };
        out.text.push_str(&text[..first]);
        if map {
            out.from.extend(0..first);
        }
        let mut decoded_any = false;
        let mut at = first;
        while let Some(c) = text[at..].chars().next() {
            let (c, len) = match c {
                '\\' => match escape_at(text, at) {
                    Some(e) => {
                        decoded_any = true;
                        e
                    }
                    None => ('\\', 1),
                },
                c => (c, c.len_utf8()),
            };
            out.text.push(c);
            if map {
                out.from.extend(std::iter::repeat_n(at, c.len_utf8()));
            }
            at += len;
        }
        if map {
            out.from.push(text.len());
        }
        decoded_any.then_some(out)
    }
}

/// The character a JSON escape at `text[at..]` (which starts with `\`) stands for, and the
/// escape's length; `None` for a backslash that starts no escape.
fn escape_at(text: &str, at: usize) -> Option<(char, usize)> {
    let b = text.as_bytes();
    let c = match b.get(at + 1)? {
        b'n' => '\n',
        b't' => '\t',
        b'r' => '\r',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'\'' => '\'',
        b'u' => {
            let hex = |i: usize| {
                text.get(i..i + 4)
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
            };
            let hi = hex(at + 2)?;
            if (0xD800..0xDC00).contains(&hi) {
                // A surrogate pair: `\ud83d\ude00`.
                let lo = (text.get(at + 6..at + 8) == Some("\\u"))
                    .then(|| hex(at + 8))
                    .flatten()
                    .filter(|lo| (0xDC00..0xE000).contains(lo));
                if let Some(c) = lo
                    .and_then(|lo| char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)))
                {
                    return Some((c, 12));
                }
            }
            // A lone surrogate (JavaScript's `JSON.stringify`, Python's surrogateescape) is
            // what a JSON reader makes of it: U+FFFD, and the key after it stands alone.
            return Some((char::from_u32(hi).unwrap_or('\u{fffd}'), 6));
        }
        _ => return None,
    };
    Some((c, 2))
}

/// What a private key block's text is replaced with.
pub const PRIVATE_KEY_MASK: &str = "[REDACTED:private_key]";
/// What the value of a flag named like a secret is replaced with.
pub const ARGV_MASK: &str = "[REDACTED:secret_flag]";

/// Whether a flag or header name says its value is secret: `--api-key`, `--token`,
/// `--client-secret`, `--password`, `--pass`, `--auth`, `Authorization`, `X-Api-Key`,
/// `Cookie`. Words, not substrings, for the short ones: `--keep-going`, `--author`,
/// `--keyboard`, `--bypass` and `--passes` are not.
fn names_a_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    if [
        "token",
        "secret",
        "passw",
        "passphrase",
        "credential",
        "cookie",
    ]
    .iter()
    .any(|w| n.contains(w))
    {
        return true;
    }
    n.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| {
        matches!(
            w,
            "key"
                | "keys"
                | "apikey"
                | "accesskey"
                | "privatekey"
                | "pwd"
                | "pw"
                | "pass"
                | "passin"
                | "passout"
                | "auth"
        ) || w.starts_with("authoriz")
            || w.starts_with("authent")
    })
}

/// A key shorter than this at the end of a row is not followed onto the next (the shortest
/// key shapes the rules know are about this long).
const MIN_WRAPPED: usize = 16;
/// A wrapped key longer than this is not followed further.
const MAX_WRAPPED: usize = 1024;

/// The characters keys and tokens are made of (base64, base64url, JWT dots).
fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+' | b'/' | b'=' | b'.')
}

fn key_run_len(b: &[u8]) -> usize {
    b.iter().take_while(|&&b| is_key_byte(b)).count()
}

/// Follows private key blocks (PEM, OpenSSH, PGP) across lines, whatever wraps them: a fenced
/// code block, YAML indentation, quotes, or one JSON string with `\n` escapes. Per stream;
/// every line must go through [`PemTracker::line`] in order, stored or not, since a key's
/// body lines hold nothing a per-line rule could recognise (the last one is short).
#[derive(Debug, Default)]
pub struct PemTracker {
    /// Inside a block: lines seen since its BEGIN line.
    inside: Option<u32>,
    /// The key-shaped run the last line ended with, which the next may continue (see
    /// [`Redactor::follow_wrapped`]). Held in memory only, never stored.
    wrapped: Option<String>,
}

/// Lines after which an unterminated block is given up (a PGP key of 16 kbit is ~300 lines).
const MAX_KEY_LINES: u32 = 1024;

impl PemTracker {
    /// The byte ranges of `line` that belong to a private key block; updates the state.
    pub fn line(&mut self, line: &str) -> Spans {
        let mut spans = Spans::default();
        let mut from = 0;
        if let Some(n) = self.inside {
            match find_end(line, 0) {
                Some(end) => {
                    spans.push(leading_ws(line), end);
                    self.inside = None;
                    from = end;
                }
                None if n < MAX_KEY_LINES && is_body_line(line) => {
                    spans.push(leading_ws(line), line.len());
                    self.inside = Some(n + 1);
                    return spans;
                }
                None => self.inside = None,
            }
        }
        // A BEGIN marker; the block ends on this line (a `\n`-escaped JSON string) or later.
        while let Some(begin) = find_begin(line, from) {
            match find_end(line, begin) {
                Some(end) => {
                    spans.push(begin, end);
                    from = end;
                }
                None => {
                    spans.push(begin, line.len());
                    self.inside = Some(0);
                    break;
                }
            }
        }
        spans
    }

    /// [`PemTracker::line`] for a line known to hold no BEGIN marker (see [`KeyFree`]): only
    /// a block already open can cover it.
    pub fn line_without_begin(&mut self, line: &str) -> Spans {
        if self.inside.is_none() {
            return Spans::default();
        }
        self.line(line)
    }

    /// Whether the last line ended with a key the next may continue.
    pub fn follows_wrapped(&self) -> bool {
        self.wrapped.is_some()
    }

    /// [`PemTracker::line`] for a partial line, which is seen again once complete: the state
    /// is left as it is.
    pub fn peek(&self, line: &str) -> Spans {
        let mut copy = PemTracker {
            inside: self.inside,
            wrapped: None,
        };
        copy.line(line)
    }
}

/// The bytes of a chunk of output that hold no private key's BEGIN marker: one search of the
/// whole chunk instead of one per line (the per-line search was ~4% of the extraction
/// thread). It holds for a line only if the line's bytes lie in the chunk and its text is
/// those bytes: a line that began in an earlier chunk, or whose escapes were stripped (they
/// can sit between the dashes), is searched on its own.
#[derive(Debug, Clone, Copy)]
pub struct KeyFree(Option<(usize, usize)>);

impl KeyFree {
    pub fn of(chunk: &[u8]) -> KeyFree {
        static BEGIN: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"-----BEGIN "));
        let start = chunk.as_ptr() as usize;
        KeyFree(
            BEGIN
                .find(chunk)
                .is_none()
                .then(|| (start, start + chunk.len())),
        )
    }

    /// Nothing known: every line is searched.
    pub fn unknown() -> KeyFree {
        KeyFree(None)
    }

    /// Whether the bytes `line` lie in the chunk, and so hold no BEGIN marker.
    pub fn covers(&self, line: &[u8]) -> bool {
        let at = line.as_ptr() as usize;
        self.0
            .is_some_and(|(lo, hi)| lo <= at && at + line.len() <= hi)
    }
}

/// Byte ranges to mask, usually none: no allocation for a line outside any key.
#[derive(Debug, Default)]
pub struct Spans {
    /// A private key block's text.
    pem: Vec<(usize, usize)>,
    /// The rest of a wrapped key: start, end, and the redact rule whose secret it is.
    wrapped: Option<(usize, usize, usize)>,
}

impl Spans {
    fn push(&mut self, a: usize, b: usize) {
        if a < b {
            self.pem.push((a, b));
        }
    }

    /// The private key block's ranges.
    pub fn as_slice(&self) -> &[(usize, usize)] {
        &self.pem
    }

    pub fn is_empty(&self) -> bool {
        self.pem.is_empty() && self.wrapped.is_none()
    }
}

fn leading_ws(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Where a `-----BEGIN … PRIVATE KEY-----` (or `… PRIVATE KEY BLOCK-----`) marker starts.
fn find_begin(line: &str, from: usize) -> Option<usize> {
    static BEGIN: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"-----BEGIN "));
    find_marker(line, from, &BEGIN).map(|(start, _)| start)
}

/// Where the first `-----END … PRIVATE KEY-----` marker at or after `from` ends.
fn find_end(line: &str, from: usize) -> Option<usize> {
    static END: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"-----END "));
    find_marker(line, from, &END).map(|(_, end)| end)
}

/// The first marker `prefix` + `[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----` at or after `from`. The
/// finder is built once: this runs on every line.
fn find_marker(
    line: &str,
    from: usize,
    prefix: &memchr::memmem::Finder<'static>,
) -> Option<(usize, usize)> {
    let bytes = line.as_bytes();
    let mut at = from;
    while let Some(i) = prefix.find(&bytes[at..]) {
        let start = at + i;
        let label_start = start + prefix.needle().len();
        let label_len = bytes[label_start..]
            .iter()
            .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || **b == b' ')
            .count();
        let label = &line[label_start..label_start + label_len];
        let rest = &bytes[label_start + label_len..];
        if (label.ends_with("PRIVATE KEY") || label.ends_with("PRIVATE KEY BLOCK"))
            && rest.starts_with(b"-----")
        {
            return Some((start, label_start + label_len + 5));
        }
        at = label_start;
    }
    None
}

/// A line that can be inside a key block: one token of base64 (or hex), or an armour header
/// (`Proc-Type: 4,ENCRYPTED`, `DEK-Info: …`, `Comment: …`), or nothing, once what may wrap it
/// is taken away: indentation, quotes, commas, `|`, `>`, comment leaders, a trailing `\n`.
fn is_body_line(line: &str) -> bool {
    let t = line
        .trim()
        .trim_start_matches(['#', '/', '*', '>', '|', '"', '\'', ' ', '\t'])
        .trim_end_matches([',', '"', '\'', ';', ' ', '\t'])
        .trim_end_matches("\\n");
    if t.is_empty() {
        return true;
    }
    if let Some((name, _)) = t.split_once(": ") {
        return [
            "Proc-Type",
            "DEK-Info",
            "Comment",
            "Version",
            "Hash",
            "Charset",
            "MessageID",
        ]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h));
    }
    t.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
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

    fn builtin() -> Redactor {
        let mut book = RuleBook::load(&crate::extract::rules::builtin_sources()).expect("load");
        book.verify().expect("verify");
        Redactor::new(&book, true).expect("redactor")
    }

    const BODY: [&str; 3] = [
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj",
        "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu",
        "q3Lx0Zx==",
    ];

    /// Every line through one tracker, as the extractor does, masked.
    fn lines(r: &Redactor, text: &str) -> String {
        let mut keys = PemTracker::default();
        text.lines()
            .map(|l| {
                let spans = keys.line(l);
                r.redact_with(l, spans.as_slice()).into_owned()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn assert_no_body(masked: &str) {
        for b in BODY {
            assert!(!masked.contains(b), "{b} kept in:\n{masked}");
        }
        assert!(
            !masked.contains("q3Lx0Zx"),
            "the short last line kept:\n{masked}"
        );
    }

    #[test]
    fn a_private_key_is_masked_whole_whatever_wraps_it() {
        let r = builtin();
        let [a, b, c] = BODY;
        let plain = format!(
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\n{a}\n{b}\n{c}\n-----END RSA PRIVATE KEY-----\nafter"
        );
        let fenced = format!("```\n{plain}\n```");
        let yaml = format!(
            "tls:\n  key: |\n    -----BEGIN PRIVATE KEY-----\n    {a}\n    {b}\n    {c}\n    -----END PRIVATE KEY-----\n  cert: x"
        );
        let json_lines = format!(
            "[\n  \"-----BEGIN OPENSSH PRIVATE KEY-----\",\n  \"{a}\",\n  \"{c}\",\n  \"-----END OPENSSH PRIVATE KEY-----\"\n]"
        );
        for text in [&plain, &fenced, &yaml, &json_lines] {
            let masked = lines(&r, text);
            assert_no_body(&masked);
            assert!(masked.contains(PRIVATE_KEY_MASK), "{masked}");
        }
        assert!(
            lines(&r, &plain).ends_with("\nafter"),
            "the block ends at END"
        );
        // One JSON string, `\n`-escaped (a service-account file), with and without a name.
        for line in [
            format!(
                r#"{{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\n{a}\n{b}\n{c}\n-----END PRIVATE KEY-----\n", "client_email": "x@y"}}"#
            ),
            format!(
                r#"{{"k": "-----BEGIN PRIVATE KEY-----\n{a}\n{b}\n{c}\n-----END PRIVATE KEY-----\n", "client_email": "x@y"}}"#
            ),
        ] {
            let masked = lines(&r, &line);
            assert_no_body(&masked);
            assert!(masked.contains("client_email"), "{masked}");
        }
        // The same text as a code block's content.
        assert_no_body(&r.redact_lines(&plain));
        assert_no_body(&r.redact_lines(&yaml));
    }

    #[test]
    fn a_block_without_an_end_stops_at_the_first_line_that_is_not_key_text() {
        let r = builtin();
        let masked = lines(
            &r,
            "grep -- '-----BEGIN RSA PRIVATE KEY-----' id_rsa\nerror: no such file\nnext line",
        );
        assert!(
            masked.contains("error: no such file\nnext line"),
            "{masked}"
        );
        // A certificate is no secret.
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
        assert_eq!(lines(&r, cert), cert);
    }

    #[test]
    fn the_shapes_an_attack_found_are_masked() {
        let r = builtin();
        for (text, secret) in [
            (
                "aws configure set aws_secret_access_key wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
                "wJalrXUtnFEMI",
            ),
            (
                "AWS_SECRET_ACCESS_KEY = wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
                "wJalrXUtnFEMI",
            ),
            (
                "Aws_Secret_Access_Key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
                "wJalrXUtnFEMI",
            ),
            ("authorization: bearer 0a1b2c3d4e5f6a7b8c9d", "0a1b2c3d4e5f"),
            ("password=12345678", "12345678"),
            ("password=\"zebra quokka narwhal axolotl\"", "quokka"),
            ("password=\"zebra quokka narwhal axolotl\"", "axolotl"),
            (
                r#"{"m": "password=\"zebra quokka narwhal axolotl\""}"#,
                "narwhal",
            ),
        ] {
            let masked = r.redact(text);
            assert!(!masked.contains(secret), "{text} -> {masked}");
        }
        assert_eq!(r.redact("token count: 12"), "token count: 12");
    }

    /// Found by an audit: a key right after a JSON string's `\n` (command output in
    /// `codex exec --json`, Claude Code's `tool_result`) kept its text, since the `n` of the
    /// escape is a letter and the rules start at a word boundary; `\u003d` and `\/` hid an
    /// assignment's `=` and a URL's `//`.
    #[test]
    fn secrets_behind_json_escapes_are_masked_where_they_stand() {
        let r = builtin();
        let gh = "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8";
        for (text, secret) in [
            (
                format!(r#"{{"aggregated_output":"DEBUG=1\n{gh}\n","exit_code":1}}"#),
                gh,
            ),
            (format!(r#"{{"out":"a\t{gh}"}}"#), gh),
            (format!(r#"{{"out":"\"{gh}\""}}"#), gh),
            // JSON inside a JSON string: the escapes escaped.
            (format!(r#"{{"content":"{{\"out\":\"x\\n{gh}\"}}"}}"#), gh),
            (
                r#"{"out":"error: key \nsk-ant-api03-Zx81kQp0rT4vW2yB7nC9dE3fG5hJ6"}"#.into(),
                "Zx81kQp0rT4vW2yB7",
            ),
            (
                r#"{"out":"API_KEY\u003dplainvalue99x"}"#.into(),
                "plainvalue99x",
            ),
            (
                r#"{"url":"postgres:\/\/app:Sup3rS3cret@db:5432\/shop"}"#.into(),
                "Sup3rS3cret",
            ),
            (format!(r#"{{"emoji":"\ud83d\ude00\n{gh}"}}"#), gh),
            // A lone surrogate (a second audit): what a JSON reader makes of it, U+FFFD.
            (format!(r#"{{"o":"a\udcff{gh}"}}"#), gh),
            (format!(r#"{{"o":"a\ud83d{gh}"}}"#), gh),
        ] {
            let masked = r.redact(&text);
            assert!(!masked.contains(secret), "{text} -> {masked}");
            // The escapes and the JSON around the secret are kept as they were.
            assert!(masked.starts_with(&text[..4]), "{masked}");
        }
        let text = format!(r#"{{"o":"DEBUG=1\n{gh}\nnext"}}"#);
        assert_eq!(
            r.redact(&text),
            r#"{"o":"DEBUG=1\n[REDACTED:github_token]\nnext"}"#
        );
        // Backslashes that start no escape, and text without secrets, are left alone.
        for plain in [r"C:\Users\x", r"a \q b", r#"{"o":"ok\n"}"#, r"\u12"] {
            assert_eq!(r.redact(plain), plain);
        }
    }

    #[test]
    fn a_key_wrapped_onto_the_next_rows_is_followed() {
        let r = builtin();
        let mut keys = PemTracker::default();
        let mut row = |line: &str| {
            let mut masks = keys.line(line);
            r.follow_wrapped(&mut keys, line, &mut masks);
            r.redact_masks(line, &masks).into_owned()
        };
        assert_eq!(
            row("  key sk-proj-Zq8sW3xE7cR5vB1nZq8sW3xE7cR5"),
            "  key [REDACTED:openai_key]"
        );
        assert_eq!(row("  vB1nZq8sW3xE7cR5vB1nZq8s"), "  [REDACTED:openai_key]");
        assert_eq!(row(""), "");
        assert_eq!(
            row("  W3xE7cR5v (rotated)"),
            "  [REDACTED:openai_key] (rotated)"
        );
        // Done: the next row is text again.
        assert_eq!(row("  next row"), "  next row");
        // A row after a whole key that starts a word of its own (`error:`) is not the key's.
        assert_eq!(
            row("export OPENAI_API_KEY=sk-proj-Zq8sW3xE7cR5vB1nZq8sW3xE7cR5"),
            "export OPENAI_[REDACTED:secret_assignment]"
        );
        assert_eq!(row("error: next"), "error: next");
        // Found by a second audit: an assignment's value ends its line (`API_KEY=…` then
        // `DEBUG=1` was masked, and so on down), and a word after a whole key is text.
        assert_eq!(
            row("API_KEY=Zq8sW3xE7cR5vB1nQ2"),
            "[REDACTED:secret_assignment]"
        );
        assert_eq!(row("DEBUG=1"), "DEBUG=1");
        assert_eq!(
            row("key sk-proj-Zq8sW3xE7cR5vB1nZq8sW3xE7cR5"),
            "key [REDACTED:openai_key]"
        );
        assert_eq!(
            row("test result: FAILED. 1 passed; 2 failed"),
            "test result: FAILED. 1 passed; 2 failed"
        );
        assert_eq!(
            row("sk-proj-Zq8sW3xE7cR5vB1nZq8sW3xE7cR5"),
            "[REDACTED:openai_key]"
        );
        assert_eq!(row("    Finished dev profile"), "    Finished dev profile");
        // A long identifier at the end of a row that holds no secret arms nothing.
        assert_eq!(
            row("see /usr/lib/x86_64-linux-gnu/libssl.so"),
            "see /usr/lib/x86_64-linux-gnu/libssl.so"
        );
        assert_eq!(row("  continued"), "  continued");
    }

    #[test]
    fn names_and_forms_people_leak_are_masked() {
        let r = builtin();
        for (text, secret) in [
            ("DJANGO_SECRET_KEY=Zq8sW3xE7cR5", "Zq8sW3xE7cR5"),
            ("SECRET_KEY_BASE=8f3b2a9c1d7e", "8f3b2a9c1d7e"),
            ("secret_key: Zq8sW3xE7cR5", "Zq8sW3xE7cR5"),
            (r#"{"secret_key": "Zq8sW3xE7cR5"}"#, "Zq8sW3xE7cR5"),
            ("APP_KEY=base64:Zq8sW3xE7cR5", "Zq8sW3xE7cR5"),
            ("SIGNING_KEY=Zq8sW3xE7cR5", "Zq8sW3xE7cR5"),
            ("MASTER_KEY=Zq8sW3xE7cR5", "Zq8sW3xE7cR5"),
            ("ENCRYPTION_KEY=Zq8sW3xE7cR5", "Zq8sW3xE7cR5"),
            ("DB_PASS=Zq8sW3xE7cR5", "Zq8sW3xE7cR5"),
            ("REDIS_PASS=Zq8sW3xE7cR5", "Zq8sW3xE7cR5"),
            ("MYSQL_PWD=Zq8sW3xE7cR5", "Zq8sW3xE7cR5"),
            ("Cookie: theme=dark; session=Zq8sW3xE7cR5", "Zq8sW3xE7cR5"),
            ("set-cookie: sid=Zq8sW3xE7cR5; Path=/", "Zq8sW3xE7cR5"),
            ("redis://:Zq8sW3xE7cR5@cache:6379/0", "Zq8sW3xE7cR5"),
            ("amqp://:Zq8sW3xE7cR5@mq", "Zq8sW3xE7cR5"),
            ("postgres://app:Zq8s/W3xE7cR5@db/x", "W3xE7cR5"),
            (
                "AccountName=a;AccountKey=Zq8sW3xE7cR5==;EndpointSuffix=x",
                "Zq8sW3xE7cR5",
            ),
            ("curl -u deploy:Zq8sW3xE7cR5 https://x.test", "Zq8sW3xE7cR5"),
            ("sshpass -p Zq8sW3xE7cR5 ssh host", "Zq8sW3xE7cR5"),
            ("mysql -u root -pZq8sW3xE7cR5 shop", "Zq8sW3xE7cR5"),
            ("redis-cli -a Zq8sW3xE7cR5 ping", "Zq8sW3xE7cR5"),
        ] {
            let masked = r.redact(text);
            assert!(!masked.contains(secret), "{text} -> {masked}");
        }
        for kept in [
            "https://registry.npmjs.org:443/@types/node",
            "docker run -u 1000:1000 img",
            "PWD=/home/user/project",
            "max_tokens: 4096",
            "mysql -u root -p shop",
        ] {
            assert_eq!(r.redact(kept), kept);
        }
    }

    #[test]
    fn passwords_in_argv_flags_of_known_programs_are_masked() {
        let r = builtin();
        let cases: [(&[&str], &[&str], &[&str]); 6] = [
            (
                &[
                    "curl",
                    "-u",
                    "deploy:Zebra77Secret",
                    "--user=bob:Quokka88",
                    "https://x",
                ],
                &["Zebra77Secret", "Quokka88"],
                &["deploy:", "--user=bob:", "https://x"],
            ),
            (
                &["tool", "--pass", "Narwhal99Pw", "--pw=Axolotl1"],
                &["Narwhal99Pw", "Axolotl1"],
                &["--pass"],
            ),
            (
                &["sshpass", "-p", "Narwhal99Pw", "ssh", "host"],
                &["Narwhal99Pw"],
                &["ssh", "host"],
            ),
            (
                &["redis-cli", "-a", "Narwhal99Pw", "ping"],
                &["Narwhal99Pw"],
                &["ping"],
            ),
            (
                &["/usr/bin/mysql", "-u", "root", "-pNarwhal99Pw", "shop"],
                &["Narwhal99Pw"],
                &["root", "shop"],
            ),
            (
                &[
                    "docker",
                    "run",
                    "-u",
                    "1000:1000",
                    "-u",
                    "www-data:www-data",
                    "-p",
                    "8080:80",
                    "img",
                ],
                &[],
                &["1000:1000", "www-data:www-data", "-p 8080:80", "img"],
            ),
        ];
        for (argv, secrets, kept) in cases {
            let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
            let out = r.redact_argv(&argv).join(" ");
            for s in secrets {
                assert!(!out.contains(s), "{s} in {out}");
            }
            for k in kept {
                assert!(out.contains(k), "{k} lost from {out}");
            }
        }
        // mysql's `-p` alone prompts: what follows is the database.
        let argv: Vec<String> = ["mysql", "-p", "shop"].map(String::from).to_vec();
        assert_eq!(r.redact_argv(&argv), argv);
    }

    #[test]
    fn argv_values_of_secret_flags_and_secret_shapes_are_masked() {
        let r = builtin();
        let argv: Vec<String> = [
            "codex",
            "--api-key",
            "plainvalue1",
            "-H",
            "Authorization: Bearer abcdefgh12345678",
            "-H",
            "X-Api-Token: tok9876",
            "--password=hunter2",
            "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
            "--keep-going",
            "--author",
            "Ann",
            "--model",
            "o3",
        ]
        .map(String::from)
        .to_vec();
        let out = r.redact_argv(&argv).join(" ");
        for secret in [
            "plainvalue1",
            "abcdefgh12345678",
            "tok9876",
            "hunter2",
            "ghp_a1B2",
        ] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        for kept in [
            "codex",
            "--api-key",
            "--password=",
            "--keep-going",
            "--author Ann",
            "--model o3",
        ] {
            assert!(out.contains(kept), "{kept} lost from {out}");
        }
        assert_eq!(Redactor::off().redact_argv(&argv), argv);
    }

    #[test]
    fn identifiers_that_look_like_secrets_are_refused() {
        let r = builtin();
        assert!(r
            .refuse_secret("--session-id", "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8")
            .is_err());
        assert!(r
            .refuse_secret("--session-id", "nightly-2024-06-01")
            .is_ok());
        assert!(r.refuse_secret("the agent name", "codex").is_ok());
    }
}
