//! The screen model on real recordings: the Codex and Claude Code TUIs (asciicast v2 of their
//! pty output, recorded in tmux 120×40 against the scripted mock model; see
//! tests/fixtures/agents/README in the `real` recordings), compared with what tmux showed a
//! person at the same moments (`capture-pane` files).

use std::path::PathBuf;

use wrapper::screen::Screen;

fn fixture(agent: &str, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/agents")
        .join(agent)
        .join(name)
}

/// What the screen model read from a recording: committed lines, and the live rows offered
/// at each settle (a gap of at least 100 ms in the output, as `prompt_idle`).
struct Read {
    lines: Vec<String>,
    live: Vec<String>,
}

/// Replays `agent`'s TUI recording through the screen model as PTY mode does: a settle
/// whenever what is shown has not changed for `idle` seconds (`prompt_idle`) by the
/// recording's clock.
fn replay(agent: &str, idle: f64) -> Read {
    let text = std::fs::read_to_string(fixture(agent, "tui.cast")).expect("cast");
    let mut rows = text.lines();
    let head: serde_json::Value =
        serde_json::from_str(rows.next().expect("header")).expect("header");
    let size = |k: &str| head[k].as_u64().expect("size") as u16;
    let mut sc = Screen::new(size("width"), size("height"));
    let mut read = Read {
        lines: Vec::new(),
        live: Vec::new(),
    };
    let settle = |sc: &mut Screen, read: &mut Read| {
        let st = sc.settle();
        read.lines.extend(st.lines);
        read.live.extend(st.live);
    };
    let mut last_change = 0.0;
    for row in rows {
        let ev: serde_json::Value = serde_json::from_str(row).expect("event");
        let t = ev[0].as_f64().expect("time");
        if t - last_change >= idle && sc.changed() {
            settle(&mut sc, &mut read);
        }
        let before = sc.fingerprint();
        if ev[1] == "o" {
            let lines = sc.feed(ev[2].as_str().expect("data").as_bytes());
            read.lines.extend(lines);
        }
        if sc.fingerprint() != before {
            last_change = t;
        }
    }
    settle(&mut sc, &mut read);
    read.lines.extend(sc.finish());
    read
}

/// The non-blank rows of a `capture-pane` file, as the screen model trims them.
fn screen_rows(agent: &str, name: &str) -> Vec<String> {
    std::fs::read_to_string(fixture(agent, name))
        .expect("screen")
        .lines()
        .map(|r| r.trim_end().to_string())
        .filter(|r| {
            !r.trim().is_empty() && !r.starts_with("__EXITED__") && !r.starts_with("Pane is dead")
        })
        .collect()
}

/// Every row a person saw on the screens tmux captured during the session is among what
/// the screen model read (as lines, or as live rows while the agent waited). A row whose
/// bullet blinks (`● Running…` / `  Running…`) or that is drawn with a no-break space for a
/// space is one row, read once in whichever look it had first.
fn assert_read_every_row(agent: &str, r: &Read, screens: &[&str]) {
    let key = |row: &str| {
        let row = row.replace('\u{a0}', " ");
        let body = row.trim_start_matches(' ');
        match body.strip_prefix(['●', '⏺']) {
            Some(rest) => format!("{} {rest}", &row[..row.len() - body.len()]),
            None => row,
        }
    };
    let read: Vec<String> = r.lines.iter().chain(&r.live).map(|l| key(l)).collect();
    for name in screens {
        for row in screen_rows(agent, name) {
            assert!(
                read.contains(&key(&row)),
                "{agent}/{name}: the row {row:?} was not read"
            );
        }
    }
}

/// Claude Code draws inline on the primary screen: its history is what scrolled up, and
/// what a person read is the committed lines in order — `● Bash(...)` rows and their
/// `⎿  Error: Exit code 1` included (a line splitter threw them away before `\r`).
#[test]
fn claude_tui_the_screen_model_reads_what_a_person_read() {
    let r = replay("claude", 0.1);
    assert_read_every_row(
        "claude",
        &r,
        &[
            "tui.approval-1.screen.txt",
            "tui.approval-2.screen.txt",
            "tui.approval-3.screen.txt",
            "tui.final.screen.txt",
            "tui.exit.screen.txt",
        ],
    );
    // The history in order, as tmux's scrollback has it (up to the answer: its last rows
    // are the input box as it was after the exit, which the exit screen covers).
    let mut want = screen_rows("claude", "tui.scrollback.txt");
    let end = want
        .iter()
        .position(|r| r.contains("again to confirm"))
        .expect("the answer's last row");
    want.truncate(end + 1);
    let mut it = r.lines.iter();
    for row in &want {
        assert!(
            it.any(|l| l == row),
            "scrollback row {row:?} missing or out of order in {:#?}",
            r.lines
        );
    }
    for cmd in [
        "● Bash(gcc broken.c -o broken)",
        "● Bash(python3 -m pytest -q)",
        "● Bash(rm -rf build && git clean -fdx)",
    ] {
        assert_eq!(r.lines.iter().filter(|l| *l == cmd).count(), 1, "{cmd}");
    }
    // (Claude puts a no-break space after the `⎿`.)
    assert!(r
        .lines
        .iter()
        .any(|l| l.starts_with("  ⎿") && l.ends_with("Error: Exit code 1")));
    // Each of the three approval dialogs was on the screen, settled, while Claude waited.
    let asked = r
        .live
        .iter()
        .filter(|l| l.trim() == "Do you want to proceed?");
    assert!(asked.count() >= 3);
}

/// Codex draws on the alternate screen, which has no history: it is read when it settles
/// and when Codex leaves it. The approval dialogs and every cell of its transcript are read.
///
/// The recording's driver answered the second approval 80 ms after it appeared (faster than
/// a person, and than the default `prompt_idle` of 100 ms, so then it never settles): that
/// dialog is read with a `prompt_idle` of 50 ms, the rest of the session with the default.
#[test]
fn codex_tui_the_screen_model_reads_what_a_person_read() {
    let r = replay("codex", 0.1);
    assert_read_every_row(
        "codex",
        &r,
        &[
            "tui.approval-1.screen.txt",
            "tui.final.screen.txt",
            "tui.exit.screen.txt",
        ],
    );
    let r = replay("codex", 0.05);
    assert_read_every_row(
        "codex",
        &r,
        &[
            "tui.approval-1.screen.txt",
            "tui.approval-2.screen.txt",
            "tui.final.screen.txt",
            "tui.exit.screen.txt",
        ],
    );
    for row in [
        "• Exited (status 1) gcc broken.c -o broken",
        "• Ran python3 -m pytest -q",
        "  $ rm -rf build && git clean -fdx",
        "✗ You canceled the request to run rm -rf build && git clean -fdx",
    ] {
        assert!(
            r.lines.iter().any(|l| l == row),
            "{row:?} in {:#?}",
            r.lines
        );
    }
    let asked = r
        .lines
        .iter()
        .filter(|l| l.trim() == "Would you like to run the following command?");
    assert_eq!(asked.count(), 2, "{:#?}", r.lines);
    // Rows read once: the transcript's cells are not repeated as the screen scrolls.
    let ran = r
        .lines
        .iter()
        .filter(|l| *l == "• Ran python3 -m pytest -q");
    assert_eq!(ran.count(), 1);
}

/// Claude Code 2.1.332 draws on the alternate screen (with mouse tracking): a call's command
/// (`⎿  $ gcc …`) while it waits or runs, each approval dialog, and the folded
/// `Ran 1 shell command · 1 failed` are read.
#[test]
fn claude_2_1_332_tui_the_screen_model_reads_what_a_person_read() {
    let agent = "claude/2.1.332";
    let r = replay(agent, 0.1);
    assert_read_every_row(
        agent,
        &r,
        &[
            "tui.approval-1.screen.txt",
            "tui.approval-2.screen.txt",
            "tui.approval-3.screen.txt",
            "tui.final.screen.txt",
        ],
    );
    let seen = |row: &str| r.lines.iter().chain(&r.live).any(|l| l == row);
    for row in [
        "  ⎿  $ gcc broken.c -o broken",
        "  ⎿  $ python3 -m pytest -q",
        "  ⎿  $ rm -rf build && git clean -fdx",
        "  Ran 1 shell command · 1 failed",
    ] {
        assert!(seen(row), "{row:?} in {:#?} / {:#?}", r.lines, r.live);
    }
    // Each of the three questions, by the recording's own clock.
    let asked = r
        .lines
        .iter()
        .chain(&r.live)
        .filter(|l| l.trim() == "Do you want to proceed?");
    assert_eq!(asked.count(), 3);
}
