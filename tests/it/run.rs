//! The run path end to end: sessions, states, exit codes, events, code blocks, redaction,
//! configuration.

use std::io::Write;
use std::process::Stdio;

use crate::harness::*;

#[test]
fn failed_session_records_events_states_and_exit_code() {
    let env = Env::new();
    let out = env.sh(
        &[],
        "echo 'error[E0308]: mismatched types' >&2; echo '  --> src/main.rs:3:5'; exit 3",
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        env.query_strings("SELECT state || ':' || exit_code FROM process_sessions"),
        ["failed:3"]
    );
    assert_eq!(
        env.query_strings("SELECT state FROM process_state_changes ORDER BY id"),
        ["started", "running", "failed"]
    );
    let conn = env.conn();
    let (stream, ty, pattern, value, line, meta): (String, String, String, String, i64, String) =
        conn.query_row(
            "SELECT stream, event_type, pattern, matched_value, line_number, metadata_json \
             FROM extraction_events WHERE pattern = 't_error'",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .expect("error event");
    assert_eq!(
        (stream.as_str(), ty.as_str(), pattern.as_str()),
        ("stderr", "error", "t_error")
    );
    assert_eq!(value, "mismatched types");
    assert!((1..=2).contains(&line));
    assert_eq!(meta, r#"{"code":"E0308"}"#);
    let meta: String = conn
        .query_row(
            "SELECT metadata_json FROM extraction_events WHERE pattern = 't_path'",
            [],
            |r| r.get(0),
        )
        .expect("path event");
    let v: serde_json::Value = serde_json::from_str(&meta).expect("json");
    assert_eq!(
        (v["path"].as_str(), v["line"].as_str(), v["col"].as_str()),
        (Some("src/main.rs"), Some("3"), Some("5"))
    );
    // Session totals are kept as the run goes.
    assert_eq!(
        env.query_i64("SELECT total_lines_processed FROM process_sessions"),
        2
    );
    assert_eq!(
        env.query_i64("SELECT total_extraction_events FROM process_sessions"),
        2
    );
    assert_eq!(env.query_i64("SELECT count(*) FROM extraction_events"), 2);
    // Timestamps: UTC, milliseconds, Z.
    let ts = env.query_strings("SELECT timestamp FROM extraction_events");
    for t in ts {
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[19] == b'.', "{t}");
    }
}

#[test]
fn completed_session_and_seed_forms() {
    let env = Env::new();
    // The seed forms from the spec: options after the command, and one word with shell syntax.
    let out = env
        .cmd()
        .args(["codex", "echo 'test error'", "--enable-db", "--db"])
        .arg(env.db())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, b"test error\n");
    let out = env
        .cmd()
        .args(["codex", "true", "--db"])
        .arg(env.db())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        env.query_strings("SELECT state || ':' || exit_code || ':' || command_json FROM process_sessions ORDER BY id"),
        [r#"completed:0:["echo 'test error'"]"#, r#"completed:0:["true"]"#]
    );
    let meta = env.query_strings(
        "SELECT metadata_json FROM process_state_changes WHERE state = 'running' ORDER BY id",
    );
    assert!(meta[0].contains(r#""via_shell":true"#), "{}", meta[0]);
    assert!(meta[1].contains(r#""via_shell":false"#), "{}", meta[1]);
}

#[test]
fn exit_codes_pass_through() {
    let env = Env::new();
    for code in [0, 1, 2, 42, 126, 127, 128, 200, 255] {
        let out = env.sh(&[], &format!("exit {code}"));
        assert_eq!(out.status.code(), Some(code), "exit {code}");
    }
    let states = env.query_strings("SELECT state FROM process_sessions ORDER BY id");
    assert_eq!(states[0], "completed");
    assert!(states[1..].iter().all(|s| s == "failed"), "{states:?}");
}

#[test]
fn child_killed_by_signal_gives_128_plus_n_and_killed() {
    let env = Env::new();
    let out = env.sh(&[], "kill -KILL $$");
    assert_eq!(out.status.code(), Some(137));
    assert_eq!(
        env.query_strings(
            "SELECT state || ':' || exit_code || ':' || signal FROM process_sessions"
        ),
        ["killed:137:SIGKILL"]
    );
    let out = env.sh(&[], "kill -SEGV $$");
    assert_eq!(out.status.code(), Some(128 + 11));
}

#[test]
fn spawn_failures_are_127_and_126() {
    let env = Env::new();
    let out = env
        .run_cmd("codex", &[], &["definitely-not-a-command-xyz"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("definitely-not-a-command-xyz"));
    let script = env.path("noexec.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").expect("write");
    let out = env
        .run_cmd("codex", &[], &[script.to_str().expect("utf8")])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(126));
    assert_eq!(
        env.query_strings("SELECT state || ':' || exit_code FROM process_sessions ORDER BY id"),
        ["spawn_failed:127", "spawn_failed:126"]
    );
}

/// A file the kernel will not execute runs as a shell runs it: a script without a `#!` line
/// through `/bin/sh` (as `execvp` and every shell do; it was "Exec format error", exit 126),
/// with pipes and on a pty. And the causes exec reports misleadingly are said in words: a
/// missing `#!` interpreter ("No such file or directory" for a file that is there), a
/// directory, a file without the execute bit, a command not on PATH.
#[test]
fn a_script_without_a_shebang_runs_and_spawn_failures_say_why() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let exe = |name: &str, text: &str, mode: u32| {
        let p = env.path(name);
        std::fs::write(&p, text).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p.to_string_lossy().into_owned()
    };
    let plain = exe("plain.sh", "echo \"plain ran: $1 $2\"\n", 0o755);
    for extra in [&[][..], &["--pty"][..]] {
        let out = env
            .run_cmd("codex", extra, &[&plain, "a", "b c"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run");
        crate::harness::assert_exit(&out, 0);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("plain ran: a b c"),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // Found by a second audit: data that is no script (here an ELF header for another
    // machine, then a shell line) is not run through sh; on PATH the first *executable*
    // file of the name is the one that runs.
    let foreign = env.path("foreign.bin");
    let mut bytes = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\xb7\0".to_vec();
    bytes.extend_from_slice(b"\necho RAN_BY_SH\n");
    std::fs::write(&foreign, bytes).expect("write");
    std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = env
        .run_cmd("codex", &[], &[&foreign.to_string_lossy()])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(126));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("RAN_BY_SH"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be executed"));
    let (bin1, bin2) = (env.path("bin1"), env.path("bin2"));
    for (d, text, mode) in [
        (&bin1, "echo WRONG FILE\n", 0o644),
        (&bin2, "echo right file\n", 0o755),
    ] {
        std::fs::create_dir(d).expect("mkdir");
        let f = d.join("myscr");
        std::fs::write(&f, text).expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let path = format!(
        "{}:{}:{}",
        bin1.display(),
        bin2.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = env
        .run_cmd("codex", &[], &["myscr"])
        .env("PATH", &path)
        .output()
        .expect("run");
    crate::harness::assert_exit(&out, 0);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "right file\n");
    let dir = env.path("adir");
    std::fs::create_dir(&dir).expect("mkdir");
    for (argv, code, why) in [
        (
            exe("bad.sh", "#!/nonexistent/bash\necho x\n", 0o755),
            127,
            "its interpreter `/nonexistent/bash`",
        ),
        (
            exe("crlf.sh", "#!/bin/sh\r\necho x\n", 0o755),
            127,
            "ends in a carriage return",
        ),
        (dir.to_string_lossy().into_owned(), 126, "it is a directory"),
        (
            exe("nox.sh", "echo x\n", 0o644),
            126,
            "it is not executable",
        ),
        ("no-such-command-qq".into(), 127, "no such command on PATH"),
    ] {
        let out = env.run_cmd("codex", &[], &[&argv]).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{argv}: {err}");
        assert!(err.contains(why) && err.contains(&argv), "{argv}: {err}");
        assert!(!err.contains("os error"), "{err}");
    }
}

#[test]
fn usage_errors_exit_2_and_run_nothing() {
    let env = Env::new();
    let marker = env.path("ran");
    let touch = format!("touch {}", marker.display());
    for extra in [
        vec!["--batch-size", "0"],
        vec!["--flush-interval", "soon"],
        vec!["--max-line", "lots"],
        vec!["--no-such-option"],
        // A path that cannot be written (its "directory" is a file): found before the spawn.
        vec!["--events-out", "rules.toml/events.jsonl"],
    ] {
        let out = env
            .run_cmd("codex", &extra, &["sh", "-c", &touch])
            .output()
            .expect("run");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!marker.exists(), "{extra:?} spawned the child");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(extra[0]), "{extra:?}: names the option: {err}");
    }
    // Nothing recorded either: no session was left behind by the refused runs.
    assert!(!env.db().exists() || env.query_i64("SELECT count(*) FROM process_sessions") == 0);
    // No command at all.
    let out = env.cmd().args(["codex"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn session_id_clash_is_refused_before_spawn() {
    let env = Env::new();
    assert!(env.sh(&["--session-id", "s-1"], "true").status.success());
    let marker = env.path("ran");
    let out = env.sh(
        &["--session-id", "s-1"],
        &format!("touch {}", marker.display()),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert!(!marker.exists());
    assert_eq!(env.query_i64("SELECT count(*) FROM process_sessions"), 1);
}

#[test]
fn code_blocks_are_stored_once_with_occurrences() {
    let env = Env::new();
    let script = r#"printf 'Here is the fix:\n```rust\nfn main() {}\n```\n```json\n{"a": 1\n```\n'
printf '```rust\nfn main() {}\n```\n~~~\nunclosed\n'"#;
    assert!(env.sh(&[], script).status.success());
    let conn = env.conn();
    let mut stmt = conn
        .prepare("SELECT language, content, line_start, line_end, parseable, occurrences, context_json, digest FROM code_blocks ORDER BY id")
        .expect("prepare");
    type Row = (Option<String>, String, i64, i64, i64, i64, String, String);
    let rows: Vec<Row> = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let (lang, content, start, end, parseable, occ, ctx, digest) = &rows[0];
    assert_eq!(
        (lang.as_deref(), content.as_str()),
        (Some("rust"), "fn main() {}")
    );
    assert_eq!((*start, *end, *parseable, *occ), (2, 4, 1, 2));
    let ctx: serde_json::Value = serde_json::from_str(ctx).expect("context json");
    assert_eq!(ctx["before"], "Here is the fix:");
    assert_eq!(ctx["stream"], "stdout");
    // The digest is SHA-256 of language + "\n" + content.
    assert_eq!(digest.len(), 64);
    assert_eq!(rows[1].0.as_deref(), Some("json"));
    assert_eq!(rows[1].4, 0, "invalid JSON is not parseable");
    assert_eq!(rows[2].0, None);
    assert_eq!(rows[2].4, 0, "an unclosed block is not parseable");
    // One code_block event per block seen, with the language set.
    assert_eq!(
        env.query_i64("SELECT count(*) FROM extraction_events WHERE event_type = 'code_block'"),
        4
    );
    assert_eq!(
        env.query_i64("SELECT count(*) FROM extraction_events e JOIN code_blocks c ON c.digest = e.matched_value WHERE e.code_block_language = 'rust'"),
        2
    );
}

#[test]
fn secrets_are_redacted_in_the_store_but_not_on_the_terminal() {
    let env = Env::new();
    let out = env.sh(
        &[],
        "echo 'error: bad key sk-abcdefghijklmnop1234 rejected'",
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("sk-abcdefghijklmnop1234"));
    // The test rules' own `t_key` matches too, but the built-in redaction rules stay on with
    // `--no-default-patterns` (the harness passes it) and load first.
    assert_eq!(
        env.query_strings("SELECT matched_value FROM extraction_events"),
        ["bad key [REDACTED:openai_key] rejected"]
    );
    assert_eq!(
        env.query_i64("SELECT count(*) FROM extraction_events WHERE original_line LIKE '%sk-abc%'"),
        0
    );
    // --no-redact stores the text as it is, for that run only.
    let out = env.sh(
        &["--no-redact"],
        "echo 'error: key sk-abcdefghijklmnop9999'",
    );
    assert!(out.status.success());
    assert_eq!(env.query_i64("SELECT count(*) FROM extraction_events WHERE matched_value LIKE '%sk-abcdefghijklmnop9999%'"), 1);
}

#[test]
fn stream_filter_and_events_out() {
    let env = Env::new();
    let jsonl = env.path("events.jsonl");
    let out = env
        .cmd()
        .args(["codex", "--no-default-patterns", "--patterns"])
        .arg(env.rules())
        .arg("--events-out")
        .arg(&jsonl)
        .args([
            "--",
            "sh",
            "-c",
            "echo 'warning: on stdout'; echo 'warning: on stderr' >&2; echo 'error: e1'",
        ])
        .output()
        .expect("run");
    assert!(out.status.success());
    // No database was asked for: none is created, but --events-out still works.
    assert!(!env.path("data/wrapper/wrapper.db").exists());
    let text = std::fs::read_to_string(&jsonl).expect("events file");
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(events.len(), 2, "{text}");
    let warning = events
        .iter()
        .find(|e| e["event_type"] == "warning")
        .expect("warning");
    assert_eq!(warning["stream"], "stderr");
    assert_eq!(warning["matched_value"], "on stderr");
    assert_eq!(warning["agent_name"], "codex");
    for key in [
        "session_id",
        "timestamp",
        "pattern",
        "original_line",
        "line_number",
        "metadata_json",
        "risk_level",
        "auto_confirmable",
        "code_block_language",
    ] {
        assert!(warning.get(key).is_some(), "missing {key}");
    }
}

/// An agent (`sh -c script` under `aider` rules, fast flushes) that asks questions: its stdin
/// to answer with, its stdout as the terminal would show it.
fn interactive_agent(
    env: &Env,
    script: &str,
) -> (std::process::Child, std::process::ChildStdin, Captured) {
    let mut child = env
        .run_cmd(
            "aider",
            &["--flush-interval", "20ms"],
            &["sh", "-c", script],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdin = child.stdin.take().expect("stdin");
    let out = Captured::start(child.stdout.take().expect("stdout"));
    (child, stdin, out)
}

/// Waits until exactly `n` prompt events are committed, while the agent still waits.
fn wait_for_prompts(env: &Env, n: i64) {
    wait_until(&format!("{n} prompt events committed"), || {
        env.db().exists()
            && env
                .conn()
                .query_row(
                    "SELECT count(*) FROM extraction_events WHERE event_type = 'prompt'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap_or(0)
                == n
    });
}

#[test]
fn idle_prompt_is_recorded_while_the_agent_waits_and_only_once() {
    let env = Env::new();
    let (mut child, mut stdin, mut out) = interactive_agent(
        &env,
        "printf 'Delete everything? [y/N] '; read answer; echo \"got $answer\"",
    );
    // The partial line reaches the terminal at once, before any newline.
    out.wait_for("Delete everything? [y/N] ");
    // And the prompt is recorded while the agent is still waiting for input.
    wait_for_prompts(&env, 1);
    stdin.write_all(b"y\n").expect("answer");
    drop(stdin);
    assert!(child.wait().expect("wait").success());
    assert!(out.finish().ends_with(b"got y\n"));
    assert_eq!(
        env.query_i64("SELECT count(*) FROM extraction_events WHERE event_type = 'prompt'"),
        1
    );
    assert_eq!(
        env.query_strings("SELECT risk_level || ':' || matched_value || ':' || line_number FROM extraction_events"),
        ["high:Delete everything?:1"]
    );
}

/// An agent that asks again on the same terminal line, redrawing it with `\r`: each
/// different question is recorded while the agent waits (before, only the first one was).
#[test]
fn a_prompt_redrawn_as_another_question_is_recorded_too() {
    let env = Env::new();
    let (mut child, mut stdin, mut out) = interactive_agent(
        &env,
        "printf 'Delete everything? [y/N] '; read a; \
         printf '\\rReally delete all of it? [y/N] '; read b; echo \"got $a$b\"",
    );
    wait_for_prompts(&env, 1);
    stdin.write_all(b"y\n").expect("answer");
    out.wait_for("Really delete");
    wait_for_prompts(&env, 2);
    stdin.write_all(b"n\n").expect("answer");
    drop(stdin);
    assert!(child.wait().expect("wait").success());
    assert!(out.finish().ends_with(b"got yn\n"));
    assert_eq!(
        env.query_strings(
            "SELECT matched_value || ':' || line_number FROM extraction_events ORDER BY id"
        ),
        ["Delete everything?:1", "Really delete all of it?:1"]
    );
}

#[test]
fn long_lines_are_cut_for_extraction_but_pass_through_whole() {
    let env = Env::new();
    let out = env.sh(
        &["--max-line", "1KiB"],
        "printf 'error: '; head -c 300000 /dev/zero | tr '\\0' 'x'; echo",
    );
    assert_eq!(out.stdout.len(), 7 + 300000 + 1);
    let meta = env.query_strings("SELECT metadata_json FROM extraction_events");
    assert_eq!(meta, [r#"{"truncated":true}"#]);
    assert_eq!(
        env.query_i64("SELECT length(original_line) FROM extraction_events"),
        1024
    );
}

#[test]
fn config_file_and_environment_precedence() {
    let env = Env::new();
    let cfg_dir = env.path("config/wrapper");
    std::fs::create_dir_all(&cfg_dir).expect("mkdir");
    std::fs::write(
        cfg_dir.join("config.toml"),
        format!(
            "enable_db = true\ndb = {:?}\nenvironment = \"from-config\"\n",
            env.path("cfg.db").display().to_string()
        ),
    )
    .expect("config");
    let run = |envs: &[(&str, &str)], extra: &[&str]| {
        let mut c = env.cmd();
        c.args(["codex", "--no-default-patterns"])
            .args(extra)
            .args(["--", "true"]);
        for (k, v) in envs {
            c.env(k, v);
        }
        assert!(c.output().expect("run").status.success());
    };
    run(&[], &[]);
    let q = |db: &str| {
        let conn = rusqlite::Connection::open(env.path(db)).expect("open");
        let v: Vec<String> = conn
            .prepare("SELECT COALESCE(environment, '') FROM process_sessions ORDER BY id")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect();
        v
    };
    assert_eq!(q("cfg.db"), ["from-config"]);
    // Environment beats the config file.
    run(
        &[
            ("WRAPPER_ENV", "from-env"),
            ("WRAPPER_DB", env.path("envdb.db").to_str().expect("utf8")),
        ],
        &[],
    );
    assert_eq!(q("envdb.db"), ["from-env"]);
    // The command line beats both.
    run(
        &[("WRAPPER_ENV", "from-env")],
        &[
            "--env",
            "from-cli",
            "--db",
            env.path("cli.db").to_str().expect("utf8"),
        ],
    );
    assert_eq!(q("cli.db"), ["from-cli"]);
}

#[test]
fn bad_config_file_names_file_line_col() {
    let env = Env::new();
    let cfg = env.path("bad.toml");
    std::fs::write(&cfg, "enable_db = true\nbatch_sise = 3\n").expect("write");
    let out = env
        .cmd()
        .args(["codex", "--config"])
        .arg(&cfg)
        .args(["--", "true"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:2:1"), "{err}");
    assert!(err.contains("batch_sise"), "{err}");
}

#[test]
fn database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let db = env.path("sub/dir/private.db");
    let out = env
        .cmd()
        .args(["codex", "--no-default-patterns", "--db"])
        .arg(&db)
        .args(["--", "true"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let mode = std::fs::metadata(&db).expect("db").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_database_from_a_newer_wrapper_is_refused() {
    let env = Env::new();
    assert!(env.sh(&[], "true").status.success());
    env.conn()
        .execute_batch("PRAGMA user_version = 999")
        .expect("bump");
    let out = env.sh(&[], "true");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("newer"));
}

#[test]
fn grandchild_holding_the_pipe_does_not_hang_wrapper() {
    let env = Env::new();
    let start = std::time::Instant::now();
    // The grandchild keeps stdout open for 60 s; wrapper must stop draining 2 s after the
    // child's exit.
    let out = env.sh(&[], "sleep 60 & echo started; exit 0");
    assert_eq!(out.status.code(), Some(0));
    assert!(
        start.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(
        env.query_strings("SELECT state FROM process_sessions"),
        ["completed"]
    );
    let meta = env
        .query_strings("SELECT metadata_json FROM process_state_changes WHERE state = 'completed'");
    assert!(meta[0].contains(r#""drained":false"#), "{}", meta[0]);
}

#[test]
fn abandoned_sessions_are_recovered_by_the_next_wrapper() {
    let env = Env::new();
    assert!(env.sh(&[], "true").status.success());
    // A session whose wrapper is gone: pid 0x7fffffff cannot exist.
    env.conn()
        .execute_batch(
            "INSERT INTO process_sessions (agent_name, session_id, started_at, state, hostname, command_json, wrapper_pid)
             SELECT 'codex', 'orphan', '2026-01-01T00:00:00.000Z', 'running', hostname, '[]', 2147483647 FROM process_sessions LIMIT 1;
             INSERT INTO process_sessions (agent_name, session_id, started_at, state, hostname, command_json, wrapper_pid)
             VALUES ('codex', 'other-host', '2026-01-01T00:00:00.000Z', 'running', 'some-other-host', '[]', 2147483647);",
        )
        .expect("insert");
    assert!(env.sh(&[], "true").status.success());
    assert_eq!(
        env.query_strings("SELECT session_id || ':' || state FROM process_sessions WHERE session_id IN ('orphan', 'other-host') ORDER BY session_id"),
        ["orphan:abandoned", "other-host:running"]
    );
    assert_eq!(env.query_i64("SELECT count(*) FROM process_state_changes WHERE session_id = 'orphan' AND state = 'abandoned'"), 1);
}

#[test]
fn builtin_rules_mask_secrets_and_rate_dangerous_prompts() {
    let env = Env::new();
    let key = "sk-proj-Zq3Xv9Lm2Nb7Rt5Yw8Ks4Hd6Jf1Pg0Qa";
    let ghp = "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8";
    let script = format!(
        "printf '```bash\\nexport OPENAI_API_KEY={key}\\ngit remote set-url origin https://{ghp}@github.com/o/r\\n```\\n'; \
         echo 'Do you want to run this command? [y/N] rm -rf build/'; \
         echo 'error: push rejected for token {ghp}'"
    );
    let out = env
        .cmd()
        .args(["codex", "--db"])
        .arg(env.db())
        .args(["--", "sh", "-c", &script])
        .output()
        .expect("run");
    assert!(out.status.success());
    // The terminal sees the secrets; the database never does.
    assert!(String::from_utf8_lossy(&out.stdout).contains(key));
    let content = env.query_strings("SELECT content FROM code_blocks");
    assert_eq!(content.len(), 1);
    assert!(
        !content[0].contains(key) && !content[0].contains(ghp),
        "{}",
        content[0]
    );
    assert!(content[0].contains("[REDACTED:"), "{}", content[0]);
    assert_eq!(
        env.query_i64(&format!(
            "SELECT count(*) FROM extraction_events WHERE original_line LIKE '%{ghp}%' OR matched_value LIKE '%{ghp}%'"
        )),
        0
    );
    assert!(
        env.query_i64("SELECT count(*) FROM extraction_events WHERE event_type = 'error'") >= 1
    );
    // The standard benchmark prompt is recorded, and rated high risk.
    assert_eq!(
        env.query_i64("SELECT max(CASE risk_level WHEN 'critical' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 ELSE 1 END) FROM extraction_events WHERE event_type = 'prompt'"),
        3
    );
}

/// The writer indexes new rows for `wrapper search` while the agent is quiet, so a search
/// right after a session finds its rows without indexing first.
#[test]
fn an_idle_writer_indexes_events_for_search_while_the_agent_runs() {
    let env = Env::new();
    let go = env.path("go");
    let script = format!(
        "for i in 1 2 3 4 5; do echo \"error: needle_$i in the haystack\"; done; \
         while [ ! -e '{}' ]; do sleep 0.02; done; echo 'error: needle_after'",
        go.display()
    );
    let running = Running::spawn(env.run_cmd("codex", &[], &["sh", "-c", &script]));
    running.out.wait_for("needle_5");
    let indexed = || -> i64 {
        env.conn()
            .query_row(
                "SELECT count(*) FROM extraction_events_fts WHERE extraction_events_fts MATCH 'haystack'",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0)
    };
    // Nothing searched yet: only the writer can have indexed these rows.
    wait_until("the writer to index the five events for search", || {
        indexed() == 5
    });
    assert_eq!(
        env.query_strings("SELECT state FROM process_sessions"),
        ["running"],
        "indexed while the agent still ran"
    );
    std::fs::write(&go, b"").expect("release the child");
    let (code, _, err) = running.wait();
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    assert_eq!(env.query_i64("SELECT count(*) FROM extraction_events"), 6);
    // The row written just before exit is indexed by the next search.
    let out = env
        .cmd()
        .args(["search", "needle_after", "--jsonl", "--db"])
        .arg(env.db())
        .output()
        .expect("search");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

/// SPEC §5.2: when recording falls behind, the agent's output still passes through at full
/// speed — chunks beyond the in-memory queue spill to a temporary file — and nothing is lost.
/// The test holds the database's write lock, so the writer cannot commit at all while the
/// child floods 8 MB of event lines; all of them must reach the terminal before the lock is
/// released, and all must be recorded after.
#[test]
fn a_stalled_database_does_not_hold_back_passthrough_and_nothing_is_lost() {
    let env = Env::new();
    let go = env.path("go");
    let script = format!(
        "while [ ! -e '{}' ]; do sleep 0.02; done; \
         seq 1 300000 | sed 's/^/error: flood /'; echo FLOOD-DONE",
        go.display()
    );
    let running = Running::spawn(env.run_cmd("codex", &[], &["sh", "-c", &script]));
    wait_until("the session to be running", || {
        env.db().exists()
            && env
                .conn()
                .query_row("SELECT state FROM process_sessions", [], |r| {
                    r.get::<_, String>(0)
                })
                .is_ok_and(|s| s == "running")
    });
    let blocker = env.conn();
    blocker
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    std::fs::write(&go, b"").expect("start the flood");
    running.out.wait_for("FLOOD-DONE");
    assert_eq!(
        env.query_i64("SELECT total_lines_processed FROM process_sessions"),
        0,
        "nothing could be committed while the lock was held"
    );
    blocker.execute_batch("ROLLBACK").expect("release the lock");
    let (code, out, err) = running.wait();
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    assert_eq!(
        String::from_utf8_lossy(&out).lines().count(),
        300_001,
        "every line passed through"
    );
    assert_eq!(
        env.query_i64("SELECT count(*) FROM extraction_events WHERE pattern = 't_error'"),
        300_000
    );
    assert_eq!(
        env.query_i64("SELECT total_lines_processed FROM process_sessions"),
        300_001
    );
}

/// A new user's first command: `wrapper --help` shows how to run an agent, the run options
/// and where their details are, with examples; `wrapper run --help` has every option.
#[test]
fn help_shows_run_options_examples_and_exit_codes() {
    let env = Env::new();
    let out = env.cmd().arg("--help").output().expect("help");
    assert_eq!(out.status.code(), Some(0));
    let top = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "wrapper [OPTIONS] <AGENT> [--] <COMMAND>",
        "--enable-db",
        "--patterns",
        "wrapper run --help",
        "Examples:",
        "wrapper demo \"echo 'error: test failed'\" --enable-db",
        "Exit status",
    ] {
        assert!(
            top.contains(needle),
            "`wrapper --help` lacks {needle:?}:\n{top}"
        );
    }
    let out = env
        .cmd()
        .args(["run", "--help"])
        .output()
        .expect("run help");
    let run = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--enable-db",
        "--db",
        "--patterns",
        "--no-default-patterns",
        "--session-id",
        "--env",
        "--batch-size",
        "--flush-interval",
        "--kill-after",
        "--events-out",
        "--no-redact",
        "--quiet",
        "--verbose",
    ] {
        assert!(
            run.contains(opt),
            "`wrapper run --help` lacks {opt}:\n{run}"
        );
    }
}

/// SPEC §8: `WRAPPER_ENABLE_DB=1` records to the default database under `$XDG_DATA_HOME`;
/// `0` (or nothing) records nothing; anything else is a usage error before anything runs.
#[test]
fn wrapper_enable_db_env_records_to_the_default_path() {
    let env = Env::new();
    let default_db = env.path("data").join("wrapper").join("wrapper.db");
    let run = |value: &str| {
        env.cmd()
            .env("WRAPPER_ENABLE_DB", value)
            .args(["codex", "--", "sh", "-c", "echo 'error: from env'"])
            .stdin(Stdio::null())
            .output()
            .expect("run")
    };
    let out = run("0");
    assert_eq!(out.status.code(), Some(0));
    assert!(!default_db.exists(), "WRAPPER_ENABLE_DB=0 records nothing");
    let out = run("1");
    crate::harness::assert_exit(&out, 0);
    let conn = rusqlite::Connection::open(&default_db).expect("default database");
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM extraction_events WHERE matched_value = 'from env'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(n, 1);
    let out = run("maybe");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("WRAPPER_ENABLE_DB"));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("from env"),
        "nothing ran"
    );
}

/// A rule's `agents` globs decide, in a real run, which agents it applies to.
#[test]
fn agents_globs_select_rules_per_agent_in_a_run() {
    let env = Env::new();
    let rules = env.path("agents.toml");
    std::fs::write(
        &rules,
        r#"version = 1
[[pattern]]
name = "claude_only"
event_type = "note"
agents = ["claude*"]
regex = '''^NOTE (?P<value>.+)$'''
samples = ["NOTE x"]
"#,
    )
    .expect("write rules");
    for (agent, want) in [
        ("claude-code", 1),
        ("claude", 1),
        ("codex", 0),
        ("aider", 0),
    ] {
        let db = env.path(&format!("{agent}.db"));
        let out = env
            .cmd()
            .args([agent, "--no-default-patterns", "--patterns"])
            .arg(&rules)
            .arg("--db")
            .arg(&db)
            .args(["--", "sh", "-c", "echo 'NOTE hello'"])
            .stdin(Stdio::null())
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(0), "{agent}");
        let conn = rusqlite::Connection::open(&db).expect("db");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM extraction_events", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, want, "events for agent {agent}");
    }
}

/// Output for people: colour on a terminal (a real pseudo-terminal here), none with
/// `NO_COLOR`, none into a pipe; search highlights the matching words on a terminal.
/// Runs a query command with its stdout on a pseudo-terminal `cols` wide, and returns what
/// it wrote there.
fn on_terminal_of_width(env: &Env, args: &[&str], no_color: bool, cols: u16) -> String {
    use std::io::Read;

    let size = nix::pty::Winsize {
        ws_row: 40,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
    let mut cmd = env.cmd();
    cmd.args(args).arg("--db").arg(env.db());
    if no_color {
        cmd.env("NO_COLOR", "1");
    } else {
        cmd.env_remove("NO_COLOR");
    }
    let status = cmd
        .stdin(Stdio::null())
        .stdout(pty.slave.try_clone().expect("dup"))
        .stderr(Stdio::null())
        .status()
        .expect("run");
    assert!(status.success(), "{args:?}");
    // The command keeps its copy of the slave until dropped; the master reads to EOF
    // (EIO) only once every slave descriptor is closed.
    drop(cmd);
    drop(pty.slave);
    let mut screen = Vec::new();
    let _ = std::fs::File::from(pty.master).read_to_end(&mut screen);
    String::from_utf8_lossy(&screen).into_owned()
}

/// Tables fit the terminal they are printed on, with or without colour (NO_COLOR once made
/// them ignore the terminal's width), and no header is cut in two.
#[test]
fn tables_fit_an_80_column_terminal() {
    let env = Env::new();
    let out = env.sh(
        &[],
        "echo 'error: the flux capacitor broke in a rather long and winding way'; \
         printf '```rust\\nfn main() { println!(\"a long line of code\"); }\\n```\\n'",
    );
    assert!(out.status.success());
    for (args, header) in [
        (
            &["sessions"][..],
            &["SESSION", "AGENT", "STATE", "STARTED"][..],
        ),
        (&["events"], &["TIME", "SESSION", "LINE", "TYPE", "PATTERN"]),
        (&["code-blocks"], &["DIGEST", "LANGUAGE", "SESSION", "TIME"]),
    ] {
        for no_color in [true, false] {
            let screen = on_terminal_of_width(&env, args, no_color, 80);
            let plain = strip_ansi(&screen);
            let lines: Vec<&str> = plain.lines().collect();
            assert!(lines.len() >= 2, "{args:?}: a header and rows: {plain}");
            for word in header {
                assert!(lines[0].contains(word), "{args:?}: header cut: {plain}");
            }
            for l in &lines {
                assert!(
                    l.trim_end().chars().count() <= 80,
                    "{args:?} no_color={no_color}: {} wide: {plain}",
                    l.trim_end().chars().count()
                );
            }
        }
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ ... final byte in @..~
            for d in chars.by_ref() {
                if ('@'..='~').contains(&d) && d != '[' {
                    break;
                }
            }
        } else if c != '\r' {
            out.push(c);
        }
    }
    out
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let env = Env::new();
    let out = env.sh(&[], "echo 'error: the flux capacitor broke'");
    assert!(out.status.success());
    let db = env.db();
    let on_terminal = |args: &[&str], no_color: bool| -> String {
        on_terminal_of_width(&env, args, no_color, 120)
    };
    let coloured = on_terminal(&["sessions"], false);
    assert!(
        coloured.contains("\x1b["),
        "no colour on a terminal: {coloured:?}"
    );
    assert!(coloured.contains("completed"));
    let plain = on_terminal(&["sessions"], true);
    assert!(
        !plain.contains("\x1b["),
        "colour despite NO_COLOR: {plain:?}"
    );
    assert!(plain.contains("completed"));
    let hit = on_terminal(&["search", "flux"], false);
    assert!(
        hit.contains("\x1b[1;31mflux\x1b[0m"),
        "match not highlighted: {hit:?}"
    );
    let piped = env
        .cmd()
        .env_remove("NO_COLOR")
        .args(["search", "flux", "--db"])
        .arg(&db)
        .output()
        .expect("search");
    let piped = String::from_utf8_lossy(&piped.stdout);
    assert!(
        piped.contains("flux") && !piped.contains("\x1b["),
        "{piped:?}"
    );
}

/// `wrapper backup` while a wrapper is writing: each copy is a consistent snapshot (integrity
/// `ok`, the live session in it with its events so far), and the writer is not disturbed.
#[test]
fn backup_while_a_wrapper_writes_is_a_consistent_snapshot() {
    let env = Env::new();
    let stop = env.path("stop");
    let script = format!(
        "i=0; while [ ! -e '{}' ]; do i=$((i+1)); echo \"error: tick $i\"; done; echo done",
        stop.display()
    );
    let running = Running::spawn(env.run_cmd(
        "codex",
        &["--session-id", "live", "--flush-interval", "10ms"],
        &["sh", "-c", &script],
    ));
    let committed = || -> i64 {
        env.conn()
            .query_row(
                "SELECT count(*) FROM extraction_events WHERE session_id = 'live'",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0)
    };
    wait_until("events being committed", || committed() > 1000);
    for k in 0..3 {
        let before = committed();
        let dest = env.path(&format!("copy{k}.db"));
        let out = env
            .cmd()
            .args(["backup", "--db"])
            .arg(env.db())
            .arg(&dest)
            .output()
            .expect("backup");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let copy = rusqlite::Connection::open(&dest).expect("open copy");
        let check: String = copy
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("check");
        assert_eq!(check, "ok");
        let (state, n): (String, i64) = copy
            .query_row(
                "SELECT state, (SELECT count(*) FROM extraction_events WHERE session_id = 'live') \
                 FROM process_sessions WHERE session_id = 'live'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("live session in the copy");
        assert_eq!(state, "running");
        assert!(
            n >= before,
            "copy has {n} events, {before} were committed before it"
        );
    }
    std::fs::write(&stop, b"").expect("stop the child");
    let (code, _, err) = running.wait();
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    assert!(err.is_empty(), "{}", String::from_utf8_lossy(&err));
    let total = env.query_i64(
        "SELECT total_extraction_events FROM process_sessions WHERE session_id = 'live'",
    );
    assert_eq!(
        total,
        committed(),
        "every event committed after the backups"
    );
}

/// Output fast enough to come in large chunks: without a database its lines are computed
/// ahead on a second thread (`extract/prescan.rs`), with one they are not. Both must record
/// the same events, and the output must pass through byte for byte either way.
#[test]
fn large_chunks_record_the_same_events_with_or_without_the_helper_thread() {
    let env = Env::new();
    let log = env.path("build.log");
    let mut text = String::new();
    for i in 0..40_000u32 {
        text.push_str(&match i % 9 {
            0 => format!(
                "error[E0{:03}]: mismatched types in src/m{i}.rs:{i}:5\n",
                i % 1000
            ),
            1 => format!("warning: unused variable `v{i}`\n"),
            2 => format!("   Compiling dep{i} v1.{i}.0\n"),
            3 => format!("{{\"type\":\"progress\",\"n\":{i}}}\n"),
            4 => format!("\x1b[32mok\x1b[0m step {i}\rstep {i} done\n"),
            5 => format!("token=sk-proj-{i:08}abcdefghijklmnopqrstu in the log\n"),
            6 => format!("test t{i} ... FAILED\n"),
            7 => format!("see https://example.com/{i} and src/lib.rs:{i}:1\n"),
            _ => "plain line with nothing in it\n".to_string(),
        });
    }
    std::fs::write(&log, &text).expect("write log");
    let run = |extra: &[&str], name: &str| {
        let jsonl = env.path(name);
        let out = env
            .cmd()
            .args(["codex", "-vv"])
            .args(extra)
            .arg("--events-out")
            .arg(&jsonl)
            .args(["--", "cat"])
            .arg(&log)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout == text.as_bytes(),
            "output changed in passing ({name})"
        );
        let helper = String::from_utf8_lossy(&out.stderr).contains("on a second thread");
        assert_eq!(
            helper,
            extra.is_empty(),
            "the helper thread ran: {helper} ({name})"
        );
        std::fs::read_to_string(&jsonl)
            .expect("events file")
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).expect("json line");
                let o = v.as_object_mut().expect("object");
                o.remove("session_id");
                o.remove("timestamp");
                v.to_string()
            })
            .collect::<Vec<_>>()
    };
    let alone = run(&[], "alone.jsonl");
    let db = env.db();
    let with_db = run(&["--db", db.to_str().expect("utf-8 path")], "db.jsonl");
    assert!(alone.len() > 20_000, "too few events: {}", alone.len());
    assert!(
        !alone.iter().any(|e| e.contains("sk-proj-")),
        "a secret was stored"
    );
    for (i, (a, b)) in alone.iter().zip(&with_db).enumerate() {
        assert_eq!(a, b, "event {i}");
    }
    assert_eq!(alone.len(), with_db.len());
}

/// The threads that record run at a lower priority than the agent and the pump that passes
/// its output through (src/run/nice.rs); the agent itself runs at the priority wrapper was
/// started with, as it would alone.
#[test]
fn recording_threads_yield_and_the_agent_runs_at_its_own_priority() {
    let env = Env::new();
    // The child looks at its parent's threads once the recording ones have started.
    let out = env.sh(
        &[],
        r#"i=0
        while [ $i -lt 500 ]; do
          n=$(cat /proc/$PPID/task/*/comm | grep -c -e wrapper-extract -e wrapper-writer -e wrapper-checkpo -e wrapper-capture)
          [ "$n" -ge 4 ] && break
          sleep 0.01; i=$((i + 1))
        done
        echo "self $(cut -d' ' -f19 /proc/self/stat)"
        for t in /proc/$PPID/task/*; do echo "$(cat $t/comm) $(cut -d' ' -f19 $t/stat)"; done"#,
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let own = own_nice();
    let nice = |name: &str| nice_values(&text, name);
    assert_eq!(nice("self"), [own], "{text}");
    assert!(!nice("wrapper-pump").is_empty(), "{text}");
    assert!(nice("wrapper-pump").iter().all(|&n| n == own), "{text}");
    // Each below the threads whose work it waits on (extraction first, the checkpointer last).
    for (t, below) in [
        ("wrapper-extract", 10),
        ("wrapper-writer", 11),
        ("wrapper-checkpo", 19),
        ("wrapper-capture", 13),
        ("wrapper-scan", 10),
    ] {
        // (The scan helper only runs for large chunks: absent here, or at the same value.)
        let want = (own + below).min(19);
        assert!(nice(t).iter().all(|&n| n == want), "{t}: {text}");
        assert!(t == "wrapper-scan" || !nice(t).is_empty(), "{t}: {text}");
    }
}
