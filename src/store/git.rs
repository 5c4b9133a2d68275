//! The session's repository facts in the database (SPEC §10 "Git linkage"): written by the
//! writer when `crate::git` reports them, read by `wrapper show`, `sessions` and `--json`.
//!
//! Three tables, each keyed by the session and deleted with it (`ON DELETE CASCADE`, so
//! `wrapper prune` needs to know nothing about them): `session_git` (one row: where, which
//! branch, HEAD and dirtiness at start and end), `session_commits` (the commits in HEAD's
//! range, with subjects) and `session_files` (the files those commits changed, and those
//! left changed in the work tree at the end). The facts are plain values with serde, so the
//! same types are the writer's message, the rows and the JSON.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

/// Facts about the repository when the session started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitStart {
    /// The work tree's top directory (`git rev-parse --show-toplevel`).
    pub repo_root: Option<String>,
    /// The URL of the branch's remote (else `origin`, else the first), credentials removed.
    pub remote_url: Option<String>,
    /// The checked-out branch; `None` on a detached HEAD.
    pub branch: Option<String>,
    /// The commit HEAD named; `None` in a repository with no commit yet.
    pub head_start: Option<String>,
    /// Changes to tracked files or untracked files; `None` when `git status` did not answer.
    pub dirty_start: Option<bool>,
    /// Why some facts are missing (a time limit, an untrusted owner, a broken repository).
    pub error: Option<String>,
}

/// One commit made during the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitCommit {
    pub sha: String,
    /// Committer date, RFC 3339 as git prints it.
    pub committed_at: String,
    pub subject: String,
}

/// One file changed during the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitFile {
    pub path: String,
    /// added, modified, deleted, renamed, copied, type_changed, unmerged or untracked.
    pub change: String,
    /// Changed by the session's commits (`true`) or left changed in the work tree (`false`).
    pub committed: bool,
}

/// Facts about the repository when the session ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitEnd {
    pub branch_end: Option<String>,
    pub head_end: Option<String>,
    pub dirty_end: Option<bool>,
    /// Commits in `head_start..head_end`, newest first (at most [`MAX_COMMITS`]).
    pub commits: Vec<GitCommit>,
    /// All commits in the range, also those beyond the stored ones.
    pub commit_count: u64,
    /// At most [`MAX_FILES`] of them.
    pub files: Vec<GitFile>,
    pub file_count: u64,
    pub error: Option<String>,
}

/// Commits stored per session at most.
pub const MAX_COMMITS: usize = 1000;
/// Files stored per session at most.
pub const MAX_FILES: usize = 2000;

/// What the git probe reports to the writer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GitUpdate {
    Start(GitStart),
    End(GitEnd),
    /// The agent's directory is in no work tree: nothing is recorded.
    NotARepository,
}

/// The `session_git` row with its commits and files: what `show` and `--json` print.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SessionGit {
    pub repo_root: Option<String>,
    pub remote_url: Option<String>,
    pub branch: Option<String>,
    pub head_start: Option<String>,
    pub dirty_start: Option<bool>,
    pub branch_end: Option<String>,
    pub head_end: Option<String>,
    pub dirty_end: Option<bool>,
    pub commit_count: Option<i64>,
    pub file_count: Option<i64>,
    pub error: Option<String>,
    pub commits: Vec<GitCommit>,
    pub files: Vec<GitFile>,
}

/// Writes one update in its own transaction.
pub fn write(conn: &Connection, session_id: &str, u: &GitUpdate) -> rusqlite::Result<()> {
    if matches!(u, GitUpdate::NotARepository) {
        return Ok(());
    }
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    match u {
        GitUpdate::NotARepository => {}
        GitUpdate::Start(s) => {
            tx.execute(
                "INSERT INTO session_git (session_id, repo_root, remote_url, branch, head_start, \
                 dirty_start, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (session_id) DO UPDATE SET repo_root = excluded.repo_root, \
                 remote_url = excluded.remote_url, branch = excluded.branch, \
                 head_start = excluded.head_start, dirty_start = excluded.dirty_start, \
                 error = excluded.error",
                params![
                    session_id,
                    s.repo_root,
                    s.remote_url,
                    s.branch,
                    s.head_start,
                    s.dirty_start,
                    s.error
                ],
            )?;
        }
        GitUpdate::End(e) => {
            tx.execute(
                "INSERT INTO session_git (session_id, branch_end, head_end, dirty_end, \
                 commit_count, file_count, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (session_id) DO UPDATE SET branch_end = excluded.branch_end, \
                 head_end = excluded.head_end, dirty_end = excluded.dirty_end, \
                 commit_count = excluded.commit_count, file_count = excluded.file_count, \
                 error = coalesce(error || '; ' || excluded.error, error, excluded.error)",
                params![
                    session_id,
                    e.branch_end,
                    e.head_end,
                    e.dirty_end,
                    e.commit_count as i64,
                    e.file_count as i64,
                    e.error
                ],
            )?;
            tx.execute(
                "DELETE FROM session_commits WHERE session_id = ?1",
                [session_id],
            )?;
            tx.execute(
                "DELETE FROM session_files WHERE session_id = ?1",
                [session_id],
            )?;
            {
                let mut ins = tx.prepare_cached(
                    "INSERT INTO session_commits (session_id, seq, sha, committed_at, subject) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for (i, c) in e.commits.iter().take(MAX_COMMITS).enumerate() {
                    ins.execute(params![
                        session_id,
                        i as i64,
                        c.sha,
                        c.committed_at,
                        c.subject
                    ])?;
                }
            }
            let mut ins = tx.prepare_cached(
                "INSERT OR IGNORE INTO session_files (session_id, committed, path, change) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for f in e.files.iter().take(MAX_FILES) {
                ins.execute(params![session_id, f.committed, f.path, f.change])?;
            }
        }
    }
    tx.commit()
}

/// A session's repository facts, if any were recorded.
pub fn session_git(conn: &Connection, session_id: &str) -> rusqlite::Result<Option<SessionGit>> {
    let row = conn
        .query_row(
            "SELECT repo_root, remote_url, branch, head_start, dirty_start, branch_end, head_end, \
             dirty_end, commit_count, file_count, error FROM session_git WHERE session_id = ?1",
            [session_id],
            |r| {
                Ok(SessionGit {
                    repo_root: r.get("repo_root")?,
                    remote_url: r.get("remote_url")?,
                    branch: r.get("branch")?,
                    head_start: r.get("head_start")?,
                    dirty_start: r.get("dirty_start")?,
                    branch_end: r.get("branch_end")?,
                    head_end: r.get("head_end")?,
                    dirty_end: r.get("dirty_end")?,
                    commit_count: r.get("commit_count")?,
                    file_count: r.get("file_count")?,
                    error: r.get("error")?,
                    commits: Vec::new(),
                    files: Vec::new(),
                })
            },
        )
        .optional()?;
    let Some(mut g) = row else {
        return Ok(None);
    };
    let mut stmt = conn.prepare(
        "SELECT sha, committed_at, subject FROM session_commits WHERE session_id = ?1 ORDER BY seq",
    )?;
    g.commits = stmt
        .query_map([session_id], |r| {
            Ok(GitCommit {
                sha: r.get("sha")?,
                committed_at: r.get("committed_at")?,
                subject: r.get("subject")?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare(
        "SELECT path, change, committed FROM session_files WHERE session_id = ?1 \
         ORDER BY committed DESC, path",
    )?;
    g.files = stmt
        .query_map([session_id], |r| {
            Ok(GitFile {
                path: r.get("path")?,
                change: r.get("change")?,
                committed: r.get("committed")?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(g))
}

/// The one-row summary `wrapper sessions --json` adds to each session.
#[derive(Debug, Clone, Serialize)]
pub struct GitSummary {
    pub repo_root: Option<String>,
    pub remote_url: Option<String>,
    pub branch: Option<String>,
    pub head_start: Option<String>,
    pub head_end: Option<String>,
    pub dirty_start: Option<bool>,
    pub dirty_end: Option<bool>,
    pub commit_count: Option<i64>,
    pub file_count: Option<i64>,
}

/// The summaries of the given sessions (those without facts are absent).
pub fn summaries(
    conn: &Connection,
    session_ids: &[&str],
) -> rusqlite::Result<std::collections::HashMap<String, GitSummary>> {
    let mut out = std::collections::HashMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT repo_root, remote_url, branch, head_start, head_end, dirty_start, dirty_end, \
         commit_count, file_count FROM session_git WHERE session_id = ?1",
    )?;
    for id in session_ids {
        let row = stmt
            .query_row([id], |r| {
                Ok(GitSummary {
                    repo_root: r.get("repo_root")?,
                    remote_url: r.get("remote_url")?,
                    branch: r.get("branch")?,
                    head_start: r.get("head_start")?,
                    head_end: r.get("head_end")?,
                    dirty_start: r.get("dirty_start")?,
                    dirty_end: r.get("dirty_end")?,
                    commit_count: r.get("commit_count")?,
                    file_count: r.get("file_count")?,
                })
            })
            .optional()?;
        if let Some(s) = row {
            out.insert(id.to_string(), s);
        }
    }
    Ok(out)
}

/// `wrapper sessions --repo PATH`: the value to compare with `repo_root`. An existing path
/// stands for the work tree that holds it: the nearest directory at or above it with a
/// `.git`, found without running git. Anything else (a remote URL, a path of another
/// machine) is compared as given, with `repo_root` and with `remote_url`.
pub fn repo_filter_value(given: &str) -> String {
    let Ok(canon) = std::fs::canonicalize(given) else {
        return given.to_string();
    };
    let mut dir = canon.as_path();
    loop {
        if dir.join(".git").exists() {
            return dir.to_string_lossy().into_owned();
        }
        match dir.parent() {
            Some(p) => dir = p,
            None => return canon.to_string_lossy().into_owned(),
        }
    }
}

/// The `WHERE` clauses (with their values) for the git filters of `wrapper sessions`.
pub fn filter_clauses(
    repo: Option<&str>,
    branch: Option<&str>,
) -> Vec<(&'static str, Vec<rusqlite::types::Value>)> {
    use rusqlite::types::Value;
    let mut out = Vec::new();
    if let Some(r) = repo {
        out.push((
            "session_id IN (SELECT session_id FROM session_git WHERE repo_root = ? OR remote_url = ?)",
            vec![Value::Text(repo_filter_value(r)), Value::Text(r.to_string())],
        ));
    }
    if let Some(b) = branch {
        out.push((
            "session_id IN (SELECT session_id FROM session_git WHERE branch = ? OR branch_end = ?)",
            vec![Value::Text(b.to_string()), Value::Text(b.to_string())],
        ));
    }
    out
}
