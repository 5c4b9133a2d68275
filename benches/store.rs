//! The writer's cost per event row (SPEC §9: at most 2 µs with the query indexes), at batch
//! sizes 1, 100 and 1000, on the real schema with its indexes, in a real file (WAL,
//! synchronous = NORMAL) exactly as the run path opens it.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use wrapper::event::{Event, Record, RiskLevel, Stream};
use wrapper::store::writer::{insert_session, write_batch, SessionRow, WriteConn};
use wrapper::store::{self, OpenMode};

/// `n` events numbered from `first`, as a session produces them: line numbers and timestamps
/// only grow, so every index is appended to at its end.
fn events(first: u64, n: usize) -> Vec<Record> {
    let secs = first / 1000;
    let ts: Arc<str> = format!(
        "2026-11-22T{:02}:{:02}:{:02}.{:03}Z",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        first % 1000
    )
    .into();
    let kinds: [(&str, &str); 4] = [
        ("error", "rust_error"),
        ("file_path", "path_line_col"),
        ("command", "shell_dollar_command"),
        ("prompt", "prompt_confirm"),
    ];
    (0..n)
        .map(|i| {
            let (t, p) = kinds[i % kinds.len()];
            Record::Event(Event {
                timestamp: ts.clone(),
                stream: Stream::Stdout,
                event_type: t.into(),
                pattern: p.into(),
                matched_value: Some(format!("mismatched types in src/lib/parser.rs:{i}:17")),
                original_line: Some(
                    format!("error[E0308]: mismatched types in src/lib/parser.rs:{i}:17").into(),
                ),
                line_number: first + i as u64,
                metadata_json: Some(r#"{"code":"E0308"}"#.into()),
                code_block_language: None,
                risk_level: (t == "prompt").then_some(RiskLevel::High),
                auto_confirmable: false,
            })
        })
        .collect()
}

fn inserts(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.db");
    let conn = store::open(&path, OpenMode::Create).expect("open");
    let session = SessionRow {
        session_id: "5d1c7a52-0c8e-4f5b-9a57-3c1f0e2b7d11".into(),
        agent_name: "codex".into(),
        environment: None,
        started_at: "2026-11-22T10:30:00.000Z".into(),
        hostname: "bench".into(),
        cwd: None,
        command_json: "[]".into(),
        extraction_config_version: "000000000000".into(),
        environment_config_version: None,
        wrapper_version: "bench".into(),
        wrapper_pid: 1,
    };
    insert_session(&conn, &session).expect("session");
    let mut db = WriteConn::new(conn);
    let mut g = c.benchmark_group("insert_events");
    let mut next = 0u64;
    for batch in [1usize, 100, 500, 1000, 5000] {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("batch_{batch}"), |b| {
            b.iter_batched(
                || {
                    next += batch as u64;
                    events(next, batch)
                },
                |rows| {
                    black_box(
                        write_batch(
                            &mut db,
                            &session.session_id,
                            &session.agent_name,
                            &rows,
                            1,
                            &[],
                        )
                        .expect("write"),
                    )
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = inserts
}
criterion_main!(benches);
