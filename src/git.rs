//! Repository facts for a session (SPEC §10 "Git linkage"), probed on a thread of their own
//! after the agent has been spawned, so the start-up path (SPEC §9: under 5 ms to exec) never
//! waits for git. Only HEAD is read before the spawn, from the files ([`head_snapshot`],
//! microseconds), because an agent may commit before the probe's first git command runs.
//!
//! The `git` CLI, not a library (`gix`): the probe runs off the start-up path, so git's own
//! start-up (a few ms per command) costs the agent nothing, while `gix` would add a hundred-odd
//! crates, minutes of compile time on two cores and megabytes to the binary for facts that
//! four commands give. The CLI also applies the user's own configuration exactly as the
//! agent's git does: `safe.directory`, `includeIf`, worktrees, alternates, sha256 repositories.
//!
//! Every command runs with a deadline (the phase's time limit, `git_timeout`) in its own
//! process group, killed with its helpers when the deadline passes, so a huge, broken or
//! foreign-owned repository costs the run at most that limit at the end and never fails it.
//! `GIT_OPTIONAL_LOCKS=0` keeps `git status` from writing the index, so the probe never holds
//! `index.lock` while the agent runs git itself; `core.fsmonitor=false` starts no daemon.
//! A repository owned by another user that `safe.directory` does not trust is not read: git
//! refuses it, and the session records why.
//!
//! At the end the same facts are read again and HEAD's range `head_start..head_end` gives the
//! commits made during the session (with subjects) and the files they changed; files left
//! changed in the work tree are listed too, marked uncommitted. Subjects and the remote URL go
//! through the session's redaction rules, and the URL loses any credentials first.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::extract::rules::RuleBook;
use crate::extract::Redactor;
use crate::store::git::{GitCommit, GitEnd, GitFile, GitStart, GitUpdate, MAX_COMMITS, MAX_FILES};
use crate::store::writer::{Msg, SessionRow};

/// Default time limit of each phase (start, end).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Most bytes of one command's output kept; the rest is read and dropped.
const MAX_OUTPUT: usize = 8 << 20;

/// Where the facts go (the writer's channel, in a run).
pub type Report = Box<dyn FnMut(GitUpdate) + Send>;

/// A probe running in the background; [`Probe::finish`] reads the end facts.
pub struct Probe {
    end_tx: mpsc::Sender<Instant>,
    done_rx: mpsc::Receiver<()>,
    report: Arc<Mutex<Option<Report>>>,
    timeout: Duration,
}

impl Probe {
    /// Starts probing `cwd`. `redact` holds the `[[redact]]` rules for subjects and URLs
    /// (compiled on the probe's thread). Returns `None` if no thread could be started.
    /// `head0`: HEAD read from the files before the spawn ([`head_snapshot`]), which wins
    /// over what git says a moment later (the agent may have committed by then).
    pub fn start(
        cwd: PathBuf,
        head0: Option<String>,
        timeout: Duration,
        redact: Option<RuleBook>,
        report: Report,
    ) -> Option<Probe> {
        let (end_tx, end_rx) = mpsc::channel::<Instant>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let report = Arc::new(Mutex::new(Some(report)));
        let shared = report.clone();
        let send = move |u: GitUpdate| {
            if let Ok(mut guard) = shared.lock() {
                if let Some(f) = guard.as_mut() {
                    f(u);
                }
            }
        };
        thread::Builder::new()
            .name("wrapper-git".into())
            .spawn(move || {
                let started = probe_start(&cwd, timeout);
                let Some((mut start, repo)) = started else {
                    tracing::debug!("git: {} is not in a work tree", cwd.display());
                    send(GitUpdate::NotARepository);
                    let _ = done_tx.send(());
                    return;
                };
                // Compiled only now: most sessions outside a repository never need it.
                let redactor = redact
                    .and_then(|b| Redactor::new(&b, true).ok())
                    .unwrap_or_else(Redactor::off);
                start.remote_url = start.remote_url.map(|u| redactor.redact(&u).into_owned());
                if repo.is_some() && head0.is_some() {
                    start.head_start = head0;
                }
                send(GitUpdate::Start(start.clone()));
                let Ok(deadline) = end_rx.recv() else {
                    return;
                };
                if let Some(repo) = repo {
                    let mut end = probe_end(&repo, &start, deadline, timeout);
                    for c in &mut end.commits {
                        if let std::borrow::Cow::Owned(s) = redactor.redact(&c.subject) {
                            c.subject = s;
                        }
                    }
                    send(GitUpdate::End(end));
                }
                let _ = done_tx.send(());
            })
            .ok()?;
        Some(Probe {
            end_tx,
            done_rx,
            report,
            timeout,
        })
    }

    /// Probes the session's directory and reports to the writer (`Msg::Git`). `book`'s
    /// `[[redact]]` rules mask subjects and URLs unless `redact` is off.
    pub fn for_session(
        session: &SessionRow,
        head0: Option<String>,
        timeout: Duration,
        book: &RuleBook,
        redact: bool,
        tx: SyncSender<Msg>,
    ) -> Option<Probe> {
        let cwd = PathBuf::from(session.cwd.as_ref()?);
        let rules = redact.then(|| RuleBook {
            redact: book.redact.clone(),
            ..Default::default()
        });
        let report: Report = Box::new(move |u| {
            let _ = tx.send(Msg::Git(u));
        });
        Probe::start(cwd, head0, timeout, rules, report)
    }

    /// Reads the end facts and reports them, waiting at most the time limit; after that
    /// nothing more is reported (the probe's commands die at their own deadline).
    pub fn finish(self) {
        let deadline = Instant::now() + self.timeout;
        if self.end_tx.send(deadline).is_ok() {
            let left = deadline.saturating_duration_since(Instant::now());
            if self
                .done_rx
                .recv_timeout(left + Duration::from_millis(50))
                .is_err()
            {
                tracing::debug!("git: end facts not ready within {:?}", self.timeout);
            }
        }
        if let Ok(mut guard) = self.report.lock() {
            guard.take();
        }
    }
}

/// HEAD's commit as the repository's files say it, for the session's start: read before
/// the agent is spawned (the probe that runs git comes a few milliseconds later, and an agent
/// may commit at once), so it must cost microseconds: the nearest `.git` at or above the
/// directory (a `gitdir:` file for worktrees and submodules), `HEAD`, then the loose ref or
/// `packed-refs`. `None` for anything else (a reftable repository, an unborn branch, `GIT_DIR`
/// in the environment): git's own answer is used then. Ownership is not judged here; the
/// snapshot is used only if git later agrees to read the repository.
pub fn head_snapshot(session: &SessionRow) -> Option<String> {
    if std::env::var_os("GIT_DIR").is_some() {
        return None;
    }
    let mut dir = PathBuf::from(session.cwd.as_ref()?);
    let git_dir = loop {
        let dot = dir.join(".git");
        match std::fs::metadata(&dot) {
            Ok(m) if m.is_dir() => break dot,
            Ok(m) if m.is_file() => {
                let text = std::fs::read_to_string(&dot).ok()?;
                let target = PathBuf::from(text.trim().strip_prefix("gitdir:")?.trim());
                break if target.is_absolute() {
                    target
                } else {
                    dir.join(target)
                };
            }
            _ => {}
        }
        if !dir.pop() {
            return None;
        }
    };
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(name) = head.strip_prefix("ref: ") else {
        return is_object_id(head).then(|| head.to_string());
    };
    // Branch refs live in the common directory of a linked worktree.
    let common = match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(c) => {
            let c = PathBuf::from(c.trim());
            if c.is_absolute() {
                c
            } else {
                git_dir.join(c)
            }
        }
        Err(_) => git_dir.clone(),
    };
    if let Ok(id) = std::fs::read_to_string(common.join(name)) {
        let id = id.trim();
        return is_object_id(id).then(|| id.to_string());
    }
    let packed = std::fs::read_to_string(common.join("packed-refs")).ok()?;
    packed.lines().find_map(|l| {
        let (id, r) = l.split_once(' ')?;
        (r == name && is_object_id(id)).then(|| id.to_string())
    })
}

fn is_object_id(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A work tree that answered at start.
struct Repo {
    root: PathBuf,
    /// `git status` ran out of time at start: it would at the end too.
    status_slow: bool,
}

/// What went wrong running one git command.
#[derive(Debug)]
enum GitError {
    TimedOut,
    Failed(String),
    Spawn(io::Error),
}

impl GitError {
    fn describe(&self, what: &str, limit: Duration) -> String {
        match self {
            GitError::TimedOut => format!("{what} took longer than {}", fmt_limit(limit)),
            GitError::Failed(msg) => format!("{what}: {msg}"),
            GitError::Spawn(e) => format!("{what}: cannot run git: {e}"),
        }
    }
}

fn fmt_limit(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Runs `git -C dir args…` and returns its stdout, or why not, by `deadline`.
fn git(dir: &Path, args: &[&str], deadline: Instant) -> Result<Vec<u8>, GitError> {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args([
            "--no-pager",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.quotePath=false",
            "-c",
            "color.ui=false",
        ])
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C");
    run_limited(cmd, deadline)
}

/// Runs `cmd` in a process group of its own and returns its stdout, or why not, by
/// `deadline`; past it the whole group is killed.
fn run_limited(mut cmd: Command, deadline: Instant) -> Result<Vec<u8>, GitError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: killed with any helper it starts, and never the terminal's
        // foreground, so Ctrl-C meant for the agent does not reach it.
        .process_group(0);
    let mut child = cmd.spawn().map_err(GitError::Spawn)?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let complete = match (child.stdout.take(), child.stderr.take()) {
        (Some(o), Some(e)) => read_both(o, e, &mut out, &mut err, deadline),
        _ => false,
    };
    if !complete {
        // The group git leads, with any helper it started; "already gone" is fine.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
        return Err(GitError::TimedOut);
    }
    match child.wait() {
        Ok(st) if st.success() => Ok(out),
        Ok(_) => Err(GitError::Failed(first_line(&err))),
        // Reaped by someone else (wrapper as PID 1 or --subreaper reaps every child): judge
        // by what it printed.
        Err(_) if err.is_empty() => Ok(out),
        Err(_) => Err(GitError::Failed(first_line(&err))),
    }
}

/// The first line of git's complaint, without `fatal: `.
fn first_line(err: &[u8]) -> String {
    let text = String::from_utf8_lossy(err);
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("failed");
    line.trim_start_matches("fatal: ")
        .trim_start_matches("error: ")
        .trim()
        .to_string()
}

/// Reads both pipes to EOF (keeping at most [`MAX_OUTPUT`] of stdout). False if the deadline
/// passed first.
fn read_both(
    mut o: std::process::ChildStdout,
    mut e: std::process::ChildStderr,
    out: &mut Vec<u8>,
    err: &mut Vec<u8>,
    deadline: Instant,
) -> bool {
    let (mut o_open, mut e_open) = (true, true);
    let mut buf = [0u8; 16 * 1024];
    while o_open || e_open {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let (o_ready, e_ready) = {
            let mut fds = Vec::with_capacity(2);
            if o_open {
                fds.push(PollFd::new(o.as_fd(), PollFlags::POLLIN));
            }
            if e_open {
                fds.push(PollFd::new(e.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return false,
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            let mut it = fds.iter();
            let o_ready = o_open && it.next().is_some_and(ready);
            let e_ready = e_open && it.next().is_some_and(ready);
            (o_ready, e_ready)
        };
        if o_ready {
            match o.read(&mut buf) {
                Ok(0) | Err(_) => o_open = false,
                Ok(n) => {
                    let room = MAX_OUTPUT.saturating_sub(out.len());
                    out.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        if e_ready {
            match e.read(&mut buf) {
                Ok(0) | Err(_) => e_open = false,
                Ok(n) => {
                    if err.len() < 64 * 1024 {
                        err.extend_from_slice(&buf[..n]);
                    }
                }
            }
        }
    }
    true
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end_matches('\n')
        .to_string()
}

/// The start facts, and the work tree to read again at the end. `None` when `cwd` is not in
/// a work tree (or git is not installed): nothing is recorded then.
fn probe_start(cwd: &Path, limit: Duration) -> Option<(GitStart, Option<Repo>)> {
    let deadline = Instant::now() + limit;
    let root = match git(cwd, &["rev-parse", "--show-toplevel"], deadline) {
        Ok(out) => PathBuf::from(text(&out)),
        Err(GitError::Spawn(e)) => {
            tracing::debug!("git: cannot run git: {e}");
            return None;
        }
        Err(GitError::Failed(msg)) if msg.starts_with("not a git repository") => return None,
        Err(GitError::Failed(msg)) if msg.contains("dubious ownership") => {
            // "detected dubious ownership in repository at '/path'"
            let root = msg.split('\'').nth(1).map(str::to_string);
            let start = GitStart {
                repo_root: root,
                error: Some(
                    "repository owned by another user and not trusted by safe.directory: \
                     not read"
                        .into(),
                ),
                ..Default::default()
            };
            return Some((start, None));
        }
        Err(e) => {
            let start = GitStart {
                error: Some(e.describe("git rev-parse", limit)),
                ..Default::default()
            };
            return Some((start, None));
        }
    };
    let mut start = GitStart {
        repo_root: Some(root.to_string_lossy().into_owned()),
        ..Default::default()
    };
    let mut errors = Vec::new();
    let mut repo = Repo {
        root,
        status_slow: false,
    };
    let mut upstream = None;
    match status(&repo.root, deadline) {
        Ok(st) => {
            start.branch = st.branch;
            start.head_start = st.head;
            start.dirty_start = Some(!st.entries.is_empty());
            upstream = st.upstream;
        }
        Err(e) => {
            repo.status_slow = matches!(e, GitError::TimedOut);
            errors.push(e.describe("git status", limit));
        }
    }
    match git(
        &repo.root,
        &["config", "-z", "--get-regexp", r"^remote\..*\.url$"],
        deadline,
    ) {
        Ok(out) => start.remote_url = pick_remote(&out, upstream.as_deref()),
        // Exit 1: no remote configured.
        Err(GitError::Failed(_)) => {}
        Err(e) => errors.push(e.describe("git config", limit)),
    }
    if !errors.is_empty() {
        start.error = Some(errors.join("; "));
    }
    Some((start, Some(repo)))
}

/// The end facts: HEAD, dirtiness, and what changed since the start.
fn probe_end(repo: &Repo, start: &GitStart, deadline: Instant, limit: Duration) -> GitEnd {
    let mut end = GitEnd::default();
    let mut errors = Vec::new();
    let mut dirty_entries = Vec::new();
    if repo.status_slow {
        errors.push("git status skipped at the end: it ran out of time at the start".into());
        // HEAD alone is cheap.
        if let Ok(out) = git(
            &repo.root,
            &["rev-parse", "-q", "--verify", "HEAD"],
            deadline,
        ) {
            end.head_end = Some(text(&out));
        }
        end.branch_end = start.branch.clone();
    } else {
        match status(&repo.root, deadline) {
            Ok(st) => {
                end.branch_end = st.branch;
                end.head_end = st.head;
                end.dirty_end = Some(!st.entries.is_empty());
                dirty_entries = st.entries;
            }
            Err(e) => errors.push(e.describe("git status", limit)),
        }
    }
    if let Some(head_end) = end.head_end.clone() {
        if start.head_start.as_deref() != Some(head_end.as_str()) {
            let range = match &start.head_start {
                Some(s) => format!("{s}..{head_end}"),
                None => head_end.clone(),
            };
            match commits(&repo.root, &range, deadline) {
                Ok((list, count)) => {
                    end.commits = list;
                    end.commit_count = count;
                }
                Err(e) => errors.push(e.describe("git log", limit)),
            }
            match committed_files(&repo.root, start.head_start.as_deref(), &head_end, deadline) {
                Ok(files) => end.files = files,
                Err(e) => errors.push(e.describe("git diff", limit)),
            }
        }
    }
    end.files.extend(dirty_entries);
    end.file_count = end.files.len() as u64;
    end.files.truncate(MAX_FILES);
    if !errors.is_empty() {
        end.error = Some(errors.join("; "));
    }
    end
}

/// What `git status --porcelain=v2 --branch` says.
#[derive(Debug, Default, PartialEq)]
struct Status {
    branch: Option<String>,
    head: Option<String>,
    upstream: Option<String>,
    entries: Vec<GitFile>,
}

fn status(root: &Path, deadline: Instant) -> Result<Status, GitError> {
    let out = git(
        root,
        &[
            "status",
            "--porcelain=v2",
            "--branch",
            "-z",
            "--untracked-files=normal",
            "--ignore-submodules=dirty",
        ],
        deadline,
    )?;
    Ok(parse_status(&out))
}

fn parse_status(out: &[u8]) -> Status {
    let mut st = Status::default();
    let mut fields = out.split(|&b| b == 0).map(|f| String::from_utf8_lossy(f));
    while let Some(f) = fields.next() {
        if let Some(h) = f.strip_prefix("# ") {
            match h.split_once(' ') {
                Some(("branch.oid", v)) if v != "(initial)" => st.head = Some(v.to_string()),
                Some(("branch.head", v)) if v != "(detached)" => st.branch = Some(v.to_string()),
                Some(("branch.upstream", v)) => st.upstream = Some(v.to_string()),
                _ => {}
            }
            continue;
        }
        let entry = match f.as_bytes().first() {
            Some(b'1') => f.splitn(9, ' ').collect::<Vec<_>>(),
            Some(b'2') => {
                // A rename: the original path follows in the next field.
                fields.next();
                f.splitn(10, ' ').collect::<Vec<_>>()
            }
            Some(b'u') => f.splitn(11, ' ').collect::<Vec<_>>(),
            Some(b'?') => {
                st.entries.push(GitFile {
                    path: f[2..].to_string(),
                    change: "untracked".into(),
                    committed: false,
                });
                continue;
            }
            _ => continue,
        };
        let (Some(xy), Some(path)) = (entry.get(1), entry.last()) else {
            continue;
        };
        let change = if f.starts_with('u') {
            "unmerged"
        } else {
            let xy = xy.as_bytes();
            let c = if xy.get(1).is_some_and(|&c| c != b'.') {
                xy[1]
            } else {
                xy.first().copied().unwrap_or(b'M')
            };
            change_name(c)
        };
        st.entries.push(GitFile {
            path: path.to_string(),
            change: change.into(),
            committed: false,
        });
    }
    st
}

fn change_name(c: u8) -> &'static str {
    match c {
        b'A' => "added",
        b'D' => "deleted",
        b'R' => "renamed",
        b'C' => "copied",
        b'T' => "type_changed",
        b'U' => "unmerged",
        _ => "modified",
    }
}

/// The remote whose URL is recorded: the upstream branch's remote, else `origin`, else the
/// first; its URL without credentials.
fn pick_remote(config: &[u8], upstream: Option<&str>) -> Option<String> {
    // -z: "remote.<name>.url\n<url>\0" per entry.
    let remotes: Vec<(String, String)> = config
        .split(|&b| b == 0)
        .filter_map(|e| {
            let e = String::from_utf8_lossy(e);
            let (key, url) = e.split_once('\n')?;
            let name = key.strip_prefix("remote.")?.strip_suffix(".url")?;
            Some((name.to_string(), url.to_string()))
        })
        .collect();
    let by_upstream = upstream.and_then(|up| {
        remotes
            .iter()
            .filter(|(name, _)| up.starts_with(&format!("{name}/")))
            .max_by_key(|(name, _)| name.len())
    });
    by_upstream
        .or_else(|| remotes.iter().find(|(n, _)| n == "origin"))
        .or_else(|| remotes.first())
        .map(|(_, url)| strip_credentials(url))
}

/// `https://user:token@host/path?x#y` → `https://host/path`. Credentials live in the
/// authority of a URL; an scp-like `user@host:path` holds a login name, never a password, and
/// is kept as it is (so is a local path).
pub fn strip_credentials(url: &str) -> String {
    let Some(i) = url.find("://") else {
        return url.to_string();
    };
    let (scheme, rest) = (&url[..i], &url[i + 3..]);
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    let host = authority
        .rfind('@')
        .map_or(authority, |at| &authority[at + 1..]);
    let path = &rest[auth_end..];
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    format!("{scheme}://{host}{path}")
}

/// Commits in `range`, newest first, at most [`MAX_COMMITS`]; and how many there are.
fn commits(root: &Path, range: &str, deadline: Instant) -> Result<(Vec<GitCommit>, u64), GitError> {
    let max = format!("--max-count={}", MAX_COMMITS + 1);
    let out = git(
        root,
        &["log", "-z", "--format=%H%x1f%cI%x1f%s", &max, range, "--"],
        deadline,
    )?;
    let mut list: Vec<GitCommit> = out
        .split(|&b| b == 0)
        .filter(|r| !r.is_empty())
        .filter_map(|r| {
            let r = String::from_utf8_lossy(r);
            let mut f = r.trim_start_matches('\n').splitn(3, '\x1f');
            Some(GitCommit {
                sha: f.next()?.to_string(),
                committed_at: f.next()?.to_string(),
                subject: f.next().unwrap_or("").to_string(),
            })
        })
        .collect();
    let mut count = list.len() as u64;
    if list.len() > MAX_COMMITS {
        list.truncate(MAX_COMMITS);
        if let Ok(out) = git(root, &["rev-list", "--count", range, "--"], deadline) {
            count = text(&out).parse().unwrap_or(count);
        }
    }
    Ok((list, count))
}

/// Files changed between the start's and the end's HEAD (from the empty tree for a
/// repository that had no commit at the start).
fn committed_files(
    root: &Path,
    from: Option<&str>,
    to: &str,
    deadline: Instant,
) -> Result<Vec<GitFile>, GitError> {
    let from = match from {
        Some(f) => f.to_string(),
        None => text(&git(
            root,
            &["hash-object", "-t", "tree", "/dev/null"],
            deadline,
        )?),
    };
    let out = git(
        root,
        &[
            "diff",
            "--name-status",
            "-z",
            "-M",
            "--no-ext-diff",
            &from,
            to,
            "--",
        ],
        deadline,
    )?;
    Ok(parse_name_status(&out))
}

fn parse_name_status(out: &[u8]) -> Vec<GitFile> {
    let mut files = Vec::new();
    let mut fields = out
        .split(|&b| b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned());
    while let Some(code) = fields.next() {
        let Some(c) = code.bytes().next() else {
            continue;
        };
        if matches!(c, b'R' | b'C') {
            fields.next(); // the old path
        }
        let Some(path) = fields.next() else {
            break;
        };
        files.push(GitFile {
            path,
            change: change_name(c).into(),
            committed: true,
        });
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_past_its_deadline_is_killed_with_its_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pids = dir.path().join("pids");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("sleep 60 & echo $! > {}; wait", pids.display()));
        let r = run_limited(cmd, Instant::now() + Duration::from_millis(300));
        assert!(matches!(r, Err(GitError::TimedOut)), "{r:?}");
        let pid: i32 = std::fs::read_to_string(&pids)
            .expect("the shell wrote its child's pid")
            .trim()
            .parse()
            .expect("a pid");
        // The grandchild got SIGKILL with the group; it is a zombie or gone soon after.
        let gone = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |st| {
                st.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
        };
        let until = Instant::now() + Duration::from_secs(30);
        while !gone() {
            assert!(Instant::now() < until, "sleep {pid} survived");
            std::thread::sleep(Duration::from_millis(10));
        }
        let ok = run_limited(
            {
                let mut c = Command::new("sh");
                c.args(["-c", "echo out; echo err >&2"]);
                c
            },
            Instant::now() + Duration::from_secs(30),
        );
        assert_eq!(ok.expect("ran"), b"out\n");
        let failed = run_limited(
            {
                let mut c = Command::new("sh");
                c.args(["-c", "echo 'fatal: not a git repository' >&2; exit 128"]);
                c
            },
            Instant::now() + Duration::from_secs(30),
        );
        assert!(matches!(failed, Err(GitError::Failed(m)) if m == "not a git repository"));
    }

    #[test]
    fn credentials_leave_urls() {
        assert_eq!(
            strip_credentials("https://user:ghp_secret@github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(
            strip_credentials("https://oauth2:tok@gitlab.com:8443/g/r?private_token=x#f"),
            "https://gitlab.com:8443/g/r"
        );
        assert_eq!(strip_credentials("ssh://git@host/o/r"), "ssh://host/o/r");
        assert_eq!(
            strip_credentials("git@github.com:o/r.git"),
            "git@github.com:o/r.git"
        );
        assert_eq!(strip_credentials("/srv/git/r.git"), "/srv/git/r.git");
    }

    #[test]
    fn status_v2_is_parsed() {
        let out = b"# branch.oid 1111111111111111111111111111111111111111\0# branch.head main\0\
# branch.upstream up/stream/main\0\
1 .M N... 100644 100644 100644 aaaa bbbb src/a b.rs\0\
2 R. N... 100644 100644 100644 aaaa bbbb R100 new.rs\0old.rs\0\
u UU N... 100644 100644 100644 100644 a b c conflict.rs\0\
? new file.txt\0";
        let st = parse_status(out);
        assert_eq!(st.branch.as_deref(), Some("main"));
        assert_eq!(
            st.head.as_deref(),
            Some("1111111111111111111111111111111111111111")
        );
        assert_eq!(st.upstream.as_deref(), Some("up/stream/main"));
        let got: Vec<(&str, &str)> = st
            .entries
            .iter()
            .map(|f| (f.path.as_str(), f.change.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("src/a b.rs", "modified"),
                ("new.rs", "renamed"),
                ("conflict.rs", "unmerged"),
                ("new file.txt", "untracked")
            ]
        );
        let fresh = parse_status(b"# branch.oid (initial)\0# branch.head (detached)\0");
        assert_eq!((fresh.head, fresh.branch), (None, None));
        assert!(fresh.entries.is_empty());
    }

    #[test]
    fn the_upstreams_remote_wins() {
        let cfg = b"remote.fork.url\nhttps://a:b@example.com/fork\0remote.origin.url\nhttps://example.com/o\0\
remote.up/stream.url\nhttps://example.com/up\0";
        assert_eq!(
            pick_remote(cfg, Some("up/stream/main")).as_deref(),
            Some("https://example.com/up")
        );
        assert_eq!(
            pick_remote(cfg, None).as_deref(),
            Some("https://example.com/o")
        );
        assert_eq!(
            pick_remote(b"remote.fork.url\nhttps://a:b@example.com/fork\0", None).as_deref(),
            Some("https://example.com/fork")
        );
        assert_eq!(pick_remote(b"", None), None);
    }

    #[test]
    fn name_status_with_renames() {
        let out = b"M\0src/lib.rs\0R087\0old.rs\0new.rs\0A\0added.txt\0D\0gone.txt\0";
        let got: Vec<(String, String)> = parse_name_status(out)
            .into_iter()
            .map(|f| (f.path, f.change))
            .collect();
        assert_eq!(
            got,
            [
                ("src/lib.rs".into(), "modified".into()),
                ("new.rs".into(), "renamed".into()),
                ("added.txt".into(), "added".into()),
                ("gone.txt".into(), "deleted".into())
            ]
        );
    }
}
