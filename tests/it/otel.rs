//! OTLP export end to end: the real binary sends to a loopback receiver that decodes the
//! protobuf with the official types; records, attributes, headers, redaction, and what
//! happens when the receiver fails or stalls.

use std::process::Stdio;

use crate::harness::{wait_until, Env, Running};
use crate::otlp::{attrs, body, Mode, Receiver};

/// `wrapper codex --no-default-patterns --patterns rules.toml [extra] -- sh -c script`,
/// without a database.
fn run_no_db(env: &Env, extra: &[&str], script: &str) -> std::process::Output {
    env.cmd()
        .arg("codex")
        .arg("--no-default-patterns")
        .arg("--patterns")
        .arg(env.rules())
        .args(extra)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .expect("run wrapper")
}

#[test]
fn sessions_and_events_arrive_as_log_records_without_a_database() {
    let env = Env::new();
    let rx = Receiver::start(Mode::Ok);
    let out = run_no_db(
        &env,
        &["--otlp-endpoint", &rx.base_url(), "--session-id", "otel-1"],
        "echo 'error[E0308]: mismatched types'; echo 'key sk-abcdefghijklmnop1234 here'; \
         echo 'error: with sk-abcdefghijklmnop1234'; printf 'Delete everything? [y/N] \\n'; exit 3",
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("sk-abcdefghijklmnop1234"),
        "passthrough is not redacted"
    );
    assert!(
        !env.db().exists(),
        "no database without --enable-db, export all the same"
    );

    let start = rx.records_named("wrapper.session.start");
    let end = rx.records_named("wrapper.session.end");
    let events = rx.records_named("wrapper.event");
    assert_eq!((start.len(), end.len()), (1, 1), "{:#?}", rx.records());
    assert_eq!(events.len(), 3, "{events:#?}");

    let s = attrs(&start[0].attributes);
    assert_eq!(s["wrapper.session.id"], "otel-1");
    assert_eq!(s["wrapper.agent"], "codex");
    assert_eq!(s["event.name"], "wrapper.session.start");
    assert_eq!(s["process.executable.name"], "sh");
    assert!(
        !s.values().any(|v| v.contains("echo")),
        "the command line is not sent: {s:?}"
    );

    let e0 = attrs(&events[0].attributes);
    assert_eq!(e0["wrapper.event.type"], "error");
    assert_eq!(e0["wrapper.event.pattern"], "t_error");
    assert_eq!(e0["wrapper.event.stream"], "stdout");
    assert_eq!(e0["wrapper.event.line_number"], "1");
    assert_eq!(e0["wrapper.session.id"], "otel-1");
    assert_eq!(body(&events[0]), "mismatched types");
    assert_eq!(events[0].severity_text, "ERROR");
    assert_eq!(events[0].severity_number, 17);
    assert!(events[0].time_unix_nano > 1_700_000_000_000_000_000);

    let secret = attrs(&events[1].attributes);
    // (the built-in rules, which --no-default-patterns keeps, name this key first)
    assert!(
        body(&events[1]).starts_with("with [REDACTED:"),
        "{:?}",
        body(&events[1])
    );
    assert!(secret["wrapper.event.line"].starts_with("error: with [REDACTED:"));

    let prompt = attrs(&events[2].attributes);
    assert_eq!(prompt["wrapper.event.type"], "prompt");
    assert_eq!(prompt["wrapper.event.risk"], "high");
    assert_eq!(events[2].severity_text, "WARN");

    let e = attrs(&end[0].attributes);
    assert_eq!(e["wrapper.session.state"], "failed");
    assert_eq!(e["process.exit.code"], "3");
    assert_eq!(e["wrapper.session.lines"], "4");
    assert_eq!(e["wrapper.session.events"], "3");
    assert_eq!(e["wrapper.export.dropped"], "0");
    assert_eq!(end[0].severity_text, "ERROR");

    // Nothing anywhere holds the secret.
    for r in rx.records() {
        let all = format!("{r:?}");
        assert!(!all.contains("sk-abcdefghijklmnop1234"), "{all}");
    }
    let req = &rx.requests()[0];
    assert_eq!(req.path, "/v1/logs");
    assert_eq!(req.headers["content-type"], "application/x-protobuf");
    let res = attrs(
        &req.request.resource_logs[0]
            .resource
            .as_ref()
            .expect("resource")
            .attributes,
    );
    assert_eq!(res["service.name"], "wrapper");
    assert!(res.contains_key("host.name"));
    let scope = req.request.resource_logs[0].scope_logs[0]
        .scope
        .as_ref()
        .expect("scope");
    assert_eq!(scope.name, "wrapper");
}

#[test]
fn the_standard_environment_variables_configure_export() {
    let env = Env::new();
    let rx = Receiver::start(Mode::Ok);
    let out = env
        .run_cmd(
            "claude",
            &["--session-id", "otel-env"],
            &["sh", "-c", "echo 'error: x'"],
        )
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("{}/base/", rx.base_url()),
        )
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "Authorization=Bearer%20t0ken,x-team=infra",
        )
        .env(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=ci,team=agents",
        )
        .env("OTEL_SERVICE_NAME", "agent-fleet")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    crate::harness::assert_exit(&out, 0);
    let reqs = rx.requests();
    assert!(!reqs.is_empty());
    for r in &reqs {
        assert_eq!(r.path, "/base/v1/logs");
        assert_eq!(r.headers["authorization"], "Bearer t0ken");
        assert_eq!(r.headers["x-team"], "infra");
        let res = attrs(
            &r.request.resource_logs[0]
                .resource
                .as_ref()
                .expect("resource")
                .attributes,
        );
        assert_eq!(res["service.name"], "agent-fleet");
        assert_eq!(res["deployment.environment"], "ci");
        assert_eq!(res["team"], "agents");
    }
    let names: Vec<String> = rx.records().into_iter().map(|r| r.event_name).collect();
    assert_eq!(
        names,
        [
            "wrapper.session.start",
            "wrapper.event",
            "wrapper.session.end"
        ]
    );
    // The database got the same session.
    assert_eq!(
        env.session_outcome("otel-env"),
        ["completed:0:".to_string()]
    );
}

#[test]
fn a_stalled_collector_costs_nothing_but_the_exit_deadline_and_drops_are_reported() {
    let env = Env::new();
    let rx = Receiver::start(Mode::Stall);
    // A queue of 50 records and 2,000 events: most cannot wait for a Collector that never
    // answers. The database still gets every one.
    let r = Running::spawn({
        let mut c = env.run_cmd(
            "codex",
            &["--otlp-endpoint", &rx.base_url(), "--session-id", "stall"],
            &[
                "sh",
                "-c",
                "i=0; while [ $i -lt 2000 ]; do i=$((i+1)); echo \"error: line $i\"; done",
            ],
        );
        c.env("OTEL_BLRP_MAX_QUEUE_SIZE", "50")
            .env("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "10");
        c
    });
    let (code, out, err) = r.wait();
    let err = String::from_utf8_lossy(&err);
    assert_eq!(code, 0, "{err}");
    assert_eq!(String::from_utf8_lossy(&out).lines().count(), 2000);
    assert_eq!(
        env.query_i64("SELECT count(*) FROM extraction_events WHERE session_id = 'stall'"),
        2000,
        "the database never waits on the network"
    );
    assert!(
        err.contains("OTLP export to") && err.contains("not delivered"),
        "one warning says what was lost: {err}"
    );
    let dropped: u64 = err
        .split(" dropped because the queue was full")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no drop count in {err}"));
    assert!(dropped > 0 && dropped < 2000, "{err}");
    assert_eq!(err.matches("wrapper: warning").count(), 1, "{err}");
    assert!(!rx.requests().is_empty(), "the first batch was sent");
}

#[test]
fn a_collector_that_refuses_is_reported_once_and_the_session_is_unharmed() {
    let env = Env::new();
    let rx = Receiver::start(Mode::Status(400));
    let out = env.sh(
        &["--otlp-endpoint", &rx.base_url(), "--session-id", "refused"],
        "echo 'error: one'; echo 'error: two'",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("HTTP 400") && err.contains("4 of 4 records not delivered"),
        "{err}"
    );
    assert_eq!(
        env.query_i64("SELECT count(*) FROM extraction_events WHERE session_id = 'refused'"),
        2
    );
}

#[test]
fn bad_otlp_settings_given_to_wrapper_are_errors_inherited_ones_warnings() {
    let env = Env::new();
    let out = env.sh(&["--otlp-endpoint", "collector:4318"], "echo ran");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--otlp-endpoint") && err.contains("http://"),
        "{err}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("ran"),
        "nothing ran"
    );

    // Set up for another tool's gRPC exporter: wrapper says why it does not export, and runs.
    runs_with_export_off(
        &env,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ],
        "grpc",
    );

    // A config file's endpoint is the user's own word too.
    std::fs::write(env.path("c.toml"), "otlp_endpoint = \"ftp://x\"\n").expect("write");
    let out = env.sh(
        &["--config", env.path("c.toml").to_str().expect("utf-8")],
        "true",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("c.toml") && err.contains("otlp_endpoint"),
        "{err}"
    );

    // Found by an audit: a header name the HTTP client refuses was only a warning at the end
    // of a run that had exported nothing. Now it is refused before the agent starts, and an
    // inherited one turns export off with a warning.
    std::fs::write(
        env.path("h.toml"),
        "otlp_endpoint = \"http://127.0.0.1:9\"\n[otlp_headers]\n\"bad header\" = \"x\"\n",
    )
    .expect("write");
    let out = env.sh(
        &["--config", env.path("h.toml").to_str().expect("utf-8")],
        "echo ran",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing ran");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("h.toml") && err.contains("otlp_headers") && err.contains("bad header"),
        "{err}"
    );
    runs_with_export_off(
        &env,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=a\nb"),
        ],
        "OTEL_EXPORTER_OTLP_HEADERS",
    );
}

/// An agent run with OpenTelemetry settings inherited from the environment that wrapper cannot
/// use: the agent runs as it would alone, and wrapper says (naming `why`) that export is off.
fn runs_with_export_off(env: &Env, vars: &[(&str, &str)], why: &str) {
    let mut cmd = env.run_cmd("codex", &[], &["sh", "-c", "echo ran"]);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.stdin(Stdio::null()).output().expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(why) && err.contains("OTLP export is off"),
        "{err}"
    );
}

#[test]
fn the_config_file_sets_endpoint_and_headers() {
    let env = Env::new();
    let rx = Receiver::start(Mode::Ok);
    std::fs::write(
        env.path("c.toml"),
        format!(
            "otlp_endpoint = \"{}\"\n[otlp_headers]\nx-api-key = \"k1\"\n",
            rx.base_url()
        ),
    )
    .expect("write");
    let out = env.sh(
        &["--config", env.path("c.toml").to_str().expect("utf-8")],
        "echo 'error: e'",
    );
    crate::harness::assert_exit(&out, 0);
    wait_until("records", || rx.records().len() == 3);
    assert!(rx.requests().iter().all(|r| r.headers["x-api-key"] == "k1"));
}
