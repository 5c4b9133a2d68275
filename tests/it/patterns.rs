//! Pattern files: every invalid case is a clear error naming file:line:col and the rule, with
//! exit 2 and nothing spawned; `wrapper patterns list|check|test` work on real files.

use std::process::Stdio;

use crate::harness::*;

fn check_invalid(body: &str, want_line: usize, needles: &[&str]) {
    let env = Env::new();
    let file = env.path("bad.toml");
    std::fs::write(&file, body).expect("write");
    let marker = env.path("ran");
    let out = env
        .cmd()
        .args(["codex", "--db"])
        .arg(env.db())
        .arg("--patterns")
        .arg(&file)
        .args(["--", "touch"])
        .arg(&marker)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!marker.exists(), "child was spawned");
    assert!(!env.db().exists(), "database was created");
    assert!(
        err.contains(&format!("bad.toml:{want_line}:")),
        "want line {want_line}: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "want {n:?} in: {err}");
    }
    // `patterns check` says the same.
    let out = env
        .cmd()
        .args(["patterns", "check"])
        .arg(&file)
        .output()
        .expect("check");
    assert_eq!(out.status.code(), Some(2));
}

const HEAD: &str = "version = 1\n[[pattern]]\nname = \"r1\"\nevent_type = \"error\"\n";

#[test]
fn toml_syntax_error() {
    check_invalid("version = 1\n[[pattern]\nname = 1\n", 2, &[]);
}

#[test]
fn unknown_key() {
    check_invalid(
        &format!("{HEAD}regex = 'x'\nsamples = ['x']\ncolour = 'red'\n"),
        7,
        &["colour"],
    );
}

#[test]
fn bad_regex() {
    check_invalid(
        &format!("{HEAD}regex = 'a(b'\nsamples = ['ab']\n"),
        5,
        &["rule `r1`", "regex"],
    );
}

/// Found by an audit: a `[[redact]]` rule that matches the empty string "found" a secret in
/// every agent name, refusing each with a misleading "looks like a secret".
#[test]
fn a_redact_rule_matching_nothing_at_all_is_refused_where_it_stands() {
    check_invalid(
        "version = 1\n\n[[redact]]\nname = \"empty\"\nregex = 'x*'\nsamples = ['xx']\n",
        5,
        &["rule `empty`", "matches the empty string"],
    );
}

#[test]
fn pathological_regex_is_refused() {
    check_invalid(
        &format!("{HEAD}regex = '(?:a{{1000}}){{1000}}'\nsamples = ['a']\n"),
        5,
        &["too large"],
    );
}

#[test]
fn duplicate_name_in_one_file() {
    let body = format!("{HEAD}regex = 'x'\nsamples = ['x']\n[[pattern]]\nname = \"r1\"\nevent_type = \"e\"\nregex = 'y'\nsamples = ['y']\n");
    check_invalid(&body, 8, &["duplicate", "r1"]);
}

#[test]
fn bad_enum_values() {
    check_invalid(
        &format!("{HEAD}regex = 'x'\nsamples = ['x']\nrisk_level = 'extreme'\n"),
        7,
        &["extreme", "low, medium, high or critical"],
    );
    check_invalid(
        &format!("{HEAD}regex = 'x'\nsamples = ['x']\nstreams = ['stdin']\n"),
        7,
        &["stdin"],
    );
}

#[test]
fn sample_that_does_not_match() {
    check_invalid(
        &format!("{HEAD}regex = '^error'\nsamples = ['warning: x']\n"),
        6,
        &["rule `r1`", "does not match"],
    );
}

#[test]
fn counter_sample_that_matches() {
    check_invalid(
        &format!("{HEAD}regex = 'error'\nsamples = ['error: x']\ncounter_samples = ['0 errors']\n"),
        7,
        &["counter-sample", "must not"],
    );
}

#[test]
fn missing_samples_and_missing_regex() {
    check_invalid(&format!("{HEAD}regex = 'x'\n"), 2, &["samples"]);
    check_invalid(&format!("{HEAD}samples = ['x']\n"), 2, &["regex"]);
}

#[test]
fn wrong_type() {
    check_invalid(&format!("{HEAD}regex = 'x'\nsamples = 'x'\n"), 6, &[]);
}

#[test]
fn non_utf8_file() {
    let env = Env::new();
    let file = env.path("bad.toml");
    std::fs::write(&file, b"version = 1\n# \xff\xfe\n").expect("write");
    let out = env
        .cmd()
        .args(["patterns", "check"])
        .arg(&file)
        .output()
        .expect("check");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml:2:3"));
}

#[test]
fn user_file_overrides_and_disables_builtin_names() {
    let env = Env::new();
    let over = env.path("over.toml");
    std::fs::write(
        &over,
        "[[pattern]]\nname = \"t_error\"\nevent_type = \"failure\"\nregex = '^FAIL (?P<value>.+)'\nsamples = ['FAIL x']\n\
         [[pattern]]\nname = \"t_path\"\nenabled = false\n",
    )
    .expect("write");
    let out = env
        .run_cmd(
            "codex",
            &["--patterns", over.to_str().expect("utf8")],
            &[
                "sh",
                "-c",
                "echo 'FAIL thing'; echo 'error: e'; echo 'src/a.rs:1:2'",
            ],
        )
        .output()
        .expect("run");
    assert!(out.status.success());
    assert_eq!(
        env.query_strings("SELECT event_type || ':' || matched_value FROM extraction_events"),
        ["failure:thing"]
    );
    let list = env
        .cmd()
        .args(["patterns", "list", "--no-default-patterns", "--patterns"])
        .arg(env.rules())
        .arg("--patterns")
        .arg(&over)
        .output()
        .expect("list");
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("over.toml:1"), "{text}");
    assert!(text.contains("(disabled)"), "{text}");
}

#[test]
fn rule_set_version_is_stored_and_changes_with_rules() {
    let env = Env::new();
    assert!(env.sh(&[], "true").status.success());
    let extra = env.path("extra.toml");
    std::fs::write(
        &extra,
        "[[pattern]]\nname = \"x\"\nevent_type = \"e\"\nregex = 'x'\nsamples = ['x']\n",
    )
    .expect("write");
    assert!(env
        .sh(&["--patterns", extra.to_str().expect("utf8")], "true")
        .status
        .success());
    let v = env.query_strings("SELECT extraction_config_version FROM process_sessions ORDER BY id");
    assert_eq!(v[0].len(), 12);
    assert_ne!(v[0], v[1]);
}

#[test]
fn patterns_test_prints_events_for_lines() {
    let env = Env::new();
    let out = env
        .cmd()
        .args([
            "patterns",
            "test",
            "--no-default-patterns",
            "--jsonl",
            "--patterns",
        ])
        .arg(env.rules())
        .write_stdin_text("hello\nerror[E0499]: cannot borrow\n")
        .expect("run");
    assert!(out.status.success());
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("one json event");
    assert_eq!(v["pattern"], "t_error");
    assert_eq!(v["line_number"], 2);
    assert_eq!(v["metadata_json"], r#"{"code":"E0499"}"#);
}

#[test]
fn builtin_rules_load_and_check() {
    let env = Env::new();
    let out = env
        .cmd()
        .args(["patterns", "check"])
        .output()
        .expect("check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("ok: "), "{text}");
}

trait StdinText {
    fn write_stdin_text(&mut self, text: &str) -> std::io::Result<std::process::Output>;
}

impl StdinText for std::process::Command {
    fn write_stdin_text(&mut self, text: &str) -> std::io::Result<std::process::Output> {
        use std::io::Write;
        let mut child = self
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())?;
        child.wait_with_output()
    }
}

/// `wrapper patterns list | head -1` and the like: a reader that goes away is a quiet end,
/// never a panic.
#[test]
fn a_closed_stdout_is_a_quiet_end_for_every_printing_command() {
    let env = Env::new();
    let db = env.db();
    let db = db.to_str().expect("utf-8 path");
    let commands: [&[&str]; 4] = [
        &["patterns", "list"],
        &["patterns", "check"],
        &["db", "path", "--db", db],
        &["db", "migrate", "--db", db],
    ];
    for args in commands {
        let mut child = env
            .cmd()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // Close the read end before wrapper writes anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}

/// `patterns check` warns (exit 0) about a Unicode `\b`/`\w` in a user's rule and about a rule
/// that matches nearly every line, naming file:line and the rule; the built-ins get no warning.
#[test]
fn check_warns_about_unicode_classes_and_rules_that_match_every_line() {
    let env = Env::new();
    let file = env.path("mine.toml");
    std::fs::write(
        &file,
        "[[pattern]]\nname = \"slow\"\nevent_type = \"error\"\nregex = '\\bfailed\\b: (\\w+)'\nsamples = ['build failed: x']\n\
         [[pattern]]\nname = \"greedy\"\nevent_type = \"note\"\nregex = '[a-z ]*'\nsamples = ['x']\n\
         [[pattern]]\nname = \"fine\"\nevent_type = \"error\"\nregex = '(?-u:\\b)failed: [A-Za-z_]+'\nsamples = ['failed: x']\n",
    )
    .expect("write");
    let out = env
        .cmd()
        .args(["patterns", "check"])
        .arg(&file)
        .output()
        .expect("check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("mine.toml:1: rule `slow`: Unicode-aware `\\b`"),
        "{err}"
    );
    assert!(err.contains("rule `slow`: Unicode-aware `\\w`"), "{err}");
    assert!(
        err.contains("mine.toml:6: rule `greedy`: matches an empty line"),
        "{err}"
    );
    assert!(!err.contains("`fine`"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 warning(s)"));
    let builtin = env
        .cmd()
        .args(["patterns", "check"])
        .output()
        .expect("check");
    assert!(
        !String::from_utf8_lossy(&builtin.stderr).contains("warning:"),
        "{}",
        String::from_utf8_lossy(&builtin.stderr)
    );
}
