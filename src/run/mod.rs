//! The `wrapper <agent> -- <command>` path: spawn → read → split lines → extract → batch →
//! SQLite.
//!
//! Threads, each owning one job:
//! * the **pump** ([`pump`]) reads both pipes and passes bytes through, then queues them
//!   ([`queue`]: 2 MiB in memory, then a spill file, so recording never holds the agent back);
//! * the **extractor** turns chunks into lines and records ([`crate::extract`]);
//! * the **writer** commits records in batches ([`crate::store::writer`]);
//! * the **waiter** blocks in `waitpid`; the **signal listener** turns signals into messages;
//! * this thread runs the control loop: it forwards signals, escalates to SIGKILL, notices the
//!   exit, and then finishes the session in order — drain, extract the rest, commit, record
//!   the final state — so that nothing read is lost on any path.

mod alloc;
pub mod capture;
pub mod child;
pub mod nice;
pub mod pty;
mod pty_mode;
pub mod pump;
pub mod queue;
mod rules;
mod screen_side;
pub mod signals;
pub mod summary;
pub mod tty;

use std::io;
use std::os::fd::OwnedFd;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Context};
use nix::unistd::Pid;
use serde_json::json;

use crate::config::RunConfig;
use crate::error::CliError;
use crate::event::{format_timestamp, now_timestamp};
use crate::extract::rules::RuleBook;
use crate::extract::{Extractor, Redactor};
use crate::git;
use crate::store::writer::{self, Msg, SessionRow, Sink, SinkConfig, State, StateChange};
use crate::store::{self, OpenMode};
use child::{ChildSpec, Exit, Spawned};
use pump::WAKE_CHILD_EXITED;

/// Messages to the control loop.
enum Control {
    Signal(i32),
    Exited(io::Result<Exit>),
    PumpDone(pump::PumpReport),
}

/// How often the control loop checks whether a signalled group has gone, once the child
/// itself has exited.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// Runs one agent session and returns the exit code wrapper should exit with.
pub fn run(cfg: RunConfig) -> Result<i32, CliError> {
    if cfg.db.is_some() {
        alloc::fixed_mmap_threshold();
    }
    // Everything that can be wrong with the configuration is found before anything runs.
    // (Rules from files are compiled and their samples checked here; the built-ins are
    // compiled in the extraction thread while the agent starts: see `RuleBook::load`.)
    let book = RuleBook::load(&cfg.pattern_sources).map_err(crate::config::pattern_error)?;
    // The extraction matcher compiles meanwhile (`rules.rs`).
    let wanted = cfg.db.is_some() || cfg.events_out.is_some() || cfg.otlp.is_some();
    let rules = rules::Rules::start(book, &cfg.agent, wanted);
    let book = &rules.book;
    let spec = ChildSpec::from_words(cfg.command.clone());
    // Time offset 0 of the output capture.
    let t0 = std::time::SystemTime::now();
    // Masking also covers what is stored about the session itself (issue 10). Compiling the
    // masking rules and hashing the rule set are each ~a third of what runs before the agent
    // can start: on two threads.
    let (redactor, rules_version) = std::thread::scope(|s| {
        let version = thread::Builder::new()
            .name("wrapper-version".into())
            .spawn_scoped(s, || book.version());
        let redactor = Redactor::new(book, cfg.redact);
        let version = match version {
            Ok(h) => h
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => book.version(),
        };
        (redactor, version)
    });
    let redactor = Arc::new(redactor.map_err(|e| CliError::usage(anyhow!(e)))?);
    redactor
        .refuse_secret("the agent name", &cfg.agent)
        .map_err(|e| CliError::usage(anyhow!(e)))?;
    if let Some(id) = &cfg.session_id {
        redactor
            .refuse_secret("--session-id", id)
            .map_err(|e| CliError::usage(anyhow!(e)))?;
    }

    let session = SessionRow {
        session_id: cfg
            .session_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        agent_name: cfg.agent.clone(),
        environment: cfg
            .environment
            .as_deref()
            .map(|e| redactor.redact_lines(e).into_owned()),
        started_at: format_timestamp(t0),
        hostname: store::hostname(),
        cwd: std::env::current_dir()
            .ok()
            .map(|p| redactor.redact_lines(&p.to_string_lossy()).into_owned()),
        command_json: serde_json::to_string(&redactor.redact_argv(&spec.argv))
            .unwrap_or_else(|_| "[]".into()),
        extraction_config_version: rules_version,
        environment_config_version: cfg.config_version.clone(),
        wrapper_version: env!("CARGO_PKG_VERSION").to_string(),
        wrapper_pid: std::process::id(),
    };

    summary::starting(
        &session.session_id,
        cfg.db.as_deref(),
        book.rules.len() + book.redact.len(),
        &session.extraction_config_version,
        if pty_mode::wanted(cfg.pty) {
            "the agent runs on a pseudo-terminal (PTY mode)"
        } else {
            "reading the agent's output through pipes"
        },
    );
    let events_out = match &cfg.events_out {
        Some(out) => Some(out.open().map_err(|e| CliError::usage(anyhow!(e)))?),
        None => None,
    };
    let db = match &cfg.db {
        None => None,
        Some(path) => {
            let conn = store::open(path, OpenMode::Create).map_err(CliError::usage)?;
            writer::insert_session(&conn, &session).map_err(|e| {
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) {
                    CliError::usage(anyhow!(
                        "session id {:?} already exists in {}; choose another --session-id",
                        session.session_id,
                        path.display()
                    ))
                } else {
                    CliError::usage(anyhow!("database {}: {e}", path.display()))
                }
            })?;
            Some((conn, path.clone()))
        }
    };
    let has_db = db.is_some();
    let outputs = outputs(&cfg, &session, &spec);
    let sink = if db.is_some() || events_out.is_some() || !outputs.is_empty() {
        Some(
            Sink::start(SinkConfig {
                db,
                events_out,
                batch_size: cfg.batch_size,
                flush_interval: cfg.flush_interval,
                session: session.clone(),
                outputs,
            })
            .map_err(|e| CliError::internal(anyhow!("cannot start the writer thread: {e}")))?,
        )
    } else {
        None
    };
    let records_tx = sink.as_ref().map(Sink::sender);
    let state = |st: StateChange| {
        if let Some(tx) = &records_tx {
            let _ = tx.send(Msg::State(st));
        }
    };

    let (ctl_tx, ctl_rx) = mpsc::channel::<Control>();
    let sig_handle = signals::listen(ctl_tx.clone(), Control::Signal)
        .map_err(|e| CliError::internal(anyhow!("cannot install signal handlers: {e}")))?;
    child::reset_sigchld();
    let reap_all = cfg.subreaper || std::process::id() == 1;
    if cfg.subreaper {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        if rc != 0 {
            tracing::warn!("--subreaper: {}", io::Error::last_os_error());
        }
    }

    // HEAD as the files say it, before the agent can move it (a few stats and reads).
    let git_on = cfg.git_timeout.is_some() && (has_db || cfg.otlp.is_some());
    let head0 = git_on.then(|| git::head_snapshot(&session)).flatten();
    let take_terminal = child::should_take_terminal();
    let started = if pty_mode::wanted(cfg.pty) {
        pty_mode::spawn(&spec).map(Started::Pty)
    } else {
        child::spawn(&spec, take_terminal).map(Started::Pipes)
    };
    let spawned = match started {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wrapper: {e}");
            let code = e.exit_code();
            state(StateChange {
                state: State::SpawnFailed,
                timestamp: now_timestamp(),
                exit_code: Some(code),
                signal: None,
                pid: None,
                metadata: Some(json!({ "error": e.source.to_string() })),
            });
            drop(records_tx);
            if let Some(s) = sink {
                s.finish();
            }
            sig_handle.close();
            return Ok(code);
        }
    };
    // Repository facts, read in the background from here on (`crate::git`), where someone
    // will see them: the database or the OTLP export.
    let git = match (&records_tx, cfg.git_timeout) {
        (Some(tx), Some(limit)) if git_on => {
            git::Probe::for_session(&session, head0, limit, book, cfg.redact, tx.clone())
        }
        _ => None,
    };
    state(StateChange {
        state: State::Running,
        timestamp: now_timestamp(),
        exit_code: None,
        signal: None,
        pid: Some(spawned.pid().as_raw() as u32),
        metadata: Some(spawned.metadata(spec.via_shell)),
    });
    // Output capture (issue 13): with the database, unless --no-capture.
    let (tap, capture) = match (&records_tx, has_db && cfg.capture) {
        (Some(tx), true) => {
            let redact = RuleBook {
                redact: book.redact.clone(),
                ..RuleBook::default()
            };
            let (tap, c) = capture::start(
                redact,
                Arc::clone(&redactor),
                cfg.redact,
                t0,
                spawned.capture_mode(),
                spawned.capture_size(),
                tx.clone(),
            )
            .map_err(|e| CliError::internal(anyhow!("cannot start the capture thread: {e}")))?;
            (Some(tap), Some(c))
        }
        _ => (None, None),
    };
    let finish_capture = |tap: Option<capture::CaptureTap>, c: Option<capture::Capture>| {
        drop(tap);
        if let Some(c) = c {
            c.finish();
        }
    };

    let tx = records_tx.clone();
    let outcome = match spawned {
        Started::Pipes(s) => supervise(
            s, &cfg, rules, redactor, tx, tap, ctl_tx, ctl_rx, reap_all, &state,
        ),
        Started::Pty(p) => pty_mode::supervise(
            p, &cfg, rules, redactor, tx, tap, ctl_tx, ctl_rx, reap_all, &state,
        ),
    };
    sig_handle.close();
    // The extraction thread has ended and dropped the tap: the last blocks go in now, before
    // the final state.
    finish_capture(None, capture);
    // The end facts go in before the final state (bounded by the probe's time limit).
    if let Some(g) = git {
        g.finish();
    }
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            state(StateChange {
                state: State::Failed,
                timestamp: now_timestamp(),
                exit_code: Some(125),
                signal: None,
                pid: None,
                metadata: Some(json!({ "error": format!("{e:#}") })),
            });
            drop(records_tx);
            if let Some(s) = sink {
                s.finish();
            }
            return Err(CliError::internal(e));
        }
    };

    let (final_state, signal) = match outcome.exit {
        Exit::Signal(sig) => {
            let by_user = outcome.stop_requested
                || (outcome.job_control && matches!(sig, libc::SIGINT | libc::SIGQUIT));
            (
                if by_user {
                    State::Interrupted
                } else {
                    State::Killed
                },
                Some(signals::name(sig)),
            )
        }
        Exit::Code(_) if outcome.stop_requested => (State::Interrupted, None),
        Exit::Code(0) => (State::Completed, None),
        Exit::Code(_) => (State::Failed, None),
    };
    state(StateChange {
        state: final_state,
        timestamp: now_timestamp(),
        exit_code: Some(outcome.exit.code()),
        signal,
        pid: Some(outcome.pid.as_raw() as u32),
        metadata: Some(json!({
            "lines": outcome.lines,
            "events": outcome.events,
            "drained": outcome.pump.complete,
            "stop_signal": outcome.stop_signal.map(signals::name),
        })),
    });
    drop(records_tx);
    if let Some(s) = sink {
        let report = s.finish();
        if let (Some(db), None) = (&cfg.db, &report.spool) {
            let quiet = !tracing::enabled!(tracing::Level::WARN);
            summary::finished(
                &session.session_id,
                db,
                outcome.lines,
                report.events_committed,
                quiet,
            );
        }
        if has_db
            && report.spool.is_none()
            && report.events_lost == 0
            && report.events_committed != outcome.events
        {
            tracing::warn!(
                "{} events extracted but {} committed",
                outcome.events,
                report.events_committed
            );
        }
    }
    Ok(outcome.exit.code())
}

/// The child as spawned: with pipes, or on a pty (PTY mode).
enum Started {
    Pipes(Spawned),
    Pty(pty_mode::Started),
}

impl Started {
    fn pid(&self) -> Pid {
        match self {
            Started::Pipes(s) => s.pid,
            Started::Pty(p) => p.child.pid,
        }
    }

    /// How the output capture records this child: two streams, or one pty stream with sizes.
    fn capture_mode(&self) -> store::capture::Mode {
        match self {
            Started::Pipes(_) => store::capture::Mode::Pipe,
            Started::Pty(_) => store::capture::Mode::Pty,
        }
    }

    /// The terminal size the capture starts with (PTY mode only).
    fn capture_size(&self) -> Option<(u16, u16)> {
        match self {
            Started::Pipes(_) => None,
            Started::Pty(p) => Some(p.size),
        }
    }

    /// The `running` state's metadata.
    fn metadata(&self, via_shell: bool) -> serde_json::Value {
        match self {
            Started::Pipes(s) => json!({
                "pgid": s.pgid.as_raw(),
                "via_shell": via_shell,
                "foreground": s.took_terminal,
            }),
            Started::Pty(p) => json!({
                "pgid": p.child.pid.as_raw(),
                "via_shell": via_shell,
                "pty": { "cols": p.size.0, "rows": p.size.1 },
            }),
        }
    }
}

/// The outputs beside the database: OTLP export when configured. One that cannot start is
/// left out with a warning; the session goes on.
fn outputs(cfg: &RunConfig, session: &SessionRow, spec: &ChildSpec) -> crate::sink::Outputs {
    if let Some(w) = &cfg.otlp_warning {
        eprintln!("wrapper: warning: {w}");
    }
    let mut list: Vec<Box<dyn crate::sink::Output>> = Vec::new();
    if let Some(otlp) = &cfg.otlp {
        let program = std::path::Path::new(&spec.program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match crate::otel::Exporter::start(
            otlp.clone(),
            session,
            &program,
            cfg.git_timeout.map(|t| t + Duration::from_secs(1)),
        ) {
            Ok(e) => list.push(Box::new(e)),
            Err(e) => eprintln!("wrapper: warning: cannot start OTLP export: {e}"),
        }
    }
    crate::sink::Outputs::new(list)
}

struct Outcome {
    exit: Exit,
    pid: Pid,
    /// The agent could be given the terminal (and so get Ctrl-C from it directly).
    job_control: bool,
    stop_requested: bool,
    stop_signal: Option<i32>,
    pump: pump::PumpReport,
    lines: u64,
    events: u64,
}

/// Starts the pump, extractor and waiter threads and runs the control loop until the child has
/// exited, its output is drained and extracted, and (after a stop request) its group is gone.
#[allow(clippy::too_many_arguments)]
fn supervise(
    spawned: Spawned,
    cfg: &RunConfig,
    rules: rules::Rules,
    redactor: Arc<Redactor>,
    records_tx: Option<SyncSender<Msg>>,
    tap: Option<capture::CaptureTap>,
    ctl_tx: mpsc::Sender<Control>,
    ctl_rx: Receiver<Control>,
    reap_all: bool,
    state: &dyn Fn(StateChange),
) -> anyhow::Result<Outcome> {
    let Spawned {
        pid,
        pgid,
        stdout,
        stderr,
        took_terminal,
    } = spawned;
    let job_control = took_terminal || child::has_job_control();
    let (wake_r, wake_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("cannot create the wake pipe")?;

    let (chunk_tx, extract, backlog) =
        start_extraction(cfg, rules, redactor, records_tx, None, tap)?;

    let (drained_tx, drained_rx) = mpsc::channel::<()>();
    let pump_ctl = ctl_tx.clone();
    thread::Builder::new()
        .name("wrapper-pump".into())
        .spawn(move || {
            child::allow_terminal_writes();
            let report = pump::run(stdout, stderr, wake_r, chunk_tx, drained_tx);
            let _ = pump_ctl.send(Control::PumpDone(report));
        })
        .context("cannot start the pump thread")?;

    let wait_ctl = ctl_tx;
    let wake_drain = wake_w
        .try_clone()
        .context("cannot duplicate the wake pipe")?;
    thread::Builder::new()
        .name("wrapper-wait".into())
        .spawn(move || {
            // Before wrapper stops with its job: pass through what the agent printed first.
            let before_stop = || pump::drain_before_stop(&wake_drain, &drained_rx);
            let exit = child::wait(pid, reap_all, job_control, &before_stop);
            let _ = wait_ctl.send(Control::Exited(exit));
        })
        .context("cannot start the waiter thread")?;

    let mut exit: Option<Exit> = None;
    let mut pump_report: Option<pump::PumpReport> = None;
    let mut stop_signal: Option<i32> = None;
    let mut kill_deadline: Option<Instant> = None;
    let record_signal = |sig: i32, meta: serde_json::Value| {
        state(StateChange {
            state: State::Signaled,
            timestamp: now_timestamp(),
            exit_code: None,
            signal: Some(signals::name(sig)),
            pid: Some(pid.as_raw() as u32),
            metadata: Some(meta),
        });
    };
    let escalate = |why: &str| {
        if child::group_alive(pgid) {
            let _ = signals::send_group(pgid, libc::SIGKILL);
            record_signal(
                libc::SIGKILL,
                json!({ "reason": why, "pgid": pgid.as_raw() }),
            );
        }
    };

    loop {
        if exit.is_some() && pump_report.is_some() {
            // The child is gone and its output read. After a stop request the group must be
            // gone too before wrapper leaves (a grandchild ignoring SIGTERM gets SIGKILL).
            match kill_deadline {
                Some(d) if child::group_alive(pgid) => {
                    if Instant::now() >= d {
                        escalate("kill-after");
                        kill_deadline = None;
                    }
                }
                _ => break,
            }
        }
        let now = Instant::now();
        let mut timeout = kill_deadline.map(|d| d.saturating_duration_since(now));
        if exit.is_some() && pump_report.is_some() {
            timeout = Some(timeout.map_or(GROUP_POLL, |t| t.min(GROUP_POLL)));
        }
        let msg = match timeout {
            Some(t) => ctl_rx.recv_timeout(t),
            None => ctl_rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match msg {
            Ok(Control::Signal(sig)) => {
                if sig == libc::SIGCONT && job_control && exit.is_none() {
                    // `fg`: the child needs the terminal before it runs again.
                    child::hand_terminal_back(pgid);
                }
                let _ = signals::send_group(pgid, sig);
                record_signal(sig, json!({ "forwarded_to_pgid": pgid.as_raw() }));
                if signals::is_terminating(sig) {
                    if stop_signal.is_some() {
                        // A second request to stop: no more waiting.
                        escalate("second terminating signal");
                        kill_deadline = None;
                    } else {
                        stop_signal = Some(sig);
                        kill_deadline = Some(Instant::now() + cfg.kill_after);
                    }
                }
            }
            Ok(Control::Exited(result)) => {
                let e = result.context("waiting for the child failed")?;
                exit = Some(e);
                if job_control {
                    child::restore_terminal(pgid);
                }
                let _ = nix::unistd::write(&wake_w, &[WAKE_CHILD_EXITED]);
            }
            Ok(Control::PumpDone(r)) => pump_report = Some(r),
            Err(RecvTimeoutError::Timeout) => {
                if kill_deadline.is_some_and(|d| Instant::now() >= d) {
                    if exit.is_none() || child::group_alive(pgid) {
                        escalate("kill-after");
                    }
                    kill_deadline = None;
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(anyhow!("internal: control channel closed"));
            }
        }
    }
    drop::<OwnedFd>(wake_w);
    if reap_all {
        child::reap_orphans();
    }
    // After a flood the agent may be done long before its output is recorded (the backlog
    // waits in the spill file): tell a person watching why wrapper has not exited yet. Only
    // a person: where stderr is a file or a pipe, a script reads it, and the agent's own
    // stderr must stay exactly the agent's (in the debug log all the same).
    if let Some(b) = backlog.map(|b| b.bytes()).filter(|&b| b >= BACKLOG_NOTICE) {
        let notice = format!(
            "the agent has exited; recording the last {} MiB of its output before wrapper exits",
            b >> 20
        );
        if std::io::IsTerminal::is_terminal(&io::stderr()) {
            tracing::warn!("{notice}");
        } else {
            tracing::debug!("{notice}");
        }
    }
    let (lines, events) = match extract {
        Some(h) => h
            .join()
            .map_err(|_| anyhow!("internal: the extraction thread panicked"))?,
        None => (0, 0),
    };
    Ok(Outcome {
        exit: exit.expect("loop ends only after exit"),
        pid,
        job_control,
        stop_requested: stop_signal.is_some(),
        stop_signal,
        pump: pump_report.unwrap_or_default(),
        lines,
        events,
    })
}

/// The queue's ends and the extraction thread, if there is anything to record to.
type Extraction = (
    Option<queue::Sender>,
    Option<thread::JoinHandle<(u64, u64)>>,
    Option<queue::Backlog>,
);

/// Starts the extraction thread. With nowhere to record to (no database, no --events-out),
/// extraction would be work that nobody sees: the pump then only passes bytes through. With
/// `screen` (PTY mode) the bytes go through the virtual terminal first.
fn start_extraction(
    cfg: &RunConfig,
    mut rules: rules::Rules,
    redactor: Arc<Redactor>,
    records_tx: Option<SyncSender<Msg>>,
    screen: Option<pty_mode::ScreenSetup>,
    tap: Option<capture::CaptureTap>,
) -> anyhow::Result<Extraction> {
    let Some(records_tx) = records_tx else {
        return Ok((None, None, None));
    };
    let (chunk_tx, chunk_rx) = queue::queue();
    let backlog = chunk_rx.backlog();
    let (agent, max_line) = (cfg.agent.clone(), cfg.max_line);
    let prompt_idle = cfg.prompt_idle;
    let with_db = cfg.db.is_some();
    // The agent's own session log, read once it has exited (`agents/`).
    let agent_log = std::env::current_dir().ok().and_then(|cwd| {
        crate::agents::LogQuery::new(&cfg.agent, &cfg.command, SystemTime::now(), cwd)
    });
    let handle = thread::Builder::new()
        .name("wrapper-extract".into())
        .spawn(move || {
            nice::background(nice::Recorder::Reader);
            // This thread's own copy of the masking rules (the main thread used them first,
            // and a regex's other threads take a lock for each search: see `Redactor`).
            let redactor = Arc::new(Redactor::clone(&redactor));
            let matcher = rules.matcher(&agent);
            let mut extractor = Extractor::new(Arc::new(matcher), redactor, max_line);
            if agent_log.is_some() {
                extractor.expect_log();
            }
            if !with_db {
                // With the database, SQLite's writer is the slower side on output dense in
                // events and has a core to itself; a helper would take it (and its caches
                // would cost memory) for nothing.
                extractor.allow_helper();
            }
            drop(rules);
            match screen {
                None => extract_loop(chunk_rx, extractor, records_tx, tap, prompt_idle, agent_log),
                Some(s) => screen_side::extract(
                    chunk_rx,
                    extractor,
                    records_tx,
                    prompt_idle,
                    s,
                    tap,
                    agent_log,
                ),
            }
        })
        .context("cannot start the extraction thread")?;
    Ok((Some(chunk_tx), Some(handle), Some(backlog)))
}

/// Backlog at the agent's exit above which wrapper says it is still recording (~1 s of work).
const BACKLOG_NOTICE: u64 = 16 << 20;

/// Finds and reads the session log the agent wrote; a log that cannot be found or read
/// costs the session nothing but a debug line.
pub(crate) fn read_agent_log(q: &crate::agents::LogQuery, x: &mut Extractor) {
    let named = x.facts().agent_session_id;
    match q.find(SystemTime::now(), named.as_deref()) {
        None => tracing::debug!(
            "no {:?} session log found under {}",
            q.kind,
            q.home.display()
        ),
        Some(path) => match crate::agents::read_into(&path, q.started, x) {
            Ok(n) => tracing::debug!("read {n} records of {}", path.display()),
            Err(e) => tracing::warn!("cannot read the agent's log {}: {e}", path.display()),
        },
    }
}

/// Chunks begun ahead of the one being fed, while more wait (`Extractor::begin`).
const AHEAD: usize = 3;

/// Stored records the writer hands back at most, waiting to be freed here.
const GIVEN_BACK: usize = 8;

/// The extraction thread's end of the writer's channel (both loops, pipes and PTY).
pub(super) struct ToWriter {
    sink: Option<SyncSender<Msg>>,
    sent_lines: u64,
    /// Records the writer has stored, handed back to be freed on this thread
    /// (`Msg::GiveBack`).
    back: Receiver<Vec<crate::event::Record>>,
}

impl ToWriter {
    pub(super) fn new(sink: SyncSender<Msg>) -> ToWriter {
        let (give_back, back) = mpsc::sync_channel(GIVEN_BACK);
        ToWriter {
            sink: sink.send(Msg::GiveBack(give_back)).is_ok().then_some(sink),
            sent_lines: 0,
            back,
        }
    }

    /// Sends the records extracted so far and the count of lines read; drops them once the
    /// writer has gone. First frees the records the writer has handed back.
    pub(super) fn send(&mut self, x: &mut Extractor) {
        while let Ok(stored) = self.back.try_recv() {
            x.give_back(stored);
        }
        if let Some(tx) = &self.sink {
            if x.has_records() || x.lines() != self.sent_lines {
                let before = std::mem::replace(&mut self.sent_lines, x.lines());
                if writer::send_records(tx, x.take(), before, self.sent_lines).is_err() {
                    self.sink = None;
                }
            }
        } else if x.has_records() {
            x.take();
        }
    }
}

/// The extraction thread: chunks in, records out, plus idle-prompt detection (SPEC §2).
/// Returns the session's line and event counts.
fn extract_loop(
    rx: queue::Receiver,
    mut x: Extractor,
    sink: SyncSender<Msg>,
    tap: Option<capture::CaptureTap>,
    prompt_idle: Duration,
    agent_log: Option<crate::agents::LogQuery>,
) -> (u64, u64) {
    use crate::event::{PerStream, Stream};
    let streams = Stream::ALL;
    let mut last_data: PerStream<Option<(Instant, Arc<str>)>> = PerStream::default();
    let mut out = ToWriter::new(sink);
    loop {
        let idle_at = streams
            .iter()
            .filter(|s| x.wants_idle_check(**s))
            .filter_map(|s| last_data[*s].as_ref().map(|(t, _)| *t + prompt_idle))
            .min();
        let msg = rx.recv_timeout(idle_at.map(|at| at.saturating_duration_since(Instant::now())));
        let done = match msg {
            Ok(chunk) => {
                // While more chunks wait, a few are begun ahead of the one being fed, so
                // the helper thread moves on to the next as this one is finished
                // (`extract/prescan.rs`); once the queue is empty every begun one is fed.
                let begin = |x: &mut Extractor, c: queue::Chunk| {
                    (c.stream, c.at, x.begin(c.stream, c.data))
                };
                let mut pending = std::collections::VecDeque::from([begin(&mut x, chunk)]);
                loop {
                    while pending.len() < AHEAD {
                        match rx.recv_timeout(Some(Duration::ZERO)) {
                            Ok(c) => pending.push_back(begin(&mut x, c)),
                            Err(_) => break,
                        }
                    }
                    let Some((stream, at, p)) = pending.pop_front() else {
                        break;
                    };
                    let ts: Arc<str> = format_timestamp(at).into();
                    let data = x.feed_pending(p, &ts);
                    last_data[stream] = Some((Instant::now(), ts));
                    if let Some(tap) = &tap {
                        tap.output(stream, data, at);
                    }
                    if !pending.is_empty() {
                        out.send(&mut x);
                    }
                }
                false
            }
            Err(RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                for s in streams {
                    if let Some((t, ts)) = &last_data[s] {
                        if x.wants_idle_check(s) && *t + prompt_idle <= now {
                            let ts = ts.clone();
                            x.idle(s, &ts);
                        }
                    }
                }
                false
            }
            Err(RecvTimeoutError::Disconnected) => {
                x.finish(&now_timestamp().into());
                if let Some(q) = &agent_log {
                    read_agent_log(q, &mut x);
                }
                true
            }
        };
        out.send(&mut x);
        if done {
            return (x.lines(), x.events());
        }
    }
}
