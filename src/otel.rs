//! Sessions and events as OpenTelemetry log records over OTLP/HTTP (SPEC §10 "Fleets"), so a
//! fleet's agents arrive in the Collector or Vector a team already runs.
//!
//! Three event names, a stable interface like the table columns: `wrapper.session.start`,
//! `wrapper.session.end` and `wrapper.event` (one per extracted event), with `wrapper.*`
//! attributes (agent, session id, event type, pattern, risk, exit code, git facts) and the
//! agent's own session id where known, under the key that agent's own telemetry uses
//! (`session.id` for Claude Code and Gemini CLI, `conversation.id` for Codex), so the records
//! join theirs. Only redacted text leaves: event text is redacted before extraction hands it
//! on, the command line is not sent (just the program's name), the remote URL has no
//! credentials.
//!
//! The writer hands every message to [`Exporter::send`] ([`crate::sink::Output`]), which
//! copies the events into a queue bounded in records and returns at once: when the network
//! is slow the queue fills and further records are dropped and counted, so neither the agent
//! nor the database ever waits on it. A thread of its own batches records (512, or every
//! second), encodes them with the OTLP protobuf types (`opentelemetry-proto`) and POSTs them
//! with a blocking HTTP client (`ureq`), retrying what a Collector says to retry. At exit
//! it sends what is left within a deadline and says once what could not be delivered.
//!
//! Why not the opentelemetry SDK: its batch processor and exporter add a runtime's worth of
//! crates and threads for what is here one queue and one POST, and its async HTTP client
//! drops everything without a word outside a tokio runtime (DEPENDENCIES.md). The protobuf
//! types are the official ones; only HTTP/protobuf is spoken (every Collector and Vector
//! accept it on 4318). TLS (`https://`) needs the `otlp-tls` cargo feature (rustls), which
//! would otherwise double the crates this build compiles; a local Collector over plain HTTP
//! on the same host, forwarding with TLS, is the usual fleet layout anyway.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::event::{Event, Record};
use crate::sink::Output;
use crate::store::git::{GitEnd, GitStart, GitUpdate};
use crate::store::writer::{Msg, SessionRow, State, StateChange};

pub const EVENT_SESSION_START: &str = "wrapper.session.start";
pub const EVENT_SESSION_END: &str = "wrapper.session.end";
pub const EVENT: &str = "wrapper.event";

/// Longest time wrapper spends at exit delivering what is left.
pub const FLUSH_DEADLINE: Duration = Duration::from_secs(3);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Records waiting for export, as the OpenTelemetry SDKs' default `OTEL_BLRP_MAX_QUEUE_SIZE`:
/// an agent's events arrive a few a second, a flood beyond what the export thread sends is
/// dropped and counted whatever the bound, and each queued record is a copy of its event (at
/// 8192, a flood peaked 1.5-3 MiB higher: docs/PERFORMANCE.md).
const DEFAULT_QUEUE: usize = 2048;
const DEFAULT_BATCH: usize = 512;
const DEFAULT_DELAY: Duration = Duration::from_secs(1);
/// Longest attribute text sent (an event's line may be 64 KiB).
const MAX_TEXT: usize = 8 * 1024;
/// Commit ids listed on `wrapper.session.end` at most.
const MAX_COMMIT_IDS: usize = 100;

/// Where and how to export, resolved from flags, environment and config.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// The full logs URL (`…/v1/logs`).
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
    /// `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME`, in order.
    pub resource: Vec<(String, String)>,
    /// Per request.
    pub timeout: Duration,
    /// Records that may wait for the network.
    pub queue: usize,
    pub batch: usize,
    /// Longest a record waits before its batch is sent.
    pub delay: Duration,
}

/// Where a setting came from: what the user told wrapper must be right (exit 2 if not);
/// what it inherits from an environment set up for other tools must not stop the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Explicit,
    Environment,
}

/// The outcome of resolving: a configuration, nothing, or a problem with the environment
/// that turns export off with a warning.
#[derive(Debug, PartialEq)]
pub enum Resolved {
    On(OtlpConfig),
    Off,
    OffWithWarning(String),
}

impl OtlpConfig {
    /// `--otlp-endpoint` (`cli`) > `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` (used as it is) >
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (+ `/v1/logs`) > config `otlp_endpoint`. A base URL from
    /// the flag or the config gets `/v1/logs` unless it already ends so. `env` reads a
    /// variable (the process environment in a run). An explicit setting that is wrong is an
    /// `Err`; a wrong inherited one turns export off with a warning.
    pub fn resolve(
        cli: Option<&str>,
        file_endpoint: Option<&str>,
        file_headers: &[(String, String)],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Resolved, String> {
        let var = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        // Checked before the agent starts, export on or not, rather than refused by the HTTP
        // client at the first export (a warning at the end of a run that exported nothing).
        for (k, v) in file_headers {
            check_header(k, v).map_err(|e| format!("config `otlp_headers`: {e}"))?;
        }
        let flagged = cli
            .map(|u| ("--otlp-endpoint", base_to_logs(u)))
            .or_else(|| file_endpoint.map(|u| ("config `otlp_endpoint`", base_to_logs(u))));
        let from_env = var("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
            .map(|u| ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", u.trim().to_string()))
            .or_else(|| {
                var("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .map(|u| ("OTEL_EXPORTER_OTLP_ENDPOINT", join_logs_path(u.trim())))
            });
        let chosen = match (cli, from_env) {
            (None, Some(e)) => Some((e, Origin::Environment)),
            _ => flagged.map(|f| (f, Origin::Explicit)),
        };
        let Some(((origin, endpoint), from)) = chosen else {
            return Ok(Resolved::Off);
        };
        // Switched off the standard way (an explicit flag still wins).
        if cli.is_none()
            && (var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
                || var("OTEL_LOGS_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none")))
        {
            return Ok(Resolved::Off);
        }
        let problem = |msg: String| -> Result<Resolved, String> {
            match from {
                Origin::Explicit => Err(msg),
                Origin::Environment => Ok(Resolved::OffWithWarning(format!(
                    "{msg}; OTLP export is off for this run"
                ))),
            }
        };
        if from == Origin::Environment {
            let protocol = var("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL")
                .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"));
            if let Some(p) = protocol.filter(|p| p.trim() == "grpc") {
                return problem(format!(
                    "{origin}: the protocol is {p:?}, and wrapper speaks OTLP over HTTP only \
                     (http/protobuf, port 4318); set OTEL_EXPORTER_OTLP_LOGS_PROTOCOL=http/protobuf \
                     and an HTTP endpoint, or use --otlp-endpoint"
                ));
            }
        }
        if let Err(e) = check_url(&endpoint) {
            return problem(format!("{origin}: {e}"));
        }
        let mut headers = file_headers.to_vec();
        for name in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
        ] {
            if let Some(v) = var(name) {
                match parse_pairs(&v) {
                    Ok(pairs) => {
                        if let Some(e) = pairs.iter().find_map(|(k, v)| check_header(k, v).err()) {
                            return problem(format!("{name}: {e}"));
                        }
                        for (k, v) in pairs {
                            headers.retain(|(hk, _)| !hk.eq_ignore_ascii_case(&k));
                            headers.push((k, v));
                        }
                    }
                    Err(e) => return problem(format!("{name}: {e}")),
                }
            }
        }
        let mut resource = Vec::new();
        if let Some(v) = var("OTEL_RESOURCE_ATTRIBUTES") {
            match parse_pairs(&v) {
                Ok(p) => resource = p,
                Err(e) => return problem(format!("OTEL_RESOURCE_ATTRIBUTES: {e}")),
            }
        }
        if let Some(name) = var("OTEL_SERVICE_NAME") {
            resource.push(("service.name".into(), name));
        }
        let millis = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|n| var(n))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_millis)
        };
        let count = |name: &str| var(name).and_then(|v| v.trim().parse::<usize>().ok());
        Ok(Resolved::On(OtlpConfig {
            endpoint,
            headers,
            resource,
            timeout: millis([
                "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ])
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_TIMEOUT),
            queue: count("OTEL_BLRP_MAX_QUEUE_SIZE")
                .filter(|&n| n > 0)
                .unwrap_or(DEFAULT_QUEUE),
            batch: count("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE")
                .filter(|&n| n > 0)
                .unwrap_or(DEFAULT_BATCH),
            delay: millis(["OTEL_BLRP_SCHEDULE_DELAY", "OTEL_BLRP_SCHEDULE_DELAY"])
                .unwrap_or(DEFAULT_DELAY),
        }))
    }
}

/// `http://host:4318` → `http://host:4318/v1/logs`; a URL already ending so is kept.
fn base_to_logs(url: &str) -> String {
    let url = url.trim();
    if url.trim_end_matches('/').ends_with("/v1/logs") {
        url.trim_end_matches('/').to_string()
    } else {
        join_logs_path(url)
    }
}

/// The spec's rule for `OTEL_EXPORTER_OTLP_ENDPOINT`: append `v1/logs` to the base path.
fn join_logs_path(base: &str) -> String {
    format!("{}/v1/logs", base.trim_end_matches('/'))
}

fn check_url(url: &str) -> Result<(), String> {
    let rest = if let Some(r) = url.strip_prefix("http://") {
        r
    } else if let Some(r) = url.strip_prefix("https://") {
        if !cfg!(feature = "otlp-tls") {
            return Err(format!(
                "{url:?} is https, and this wrapper was built without TLS (cargo feature \
                 `otlp-tls`); send to a local Collector over http:// or rebuild with it"
            ));
        }
        r
    } else {
        return Err(format!("{url:?} is not an http:// or https:// URL"));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains('@') {
        return Err(format!(
            "{url:?} has no host (or has credentials in it: use OTEL_EXPORTER_OTLP_HEADERS)"
        ));
    }
    Ok(())
}

/// An HTTP header the exporter can send: a name of token characters (RFC 9110: letters,
/// digits and ``!#$%&'*+-.^_`|~``), a value without control characters but tab.
fn check_header(name: &str, value: &str) -> Result<(), String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!(
            "{name:?} is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)"
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!(
            "the value of header {name:?} holds a control character (a newline?)"
        ));
    }
    Ok(())
}

/// `k1=v1,k2=v2`, values percent-decoded (the W3C Baggage form the OTel spec uses for
/// headers and resource attributes).
pub fn parse_pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!("{item:?} is not key=value"));
        };
        let k = decode(k.trim());
        if k.is_empty() {
            return Err(format!("{item:?} has an empty key"));
        }
        out.push((k, decode(v.trim())));
    }
    Ok(out)
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

// ---------------------------------------------------------------------------------------------
// The output the writer feeds

/// What the writer side hands to the export thread.
enum Item {
    Events(Vec<Event>),
    State(StateChange),
    Git(GitUpdate),
    /// The agent's own session id, from its JSON stream or session log (`Record::Facts`).
    AgentSession(String),
    /// Deliver the rest by the deadline, then say how it went.
    Finish(Instant),
}

/// How export went, reported at the end.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExportReport {
    pub sent: u64,
    /// Left out because the queue was full.
    pub dropped: u64,
    /// Sent but not accepted, or not sent by the deadline.
    pub failed: u64,
    pub last_error: Option<String>,
}

/// The OTLP output of one session: a bounded queue to the export thread.
pub struct Exporter {
    tx: Sender<Item>,
    /// Records waiting in the channel (events; starts and ends are never dropped).
    queued: Arc<AtomicUsize>,
    capacity: usize,
    /// Records left out because the queue was full (shared: the end record tells it).
    dropped: Arc<AtomicU64>,
    done: Receiver<ExportReport>,
    endpoint: String,
}

impl Exporter {
    /// Starts the export thread for `session`; the `wrapper.session.start` record is sent
    /// with the first batch (by then the repository facts are usually known).
    /// `git_wait`: the git probe runs, and the start record waits this long at most for its
    /// first report.
    pub fn start(
        cfg: OtlpConfig,
        session: &SessionRow,
        program: &str,
        git_wait: Option<Duration>,
    ) -> io::Result<Exporter> {
        let (tx, rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let endpoint = cfg.endpoint.clone();
        let capacity = cfg.queue;
        let dropped = Arc::new(AtomicU64::new(0));
        let (session, program) = (session.clone(), program.to_string());
        let (q, d) = (queued.clone(), dropped.clone());
        thread::Builder::new()
            .name("wrapper-otlp".into())
            .spawn(move || {
                // Built here, not on the agent's start-up path.
                let mut worker = Worker::new(cfg, session, &program, q, d, git_wait);
                let report = worker.run(rx);
                let _ = done_tx.send(report);
            })?;
        Ok(Exporter {
            tx,
            queued,
            capacity,
            dropped,
            done,
            endpoint,
        })
    }

    fn events(&mut self, records: &[Record]) {
        let n = records
            .iter()
            .filter(|r| matches!(r, Record::Event(_)))
            .count();
        if n == 0 {
            return;
        }
        let room = self
            .capacity
            .saturating_sub(self.queued.load(Ordering::Relaxed));
        let take = n.min(room);
        self.dropped.fetch_add((n - take) as u64, Ordering::Relaxed);
        if take == 0 {
            return;
        }
        for r in records {
            if let Record::Facts(f) = r {
                if let Some(id) = &f.agent_session_id {
                    let _ = self.tx.send(Item::AgentSession(id.clone()));
                }
            }
        }
        let events: Vec<Event> = records
            .iter()
            .filter_map(|r| match r {
                Record::Event(e) => Some(e.clone()),
                Record::CodeBlock(_) | Record::Facts(_) | Record::Merge(_) => None,
            })
            .take(take)
            .collect();
        self.queued.fetch_add(take, Ordering::Relaxed);
        let _ = self.tx.send(Item::Events(events));
    }

    /// Waits for the export thread to deliver the rest (at most [`FLUSH_DEADLINE`]).
    pub fn finish_report(self) -> ExportReport {
        let deadline = Instant::now() + FLUSH_DEADLINE;
        let _ = self.tx.send(Item::Finish(deadline));
        let mut report = match self
            .done
            .recv_timeout(FLUSH_DEADLINE + Duration::from_millis(200))
        {
            Ok(r) => r,
            Err(_) => ExportReport {
                last_error: Some(format!(
                    "not finished within {}",
                    humantime::format_duration(FLUSH_DEADLINE)
                )),
                failed: self.queued.load(Ordering::Relaxed) as u64,
                ..Default::default()
            },
        };
        report.dropped = self.dropped.load(Ordering::Relaxed);
        report
    }
}

impl Output for Exporter {
    fn send(&mut self, msg: &Msg) {
        match msg {
            Msg::Records { records, .. } => self.events(records),
            Msg::State(st) if st.state.is_final() => {
                let _ = self.tx.send(Item::State(st.clone()));
            }
            Msg::State(_) => {}
            Msg::Git(u) => {
                let _ = self.tx.send(Item::Git(u.clone()));
            }
            // The raw output is the database's to keep, never shipped.
            Msg::Capture(_) => {}
            Msg::GiveBack(_) => {}
        }
    }

    fn finish(self: Box<Self>) {
        let endpoint = self.endpoint.clone();
        let r = self.finish_report();
        let lost = r.dropped + r.failed;
        if lost > 0 {
            let why = r
                .last_error
                .as_deref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default();
            eprintln!(
                "wrapper: warning: OTLP export to {endpoint}: {lost} of {} records not delivered \
                 ({} dropped because the queue was full, {} failed){why}",
                r.sent + lost,
                r.dropped,
                r.failed
            );
        } else {
            tracing::debug!("OTLP export to {endpoint}: {} records sent", r.sent);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The export thread

struct Worker {
    cfg: OtlpConfig,
    agent: ureq::Agent,
    session: SessionRow,
    program: String,
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
    resource: Resource,
    pending: Vec<LogRecord>,
    start_sent: bool,
    /// The git probe runs and has not reported yet.
    git_pending: bool,
    /// Longest the start record waits for the repository facts.
    start_wait: Duration,
    git_start: Option<GitStart>,
    git_end: Option<GitEnd>,
    /// The agent's own session id, once known (from `Record::Facts`: the agent's JSON stream or session log).
    agent_session: Option<String>,
    report: ExportReport,
}

impl Worker {
    fn new(
        cfg: OtlpConfig,
        session: SessionRow,
        program: &str,
        queued: Arc<AtomicUsize>,
        dropped: Arc<AtomicU64>,
        git_wait: Option<Duration>,
    ) -> Worker {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!("wrapper/", env!("CARGO_PKG_VERSION")))
            .timeout_global(Some(cfg.timeout))
            .build()
            .into();
        let resource = resource(&cfg.resource, &session.hostname);
        Worker {
            cfg,
            agent,
            session,
            program: program.to_string(),
            queued,
            dropped,
            resource,
            pending: Vec::new(),
            start_sent: false,
            git_pending: git_wait.is_some(),
            start_wait: git_wait.unwrap_or_default(),
            git_start: None,
            git_end: None,
            agent_session: None,
            report: ExportReport::default(),
        }
    }

    fn run(&mut self, rx: Receiver<Item>) -> ExportReport {
        let born = Instant::now();
        let mut flush_at = born + self.cfg.delay;
        loop {
            // The start record waits (a little) for the repository facts.
            let start_ready = !self.git_pending || born.elapsed() >= self.start_wait;
            let wake = if self.start_sent || start_ready {
                flush_at
            } else {
                born + self.start_wait
            };
            let wait = wake.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Item::Events(events)) => {
                    self.queued.fetch_sub(events.len(), Ordering::Relaxed);
                    for e in &events {
                        let r = event_record(e, &self.common());
                        self.pending.push(r);
                    }
                }
                Ok(Item::State(st)) => {
                    self.ensure_start();
                    let r = end_record(
                        &self.session,
                        &st,
                        self.git_start.as_ref(),
                        self.git_end.as_ref(),
                        &self.common(),
                        self.dropped.load(Ordering::Relaxed),
                    );
                    self.pending.push(r);
                }
                Ok(Item::Git(GitUpdate::Start(s))) => {
                    self.git_start = Some(s);
                    self.git_pending = false;
                }
                Ok(Item::Git(GitUpdate::NotARepository)) => self.git_pending = false,
                Ok(Item::AgentSession(id)) => self.agent_session = Some(id),
                Ok(Item::Git(GitUpdate::End(e))) => self.git_end = Some(e),
                Ok(Item::Finish(deadline)) => {
                    self.ensure_start();
                    self.flush(Some(deadline));
                    return std::mem::take(&mut self.report);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if Instant::now() >= flush_at {
                        if self.start_sent || start_ready || born.elapsed() >= self.start_wait {
                            self.ensure_start();
                            self.flush(None);
                        }
                        flush_at = Instant::now() + self.cfg.delay;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.ensure_start();
                    self.flush(Some(Instant::now() + FLUSH_DEADLINE));
                    return std::mem::take(&mut self.report);
                }
            }
            if self.pending.len() >= self.cfg.batch {
                self.ensure_start();
                let batch: Vec<LogRecord> = self.pending.drain(..self.cfg.batch).collect();
                self.export(batch, None);
            }
        }
    }

    /// The attributes every record carries.
    fn common(&self) -> Vec<KeyValue> {
        let mut a = vec![
            kv_str("wrapper.session.id", &self.session.session_id),
            kv_str("wrapper.agent", &self.session.agent_name),
        ];
        if let Some(env) = &self.session.environment {
            a.push(kv_str("wrapper.environment", env));
        }
        if let Some(g) = &self.git_start {
            if let Some(url) = &g.remote_url {
                a.push(kv_str("vcs.repository.url.full", url));
            }
            if let Some(b) = &g.branch {
                a.push(kv_str("vcs.ref.head.name", b));
            }
        }
        if let Some(id) = &self.agent_session {
            a.extend(agent_join_attributes(&self.session.agent_name, id));
        }
        a
    }

    fn ensure_start(&mut self) {
        if self.start_sent {
            return;
        }
        self.start_sent = true;
        let r = start_record(
            &self.session,
            &self.program,
            self.git_start.as_ref(),
            &self.common(),
        );
        self.pending.insert(0, r);
    }

    /// Sends everything pending, batch by batch.
    fn flush(&mut self, deadline: Option<Instant>) {
        while !self.pending.is_empty() {
            let n = self.pending.len().min(self.cfg.batch);
            let batch: Vec<LogRecord> = self.pending.drain(..n).collect();
            self.export(batch, deadline);
        }
    }

    /// One POST, retried (twice, with a pause) when the Collector or the network says so.
    fn export(&mut self, batch: Vec<LogRecord>, deadline: Option<Instant>) {
        let n = batch.len() as u64;
        let body = request(&self.resource, batch);
        let mut pause = Duration::from_millis(100);
        for attempt in 0..3 {
            let timeout = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        self.fail(n, "the exit deadline passed".into());
                        return;
                    }
                    left.min(self.cfg.timeout)
                }
                None => self.cfg.timeout,
            };
            let mut req = self
                .agent
                .post(&self.cfg.endpoint)
                .header("Content-Type", "application/x-protobuf");
            for (k, v) in &self.cfg.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let result = req
                .config()
                .timeout_global(Some(timeout))
                .build()
                .send(&body[..]);
            let retry = match result {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let bytes = resp
                        .body_mut()
                        .with_config()
                        .limit(1 << 20)
                        .read_to_vec()
                        .unwrap_or_default();
                    if (200..300).contains(&status) {
                        let rejected = ExportLogsServiceResponse::decode(&bytes[..])
                            .ok()
                            .and_then(|r| r.partial_success)
                            .map_or(0, |p| p.rejected_log_records.max(0) as u64)
                            .min(n);
                        self.report.sent += n - rejected;
                        if rejected > 0 {
                            self.fail(rejected, "the receiver rejected some records".into());
                        }
                        return;
                    }
                    let msg = format!("HTTP {status}");
                    if matches!(status, 429 | 502 | 503 | 504) {
                        Some(msg)
                    } else {
                        self.fail(n, msg);
                        return;
                    }
                }
                Err(e) => Some(e.to_string()),
            };
            if let Some(msg) = retry {
                tracing::debug!("OTLP export attempt {} failed: {msg}", attempt + 1);
                let late = deadline.is_some_and(|d| Instant::now() + pause >= d);
                if attempt == 2 || late {
                    self.fail(n, msg);
                    return;
                }
                thread::sleep(pause);
                pause *= 4;
            }
        }
    }

    fn fail(&mut self, n: u64, why: String) {
        self.report.failed += n;
        self.report.last_error = Some(why);
    }
}

/// The agent's session id under wrapper's key and under the key the agent's own telemetry
/// uses, so a backend can join the two streams.
pub fn agent_join_attributes(agent: &str, id: &str) -> Vec<KeyValue> {
    let mut a = vec![kv_str("wrapper.agent.session_id", id)];
    let lower = agent.to_ascii_lowercase();
    if lower.contains("codex") {
        a.push(kv_str("conversation.id", id));
    } else if lower.contains("claude") || lower.contains("gemini") {
        a.push(kv_str("session.id", id));
    }
    a
}

// ---------------------------------------------------------------------------------------------
// Records: pure functions from wrapper's values to OTLP messages

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn kv_str(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.to_string()))
}

fn kv_int(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

fn kv_bool(key: &str, v: bool) -> KeyValue {
    kv(key, any_value::Value::BoolValue(v))
}

fn body(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(cut(s).to_string())),
    })
}

/// At most [`MAX_TEXT`] bytes, on a character boundary.
fn cut(s: &str) -> &str {
    if s.len() <= MAX_TEXT {
        return s;
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A stored timestamp (`2026-11-22T10:30:00.123Z`) in nanoseconds since the epoch.
fn nanos(ts: &str) -> u64 {
    chrono::DateTime::parse_from_rfc3339(ts)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .map_or_else(now_nanos, |n| n.max(0) as u64)
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn record(
    name: &str,
    ts: &str,
    severity: (i32, &str),
    text: &str,
    attrs: Vec<KeyValue>,
) -> LogRecord {
    let mut attributes = vec![kv_str("event.name", name)];
    attributes.extend(attrs);
    LogRecord {
        time_unix_nano: nanos(ts),
        observed_time_unix_nano: now_nanos(),
        severity_number: severity.0,
        severity_text: severity.1.to_string(),
        body: body(text),
        attributes,
        event_name: name.to_string(),
        ..Default::default()
    }
}

const INFO: (i32, &str) = (9, "INFO");
const WARN: (i32, &str) = (13, "WARN");
const ERROR: (i32, &str) = (17, "ERROR");

fn git_start_attrs(a: &mut Vec<KeyValue>, g: &GitStart) {
    if let Some(v) = &g.repo_root {
        a.push(kv_str("wrapper.git.repo_root", v));
    }
    if let Some(v) = &g.head_start {
        a.push(kv_str("wrapper.git.head_start", v));
    }
    if let Some(v) = g.dirty_start {
        a.push(kv_bool("wrapper.git.dirty_start", v));
    }
    if let Some(v) = &g.error {
        a.push(kv_str("wrapper.git.error", v));
    }
}

fn start_record(
    s: &SessionRow,
    program: &str,
    git: Option<&GitStart>,
    common: &[KeyValue],
) -> LogRecord {
    let mut a = common.to_vec();
    a.push(kv_str("process.executable.name", program));
    a.push(kv_str("wrapper.version", &s.wrapper_version));
    a.push(kv_str(
        "wrapper.rules.version",
        &s.extraction_config_version,
    ));
    if let Some(cwd) = &s.cwd {
        a.push(kv_str("process.working_directory", cwd));
    }
    if let Some(g) = git {
        git_start_attrs(&mut a, g);
    }
    let text = format!("{} session started: {program}", s.agent_name);
    record(EVENT_SESSION_START, &s.started_at, INFO, &text, a)
}

fn end_record(
    s: &SessionRow,
    st: &StateChange,
    git_start: Option<&GitStart>,
    git_end: Option<&GitEnd>,
    common: &[KeyValue],
    dropped: u64,
) -> LogRecord {
    let mut a = common.to_vec();
    a.push(kv_str("wrapper.session.state", st.state.as_str()));
    if let Some(c) = st.exit_code {
        a.push(kv_int("process.exit.code", c.into()));
    }
    if let Some(sig) = &st.signal {
        a.push(kv_str("wrapper.session.signal", sig));
    }
    if let Some(ms) = crate::time::duration_ms(&s.started_at, &st.timestamp) {
        a.push(kv_int("wrapper.session.duration_ms", ms));
    }
    if let Some(m) = &st.metadata {
        for (key, name) in [
            ("lines", "wrapper.session.lines"),
            ("events", "wrapper.session.events"),
        ] {
            if let Some(n) = m.get(key).and_then(|v| v.as_i64()) {
                a.push(kv_int(name, n));
            }
        }
    }
    if let Some(g) = git_start {
        git_start_attrs(&mut a, g);
    }
    if let Some(g) = git_end {
        if let Some(v) = &g.head_end {
            a.push(kv_str("wrapper.git.head_end", v));
            a.push(kv_str("vcs.ref.head.revision", v));
        }
        if let Some(v) = &g.branch_end {
            a.push(kv_str("wrapper.git.branch_end", v));
        }
        if let Some(v) = g.dirty_end {
            a.push(kv_bool("wrapper.git.dirty_end", v));
        }
        a.push(kv_int("wrapper.git.commit_count", g.commit_count as i64));
        a.push(kv_int("wrapper.git.file_count", g.file_count as i64));
        if !g.commits.is_empty() {
            let ids = g
                .commits
                .iter()
                .take(MAX_COMMIT_IDS)
                .map(|c| AnyValue {
                    value: Some(any_value::Value::StringValue(c.sha.clone())),
                })
                .collect();
            a.push(kv(
                "wrapper.git.commits",
                any_value::Value::ArrayValue(ArrayValue { values: ids }),
            ));
        }
        if let Some(v) = &g.error {
            a.push(kv_str("wrapper.git.end_error", v));
        }
    }
    a.push(kv_int("wrapper.export.dropped", dropped as i64));
    let severity = match st.state {
        State::Completed => INFO,
        State::Failed | State::Killed | State::SpawnFailed => ERROR,
        _ => WARN,
    };
    let text = match (st.exit_code, &st.signal) {
        (_, Some(sig)) => format!("{} session {} ({sig})", s.agent_name, st.state.as_str()),
        (Some(c), None) => format!("{} session {} (exit {c})", s.agent_name, st.state.as_str()),
        (None, None) => format!("{} session {}", s.agent_name, st.state.as_str()),
    };
    record(EVENT_SESSION_END, &st.timestamp, severity, &text, a)
}

fn event_record(e: &Event, common: &[KeyValue]) -> LogRecord {
    let mut a = common.to_vec();
    a.push(kv_str("wrapper.event.type", &e.event_type));
    a.push(kv_str("wrapper.event.pattern", &e.pattern));
    a.push(kv_str("wrapper.event.stream", e.stream.as_str()));
    a.push(kv_int("wrapper.event.line_number", e.line_number as i64));
    if let Some(r) = e.risk_level {
        a.push(kv_str("wrapper.event.risk", r.as_str()));
    }
    if e.auto_confirmable {
        a.push(kv_bool("wrapper.event.auto_confirmable", true));
    }
    if let Some(l) = &e.code_block_language {
        a.push(kv_str("wrapper.event.code_block_language", l));
    }
    if let Some(line) = &e.original_line {
        a.push(kv_str("wrapper.event.line", cut(line)));
    }
    let severity = match (&*e.event_type, e.risk_level) {
        ("error", _) => ERROR,
        ("warning", _) => WARN,
        (_, Some(crate::event::RiskLevel::High | crate::event::RiskLevel::Critical)) => WARN,
        _ => INFO,
    };
    let text = e
        .matched_value
        .as_deref()
        .or(e.original_line.as_deref())
        .unwrap_or("");
    record(EVENT, &e.timestamp, severity, text, a)
}

fn resource(pairs: &[(String, String)], hostname: &str) -> Resource {
    let mut map: Vec<(String, String)> = vec![
        ("service.name".into(), "wrapper".into()),
        ("service.version".into(), env!("CARGO_PKG_VERSION").into()),
        ("host.name".into(), hostname.into()),
    ];
    for (k, v) in pairs {
        map.retain(|(mk, _)| mk != k);
        map.push((k.clone(), v.clone()));
    }
    Resource {
        attributes: map.iter().map(|(k, v)| kv_str(k, v)).collect(),
        ..Default::default()
    }
}

/// One export request, encoded.
pub fn request(resource: &Resource, records: Vec<LogRecord>) -> Vec<u8> {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource.clone()),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "wrapper".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The attributes of a record as a map of their string forms.
    fn attribute_map(attrs: &[KeyValue]) -> HashMap<String, String> {
        attrs
            .iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    Some(any_value::Value::IntValue(i)) => i.to_string(),
                    Some(any_value::Value::BoolValue(b)) => b.to_string(),
                    Some(any_value::Value::DoubleValue(d)) => d.to_string(),
                    Some(any_value::Value::ArrayValue(a)) => a
                        .values
                        .iter()
                        .filter_map(|v| match &v.value {
                            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                            _ => None,
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                    _ => String::new(),
                };
                (kv.key.clone(), v)
            })
            .collect()
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn on(r: Result<Resolved, String>) -> OtlpConfig {
        match r {
            Ok(Resolved::On(c)) => c,
            other => panic!("expected a configuration, got {other:?}"),
        }
    }

    #[test]
    fn endpoints_follow_the_otel_rules_and_wrappers_precedence() {
        let none: &[(&str, &str)] = &[];
        assert_eq!(
            OtlpConfig::resolve(None, None, &[], env(none)),
            Ok(Resolved::Off)
        );
        let c = on(OtlpConfig::resolve(
            Some("http://h:4318"),
            None,
            &[],
            env(none),
        ));
        assert_eq!(c.endpoint, "http://h:4318/v1/logs");
        let c = on(OtlpConfig::resolve(
            Some("http://h:4318/v1/logs/"),
            None,
            &[],
            env(none),
        ));
        assert_eq!(c.endpoint, "http://h:4318/v1/logs");
        let base = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/otlp/")];
        let c = on(OtlpConfig::resolve(
            None,
            Some("http://file:1"),
            &[],
            env(&base),
        ));
        assert_eq!(
            c.endpoint, "http://c:4318/otlp/v1/logs",
            "environment beats the file"
        );
        let logs = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://l:9/ingest"),
        ];
        let c = on(OtlpConfig::resolve(None, None, &[], env(&logs)));
        assert_eq!(
            c.endpoint, "http://l:9/ingest",
            "the per-signal URL is used as it is"
        );
        let c = on(OtlpConfig::resolve(
            Some("http://flag:1"),
            None,
            &[],
            env(&logs),
        ));
        assert_eq!(
            c.endpoint, "http://flag:1/v1/logs",
            "the flag beats everything"
        );
        let off = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ];
        assert_eq!(
            OtlpConfig::resolve(None, None, &[], env(&off)),
            Ok(Resolved::Off)
        );
    }

    #[test]
    fn explicit_mistakes_are_errors_inherited_ones_warnings() {
        let none: &[(&str, &str)] = &[];
        let e = OtlpConfig::resolve(Some("collector:4318"), None, &[], env(none)).unwrap_err();
        assert!(
            e.contains("--otlp-endpoint") && e.contains("not an http"),
            "{e}"
        );
        let grpc = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ];
        match OtlpConfig::resolve(None, None, &[], env(&grpc)) {
            Ok(Resolved::OffWithWarning(w)) => assert!(w.contains("grpc"), "{w}"),
            other => panic!("{other:?}"),
        }
        // The flag speaks HTTP whatever the environment says the protocol is.
        on(OtlpConfig::resolve(
            Some("http://c:4318"),
            None,
            &[],
            env(&grpc),
        ));
    }

    #[test]
    fn headers_and_resource_attributes_are_decoded() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Bearer%20abc, x-team=a%2Cb",
            ),
            ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "x-team=logs"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=ci,team=infra",
            ),
            ("OTEL_SERVICE_NAME", "agents"),
        ];
        let file = [("x-from-file".to_string(), "1".to_string())];
        let c = on(OtlpConfig::resolve(None, None, &file, env(&vars)));
        assert_eq!(
            c.headers,
            [
                ("x-from-file".into(), "1".into()),
                ("Authorization".into(), "Bearer abc".into()),
                ("x-team".into(), "logs".into())
            ]
        );
        let r = attribute_map(&resource(&c.resource, "h1").attributes);
        assert_eq!(r["service.name"], "agents");
        assert_eq!(r["deployment.environment"], "ci");
        assert_eq!(r["host.name"], "h1");
        assert!(parse_pairs("novalue").is_err());
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let s = "é".repeat(MAX_TEXT);
        let c = cut(&s);
        assert!(c.len() <= MAX_TEXT && c.len() >= MAX_TEXT - 1);
        assert!(s.starts_with(c));
    }
}
