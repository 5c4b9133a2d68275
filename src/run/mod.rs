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

pub mod child;
pub mod pump;
pub mod queue;
pub mod signals;

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
use crate::extract::{Extractor, Matcher, Redactor};
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
    // Everything that can be wrong with the configuration is found before anything runs.
    // (Rules from files are compiled and their samples checked here; the built-ins are
    // compiled in the extraction thread while the agent starts: see `RuleBook::load`.)
    let book = RuleBook::load(&cfg.pattern_sources).map_err(CliError::usage)?;
    let spec = ChildSpec::from_words(cfg.command.clone());

    let session = SessionRow {
        session_id: cfg
            .session_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        agent_name: cfg.agent.clone(),
        environment: cfg.environment.clone(),
        started_at: now_timestamp(),
        hostname: store::hostname(),
        cwd: std::env::current_dir()
            .ok()
            .map(|p| p.to_string_lossy().into_owned()),
        command_json: serde_json::to_string(&spec.argv).unwrap_or_else(|_| "[]".into()),
        extraction_config_version: book.version(),
        environment_config_version: cfg.config_version.clone(),
        wrapper_version: env!("CARGO_PKG_VERSION").to_string(),
        wrapper_pid: std::process::id(),
    };

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
    let sink = if db.is_some() || events_out.is_some() {
        Some(
            Sink::start(SinkConfig {
                db,
                events_out,
                batch_size: cfg.batch_size,
                flush_interval: cfg.flush_interval,
                session: session.clone(),
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

    let take_terminal = child::should_take_terminal();
    let spawned = match child::spawn(&spec, take_terminal) {
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
    state(StateChange {
        state: State::Running,
        timestamp: now_timestamp(),
        exit_code: None,
        signal: None,
        pid: Some(spawned.pid.as_raw() as u32),
        metadata: Some(json!({
            "pgid": spawned.pgid.as_raw(),
            "via_shell": spec.via_shell,
            "foreground": spawned.took_terminal,
        })),
    });

    let outcome = supervise(
        spawned,
        &cfg,
        book,
        records_tx.clone(),
        ctl_tx,
        ctl_rx,
        reap_all,
        &state,
    );
    sig_handle.close();
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
        if has_db && report.spool.is_none() && report.events_committed != outcome.events {
            tracing::warn!(
                "{} events extracted but {} committed",
                outcome.events,
                report.events_committed
            );
        }
    }
    Ok(outcome.exit.code())
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
    book: RuleBook,
    records_tx: Option<SyncSender<Msg>>,
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

    // With nowhere to record to (no database, no --events-out), extraction would be work that
    // nobody sees: the pump then only passes bytes through.
    let (chunk_tx, extract, backlog) = match records_tx {
        None => (None, None, None),
        Some(records_tx) => {
            let (chunk_tx, chunk_rx) = queue::queue();
            let backlog = chunk_rx.backlog();
            let (agent, redact, max_line) = (cfg.agent.clone(), cfg.redact, cfg.max_line);
            let prompt_idle = cfg.prompt_idle;
            // The agent's own session log, read once it has exited (`agents/`).
            let agent_log = std::env::current_dir().ok().and_then(|cwd| {
                crate::agents::LogQuery::new(&cfg.agent, &cfg.command, SystemTime::now(), cwd)
            });
            let handle = thread::Builder::new()
                .name("wrapper-extract".into())
                .spawn(move || {
                    let mut extractor = build_extractor(&book, &agent, redact, max_line);
                    if agent_log.is_some() {
                        extractor.expect_log();
                    }
                    drop(book);
                    extract_loop(chunk_rx, extractor, records_tx, prompt_idle, agent_log)
                })
                .context("cannot start the extraction thread")?;
            (Some(chunk_tx), Some(handle), Some(backlog))
        }
    };

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
            // Bounded, in case the pump is held up writing to a terminal that does not read.
            let before_stop = || {
                while drained_rx.try_recv().is_ok() {}
                if nix::unistd::write(&wake_drain, &[pump::WAKE_DRAIN]).is_ok() {
                    let _ = drained_rx.recv_timeout(Duration::from_millis(500));
                }
            };
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

/// Backlog at the agent's exit above which wrapper says it is still recording (~1 s of work).
const BACKLOG_NOTICE: u64 = 16 << 20;

/// Compiles the rules for the extraction thread. The pump is already passing output through
/// and queueing it meanwhile, so compiling here costs the agent's start nothing. Rules loaded
/// from files were verified before the spawn; should the rule set as a whole still not compile
/// (a size limit), output keeps flowing and wrapper says that nothing will be extracted.
fn build_extractor(book: &RuleBook, agent: &str, redact: bool, max_line: usize) -> Extractor {
    let built =
        Matcher::new(book, Some(agent)).and_then(|m| Redactor::new(book, redact).map(|r| (m, r)));
    let (matcher, redactor) = match built {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("wrapper: warning: {e}; output passes through but nothing is extracted");
            (Matcher::empty(), Redactor::off())
        }
    };
    Extractor::new(Arc::new(matcher), Arc::new(redactor), max_line)
}

/// Finds and reads the session log the agent wrote; a log that cannot be found or read
/// costs the session nothing but a debug line.
fn read_agent_log(q: &crate::agents::LogQuery, x: &mut Extractor) {
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

/// The extraction thread: chunks in, records out, plus idle-prompt detection (SPEC §2).
/// Returns the session's line and event counts.
fn extract_loop(
    rx: queue::Receiver,
    mut x: Extractor,
    sink: SyncSender<Msg>,
    prompt_idle: Duration,
    agent_log: Option<crate::agents::LogQuery>,
) -> (u64, u64) {
    use crate::event::Stream;
    let streams = [Stream::Stdout, Stream::Stderr];
    let mut last_data: [Option<(Instant, Arc<str>)>; 2] = [None, None];
    let mut sent_lines = 0;
    let mut sink = Some(sink);
    loop {
        let idle_at = streams
            .iter()
            .filter(|s| x.wants_idle_check(**s))
            .filter_map(|s| last_data[s.index()].as_ref().map(|(t, _)| *t + prompt_idle))
            .min();
        let msg = rx.recv_timeout(idle_at.map(|at| at.saturating_duration_since(Instant::now())));
        let done = match msg {
            Ok(chunk) => {
                let ts: Arc<str> = format_timestamp(chunk.at).into();
                x.feed(chunk.stream, &chunk.data, &ts);
                last_data[chunk.stream.index()] = Some((Instant::now(), ts));
                false
            }
            Err(RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                for s in streams {
                    if let Some((t, ts)) = &last_data[s.index()] {
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
        if let Some(tx) = &sink {
            if x.has_records() || x.lines() != sent_lines {
                sent_lines = x.lines();
                let msg = Msg::Records {
                    records: x.take(),
                    lines: sent_lines,
                };
                if tx.send(msg).is_err() {
                    sink = None;
                }
            }
        } else if x.has_records() {
            x.take();
        }
        if done {
            return (x.lines(), x.events());
        }
    }
}
