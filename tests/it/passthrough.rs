//! Passthrough: what the user sees is byte for byte what the child wrote, on real transcripts
//! and on hostile bytes, with or without extraction and the database.

use std::process::{Command, Stdio};

use crate::harness::*;

/// Runs `cat FILE` directly and through wrapper; both streams must match byte for byte.
fn assert_identical(env: &Env, file: &std::path::Path, extra: &[&str]) {
    let direct = Command::new("sh")
        .args(["-c", "cat \"$1\"; cat \"$1\" >&2", "sh"])
        .arg(file)
        .output()
        .expect("direct run");
    let wrapped = env
        .cmd()
        .args(["codex"])
        .args(extra)
        .args(["--", "sh", "-c", "cat \"$1\"; cat \"$1\" >&2", "sh"])
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .expect("wrapped run");
    assert_eq!(wrapped.status.code(), direct.status.code());
    assert!(
        wrapped.stdout == direct.stdout,
        "stdout differs for {}",
        file.display()
    );
    assert!(
        wrapped.stderr == direct.stderr,
        "stderr differs for {}",
        file.display()
    );
}

#[test]
fn corpus_files_pass_through_byte_for_byte() {
    let env = Env::new();
    let files = corpus_files();
    for (i, f) in files.iter().enumerate() {
        let db = env.path(&format!("c{i}.db"));
        assert_identical(&env, f, &["--db", db.to_str().expect("utf8")]);
    }
    if files.is_empty() {
        eprintln!("skipped: ../shared/corpus is absent, no real transcripts to pass through");
        return;
    }
    // The built-in rules found something in the real transcripts, and every line was counted.
    let mut events = 0;
    for (i, f) in files.iter().enumerate() {
        let conn = rusqlite::Connection::open(env.path(&format!("c{i}.db"))).expect("db");
        events += conn
            .query_row("SELECT count(*) FROM extraction_events", [], |r| {
                r.get::<_, i64>(0)
            })
            .expect("count");
        let bytes = std::fs::read(f).expect("read corpus file");
        let lines = bytes.split(|b| *b == b'\n').count() as i64
            - i64::from(bytes.last() == Some(&b'\n'))
            - i64::from(bytes.is_empty());
        let counted: i64 = conn
            .query_row(
                "SELECT total_lines_processed FROM process_sessions",
                [],
                |r| r.get(0),
            )
            .expect("lines");
        // The file went out twice, once on each stream.
        assert_eq!(counted, 2 * lines, "lines counted for {}", f.display());
    }
    assert!(
        events > 0,
        "no events in any of {} corpus files",
        files.len()
    );
}

#[test]
fn hostile_bytes_pass_through_byte_for_byte() {
    let env = Env::new();
    let mut data = Vec::new();
    data.extend_from_slice(b"plain line\n");
    data.extend_from_slice(b"bad utf8 \xff\xfe\xc3 here\n");
    data.extend_from_slice(b"nul \0 byte\n");
    data.extend_from_slice(b"\x1b[31mred\x1b[0m \x1b]0;title\x07 \x1b[2K\r50%\r100%\r\n");
    data.extend_from_slice(&[b'\r'; 10000]);
    data.extend_from_slice(b"crlf\r\n");
    for i in 0..2000u32 {
        data.extend_from_slice(format!("\x1b[{}m{i}\x1b[0m", i % 100).as_bytes());
    }
    data.extend(std::iter::repeat_n(b'z', 200_000));
    data.extend_from_slice(b"\nno newline at the end");
    let file = env.path("hostile.bin");
    std::fs::write(&file, &data).expect("write");
    assert_identical(
        &env,
        &file,
        &[
            "--no-default-patterns",
            "--db",
            env.db().to_str().expect("utf8"),
        ],
    );
    assert_identical(&env, &file, &[]);
    // Lines counted: every \n of both copies plus each unterminated tail.
    let newlines = data.iter().filter(|b| **b == b'\n').count() as i64;
    assert_eq!(
        env.query_i64("SELECT total_lines_processed FROM process_sessions"),
        2 * (newlines + 1)
    );
    // Nothing stored contains NUL or escape bytes.
    assert_eq!(env.query_i64("SELECT count(*) FROM extraction_events WHERE instr(original_line, char(27)) > 0 OR instr(original_line, char(0)) > 0"), 0);
}

#[test]
fn stdin_is_inherited() {
    let env = Env::new();
    let mut child = env
        .cmd()
        .args([
            "codex",
            "--no-default-patterns",
            "--",
            "sh",
            "-c",
            "read a; echo \"you said $a\"",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"hello\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.stdout, b"you said hello\n");
}

#[test]
fn closed_stdout_behaves_as_without_wrapper() {
    let env = Env::new();
    // `yes | head -1`: the child must get EPIPE/SIGPIPE once our stdout is gone.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} codex --no-default-patterns -- yes | head -n 1",
            bin().display()
        ))
        .current_dir(env.dir.path())
        .env("XDG_DATA_HOME", env.path("data"))
        .env("XDG_CONFIG_HOME", env.path("config"))
        .output()
        .expect("run");
    assert_eq!(out.stdout, b"y\n");
}

/// A terminal slower than the drain limit: the child prints ~900 KB at once (it fits in the
/// pipe wrapper reads, so the child exits at once) and wrapper's stdout is read a little at a
/// time, so passing the output on takes longer than the 2 s wrapper waits for descendants
/// after the child's exit. The pauses between reads stand for the slow terminal; the result
/// does not depend on them: everything the pipe held when the child exited is the child's own
/// output and must reach the terminal and the database (it was cut off at the drain limit).
#[test]
fn a_slow_terminal_gets_all_of_the_output_even_past_the_drain_limit() {
    use std::io::Read;
    let env = Env::new();
    let lines = 13_000; // 67 bytes each
    let script = format!(
        "i=0; while [ $i -lt {lines} ]; do printf 'line %05d of the output that is slow to show ....................\\n' $i; i=$((i+1)); done"
    );
    // The child's output, written to a file first so the child itself prints it in one go.
    let file = env.path("out.txt");
    let st = Command::new("sh")
        .args(["-c", &format!("{script} > {}", file.display())])
        .status()
        .expect("sh");
    assert!(st.success());
    let want = std::fs::read(&file).expect("read");
    assert!(
        want.len() > 800_000 && want.len() < 1_000_000,
        "{}",
        want.len()
    );
    let mut child = env
        .run_cmd("codex", &[], &["cat", file.to_str().expect("utf-8 path")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn wrapper");
    let mut out = child.stdout.take().expect("stdout");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let start = std::time::Instant::now();
    loop {
        let n = out.read(&mut buf).expect("read wrapper's stdout");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        // ~300 KB/s: the ~900 KB take about 3 s to pass.
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "stuck"
        );
    }
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    assert!(
        start.elapsed() > std::time::Duration::from_secs(2),
        "the reading was not slower than the drain limit: {:?}",
        start.elapsed()
    );
    assert_eq!(got.len(), want.len(), "bytes that reached the terminal");
    assert!(got == want, "the output differs");
    assert_eq!(
        env.query_i64("SELECT total_lines_processed FROM process_sessions"),
        lines
    );
    let meta = env
        .query_strings("SELECT metadata_json FROM process_state_changes WHERE state = 'completed'");
    assert!(meta[0].contains(r#""drained":true"#), "{}", meta[0]);
}
