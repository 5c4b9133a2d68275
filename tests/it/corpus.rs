//! The built-in rules on real transcripts and build logs (`../shared/corpus`): every line of a
//! kind a person would flag is caught, and the known traps are not. Expectations are computed
//! from the files themselves, not hard-coded counts. Skipped, with a note, when the corpus is
//! absent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::*;

fn file(rel: &str) -> Option<PathBuf> {
    let p = corpus_dir()?.join(rel);
    p.is_file().then_some(p)
}

/// Events the built-in rules produce for `path`, via `wrapper patterns test --jsonl`.
fn events(path: &Path, agent: &str) -> Vec<Value> {
    let env = Env::new();
    let out = env
        .cmd()
        .args(["patterns", "test", "--jsonl", "--agent", agent])
        .arg(path)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json event"))
        .collect()
}

fn lines(path: &Path) -> Vec<String> {
    String::from_utf8_lossy(&std::fs::read(path).expect("read"))
        .lines()
        .map(str::to_string)
        .collect()
}

/// Event types per 1-based line number.
fn by_line(ev: &[Value]) -> HashMap<u64, Vec<String>> {
    let mut m: HashMap<u64, Vec<String>> = HashMap::new();
    for e in ev {
        let n = e["line_number"].as_u64().expect("line_number");
        m.entry(n)
            .or_default()
            .push(e["event_type"].as_str().unwrap_or("").to_string());
    }
    m
}

fn has(m: &HashMap<u64, Vec<String>>, line: usize, ty: &str) -> bool {
    m.get(&(line as u64 + 1))
        .is_some_and(|v| v.iter().any(|t| t == ty))
}

#[test]
fn rustc_errors_and_locations_are_all_caught() {
    let Some(f) = file("builds/rustc-borrowck-closures-two-mut-fail.stderr") else {
        return;
    };
    let ev = events(&f, "codex");
    let m = by_line(&ev);
    let text = lines(&f);
    let mut n = 0;
    for (i, l) in text.iter().enumerate() {
        if l.starts_with("error[E") {
            n += 1;
            assert!(has(&m, i, "error"), "missed: {l}");
            let code = &l[6..11];
            assert!(
                ev.iter().any(|e| e["line_number"] == (i as u64 + 1)
                    && e["metadata_json"]
                        .as_str()
                        .is_some_and(|j| j.contains(code))),
                "no code {code} for {l}"
            );
        }
        if l.trim_start().starts_with("--> ") {
            assert!(has(&m, i, "file_path"), "missed location: {l}");
        }
    }
    assert!(n >= 5);
}

#[test]
fn tsc_and_go_test_failures_are_caught() {
    if let Some(f) = file("builds/tsc-assignmentCompatability1.errors.txt") {
        let m = by_line(&events(&f, "codex"));
        for (i, l) in lines(&f).iter().enumerate() {
            if l.contains("): error TS") && !l.starts_with("!!!") && !l.starts_with("==") {
                assert!(has(&m, i, "error"), "missed: {l}");
            }
        }
    }
    if let Some(f) = file("builds/gotestsum-standard-verbose.out") {
        let m = by_line(&events(&f, "codex"));
        for (i, l) in lines(&f).iter().enumerate() {
            if l.trim_start().starts_with("--- FAIL:") {
                assert!(has(&m, i, "error"), "missed: {l}");
            }
            if l.starts_with("ok  \t") || l.starts_with("FAIL\t") {
                assert!(has(&m, i, "test_result"), "missed result: {l}");
            }
            if l.trim_start().starts_with("--- PASS:") || l.trim_start().starts_with("=== RUN") {
                assert!(!has(&m, i, "error"), "false error: {l}");
            }
        }
    }
}

#[test]
fn claude_code_and_codex_commands_are_caught() {
    if let Some(f) = file("agents/claude-code-tui-springboot-sqs-transcript.md") {
        let m = by_line(&events(&f, "claude"));
        let mut n = 0;
        for (i, l) in lines(&f).iter().enumerate() {
            if l.starts_with("⏺ Bash(") {
                n += 1;
                assert!(has(&m, i, "command"), "missed: {l}");
            }
        }
        assert!(n > 0);
    }
    if let Some(f) = file("agents/codex-exec-ethskills-transcript-head.md") {
        let ev = events(&f, "codex");
        for (i, l) in lines(&f).iter().enumerate() {
            if l.starts_with("/bin/bash -lc ") && l.contains(" in /") {
                let e = ev
                    .iter()
                    .find(|e| e["line_number"] == (i as u64 + 1) && e["event_type"] == "command")
                    .unwrap_or_else(|| panic!("missed: {l}"));
                assert!(
                    e["metadata_json"].as_str().unwrap_or("").contains("cwd"),
                    "{e}"
                );
            }
        }
    }
}

#[test]
fn traps_are_not_errors() {
    // pytest captured-log WARNING lines mention file.py:NNN but are not errors.
    if let Some(f) = file("builds/pytest-captured-log-azureml-excerpt.txt") {
        let ev = events(&f, "codex");
        assert!(
            ev.iter().all(|e| e["event_type"] != "error"),
            "captured-log line taken for an error"
        );
    }
    // aider repo maps (│def …, ⋮…) and prose about errors, across every file.
    for f in corpus_files() {
        let ev = events(&f, "aider");
        let text = lines(&f);
        for e in ev.iter().filter(|e| e["event_type"] == "error") {
            let n = e["line_number"].as_u64().expect("n") as usize;
            let l = &text[n - 1];
            let t = l.trim_start();
            assert!(
                !t.starts_with('│') && !t.starts_with('⋮'),
                "repo map line as error in {}: {l}",
                f.display()
            );
            assert!(
                !l.contains(" 0 errors") && !l.starts_with("0 errors"),
                "'0 errors' as error in {}: {l}",
                f.display()
            );
            assert!(
                !t.starts_with("- ") || t.contains("Error"),
                "diff deletion as error in {}: {l}",
                f.display()
            );
        }
    }
}

#[test]
fn every_corpus_file_yields_events_where_a_person_would_expect_some() {
    for f in corpus_files() {
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if name.contains("header-only") || name.contains("transcript-tail") {
            continue;
        }
        assert!(
            !events(&f, "codex").is_empty(),
            "no events at all from {name}"
        );
    }
}
