//! A second thread for the part of extraction that depends on a line alone.
//!
//! Of what the extraction thread spends on a line of build output, about two thirds depend on
//! nothing but the line's bytes: its text (escapes stripped, UTF-8 checked), which rules' sets
//! match it, the masked and cut text that is stored, and each matching rule's captures on
//! that. The rest needs what came before (line numbers, prompts, code blocks, private keys
//! across lines, context rules, JSON state) and stays on the extraction thread, in order.
//!
//! A large chunk of output is cut into blocks of [`BLOCK`] bytes; a line belongs to the block
//! its first byte is in. A helper thread ([`Prescan`]) and the extraction thread take blocks
//! from one counter: the helper computes blocks ahead while the extraction thread works
//! through the lines in order, and when the extraction thread reaches a block the helper is
//! still on, it computes the next untaken block instead of waiting. So the split balances
//! itself whatever the lines cost, and a helper that is not scheduled costs nothing but the
//! extraction thread doing the work itself.
//!
//! Nothing changes what is extracted: a block's result for a line is used only when the
//! splitter hands over exactly those bytes of the chunk (the same address and length: a line
//! glued to the previous chunk's tail, or one with a `\r`, comes from the splitter's own
//! buffer and is computed as before), and only the parts that cannot depend on state. A line
//! whose masking needs state (the body of a private key), a rule that reports the previous
//! line, and JSON lines fall back to the ordinary path. No allocation per line or per chunk:
//! the jobs and their buffers are reused.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use memchr::memchr;

use super::{cut_line, json, sets, Matcher, Redactor};
use crate::event::Stream;
use crate::lines::clean_line;

/// Bytes of a chunk per block: ~90 lines of the benchmark's build log, small enough that the
/// two threads meet without either waiting long, large enough that taking one costs nothing.
pub const BLOCK: usize = 4096;

/// Chunks smaller than this are extracted on the extraction thread alone: an interactive
/// agent's few lines would only pay for waking the helper.
pub const MIN_CHUNK: usize = 4 * BLOCK;

/// Lines shorter than this on average (in a chunk's first block) are not computed ahead: what
/// such a line costs alone (`yes`: a `y`) is no more than finding its computed part again,
/// so the helper would only add its own work (+37% CPU for `yes`, no faster).
const MIN_AVERAGE_LINE: usize = 16;

/// Whether handing `data` to the helper can pay: a large chunk, with line ends in it (not
/// a part of one long line), of lines that are not tiny.
pub fn worth_it(data: &[u8]) -> bool {
    if data.len() < MIN_CHUNK {
        return false;
    }
    let first = &data[..BLOCK];
    let most = BLOCK / MIN_AVERAGE_LINE;
    match memchr::memchr_iter(b'\n', first).take(most + 1).count() {
        0 => memchr(b'\n', data).is_some(),
        n => n <= most,
    }
}

/// What a line's captures were, for the rule at the same position in its hits.
#[derive(Clone, Copy, Debug)]
pub enum Cap {
    /// Not computed here (a rule that reports the previous line, or not for this stream).
    Todo,
    /// The rule's capture regex does not match the stored text (or could not be compiled).
    NoMatch,
    /// Its capture groups: `groups` pairs of offsets from `start` in the block's slots.
    Match { start: usize, groups: usize },
}

/// A line's precomputed part, borrowed from its block.
pub struct Pre<'a> {
    /// The line as rules see it ([`clean_line`]).
    pub text: &'a str,
    /// Whether `text` is the line's bytes as they are (nothing stripped or replaced).
    pub verbatim: bool,
    /// The rules whose sets matched `text`, ascending.
    pub hits: &'a [usize],
    /// `text` masked without any state and cut to `max_line` (only if `hits` is not empty).
    pub stored: &'a str,
    /// Whether cutting shortened it.
    pub cut: bool,
    caps: &'a [Cap],
    slots: &'a [usize],
}

impl<'a> Pre<'a> {
    /// The captures of the rule `hits[j]` on `stored`.
    pub fn cap(&self, rule: usize) -> Option<Slots<'a>> {
        let j = self.hits.binary_search(&rule).ok()?;
        match self.caps.get(j).copied()? {
            Cap::Todo => None,
            Cap::NoMatch => Some(Slots(&[])),
            Cap::Match { start, groups } => self.slots.get(start..start + 2 * groups).map(Slots),
        }
    }
}

/// Capture groups as offset pairs, `usize::MAX` for a group that took no part. Empty when
/// the rule did not match.
#[derive(Clone, Copy)]
pub struct Slots<'a>(&'a [usize]);

impl Slots<'_> {
    pub fn matched(&self) -> bool {
        !self.0.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<(usize, usize)> {
        match self.0.get(2 * i..2 * i + 2)? {
            [a, b] if *a != usize::MAX => Some((*a, *b)),
            _ => None,
        }
    }
}

/// One line of a block.
#[derive(Debug)]
struct LineRes {
    /// Where its bytes are in the chunk.
    start: usize,
    len: usize,
    /// Ranges in the block's `text`, `hits`, `caps`.
    text: (usize, usize),
    verbatim: bool,
    stored: (usize, usize),
    cut: bool,
    hits: (usize, usize),
}

#[derive(Debug, Default)]
struct BlockRes {
    lines: Vec<LineRes>,
    text: String,
    hits: Vec<usize>,
    caps: Vec<Cap>,
    slots: Vec<usize>,
}

impl BlockRes {
    fn clear(&mut self) {
        self.lines.clear();
        self.text.clear();
        self.hits.clear();
        self.caps.clear();
        self.slots.clear();
    }

    fn pre(&self, l: &LineRes) -> Pre<'_> {
        Pre {
            text: &self.text[l.text.0..l.text.1],
            verbatim: l.verbatim,
            hits: &self.hits[l.hits.0..l.hits.1],
            stored: &self.text[l.stored.0..l.stored.1],
            cut: l.cut,
            caps: &self.caps[l.hits.0..l.hits.1],
            slots: &self.slots,
        }
    }
}

#[derive(Debug, Default)]
struct Block {
    done: AtomicBool,
    res: Mutex<BlockRes>,
}

/// One chunk being extracted, shared by the two threads while it is.
#[derive(Debug, Default)]
struct Job {
    data: Vec<u8>,
    stream: Option<Stream>,
    blocks: Vec<Block>,
    /// Blocks of `data` (`blocks` may hold more from a larger chunk).
    count: usize,
    /// The next block nobody has taken.
    next: AtomicUsize,
}

impl Job {
    /// Takes the next untaken block and computes it; false when none is left.
    fn take_one(&self, ctx: &Ctx, scan: &mut Scan) -> bool {
        let k = self.next.fetch_add(1, Ordering::AcqRel);
        if k >= self.count {
            return false;
        }
        self.compute(k, ctx, scan);
        true
    }

    fn compute(&self, k: usize, ctx: &Ctx, scan: &mut Scan) {
        let block = &self.blocks[k];
        {
            let mut res = lock(&block.res);
            res.clear();
            if let Some(stream) = self.stream {
                scan_block(&self.data, k, stream, ctx, scan, &mut res);
            }
        }
        block.done.store(true, Ordering::Release);
    }
}

fn lock(m: &Mutex<BlockRes>) -> MutexGuard<'_, BlockRes> {
    // A panic while a block was computed leaves it cleared and recomputed, never half-read.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What computing a block needs, the same on both threads.
#[derive(Clone)]
struct Ctx {
    matcher: Arc<Matcher>,
    redactor: Arc<Redactor>,
    max_line: usize,
    /// The splitter's own cap: a longer line is cut by it and computed the ordinary way.
    kept: usize,
}

/// One thread's caches for matching lines: the sets' and each rule's capture slots.
#[derive(Debug)]
pub struct Scan {
    pub sets: sets::Scratch,
    /// By rule: this thread's copy of its capture regex ([`super::CompiledRule::captures`])
    /// and its slots. A `Regex` keeps one cache for the thread that used it first and a
    /// locked stack for every other; with two threads on the same rules, the other paid a
    /// lock for each capture (~4% of the helper's samples). A copy has a cache of its own.
    pub locations: Vec<Option<RuleScan>>,
}

/// One rule's capture regex and slots on one thread, and the cache of its one-pass groups.
#[derive(Debug)]
pub struct RuleScan {
    regex: regex::Regex,
    locs: regex::CaptureLocations,
    relaxed: Option<super::onepass::RelaxedCache>,
}

/// A match's capture groups, from `regex` or from the one-pass walk of the match.
#[derive(Clone, Copy)]
pub enum Locs<'a> {
    Regex(&'a regex::CaptureLocations),
    /// Offsets into the match, which starts at the `usize`.
    OnePass(&'a regex_automata::util::captures::Captures, usize),
}

impl Locs<'_> {
    /// Groups, the whole match included.
    pub fn len(&self) -> usize {
        match self {
            Locs::Regex(l) => l.len(),
            Locs::OnePass(c, _) => c.group_len(),
        }
    }

    pub fn get(&self, i: usize) -> Option<(usize, usize)> {
        match self {
            Locs::Regex(l) => l.get(i),
            Locs::OnePass(c, at) => c.get_group(i).map(|s| (s.start + at, s.end + at)),
        }
    }
}

impl Scan {
    pub fn new(m: &Matcher) -> Scan {
        Scan {
            sets: sets::Scratch::default(),
            locations: m.rules.iter().map(|_| None).collect(),
        }
    }

    /// Rule `i`'s capture groups on `text` (with its capture regex `caps`), in this thread's
    /// slots for it; `None` if the regex does not match.
    pub fn captures(&mut self, i: usize, caps: &super::Captures, text: &str) -> Option<Locs<'_>> {
        let s = self.locations[i].get_or_insert_with(|| RuleScan {
            regex: caps.regex.clone(),
            locs: caps.regex.capture_locations(),
            relaxed: caps.relaxed.as_ref().map(|r| r.create_cache()),
        });
        if let (Some(rel), Some(cache)) = (&caps.relaxed, &mut s.relaxed) {
            let m = s.regex.find(text)?;
            if let Some(groups) = rel.groups(cache, text, m.start(), m.end()) {
                return Some(Locs::OnePass(groups, m.start()));
            }
        }
        s.regex
            .captures_read(&mut s.locs, text)
            .map(|_| Locs::Regex(&s.locs))
    }
}

/// The lines that start in block `k` of `data` and end within `data` (one that runs on into
/// the next chunk is the splitter's to join).
fn scan_block(
    data: &[u8],
    k: usize,
    stream: Stream,
    ctx: &Ctx,
    scan: &mut Scan,
    res: &mut BlockRes,
) {
    let from = k * BLOCK;
    let until = data.len().min(from + BLOCK);
    // A line starts in this block where the byte before it, within the block or just
    // before it, ends a line: only this block's bytes are searched for that, so a chunk that
    // is all one long line costs each block its own bytes, not the rest of the chunk.
    let mut start = if k == 0 {
        0
    } else {
        match memchr(b'\n', &data[from - 1..until]) {
            Some(i) => from + i,
            None => return,
        }
    };
    while start < until {
        let Some(nl) = memchr(b'\n', &data[start..]) else {
            return;
        };
        let seg = &data[start..start + nl];
        if seg.len() <= ctx.kept && memchr(b'\r', seg).is_none() {
            scan_line(seg, start, stream, ctx, scan, res);
        }
        start += nl + 1;
    }
}

fn scan_line(
    seg: &[u8],
    start: usize,
    stream: Stream,
    ctx: &Ctx,
    scan: &mut Scan,
    res: &mut BlockRes,
) {
    let text = clean_line(seg);
    // JSON lines are decoded on the extraction thread (`json.rs`), not grepped.
    if json::looks_like_object(&text) || json::starts_like_object(&text) {
        return;
    }
    let m = &*ctx.matcher;
    let t0 = res.text.len();
    res.text.push_str(&text);
    let text_at = (t0, res.text.len());
    let h0 = res.hits.len();
    res.hits
        .extend_from_slice(m.set.matches(&mut scan.sets, &text));
    let h1 = res.hits.len();
    let mut line = LineRes {
        start,
        len: seg.len(),
        text: text_at,
        verbatim: matches!(text, std::borrow::Cow::Borrowed(_)),
        stored: text_at,
        cut: false,
        hits: (h0, h1),
    };
    if h0 == h1 {
        res.lines.push(line);
        return;
    }
    let (stored, cut) = cut_line(ctx.redactor.redact_with(&text, &[]), ctx.max_line);
    line.cut = cut;
    line.stored = match &stored {
        std::borrow::Cow::Borrowed(s) => (t0, t0 + s.len()),
        std::borrow::Cow::Owned(s) => {
            let s0 = res.text.len();
            res.text.push_str(s);
            (s0, res.text.len())
        }
    };
    for j in h0..h1 {
        let i = res.hits[j];
        let r = &m.rules[i];
        // A `report = "previous"` rule's event is made from the previous line.
        let previous = r.context.as_ref().is_some_and(|c| c.report_previous);
        let cap = if previous || !r.rule.streams[stream] {
            Cap::Todo
        } else {
            match r
                .captures()
                .and_then(|caps| scan.captures(i, caps, &stored))
            {
                None => Cap::NoMatch,
                Some(locs) => {
                    let start = res.slots.len();
                    for g in 0..locs.len() {
                        let (a, b) = locs.get(g).unwrap_or((usize::MAX, usize::MAX));
                        res.slots.extend([a, b]);
                    }
                    Cap::Match {
                        start,
                        groups: locs.len(),
                    }
                }
            }
        };
        res.caps.push(cap);
    }
    res.lines.push(line);
}

/// The helper thread and the jobs it shares with the extraction thread.
pub struct Prescan {
    ctx: Ctx,
    tx: Option<Sender<Arc<Job>>>,
    handle: Option<JoinHandle<()>>,
    /// Jobs the helper has let go of, for the next chunks.
    idle: Vec<Job>,
    /// Lines whose computed part was used, for the tests.
    pub lines_ahead: u64,
}

impl Prescan {
    /// Starts the helper; without one (the thread could not be started) every block is
    /// computed on the extraction thread, which is the ordinary cost.
    pub fn start(
        matcher: Arc<Matcher>,
        redactor: Arc<Redactor>,
        max_line: usize,
        kept: usize,
    ) -> Prescan {
        let ctx = Ctx {
            matcher,
            redactor,
            max_line,
            kept,
        };
        let (tx, rx) = mpsc::channel::<Arc<Job>>();
        // The helper's own copy of the masking rules (see `Redactor`'s `Clone`); the capture
        // regexes are copied per thread in `Scan`.
        let helper_ctx = Ctx {
            redactor: Arc::new(Redactor::clone(&ctx.redactor)),
            ..ctx.clone()
        };
        let handle = match std::thread::Builder::new()
            .name("wrapper-scan".into())
            .spawn(move || {
                crate::run::nice::background(crate::run::nice::Recorder::Reader);
                helper(rx, helper_ctx)
            }) {
            Ok(h) => {
                tracing::debug!("large chunks: their lines are computed ahead on a second thread");
                Some(h)
            }
            Err(e) => {
                tracing::debug!("no second thread for extraction ({e}): all on one");
                None
            }
        };
        Prescan {
            ctx,
            tx: handle.is_some().then_some(tx),
            handle,
            idle: Vec::new(),
            lines_ahead: 0,
        }
    }

    /// Hands `data` (a chunk of `stream`) to the helper and returns the chunk being computed.
    pub fn begin(&mut self, stream: Stream, data: Vec<u8>) -> Chunk {
        let mut job = self.idle.pop().unwrap_or_default();
        job.count = data.len().div_ceil(BLOCK);
        job.data = data;
        job.stream = Some(stream);
        if job.blocks.len() < job.count {
            job.blocks.resize_with(job.count, Block::default);
        }
        for b in &mut job.blocks[..job.count] {
            *b.done.get_mut() = false;
        }
        *job.next.get_mut() = 0;
        let job = Arc::new(job);
        if let Some(tx) = &self.tx {
            if tx.send(Arc::clone(&job)).is_err() {
                self.tx = None;
            }
        }
        Chunk {
            job,
            current: None,
            cursor: 0,
        }
    }

    /// The part of the line `line` (a slice the splitter handed over) computed ahead, if it
    /// is a line of the chunk; waits for its block, computing others with `scan` meanwhile.
    pub fn line<'c>(
        &mut self,
        chunk: &'c mut Chunk,
        line: &[u8],
        scan: &mut Scan,
    ) -> Option<Pre<'c>> {
        let job = &chunk.job;
        let at = (line.as_ptr() as usize).checked_sub(job.data.as_ptr() as usize)?;
        if at + line.len() > job.data.len() {
            return None;
        }
        let k = at / BLOCK;
        if chunk.current.as_ref().map(|(b, _)| *b) != Some(k) {
            if let Some((b, res)) = chunk.current.take() {
                // Back into its slot, buffers and all, for the next chunk.
                *lock(&job.blocks[b].res) = res;
            }
            self.wait(job, k, scan);
            let res = std::mem::take(&mut *lock(&job.blocks[k].res));
            chunk.current = Some((k, res));
            chunk.cursor = 0;
        }
        let (_, res) = chunk.current.as_ref()?;
        while res.lines.get(chunk.cursor).is_some_and(|l| l.start < at) {
            chunk.cursor += 1;
        }
        let l = res.lines.get(chunk.cursor)?;
        if l.start != at || l.len != line.len() {
            return None;
        }
        self.lines_ahead += 1;
        Some(res.pre(l))
    }

    /// Waits until block `k` is computed, computing untaken blocks meanwhile.
    fn wait(&self, job: &Job, k: usize, scan: &mut Scan) {
        let mut spins = 0u32;
        while !job.blocks[k].done.load(Ordering::Acquire) {
            if job.take_one(&self.ctx, scan) {
                continue;
            }
            // The helper has block k. Should it have died on it, compute it here.
            if self.handle.as_ref().is_none_or(JoinHandle::is_finished) {
                job.compute(k, &self.ctx, scan);
                return;
            }
            spins += 1;
            back_off(spins);
        }
    }

    /// Ends the chunk: no block is taken any more, and once the helper has let go of the job
    /// its bytes are handed back.
    pub fn end(&mut self, chunk: Chunk) -> Vec<u8> {
        let Chunk {
            mut job, current, ..
        } = chunk;
        if let Some((b, res)) = current {
            *lock(&job.blocks[b].res) = res;
        }
        job.next.store(usize::MAX / 2, Ordering::Release);
        for spins in 0u32.. {
            match Arc::try_unwrap(job) {
                Ok(mut j) => {
                    let data = std::mem::take(&mut j.data);
                    j.stream = None;
                    self.idle.push(j);
                    return data;
                }
                Err(shared) => job = shared,
            }
            // The helper lets go as soon as it finds no block left; should it not be
            // scheduled for long (or have died holding the job), the bytes are copied out.
            if spins > 10_000 || self.handle.as_ref().is_none_or(JoinHandle::is_finished) {
                break;
            }
            back_off(spins);
        }
        job.data.clone()
    }
}

/// Waiting on the other thread for a moment: spin a little, then give up the core.
fn back_off(spins: u32) {
    if spins < 64 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

impl Drop for Prescan {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A chunk being extracted with its blocks computed ahead.
pub struct Chunk {
    job: Arc<Job>,
    /// The block the extraction thread is reading, taken out of its slot.
    current: Option<(usize, BlockRes)>,
    cursor: usize,
}

impl Chunk {
    /// The chunk's bytes, to split into lines. Hold the handle only while splitting.
    pub fn bytes(&self) -> Bytes {
        Bytes(Arc::clone(&self.job))
    }
}

/// A handle on a chunk's bytes that leaves the chunk free to be read.
pub struct Bytes(Arc<Job>);

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0.data
    }
}

fn helper(rx: Receiver<Arc<Job>>, ctx: Ctx) {
    let mut scan = Scan::new(&ctx.matcher);
    while let Ok(job) = rx.recv() {
        while job.take_one(&ctx, &mut scan) {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::event::{Record, Stream};
    use crate::extract::rules::RuleBook;
    use crate::extract::{Extractor, Matcher, Redactor};

    fn extractor(helper: bool) -> Extractor {
        let book = RuleBook::builtin().unwrap();
        let m = Arc::new(Matcher::new(&book, Some("codex")).unwrap());
        let r = Arc::new(Redactor::new(&book, true).unwrap());
        let mut x = Extractor::new(m, r, 1024);
        if helper {
            x.allow_helper();
        }
        x
    }

    /// Lines of every kind the two paths must agree on: rule hits, escapes, redraws, JSON,
    /// secrets, a private key across lines, code blocks, context rules, prompts, invalid
    /// UTF-8, NULs, lines cut at `max_line` and lines past the splitter's own cap.
    fn output(lines: usize) -> Vec<u8> {
        let kinds: [&dyn Fn(u64) -> Vec<u8>; 26] = [
            // A line the helper leaves alone, then one of the same length that it computes.
            &|i| format!("{{\"n\":\"{i:08}\"}}\nerror: {i:08}a\n").into_bytes(),
            &|i| format!("error[E0{i:03}]: mismatched types in src/a{i}.rs:{i}:7\n").into_bytes(),
            &|i| format!("   Compiling crate{i} v0.1.{i} (/w/crate{i})\n").into_bytes(),
            &|i| format!("src/lib{i}.rs:{i}:3: warning: unused variable `x{i}`\n").into_bytes(),
            &|i| format!("\x1b[1;31merror\x1b[0m: could not compile `c{i}`\n").into_bytes(),
            &|i| format!("building {i}%\r building {}%\rdone {i}\n", i + 1).into_bytes(),
            &|i| format!("{{\"type\":\"item.completed\",\"n\":{i}}}\n").into_bytes(),
            &|i| format!("{{\"broken\": \"json {i}\n").into_bytes(),
            &|i| {
                format!("export OPENAI_API_KEY=sk-proj-abcd{i:016}xyzXYZ0123456789\n").into_bytes()
            },
            &|_| {
                b"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq98cXnDlVKqz7J0jcUnXwRqnY9\nerror: inside the key\n-----END RSA PRIVATE KEY-----\n".to_vec()
            },
            &|i| {
                format!("error: key {i} follows -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU{i}\n-----END OPENSSH PRIVATE KEY----- see https://example.com/k{i}\n").into_bytes()
            },
            &|i| format!("```python\nprint({i})\nerror: in a block {i}\n```\n").into_bytes(),
            &|i| format!("Collecting flask{i}\nWARNING: Running pip as root {i}\n").into_bytes(),
            &|i| {
                format!("Dec 01, 2026 4:25:10 PM Main main\nWARNING: pool size {i}\n").into_bytes()
            },
            &|i| format!("Do you want to run this command? [y/N] rm -rf build{i}/\n").into_bytes(),
            &|i| format!("test tests::case_{i} ... FAILED\n").into_bytes(),
            &|i| format!("  File \"src/m{i}.py\", line {i}, in <module>\n").into_bytes(),
            &|i| format!("see https://example.com/docs/{i}?q=1 for more\n").into_bytes(),
            &|i| {
                let mut v = format!("bad utf-8 {i} ").into_bytes();
                v.extend_from_slice(&[0xff, 0xfe, b'e', b'r', 0xc3]);
                v.extend_from_slice(b" error: after\n");
                v
            },
            &|i| format!("nul\0byte error: {i}\0\n").into_bytes(),
            &|i| format!("error: long {}\n", "y".repeat(1500 + i as usize % 7)).into_bytes(),
            &|i| format!("error: longer {}\n", "z".repeat(6000 + i as usize % 5)).into_bytes(),
            &|_| b"\n".to_vec(),
            &|i| format!("$ cargo test -p core {i}\n").into_bytes(),
            &|i| {
                format!(
                    "{}\n",
                    "plain text line without anything to find ".repeat(1 + i as usize % 3)
                )
                .into_bytes()
            },
            &|i| format!("FAILED tests/test_{i}.py::test_x - AssertionError: boom\n").into_bytes(),
        ];
        let mut out = Vec::new();
        let mut rng = crate::test_rng::XorShift::new(0x9e37_79b9_7f4a_7c15);
        for i in 0..lines as u64 {
            out.extend(kinds[rng.below(kinds.len())](i));
        }
        out
    }

    fn records(x: &mut Extractor) -> Vec<String> {
        x.take()
            .iter()
            .map(|r| match r {
                Record::Event(e) => format!("{e:?}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// The same bytes fed at once on one thread, and in chunks of `size` begun `ahead` at a
    /// time with the helper: the same records, line counts and events.
    fn same_both_ways(data: &[u8], size: usize, ahead: usize) {
        let ts: Arc<str> = Arc::from("2026-12-02T00:00:00.000Z");
        let mut plain = extractor(false);
        plain.feed(Stream::Stdout, data, &ts);
        plain.finish(&ts);
        let mut x = extractor(true);
        let mut pending = std::collections::VecDeque::new();
        let mut back = Vec::new();
        for c in data.chunks(size) {
            pending.push_back(x.begin(Stream::Stdout, c.to_vec()));
            if pending.len() > ahead {
                back.extend(x.feed_pending(pending.pop_front().unwrap(), &ts));
            }
        }
        while let Some(p) = pending.pop_front() {
            back.extend(x.feed_pending(p, &ts));
        }
        x.finish(&ts);
        assert_eq!(back, data, "the chunks' bytes come back as they were");
        let ahead_lines = x.prescan.as_ref().map_or(0, |p| p.lines_ahead);
        assert!(ahead_lines > 0, "the helper computed no line (size {size})");
        assert_eq!(x.lines(), plain.lines(), "size {size}");
        assert_eq!(x.events(), plain.events(), "size {size}");
        let (a, b) = (records(&mut plain), records(&mut x));
        assert!(a.len() > 100, "too few records to compare: {}", a.len());
        for (i, (p, q)) in a.iter().zip(&b).enumerate() {
            assert_eq!(p, q, "record {i} (size {size}, ahead {ahead})");
        }
        assert_eq!(a.len(), b.len());
    }

    #[test]
    fn lines_computed_ahead_give_the_same_records_as_one_thread() {
        let data = output(6000);
        for (size, ahead) in [
            (64 << 10, 3),
            (super::MIN_CHUNK, 0),
            (17_001, 1),
            (100_003, 2),
        ] {
            same_both_ways(&data, size, ahead);
        }
    }

    /// Records given back are freed and their Vec holds the next ones.
    #[test]
    fn a_vec_given_back_holds_the_next_records() {
        let ts: Arc<str> = Arc::from("t");
        let mut x = extractor(false);
        x.feed(Stream::Stdout, &output(300), &ts);
        let first = x.take();
        assert!(!first.is_empty());
        let at = first.as_ptr();
        x.give_back(first);
        // The Vec in use when it came back fills up and goes; the one given back is next.
        x.feed(Stream::Stdout, &output(300), &ts);
        assert!(!x.take().is_empty());
        x.feed(Stream::Stdout, &output(300), &ts);
        let third = x.take();
        assert!(!third.is_empty());
        assert_eq!(third.as_ptr(), at, "the Vec given back was not reused");
    }

    #[test]
    fn small_chunks_tiny_or_endless_lines_and_no_permission_stay_on_one_thread() {
        let ts: Arc<str> = Arc::from("t");
        let data = output(400);
        let mut x = extractor(true);
        for c in data.chunks(super::MIN_CHUNK - 1) {
            let p = x.begin(Stream::Stdout, c.to_vec());
            x.feed_pending(p, &ts);
        }
        assert!(x.prescan.is_none(), "small chunks started the helper");
        let mut y = extractor(false);
        let p = y.begin(Stream::Stdout, data.clone());
        y.feed_pending(p, &ts);
        assert!(
            y.prescan.is_none(),
            "the helper started without being allowed"
        );
        assert_eq!(x.lines(), y.lines());
        // Parts of one long line: no line end, nothing to compute ahead.
        let mut z = extractor(true);
        for _ in 0..4 {
            let p = z.begin(Stream::Stdout, vec![b'x'; 64 << 10]);
            z.feed_pending(p, &ts);
        }
        assert!(
            z.prescan.is_none(),
            "a chunk without a line end started the helper"
        );
        // Tiny lines (`yes`) cost no more alone than their computed part would to find.
        let p = z.begin(Stream::Stdout, b"y\n".repeat(32 << 10));
        z.feed_pending(p, &ts);
        assert!(
            z.prescan.is_none(),
            "a chunk of tiny lines started the helper"
        );
        assert_eq!(z.lines(), 32 << 10);
    }
}
