//! The one writer (SPEC §5.2): a dedicated thread that owns the write connection and commits
//! events, code blocks, session totals and state changes in batched transactions.
//!
//! A transaction is committed when `batch_size` rows are pending or the oldest pending row has
//! waited `flush_interval`, whichever comes first. State changes are committed at once,
//! together with whatever is pending, so a live query always sees a consistent session.
//! The channel into this thread is bounded: when the database is slower than the child, the
//! extraction thread waits here, never the passthrough.
//!
//! If the database fails mid-run (disk full, I/O error, file removed), the writer prints one
//! warning and from then on appends everything to a JSON Lines spool (SPEC §6.5), so nothing
//! is lost and the agent is not disturbed.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, ErrorCode, TransactionBehavior};
use serde::Serialize;

use super::fts;
pub use super::inplace::WriteConn;
use super::inplace::{KeptRef, Param};
use super::spool::Spool;
use crate::event::{CodeBlock, Event, Record};

/// Rows per multi-row `INSERT` statement: large enough to amortise statement overhead,
/// small enough to stay far below SQLite's parameter limit (2 + 12 × 64 = 770 parameters).
const ROWS_PER_STATEMENT: usize = 64;
/// How long the writer must have received nothing before it indexes rows for search: a flood
/// never pauses this long, an interactive agent nearly always does.
const SEARCH_IDLE: Duration = Duration::from_secs(1);
/// Pause between indexing steps while idle, so catching up on a large backlog leaves the
/// CPU mostly to the agent and new events are taken within milliseconds.
const SEARCH_STEP_PAUSE: Duration = Duration::from_millis(20);
/// Messages that may wait in the channel; each holds at most [`MAX_MESSAGE_BYTES`] of records
/// (see [`send_records`]).
const CHANNEL_DEPTH: usize = 4;
/// Bytes of records per message into the writer. With [`CHANNEL_DEPTH`] messages waiting and
/// [`MAX_PENDING_BYTES`] in the writer's batch, the bytes in flight between extraction and
/// SQLite stay a few MiB whatever the child prints: counting messages or rows alone let
/// 60 KiB event lines (two copies per event: the line and its value) pile up to 89 MiB.
pub const MAX_MESSAGE_BYTES: usize = 256 << 10;
/// Bytes of records the writer's pending batch may hold before it commits, whatever
/// `batch_size` says.
const MAX_PENDING_BYTES: usize = 2 << 20;

/// About how many bytes of memory a record holds.
pub fn record_bytes(r: &Record) -> usize {
    const FIXED: usize = 160;
    match r {
        Record::Event(e) => {
            FIXED
                + e.original_line.as_deref().map_or(0, str::len)
                + e.matched_value.as_deref().map_or(0, str::len)
                + e.metadata_json.as_deref().map_or(0, str::len)
        }
        Record::CodeBlock(b) => FIXED + b.content.len() + b.context_json.len() + b.digest.len(),
        Record::Facts(_) => FIXED,
        Record::Merge(m) => FIXED + m.metadata_json.len(),
    }
}

/// Sends `records` to the writer in messages of at most [`MAX_MESSAGE_BYTES`] (a single record
/// larger than that goes alone). Every message but the last carries `lines_before`, so a
/// commit between them never counts lines whose events are still to come. Blocks while the
/// channel is full; `Err` when the writer is gone.
pub fn send_records(
    tx: &SyncSender<Msg>,
    records: Vec<Record>,
    lines_before: u64,
    lines: u64,
) -> Result<(), WriterGone> {
    let total: usize = records.iter().map(record_bytes).sum();
    if total <= MAX_MESSAGE_BYTES {
        return tx
            .send(Msg::Records { records, lines })
            .map_err(|_| WriterGone);
    }
    let mut part = Vec::new();
    let mut bytes = 0;
    for r in records {
        let n = record_bytes(&r);
        if !part.is_empty() && bytes + n > MAX_MESSAGE_BYTES {
            let records = std::mem::take(&mut part);
            tx.send(Msg::Records {
                records,
                lines: lines_before,
            })
            .map_err(|_| WriterGone)?;
            bytes = 0;
        }
        bytes += n;
        part.push(r);
    }
    tx.send(Msg::Records {
        records: part,
        lines,
    })
    .map_err(|_| WriterGone)
}

/// The writer thread has ended (it stops taking records only when it is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterGone;

/// A session's lifecycle state (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Started,
    Running,
    Signaled,
    Completed,
    Failed,
    Killed,
    Interrupted,
    SpawnFailed,
    Abandoned,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Started => "started",
            State::Running => "running",
            State::Signaled => "signaled",
            State::Completed => "completed",
            State::Failed => "failed",
            State::Killed => "killed",
            State::Interrupted => "interrupted",
            State::SpawnFailed => "spawn_failed",
            State::Abandoned => "abandoned",
        }
    }

    /// A state that ends the session.
    pub fn is_final(self) -> bool {
        !matches!(self, State::Started | State::Running | State::Signaled)
    }
}

/// The constant facts of a session, written once when it starts.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SessionRow {
    pub session_id: String,
    pub agent_name: String,
    pub environment: Option<String>,
    pub started_at: String,
    pub hostname: String,
    pub cwd: Option<String>,
    pub command_json: String,
    pub extraction_config_version: String,
    pub environment_config_version: Option<String>,
    pub wrapper_version: String,
    pub wrapper_pid: u32,
}

/// One state transition.
#[derive(Debug, Clone, Serialize)]
pub struct StateChange {
    pub state: State,
    pub timestamp: String,
    pub exit_code: Option<i32>,
    /// Signal name for `killed`/`interrupted`/`signaled` (e.g. `SIGTERM`).
    pub signal: Option<String>,
    /// The child's pid, known from `running` on.
    pub pid: Option<u32>,
    pub metadata: Option<serde_json::Value>,
}

/// What the run path sends to the writer.
#[derive(Debug)]
pub enum Msg {
    /// Records in read order, and the session's line count after them.
    Records {
        records: Vec<Record>,
        lines: u64,
    },
    State(StateChange),
    /// Captured output (`store::capture`), stored at once in its own transaction.
    Capture(super::capture::Write),
    /// Repository facts (`crate::git`), stored in `session_git` (`store::git`).
    Git(super::git::GitUpdate),
    /// Where the records go once stored, to be freed by the thread that made them
    /// ([`Writer::give_back`]).
    GiveBack(SyncSender<Vec<Record>>),
}

/// Where `--events-out` goes.
#[derive(Debug, Clone)]
pub enum EventsOut {
    Stderr,
    File(PathBuf),
}

/// An opened `--events-out` destination.
pub type EventsWriter = Box<dyn Write + Send>;

impl EventsOut {
    /// Opens (creates or truncates) the destination. Done before the agent is spawned, so a
    /// path that cannot be written is a configuration error (exit 2), not a warning later.
    pub fn open(&self) -> Result<EventsWriter, String> {
        match self {
            EventsOut::Stderr => Ok(Box::new(io::stderr())),
            EventsOut::File(p) => open_events_file(p)
                .map(|f| Box::new(BufWriter::with_capacity(64 * 1024, f)) as EventsWriter)
                .map_err(|e| format!("--events-out {}: cannot create it: {e}", p.display())),
        }
    }
}

/// Creates or truncates an `--events-out` file with mode 0600: it holds the agent's output, like
/// the database. A regular file that was there with a wider mode is narrowed to 0600; a FIFO or
/// a device (`/dev/stdout`) is written as it is.
fn open_events_file(p: &Path) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(p)?;
    let meta = f.metadata()?;
    if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}

/// Everything the writer thread needs.
pub struct SinkConfig {
    pub db: Option<(Connection, PathBuf)>,
    pub events_out: Option<EventsWriter>,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub session: SessionRow,
    /// Outputs beside the database (OTLP), fed every message.
    pub outputs: crate::sink::Outputs,
}

/// What the writer did, reported when it finishes.
#[derive(Debug, Default, Clone)]
pub struct SinkReport {
    pub events_committed: u64,
    pub events_spooled: u64,
    /// Events that could be written neither to the database nor to a spool.
    pub events_lost: u64,
    pub spool: Option<PathBuf>,
}

/// Handle to the running writer thread.
pub struct Sink {
    tx: SyncSender<Msg>,
    handle: JoinHandle<SinkReport>,
}

impl Sink {
    pub fn start(mut cfg: SinkConfig) -> io::Result<Sink> {
        let (tx, rx) = sync_channel(CHANNEL_DEPTH);
        if let Some((conn, _)) = &cfg.db {
            // Appends touch the right edge of each B-tree and a few index leaves: 1 MiB of
            // page cache holds them (SQLite's default is 2 MiB; peak RSS, docs/PERFORMANCE.md).
            let _ = conn.execute_batch(&format!("PRAGMA cache_size = -{WRITER_CACHE_KIB}"));
        }
        let checkpointer = match &mut cfg.db {
            Some((conn, path)) => Checkpointer::start(conn, path),
            None => None,
        };
        let ticks = checkpointer
            .as_ref()
            .map(|c| (c.tick.clone(), Arc::clone(&c.wal_pages)));
        let handle = thread::Builder::new()
            .name("wrapper-writer".into())
            .spawn(move || {
                crate::run::nice::background(crate::run::nice::Recorder::Writer);
                let mut w = Writer::new(cfg.events_out.take(), cfg);
                w.checkpoint_ticks = ticks;
                let report = w.run(rx);
                // The checkpointer's last pass runs after the last commit.
                if let Some(c) = checkpointer {
                    c.finish();
                }
                report
            })?;
        Ok(Sink { tx, handle })
    }

    pub fn sender(&self) -> SyncSender<Msg> {
        self.tx.clone()
    }

    /// Waits until everything sent has been committed (or spooled), then stops the thread.
    pub fn finish(self) -> SinkReport {
        drop(self.tx);
        self.handle.join().unwrap_or_default()
    }
}

/// Copies committed pages from the WAL into the database file on a second connection and
/// thread, so the writer's commits do not also pay for checkpoints (about a sixth of its time
/// when done inline). PASSIVE checkpoints never block the writer or readers.
///
/// With a checkpointer, the writer's own connection runs `synchronous = OFF`: in WAL mode at
/// NORMAL it would fsync the WAL each time it starts reusing the file after a complete
/// checkpoint, which on the standard input was ~45 fsyncs of 25-30 ms each, a quarter of the
/// writer's wall time spent waiting. Durability is unchanged: at NORMAL a commit is durable
/// only after the next checkpoint's sync anyway, and every checkpoint (this thread's, the
/// writer's backstop below, and the one on closing) runs at NORMAL, syncing the WAL before it
/// copies pages into the database file, so a crash or power loss can lose the last commits,
/// as before, but never corrupt the file. The writer's backstop replaces SQLite's
/// auto-checkpoint (which would run at the writer's OFF): when the WAL has grown past
/// [`WRITER_AUTOCHECKPOINT`] pages because this thread fell behind, the writer checkpoints at
/// NORMAL itself.
struct Checkpointer {
    tick: SyncSender<()>,
    handle: JoinHandle<()>,
    /// Pages in the WAL after the writer's last commit (SQLite's WAL hook).
    wal_pages: Arc<AtomicI32>,
}

/// The writer connection's page cache, KiB.
const WRITER_CACHE_KIB: u32 = 1024;

/// Shortest time between two background checkpoints.
///
/// Short, so that under a flood the passes follow one another (each takes 10-40 ms) and what
/// is left to copy when a pass *must* finish before the writer goes on is little: the
/// writer's backstop (the WAL can only start again from its beginning once every frame is
/// in the database file) and the last pass after the last commit, which the session's end
/// waits for. At 250 ms, four passes ran per million lines of the standard input; the two
/// backstops took 65-100 ms each and the last pass 105-120 ms, while extraction, its channel
/// to the writer full, did nothing. At 20 ms: ~30 passes, backstops 35-45 ms, last pass
/// 55-67 ms, the whole run 7% shorter (median of 6 interleaved runs, 1.145 against 1.230 s)
/// for the same CPU. Between floods nothing changes: a pass follows a commit, and an idle
/// session commits about once a second (docs/PERFORMANCE.md, thirteenth session).
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(20);

/// WAL pages after which the writer checkpoints itself anyway (SQLite's default is 1000).
const WRITER_AUTOCHECKPOINT: i32 = 32000;

/// The writer's checkpoint when the checkpointer fell behind, at NORMAL (see [`Checkpointer`]).
fn backstop_checkpoint(conn: &Connection) {
    let _ = conn.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA wal_checkpoint(PASSIVE); PRAGMA synchronous = OFF;",
    );
}

impl Checkpointer {
    fn start(writer: &mut Connection, path: &Path) -> Option<Checkpointer> {
        let wal_pages = Arc::new(AtomicI32::new(0));
        let pages = Arc::clone(&wal_pages);
        // Replaces SQLite's auto-checkpoint on this connection (see above).
        writer
            .wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, n: i32| {
                pages.store(n, Ordering::Relaxed);
                Ok(())
            }))
            .ok()?;
        writer.execute_batch("PRAGMA synchronous = OFF").ok()?;
        let (tick, rx) = sync_channel::<()>(1);
        let path = path.to_path_buf();
        let handle = thread::Builder::new()
            .name("wrapper-checkpoint".into())
            .spawn(move || {
                crate::run::nice::background(crate::run::nice::Recorder::Checkpointer);
                // Opened here, not before the spawn: the agent's start does not wait for it.
                let Ok(conn) = super::open(&path, super::OpenMode::Existing) else {
                    return;
                };
                // A checkpoint streams pages from the WAL; it needs no page cache of its own.
                let _ = conn.execute_batch("PRAGMA cache_size = -256");
                // SQLite syncs the database file only after a checkpoint that copied the
                // whole WAL, which under a flood is only the writer's backstop and the last
                // pass: those then flushed every page the earlier passes had copied (~100 MB
                // per million lines), 20-40 ms of the disk with extraction waiting behind the
                // writer. Synced after each pass here instead, they find little left. An
                // extra sync is never unsafe; if the file cannot be opened, SQLite's own
                // syncs are all there is, as before.
                let db_file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .ok();
                while rx.recv().is_ok() {
                    let _ = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)");
                    if let Some(f) = &db_file {
                        let _ = f.sync_data();
                    }
                    // At most one pass per interval: a page rewritten by many commits is then
                    // copied once, not once per commit. Ends early when the writer is done.
                    let until = Instant::now() + CHECKPOINT_INTERVAL;
                    loop {
                        let left = until.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        match rx.recv_timeout(left) {
                            Ok(()) => continue,
                            Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => return,
                        }
                    }
                }
            })
            .ok()?;
        Some(Checkpointer {
            tick,
            handle,
            wal_pages,
        })
    }

    fn finish(self) {
        drop(self.tick);
        let _ = self.handle.join();
    }
}

/// Creates the session row and its `started` state in one transaction, before anything is
/// spawned, so a clashing `--session-id` is refused before the agent runs.
pub fn insert_session(conn: &Connection, s: &SessionRow) -> rusqlite::Result<()> {
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    insert_session_row(&tx, s, "started")?;
    tx.execute(
        "INSERT INTO process_state_changes (session_id, timestamp, state) VALUES (?1, ?2, 'started')",
        params![s.session_id, s.started_at],
    )?;
    tx.commit()
}

pub(crate) fn insert_session_row(
    conn: &Connection,
    s: &SessionRow,
    state: &str,
) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT INTO process_sessions (agent_name, session_id, environment, started_at, state, \
         hostname, cwd, command_json, extraction_config_version, environment_config_version, \
         wrapper_version, wrapper_pid) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            s.agent_name,
            s.session_id,
            s.environment,
            s.started_at,
            state,
            s.hostname,
            s.cwd,
            s.command_json,
            s.extraction_config_version,
            s.environment_config_version,
            s.wrapper_version,
            s.wrapper_pid,
        ],
    )
}

struct Writer {
    db: Option<(WriteConn, PathBuf)>,
    events_out: Option<Box<dyn Write + Send>>,
    events_out_failed: bool,
    json_memo: RowMemo,
    batch_size: usize,
    flush_interval: Duration,
    session: SessionRow,
    spool: Option<Spool>,
    pending: Vec<Record>,
    /// [`record_bytes`] of `pending`.
    pending_bytes: usize,
    pending_states: Vec<StateChange>,
    lines: u64,
    lines_committed: u64,
    report: SinkReport,
    /// Wakes the checkpointer after a commit (never blocks: a pending tick is enough), and
    /// the WAL's size after the last commit.
    checkpoint_ticks: Option<(SyncSender<()>, Arc<AtomicI32>)>,
    /// Storing captured output failed once (warned); later blocks are dropped.
    capture_failed: bool,
    give_back: Option<SyncSender<Vec<Record>>>,
    outputs: crate::sink::Outputs,
}

impl Writer {
    fn new(events_out: Option<EventsWriter>, cfg: SinkConfig) -> Writer {
        Writer {
            db: cfg.db.map(|(conn, path)| (WriteConn::new(conn), path)),
            events_out,
            events_out_failed: false,
            json_memo: RowMemo::default(),
            batch_size: cfg.batch_size.max(1),
            flush_interval: cfg.flush_interval,
            session: cfg.session,
            spool: None,
            pending: Vec::new(),
            pending_bytes: 0,
            pending_states: Vec::new(),
            lines: 0,
            lines_committed: 0,
            report: SinkReport::default(),
            checkpoint_ticks: None,
            capture_failed: false,
            outputs: cfg.outputs,
            give_back: None,
        }
    }

    /// Hands records that have been stored back to the thread that made them, if it asked
    /// for them ([`Msg::GiveBack`]), else frees them here. Freed here, each of an event's
    /// strings takes the lock of the arena glibc gave the making thread, which that thread
    /// takes for every allocation; its rules' and timestamps' shared counts move between the
    /// cores with every event. Freed there, they go back to that thread's own cache.
    fn give_back(&mut self, records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        if let Some(tx) = &self.give_back {
            match tx.try_send(records) {
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => self.give_back = None,
            }
        }
    }

    fn run(mut self, rx: Receiver<Msg>) -> SinkReport {
        // Crash recovery (SPEC §6.4) happens here rather than before the spawn: it only
        // concerns other sessions, and the agent's start need not wait for it.
        if let Some((db, _)) = &self.db {
            if let Err(e) = super::recover_abandoned(db.conn()) {
                tracing::warn!("could not check for abandoned sessions: {e}");
            }
        }
        let mut oldest: Option<Instant> = None;
        // Whether rows may be missing from the search index; checked when idle.
        let mut search_behind = self.db.is_some();
        let mut idle_wait = SEARCH_IDLE;
        loop {
            let msg = match oldest {
                None if search_behind && self.db.is_some() => rx.recv_timeout(idle_wait),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(t) => rx.recv_timeout(self.flush_interval.saturating_sub(t.elapsed())),
            };
            if matches!(msg, Err(RecvTimeoutError::Timeout)) && oldest.is_none() {
                // Idle: index a few rows for `wrapper search`, then look for work again.
                search_behind = self.index_for_search();
                idle_wait = SEARCH_STEP_PAUSE;
                continue;
            }
            if let Ok(m) = &msg {
                self.outputs.send(m);
            }
            if msg.is_ok() {
                search_behind = self.db.is_some();
                idle_wait = SEARCH_IDLE;
            }
            match msg {
                Ok(Msg::Records { records, lines }) => {
                    self.write_events_out(&records);
                    self.lines = self.lines.max(lines);
                    if self.db.is_none() && self.spool.is_none() {
                        self.give_back(records);
                        continue;
                    }
                    self.pending_bytes += records.iter().map(record_bytes).sum::<usize>();
                    self.pending.extend(records);
                    oldest.get_or_insert_with(Instant::now);
                    while self.pending.len() >= self.batch_size
                        || self.pending_bytes >= MAX_PENDING_BYTES
                    {
                        let n = self.batch_size.min(self.pending.len());
                        let rest = self.pending.split_off(n);
                        let batch = std::mem::replace(&mut self.pending, rest);
                        let sent: usize = batch.iter().map(record_bytes).sum();
                        self.pending_bytes = self.pending_bytes.saturating_sub(sent);
                        self.commit(batch);
                    }
                    if self.pending.is_empty() && self.lines == self.lines_committed {
                        oldest = None;
                    }
                }
                Ok(Msg::Capture(c)) => self.write_capture(c),
                Ok(Msg::Git(g)) => self.write_git(&g),
                Ok(Msg::GiveBack(tx)) => self.give_back = Some(tx),
                Ok(Msg::State(st)) => {
                    self.pending_states.push(st);
                    self.commit_pending();
                    oldest = None;
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.commit_pending();
                    oldest = None;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.commit_pending();
                    break;
                }
            }
        }
        if let Some(out) = &mut self.events_out {
            let _ = out.flush();
        }
        if let Some((db, _)) = &self.db {
            // Whatever checkpoint closing the connection runs, it runs at NORMAL.
            let _ = db.conn().execute_batch("PRAGMA synchronous = NORMAL");
        }
        if let Some(s) = &mut self.spool {
            s.flush();
            (self.report.events_spooled, self.report.events_lost) = s.counts();
            self.report.spool = s.path().map(Path::to_path_buf);
        }
        if self.report.events_lost > 0 {
            eprintln!(
                "wrapper: warning: {} events of session {} were lost: the database failed and no spool could be written",
                self.report.events_lost, self.session.session_id
            );
        }
        self.outputs.finish();
        self.report
    }

    /// Repository facts go in at once, in their own small transaction.
    fn write_git(&mut self, g: &super::git::GitUpdate) {
        if let (Some((db, _)), None) = (&self.db, &self.spool) {
            if let Err(e) = super::git::write(db.conn(), &self.session.session_id, g) {
                tracing::warn!("could not record the repository facts: {e}");
            }
        }
    }

    /// One small step of full-text indexing (`store::fts`). Returns whether rows remain.
    /// Failures only postpone indexing: `wrapper search` catches up on whatever is missing.
    fn index_for_search(&mut self) -> bool {
        let Some(conn) = self.db.as_ref().map(|(db, _)| db.conn()) else {
            return false;
        };
        match super::check_not_moved(conn).and_then(|()| super::fts::step(conn, fts::IDLE_CHUNK)) {
            Ok((n, more)) => {
                if n > 0 {
                    self.after_commit();
                }
                more
            }
            Err(e) => {
                tracing::debug!("search indexing postponed: {e}");
                false
            }
        }
    }

    /// Wakes the checkpointer; checkpoints here if it fell far behind.
    fn after_commit(&self) {
        if let (Some((tick, pages)), Some((db, _))) = (&self.checkpoint_ticks, &self.db) {
            let _ = tick.try_send(());
            if pages.load(Ordering::Relaxed) > WRITER_AUTOCHECKPOINT {
                backstop_checkpoint(db.conn());
            }
        }
    }

    fn commit_pending(&mut self) {
        while self.pending.len() > self.batch_size {
            let rest = self.pending.split_off(self.batch_size);
            let batch = std::mem::replace(&mut self.pending, rest);
            self.commit(batch);
        }
        let batch = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        self.commit(batch);
    }

    /// Commits one batch with whatever state changes are pending; on failure, spools it.
    fn commit(&mut self, batch: Vec<Record>) {
        self.store(&batch);
        self.give_back(batch);
    }

    fn store(&mut self, batch: &[Record]) {
        let states = std::mem::take(&mut self.pending_states);
        if batch.is_empty() && states.is_empty() && self.lines == self.lines_committed {
            return;
        }
        if self.spool.is_none() {
            if let Some((db, path)) = &mut self.db {
                let mut attempt = 0;
                loop {
                    // SQLite goes on writing to a removed or replaced file without an error.
                    let written = super::check_not_moved(db.conn()).and_then(|()| {
                        write_batch(
                            db,
                            &self.session.session_id,
                            &self.session.agent_name,
                            batch,
                            self.lines,
                            &states,
                        )
                    });
                    match written {
                        Ok(events) => {
                            self.report.events_committed += events;
                            self.lines_committed = self.lines;
                            self.after_commit();
                            return;
                        }
                        // Lock contention beyond the busy timeout: try again, it is not a fault.
                        Err(e) if is_busy(&e) && attempt < 5 => attempt += 1,
                        Err(e) => {
                            let path = path.clone();
                            self.start_spool(&path, &e.to_string());
                            break;
                        }
                    }
                }
            } else {
                return;
            }
        }
        if let Some(spool) = &mut self.spool {
            spool.write_records(&self.session, batch);
            spool.write_lines(&self.session.session_id, self.lines);
            for st in &states {
                spool.write_state(&self.session.session_id, st);
            }
            spool.flush();
            (self.report.events_spooled, self.report.events_lost) = spool.counts();
            self.report.spool = spool.path().map(Path::to_path_buf);
            self.lines_committed = self.lines;
        }
    }

    fn start_spool(&mut self, db_path: &Path, error: &str) {
        let spool = Spool::create(db_path, &self.session);
        // Only a file that is really being written is named.
        match spool.path() {
            Some(p) => eprintln!(
                "wrapper: warning: database {} failed ({error}); the agent keeps running and events now go to {} \
                 (load them later with `wrapper import-spool {}`)",
                db_path.display(),
                p.display(),
                p.display()
            ),
            None => eprintln!(
                "wrapper: warning: database {} failed ({error}) and no spool file can be created beside it \
                 or in the temporary directory: EVENTS ARE BEING LOST (the agent keeps running; \
                 wrapper says how many at the end)",
                db_path.display()
            ),
        }
        self.report.spool = spool.path().map(Path::to_path_buf);
        self.spool = Some(spool);
        // The connection may be in any state now; it is not used again.
        self.db = None;
    }

    /// Stores captured output. If the database has failed, the capture is given up with one
    /// warning (the spool keeps events, not bytes).
    /// A database that fails here fails for events too: the writer switches to its spool
    /// as a failed commit would (one warning), and the rest of the output is not captured.
    fn write_capture(&mut self, c: super::capture::Write) {
        if self.capture_failed {
            return;
        }
        let Some((conn, path)) = self.db.as_ref().map(|(db, path)| (db.conn(), path)) else {
            self.capture_failed = true;
            tracing::debug!("no database: the rest of the output is not captured");
            return;
        };
        let sid = &self.session.session_id;
        let mut attempt = 0;
        loop {
            let written = super::check_not_moved(conn).and_then(|()| match &c {
                super::capture::Write::Start { t0_us, mode, size } => {
                    super::capture::start(conn, sid, *t0_us, *mode, *size)
                }
                super::capture::Write::Blocks(b) => super::capture::write_blocks(conn, sid, b),
            });
            match written {
                Ok(()) => return,
                Err(e) if is_busy(&e) && attempt < 5 => attempt += 1,
                Err(e) => {
                    self.capture_failed = true;
                    let path = path.clone();
                    // What is pending goes to the spool with the session's state.
                    let batch = std::mem::take(&mut self.pending);
                    self.start_spool(&path, &e.to_string());
                    self.commit(batch);
                    return;
                }
            }
        }
    }

    fn write_events_out(&mut self, records: &[Record]) {
        let Some(out) = &mut self.events_out else {
            return;
        };
        let mut buf = Vec::with_capacity(records.len() * 256);
        for r in records {
            if let Record::Event(e) = r {
                EventRow::new(&self.session.agent_name, &self.session.session_id, e)
                    .write_json(&mut buf, &mut self.json_memo);
                buf.push(b'\n');
            }
        }
        if buf.is_empty() {
            return;
        }
        if out.write_all(&buf).and_then(|_| out.flush()).is_err() && !self.events_out_failed {
            self.events_out_failed = true;
            eprintln!("wrapper: warning: cannot write to --events-out; continuing without it");
            self.events_out = None;
        }
    }
}

/// An event as one JSON object, with field names equal to the column names.
#[derive(Serialize)]
pub struct EventRow<'a> {
    pub agent_name: &'a str,
    pub session_id: &'a str,
    pub timestamp: &'a str,
    pub stream: &'a str,
    pub event_type: &'a str,
    pub pattern: &'a str,
    pub matched_value: Option<&'a str>,
    pub original_line: Option<&'a str>,
    pub line_number: u64,
    pub metadata_json: Option<&'a str>,
    pub code_block_language: Option<&'a str>,
    pub risk_level: Option<&'a str>,
    pub auto_confirmable: bool,
}

impl<'a> EventRow<'a> {
    pub fn new(agent_name: &'a str, session_id: &'a str, e: &'a Event) -> Self {
        EventRow {
            agent_name,
            session_id,
            timestamp: &e.timestamp,
            stream: e.stream.as_str(),
            event_type: &e.event_type,
            pattern: &e.pattern,
            matched_value: e.matched_value.as_deref(),
            original_line: e.original_line.as_deref(),
            line_number: e.line_number,
            metadata_json: e.metadata_json.as_deref(),
            code_block_language: e.code_block_language.as_deref(),
            risk_level: e.risk_level.map(|r| r.as_str()),
            auto_confirmable: e.auto_confirmable,
        }
    }

    /// Appends the row as one JSON object, byte for byte what `serde_json` makes of it (the
    /// tests compare the two), without its per-byte escaping: `--events-out` writes one per
    /// event ([`crate::json_text`]). What repeats from the row before (`memo`) is not
    /// escaped again: the session's fields, the chunk's timestamp, the line of several events.
    pub fn write_json(&self, out: &mut Vec<u8>, memo: &mut RowMemo) {
        use crate::json_text::{push_opt_str, push_str, push_u64};
        if memo.head.is_empty()
            || memo.head_of.0 != self.agent_name
            || memo.head_of.1 != self.session_id
        {
            memo.head.clear();
            memo.head.extend_from_slice(b"{\"agent_name\":");
            push_str(&mut memo.head, self.agent_name);
            memo.head.extend_from_slice(b",\"session_id\":");
            push_str(&mut memo.head, self.session_id);
            memo.head.extend_from_slice(b",\"timestamp\":");
            memo.head_of = (self.agent_name.to_string(), self.session_id.to_string());
        }
        out.extend_from_slice(&memo.head);
        memo.timestamp.push(out, Some(self.timestamp));
        out.extend_from_slice(b",\"stream\":");
        push_str(out, self.stream);
        out.extend_from_slice(b",\"event_type\":");
        push_str(out, self.event_type);
        out.extend_from_slice(b",\"pattern\":");
        push_str(out, self.pattern);
        out.extend_from_slice(b",\"matched_value\":");
        push_opt_str(out, self.matched_value);
        out.extend_from_slice(b",\"original_line\":");
        memo.line.push(out, self.original_line);
        out.extend_from_slice(b",\"line_number\":");
        push_u64(out, self.line_number);
        out.extend_from_slice(b",\"metadata_json\":");
        push_opt_str(out, self.metadata_json);
        out.extend_from_slice(b",\"code_block_language\":");
        push_opt_str(out, self.code_block_language);
        out.extend_from_slice(b",\"risk_level\":");
        push_opt_str(out, self.risk_level);
        out.extend_from_slice(if self.auto_confirmable {
            b",\"auto_confirmable\":true}"
        } else {
            b",\"auto_confirmable\":false}"
        });
    }
}

/// What [`EventRow::write_json`] keeps from one row to the next.
#[derive(Debug, Default)]
pub struct RowMemo {
    /// The object's start up to the timestamp's value, for `head_of`'s agent and session.
    head: Vec<u8>,
    head_of: (String, String),
    timestamp: Memo,
    line: Memo,
}

/// The last string written in one field, and what it became: compared by content (an
/// address could be a freed string's, reused), which costs less than escaping it again.
#[derive(Debug, Default)]
struct Memo {
    src: Option<String>,
    json: Vec<u8>,
}

impl Memo {
    fn push(&mut self, out: &mut Vec<u8>, s: Option<&str>) {
        if self.src.as_deref() == s {
            out.extend_from_slice(&self.json);
            return;
        }
        let at = out.len();
        crate::json_text::push_opt_str(out, s);
        self.json.clear();
        self.json.extend_from_slice(&out[at..]);
        match (&mut self.src, s) {
            (Some(kept), Some(s)) => {
                kept.clear();
                kept.push_str(s);
            }
            (kept, s) => *kept = s.map(str::to_string),
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Writes one batch in one transaction. Returns the number of events written.
pub fn write_batch(
    db: &mut WriteConn,
    session_id: &str,
    agent: &str,
    batch: &[Record],
    lines: u64,
    states: &[StateChange],
) -> rusqlite::Result<u64> {
    let (conn, mut kept) = db.parts();
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let mut events: Vec<&Event> = Vec::with_capacity(batch.len());
    // Events per (type, pattern, risk): a dozen keys a batch, and rows of one rule share its
    // strings, so a short list compared by address first costs less than hashing three
    // strings a row (5% of the writer thread with a HashMap).
    let mut counts: Vec<((&str, &str, &str), i64)> = Vec::new();
    // Only the latest facts matter: each is the agent's whole account so far.
    let mut facts = None;
    let mut merges = Vec::new();
    for r in batch {
        match r {
            Record::Event(e) => {
                events.push(e);
                let key = (
                    &*e.event_type,
                    &*e.pattern,
                    e.risk_level.map_or("", |r| r.as_str()),
                );
                let same = |s: &str, t: &str| std::ptr::eq(s, t) || s == t;
                match counts
                    .iter_mut()
                    .find(|((t, p, r), _)| same(t, key.0) && same(p, key.1) && same(r, key.2))
                {
                    Some((_, n)) => *n += 1,
                    None => counts.push((key, 1)),
                }
            }
            Record::CodeBlock(b) => upsert_code_block(&tx, Some(&mut kept), session_id, agent, b)?,
            Record::Facts(f) => facts = Some(f),
            Record::Merge(m) => merges.push(m),
        }
    }
    insert_events(&tx, Some(&mut kept), session_id, agent, &events)?;
    // After the inserts: the event a merge confirms may be in this very batch.
    for m in merges {
        super::usage::merge_event(&tx, session_id, m)?;
    }
    if let Some(f) = facts {
        super::usage::write_facts(&tx, session_id, f)?;
    }
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO event_counts (session_id, event_type, pattern, risk_level, n) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (session_id, event_type, pattern, risk_level) \
             DO UPDATE SET n = n + excluded.n",
        )?;
        for ((t, p, r), n) in &counts {
            stmt.execute(params![session_id, t, p, r, n])?;
        }
    }
    tx.prepare_cached(
        "UPDATE process_sessions SET total_lines_processed = MAX(total_lines_processed, ?1), \
         total_extraction_events = total_extraction_events + ?2 WHERE session_id = ?3",
    )?
    .execute(params![lines as i64, events.len() as i64, session_id])?;
    for st in states {
        write_state(&tx, session_id, st)?;
    }
    tx.commit()?;
    Ok(events.len() as u64)
}

/// No `id`: SQLite gives each row the largest id so far plus one, which is what the writer
/// counts on ([`insert_events`] checks it). Bound by the statement, an id would be an
/// expression that may not be an integer, so SQLite would keep a statement journal (a copy of
/// every page the statement changes, 4% of the writer thread) and look for a row with that id
/// before each insert (6%).
const EVENT_COLUMNS: &str = "agent_name, session_id, timestamp, stream, event_type, pattern, \
     matched_value, original_line, line_number, metadata_json, code_block_language, risk_level, \
     auto_confirmable";
/// Parameters bound per row; `agent_name` and `session_id` are the same for every row of a
/// batch, so they are bound once per statement as `?1` and `?2`.
const ROW_PARAMS: usize = 11;

/// `INSERT … VALUES (?1, ?2, ?3, …, ?13), (?1, ?2, ?14, …)`: `rows` rows sharing `?1`/`?2`.
fn insert_sql(rows: usize) -> String {
    // OR FAIL: a NOT NULL violation stops the statement without undoing its earlier rows,
    // so (with no id bound, see EVENT_COLUMNS) SQLite keeps no statement journal for it. The
    // transaction is rolled back on any error anyway.
    let mut sql = format!("INSERT OR FAIL INTO extraction_events ({EVENT_COLUMNS}) VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push_str("(?1,?2");
        for p in 0..ROW_PARAMS {
            sql.push_str(&format!(",?{}", 3 + r * ROW_PARAMS + p));
        }
        sql.push(')');
    }
    sql
}

/// The two statement texts, built once (`prepare_cached` looks them up by text).
fn insert_sqls() -> &'static (String, String) {
    static SQL: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    SQL.get_or_init(|| (insert_sql(ROWS_PER_STATEMENT), insert_sql(1)))
}

/// Inserts events with multi-row statements (the main lever on insert cost, SPEC §9), their
/// event-type spans (`store::spans`) and their session span (`store::session_spans`). Must run inside a write transaction.
///
/// The ids are given here, one after another from the table's largest: that is what SQLite
/// would give them (the write lock is held), and knowing them is what makes the spans exact.
pub(crate) fn insert_events(
    conn: &Connection,
    mut kept: Option<&mut KeptRef<'_>>,
    session_id: &str,
    agent: &str,
    events: &[&Event],
) -> rusqlite::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let last: i64 = conn
        .prepare_cached("SELECT coalesce(max(id), 0) FROM extraction_events")?
        .query_row([], |r| r.get(0))?;
    let first = last
        .checked_add(1)
        .filter(|f| f.checked_add(events.len() as i64).is_some())
        .ok_or(rusqlite::Error::IntegralValueOutOfRange(0, last))?;
    let (many, one) = insert_sqls();
    let mut params: Vec<Param<'_>> = Vec::with_capacity(2 + ROWS_PER_STATEMENT * ROW_PARAMS);
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let (sql, rows) = if chunk.len() == ROWS_PER_STATEMENT {
            (many, ROWS_PER_STATEMENT)
        } else {
            (one, 1)
        };
        for statement in chunk.chunks(rows) {
            params.clear();
            params.extend([Param::Text(agent), Param::Text(session_id)]);
            for e in statement {
                event_params(&mut params, e);
            }
            super::inplace::execute(conn, kept.as_deref_mut(), sql, &params)?;
        }
    }
    // The rows got `first..` (the largest id plus one each, in one transaction of the only
    // writer): the spans are built on that, so it is checked, not assumed.
    let expected = first + events.len() as i64 - 1;
    let got = conn.last_insert_rowid();
    if got != expected {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_INTERNAL),
            Some(format!(
                "extraction_events: the last row stored got id {got}, not {expected}"
            )),
        ));
    }
    super::spans::insert(conn, first, events)?;
    super::session_spans::insert(conn, session_id, agent, first, events)
}

/// One event's own columns, in the order of [`EVENT_COLUMNS`] after the first two.
fn event_params<'a>(params: &mut Vec<Param<'a>>, e: &'a Event) {
    params.extend([
        Param::Text(&e.timestamp),
        Param::Text(e.stream.as_str()),
        Param::Text(&e.event_type),
        Param::Text(&e.pattern),
        e.matched_value.as_deref().into(),
        e.original_line.as_deref().into(),
        Param::Int(e.line_number as i64),
        e.metadata_json.as_deref().into(),
        e.code_block_language.as_deref().into(),
        e.risk_level.map(|r| r.as_str()).into(),
        Param::Int(e.auto_confirmable as i64),
    ]);
}

/// Stores a code block, or counts one more occurrence of a block already stored (SPEC §4).
pub(crate) fn upsert_code_block(
    conn: &Connection,
    kept: Option<&mut KeptRef<'_>>,
    session_id: &str,
    agent: &str,
    b: &CodeBlock,
) -> rusqlite::Result<()> {
    const SQL: &str = "INSERT INTO code_blocks (agent_name, session_id, timestamp, language, \
         content, line_start, line_end, context_json, parseable, digest, occurrences, \
         last_seen_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 1, ?3) \
         ON CONFLICT (digest) DO UPDATE SET occurrences = occurrences + 1, \
         last_seen_at = excluded.timestamp";
    let params = [
        Param::Text(agent),
        Param::Text(session_id),
        Param::Text(&b.timestamp),
        b.language.as_deref().into(),
        Param::Text(&b.content),
        Param::Int(b.line_start as i64),
        Param::Int(b.line_end as i64),
        Param::Text(&b.context_json),
        Param::Int(b.parseable as i64),
        Param::Text(&b.digest),
    ];
    // On the writer the block's texts (its content is most of them) are bound in place.
    super::inplace::execute(conn, kept, SQL, &params)
}

/// Records a state change and mirrors it on the session row.
pub(crate) fn write_state(
    conn: &Connection,
    session_id: &str,
    st: &StateChange,
) -> rusqlite::Result<()> {
    let mut meta = st.metadata.clone().unwrap_or_else(|| serde_json::json!({}));
    if let (Some(sig), Some(obj)) = (&st.signal, meta.as_object_mut()) {
        obj.entry("signal").or_insert_with(|| sig.clone().into());
    }
    let meta = match &meta {
        serde_json::Value::Object(m) if m.is_empty() => None,
        other => Some(other.to_string()),
    };
    conn.prepare_cached(
        "INSERT INTO process_state_changes (session_id, timestamp, state, exit_code, metadata_json) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![session_id, st.timestamp, st.state.as_str(), st.exit_code, meta])?;
    match st.state {
        State::Signaled | State::Started => {}
        State::Running => {
            conn.execute(
                "UPDATE process_sessions SET state = 'running', pid = ?2 WHERE session_id = ?1",
                params![session_id, st.pid],
            )?;
        }
        s => {
            conn.execute(
                "UPDATE process_sessions SET state = ?2, ended_at = ?3, exit_code = ?4, signal = ?5, \
                 pid = COALESCE(?6, pid) WHERE session_id = ?1",
                params![session_id, s.as_str(), st.timestamp, st.exit_code, st.signal, st.pid],
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Stream;

    fn event(len: usize) -> Record {
        Record::Event(Event {
            timestamp: "t".into(),
            stream: Stream::Stdout,
            event_type: "error".into(),
            pattern: "p".into(),
            matched_value: Some("v".repeat(len)),
            original_line: Some("l".repeat(len).into()),
            line_number: 1,
            metadata_json: None,
            code_block_language: None,
            risk_level: None,
            auto_confirmable: false,
        })
    }

    /// `--events-out` lines are what `serde_json` makes of the row, whatever its fields hold.
    #[test]
    fn an_event_row_is_written_as_serde_json_writes_it() {
        use crate::event::RiskLevel;
        let tricky = "say \"hi\"\t\\ \u{1b}[0m \u{7f} ünï ✓ \u{2028}\n";
        let events = [
            Event {
                timestamp: "2026-12-02T03:00:00.000Z".into(),
                stream: Stream::Stderr,
                event_type: "prompt".into(),
                pattern: "risky \"prompt\"".into(),
                matched_value: Some(tricky.into()),
                original_line: Some(tricky.into()),
                line_number: u64::MAX,
                metadata_json: Some(r#"{"path":"C:\\x","n":"1"}"#.into()),
                code_block_language: Some("rust".into()),
                risk_level: Some(RiskLevel::Critical),
                auto_confirmable: true,
            },
            Event {
                timestamp: "t".into(),
                stream: Stream::Pty,
                event_type: "error".into(),
                pattern: "p".into(),
                matched_value: None,
                original_line: None,
                line_number: 0,
                metadata_json: None,
                code_block_language: None,
                risk_level: None,
                auto_confirmable: false,
            },
            // The first one's timestamp, another line (an empty one).
            Event {
                timestamp: "2026-12-02T03:00:00.000Z".into(),
                stream: Stream::Stdout,
                event_type: "error".into(),
                pattern: "p".into(),
                matched_value: Some(String::new()),
                original_line: Some("".into()),
                line_number: 7,
                metadata_json: None,
                code_block_language: None,
                risk_level: Some(RiskLevel::Low),
                auto_confirmable: false,
            },
        ];
        // In several orders with one memo, and two sessions: each field repeats, or changes,
        // or changes back, from one row to the next.
        let mut memo = RowMemo::default();
        let orders: [&[usize]; 4] = [&[0, 1, 2], &[2, 2, 0, 0, 1, 1], &[1, 0, 2, 1], &[0, 2, 0]];
        for (k, order) in orders.iter().enumerate() {
            // The session changes alone, then the agent alone, then both.
            let (agent, session) = [
                ("codex \u{0}", "s\"id"),
                ("codex \u{0}", "s2"),
                ("claude", "s2"),
                ("codex \u{0}", "s\"id"),
            ][k];
            for &i in order.iter() {
                let row = EventRow::new(agent, session, &events[i]);
                let mut ours = Vec::new();
                row.write_json(&mut ours, &mut memo);
                let theirs = serde_json::to_vec(&row).expect("a row serialises");
                assert_eq!(
                    String::from_utf8_lossy(&ours),
                    String::from_utf8_lossy(&theirs),
                    "order {k}, event {i}"
                );
            }
        }
    }

    /// Stored records go back to whoever asked for them; once it has gone, the writer frees
    /// them itself and goes on.
    #[test]
    fn stored_records_are_handed_back_to_the_thread_that_asked() {
        let sink = Sink::start(SinkConfig {
            db: None,
            events_out: Some(Box::new(std::io::sink())),
            batch_size: 500,
            flush_interval: Duration::from_millis(100),
            session: SessionRow {
                session_id: "s".into(),
                agent_name: "a".into(),
                environment: None,
                started_at: "t".into(),
                hostname: "h".into(),
                cwd: None,
                command_json: "[]".into(),
                extraction_config_version: "v".into(),
                environment_config_version: None,
                wrapper_version: "w".into(),
                wrapper_pid: 1,
            },
            outputs: Default::default(),
        })
        .expect("start");
        let tx = sink.sender();
        let (back_tx, back) = sync_channel(8);
        tx.send(Msg::GiveBack(back_tx)).expect("send");
        send_records(&tx, (0..3).map(|_| event(10)).collect(), 0, 3).expect("send");
        let stored = back
            .recv_timeout(Duration::from_secs(30))
            .expect("records handed back");
        assert_eq!(stored.len(), 3);
        drop(back);
        // Nobody takes them any more: the writer must neither block nor stop.
        for n in 0..20 {
            send_records(&tx, vec![event(10)], 3 + n, 4 + n).expect("send");
        }
        drop(tx);
        let report = sink.finish();
        assert_eq!(report.events_lost, 0);
    }

    /// Records go in messages of at most `MAX_MESSAGE_BYTES` (one larger record alone), in
    /// order; only the last message advances the line count.
    #[test]
    fn records_are_sent_in_messages_bounded_in_bytes() {
        let (tx, rx) = sync_channel(1000);
        let records: Vec<Record> = (0..40).map(|_| event(60 << 10)).collect();
        send_records(&tx, records, 7, 47).expect("send");
        send_records(&tx, vec![event(1 << 20)], 47, 48).expect("send");
        drop(tx);
        let msgs: Vec<(usize, usize, u64)> = rx
            .iter()
            .map(|m| match m {
                Msg::Records { records, lines } => (
                    records.len(),
                    records.iter().map(record_bytes).sum::<usize>(),
                    lines,
                ),
                _ => panic!("not records"),
            })
            .collect();
        let (last, rest) = msgs.split_last().expect("messages");
        assert_eq!(last.0, 1, "a large record alone");
        let (tail, parts) = rest.split_last().expect("parts");
        assert_eq!(tail.2, 47);
        assert!(parts.iter().all(|m| m.2 == 7 && m.1 <= MAX_MESSAGE_BYTES));
        assert_eq!(rest.iter().map(|m| m.0).sum::<usize>(), 40);
        assert!(rest.len() >= 20, "{rest:?}");
    }
}
