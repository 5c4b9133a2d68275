//! Faults around the run path (issue 4): terminating signals during a flood lose nothing,
//! SIGKILL at random moments leaves a sound database that the next wrapper recovers without
//! touching live sessions, ten wrappers share one file without loss or "database is locked",
//! a database that fails mid-run (removed, replaced, disk full) spools and imports back, every
//! exit code and death by signal propagates, and process groups, daemons and orphans are
//! handled. Each test drives the real binary with real processes and real signals.

use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Instant;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::harness::*;

/// A small seeded generator (xorshift64*), so "random" moments are the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn session_i64(env: &Env, sid: &str, column: &str) -> i64 {
    env.query_i64(&format!(
        "SELECT {column} FROM process_sessions WHERE session_id = '{sid}'"
    ))
}

fn session_events(env: &Env, sid: &str) -> i64 {
    env.query_i64(&format!(
        "SELECT count(*) FROM extraction_events WHERE session_id = '{sid}'"
    ))
}

fn session_state(env: &Env, sid: &str) -> Vec<String> {
    env.query_strings(&format!(
        "SELECT state FROM process_sessions WHERE session_id = '{sid}'"
    ))
}

fn integrity(db: &Path) -> String {
    rusqlite::Connection::open(db)
        .expect("open")
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check")
}

fn touch(path: &Path) {
    std::fs::write(path, b"").expect("touch");
}

fn read_pid(path: &Path) -> i32 {
    wait_until(&format!("pid in {}", path.display()), || {
        std::fs::read_to_string(path).is_ok_and(|s| s.ends_with('\n'))
    });
    std::fs::read_to_string(path)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid")
}

// --- 1. terminating signals during a flood -------------------------------------------------

#[test]
fn term_int_and_hup_during_a_flood_lose_no_line_and_commit_every_event() {
    let env = Env::new();
    let signals = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];
    let iterations = 21;
    let start = Instant::now();
    for n in 0..iterations {
        let sig = signals[n % signals.len()];
        let sid = format!("flood-{n}");
        let w = Running::spawn(env.run_cmd(
            "codex",
            &["--batch-size", "100", "--session-id", &sid],
            &["sh", "-c", EXACT_FLOOD],
        ));
        // Progress, not time: a different amount of output each round.
        w.out.wait_for(&format!("error: line {}\n", 300 + 97 * n));
        w.signal(sig);
        let (code, out, err) = w.wait();
        let err = String::from_utf8_lossy(&err);
        assert_eq!(code, 7, "{sig}: the child's own exit code; stderr: {err}");
        let wrote: i64 = err
            .lines()
            .find_map(|l| l.strip_prefix("wrote "))
            .unwrap_or_else(|| panic!("{sig}: child did not report; stderr: {err}"))
            .trim()
            .parse()
            .expect("number");
        let out_lines = out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() as i64;
        assert_eq!(out_lines, wrote + 1, "{sig}: passthrough lost lines");
        // `ready` + N error lines on stdout, `wrote N` on stderr.
        assert_eq!(
            session_i64(&env, &sid, "total_lines_processed"),
            wrote + 2,
            "{sig}"
        );
        assert_eq!(session_events(&env, &sid), wrote, "{sig}: rows");
        assert_eq!(
            session_i64(&env, &sid, "total_extraction_events"),
            wrote,
            "{sig}: total"
        );
        assert_eq!(
            env.query_strings(&format!(
                "SELECT state || ':' || exit_code || ':' || (ended_at IS NOT NULL) \
                 FROM process_sessions WHERE session_id = '{sid}'"
            )),
            ["interrupted:7:1"],
            "{sig}"
        );
        assert_eq!(
            env.query_strings(&format!(
                "SELECT state || ':' || COALESCE(json_extract(metadata_json, '$.signal'), \
                 json_extract(metadata_json, '$.stop_signal'), '') \
                 FROM process_state_changes WHERE session_id = '{sid}' ORDER BY id"
            )),
            [
                "started:".to_string(),
                "running:".to_string(),
                format!("signaled:{}", sig.as_str()),
                format!("interrupted:{}", sig.as_str()),
            ],
            "{sig}"
        );
    }
    eprintln!(
        "{iterations} signal-during-flood iterations in {:?}",
        start.elapsed()
    );
}

// --- 2. SIGKILL at random moments ----------------------------------------------------------

#[test]
fn sigkill_at_random_moments_keeps_the_database_sound_and_recovery_spares_live_sessions() {
    let env = Env::new();
    let go = env.path("live.go");
    let live = Running::spawn(env.run_cmd(
        "codex",
        &["--session-id", "live"],
        &[
            "sh",
            "-c",
            &format!(
                "echo ready; while [ ! -e {} ]; do sleep 0.02; done; echo 'error: live done'",
                go.display()
            ),
        ],
    ));
    live.out.wait_for("ready");
    wait_until("live session running", || {
        session_state(&env, "live") == ["running"]
    });

    let mut rng = Rng(0x5eed_2026_0004);
    let iterations = 12;
    let mut recovered = 0;
    for n in 0..iterations {
        let sid = format!("killed-{n}");
        let w = Running::spawn(env.run_cmd(
            "codex",
            &["--batch-size", "50", "--session-id", &sid],
            &[
                "sh",
                "-c",
                "echo \"pid $$\"; i=0; while :; do i=$((i+1)); echo \"error: line $i\"; done",
            ],
        ));
        let lines = rng.below(4000);
        let child = if n % 4 == 3 {
            // Now and then at once, before wrapper may even have spawned the child.
            None
        } else {
            w.out.wait_for("pid ");
            if lines > 0 {
                w.out.wait_for(&format!("error: line {lines}\n"));
            }
            let text = w.out.text();
            let pid: i32 = text
                .lines()
                .find_map(|l| l.strip_prefix("pid "))
                .expect("pid line")
                .trim()
                .parse()
                .expect("pid");
            Some(pid)
        };
        w.signal(Signal::SIGKILL);
        let (code, _, _) = w.wait();
        assert_eq!(code, -1, "wrapper died of SIGKILL");
        // The child is in its own group and outlives wrapper; clean it up.
        if let Some(pid) = child {
            let _ = signal::killpg(Pid::from_raw(pid), Signal::SIGKILL);
            wait_until("orphaned child gone", || process_gone(pid));
        }
        assert_eq!(integrity(&env.db()), "ok", "iteration {n}");
        // The next wrapper to open the database recovers the orphaned session.
        assert!(env.sh(&[], "true").status.success());
        let state = session_state(&env, &sid);
        if child.is_some() {
            assert_eq!(state, ["abandoned"], "iteration {n}");
        } else {
            assert!(state.is_empty() || state == ["abandoned"], "{state:?}");
        }
        if !state.is_empty() {
            recovered += 1;
            assert_eq!(
                env.query_i64(&format!(
                    "SELECT count(*) FROM process_state_changes WHERE session_id = '{sid}' AND state = 'abandoned'"
                )),
                1
            );
        }
        assert_eq!(
            session_state(&env, "live"),
            ["running"],
            "a live session was touched"
        );
    }
    touch(&go);
    let (code, _, _) = live.wait();
    assert_eq!(code, 0);
    assert_eq!(session_state(&env, "live"), ["completed"]);
    assert_eq!(session_events(&env, "live"), 1);
    eprintln!("{iterations} SIGKILLs, {recovered} sessions recovered as abandoned");
}

// --- 3. ten wrappers on one database -------------------------------------------------------

#[test]
fn ten_wrappers_on_one_database_lose_no_row_and_never_report_locked() {
    let env = Env::new();
    const LINES: i64 = 20_000;
    let start = Instant::now();
    let wrappers: Vec<Running> = (0..10)
        .map(|k| {
            Running::spawn(env.run_cmd(
                "codex",
                &["--session-id", &format!("par-{k}")],
                &[
                    "sh",
                    "-c",
                    &format!("yes 'error: from wrapper {k}' | head -n {LINES}"),
                ],
            ))
        })
        .collect();
    for (k, w) in wrappers.into_iter().enumerate() {
        let (code, out, err) = w.wait();
        let err = String::from_utf8_lossy(&err);
        assert_eq!(code, 0, "wrapper {k}: {err}");
        assert!(err.is_empty(), "wrapper {k} said something: {err}");
        assert_eq!(out.iter().filter(|b| **b == b'\n').count() as i64, LINES);
    }
    for k in 0..10 {
        let sid = format!("par-{k}");
        assert_eq!(session_events(&env, &sid), LINES, "{sid}: rows");
        assert_eq!(
            session_i64(&env, &sid, "total_extraction_events"),
            LINES,
            "{sid}"
        );
        assert_eq!(
            session_i64(&env, &sid, "total_lines_processed"),
            LINES,
            "{sid}"
        );
        assert_eq!(session_state(&env, &sid), ["completed"]);
    }
    assert_eq!(integrity(&env.db()), "ok");
    eprintln!(
        "10 wrappers x {LINES} events committed in {:?}",
        start.elapsed()
    );
}

// --- 4. the database fails mid-run ---------------------------------------------------------

/// `error: <tag><i>` for i in 1..=n, as the child prints it.
fn numbered(tag: &str, n: usize) -> String {
    (1..=n).map(|i| format!("error: {tag}{i}\n")).collect()
}

/// A child printing `n1` events, waiting for `go`, then printing `n2` more.
fn two_phase_script(go: &Path, n1: usize, n2: usize) -> String {
    format!(
        "i=0; while [ $i -lt {n1} ]; do i=$((i+1)); echo \"error: a$i\"; done; \
         while [ ! -e {go} ]; do sleep 0.02; done; \
         i=0; while [ $i -lt {n2} ]; do i=$((i+1)); echo \"error: b$i\"; done",
        go = go.display()
    )
}

/// The one warning wrapper printed, and the spool it names.
fn the_spool_warning(err: &[u8]) -> std::path::PathBuf {
    let err = String::from_utf8_lossy(err);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "exactly one warning: {err}");
    assert_eq!(err.lines().count(), 1, "nothing else on stderr: {err}");
    let path = warnings[0]
        .split("wrapper import-spool ")
        .nth(1)
        .and_then(|s| s.strip_suffix("`)"))
        .unwrap_or_else(|| panic!("warning names no spool: {}", warnings[0]));
    let path = std::path::PathBuf::from(path);
    assert!(path.is_file(), "{}", path.display());
    path
}

fn import_spool(env: &Env, spool: &Path, db: &Path) -> String {
    let out = env
        .cmd()
        .arg("import-spool")
        .arg(spool)
        .arg("--db")
        .arg(db)
        .output()
        .expect("import-spool");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a two-phase child, breaks the database between the phases with `break_db`, and
/// checks: the agent runs on, output is byte-identical, one warning names the spool, and
/// the spool imported into `restore_db` holds exactly the second phase.
fn database_breaks_between_phases(break_db: impl FnOnce(&Env)) {
    let env = Env::new();
    let db = env.db();
    database_at_breaks_between_phases(&env, &db, || break_db(&env));
}

/// Wrapper recording session `session` into `db`, running [`two_phase_script`] with `go` in
/// the test's directory (which is also its TMPDIR).
fn two_phase_cmd(env: &Env, db: &Path, session: &str, n1: usize, n2: usize) -> Command {
    let mut cmd = env.cmd();
    cmd.args(["codex", "--no-default-patterns", "--patterns"])
        .arg(env.rules())
        .arg("--db")
        .arg(db)
        .args(["--session-id", session, "--flush-interval", "20ms", "--"])
        .args(["sh", "-c", &two_phase_script(&env.path("go"), n1, n2)])
        .env("TMPDIR", env.path(""));
    cmd
}

/// [`database_breaks_between_phases`] with the database at `db`.
fn database_at_breaks_between_phases(env: &Env, db: &Path, break_db: impl FnOnce()) {
    let go = env.path("go");
    let (n1, n2) = (300, 700);
    let w = Running::spawn(two_phase_cmd(env, db, "broken", n1, n2));
    wait_until("phase one committed", || {
        rusqlite::Connection::open(db)
            .and_then(|c| {
                c.query_row(
                "SELECT total_extraction_events FROM process_sessions WHERE session_id = 'broken'",
                [],
                |r| r.get::<_, i64>(0),
            )
            })
            .is_ok_and(|n| n == n1 as i64)
    });
    break_db();
    touch(&go);
    let (code, out, err) = w.wait();
    assert_eq!(
        code,
        0,
        "the agent was disturbed: {}",
        String::from_utf8_lossy(&err)
    );
    let want = numbered("a", n1) + &numbered("b", n2);
    assert!(out == want.as_bytes(), "passthrough changed");
    let spool = the_spool_warning(&err);
    // Into a new file: beside the old path lies the orphaned file's `-wal`, which SQLite
    // would replay into any database opened at that path (a hazard of replacing a live
    // SQLite file, not of wrapper; see docs/GUARANTEES.md).
    let db = env.path("restored.db");
    let report = import_spool(env, &spool, &db);
    assert!(
        report.contains(&format!("imported {n2} events")),
        "{report}"
    );
    let c = rusqlite::Connection::open(&db).expect("open restored");
    let q = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).expect(sql) };
    assert_eq!(
        q("SELECT count(*) FROM extraction_events WHERE session_id = 'broken'"),
        n2 as i64
    );
    assert_eq!(
        q("SELECT total_extraction_events FROM process_sessions WHERE session_id = 'broken'"),
        n2 as i64
    );
    assert_eq!(
        q("SELECT total_lines_processed FROM process_sessions WHERE session_id = 'broken'"),
        (n1 + n2) as i64
    );
    assert_eq!(
        q("SELECT count(*) FROM process_sessions WHERE session_id = 'broken' AND state = 'completed'"),
        1
    );
    assert_eq!(integrity(&db), "ok");
}

#[test]
fn database_file_removed_mid_run_spools_and_imports_back() {
    database_breaks_between_phases(|env| std::fs::remove_file(env.db()).expect("remove db"));
}

#[test]
fn database_directory_removed_mid_run_spools_and_imports_back() {
    let env = Env::new();
    let dir = env.path("dbdir");
    std::fs::create_dir(&dir).expect("dbdir");
    database_at_breaks_between_phases(&env, &dir.join("w.db"), || {
        std::fs::remove_dir_all(&dir).expect("remove the database's directory")
    });
}

/// A file or symlink planted where the spool used to go (`<db>.spool-<session>.jsonl`, a
/// name anyone could predict) is left alone: the spool gets a name nobody knows in advance.
/// Before the fix, the warning named the planted path and every later event was lost.
#[test]
fn a_planted_spool_path_is_not_used_and_the_spool_still_imports() {
    let env = Env::new();
    let target = env.path("victim");
    std::fs::write(&target, "do not touch\n").expect("write");
    std::os::unix::fs::symlink(&target, env.path("w.db.spool-broken.jsonl")).expect("symlink");
    std::fs::write(env.path("w.db.spool-broken-x.jsonl"), "theirs\n").expect("write");
    database_breaks_between_phases(|env| std::fs::remove_file(env.db()).expect("remove db"));
    assert_eq!(
        std::fs::read_to_string(&target).expect("read"),
        "do not touch\n"
    );
}

/// Neither beside the database nor in the temporary directory can a spool be written: the
/// warning says plainly that events are being lost and names no file, and the last message
/// says how many. Before the fix the warning named a spool that did not exist.
#[test]
fn with_nowhere_to_spool_the_loss_is_said_and_counted() {
    let env = Env::new();
    let dir = env.path("dbdir");
    std::fs::create_dir(&dir).expect("dbdir");
    let db = dir.join("w.db");
    let go = env.path("go");
    let (n1, n2) = (300, 700);
    let mut cmd = two_phase_cmd(&env, &db, "lost", n1, n2);
    cmd.env("TMPDIR", env.path("no-such-dir"));
    let w = Running::spawn(cmd);
    wait_until("phase one committed", || {
        rusqlite::Connection::open(&db)
            .and_then(|c| {
                c.query_row(
                    "SELECT total_extraction_events FROM process_sessions",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .is_ok_and(|n| n == n1 as i64)
    });
    std::fs::remove_dir_all(&dir).expect("remove the database's directory");
    touch(&go);
    let (code, out, err) = w.wait();
    let err = String::from_utf8_lossy(&err);
    assert_eq!(code, 0, "the agent was disturbed: {err}");
    let want = numbered("a", n1) + &numbered("b", n2);
    assert!(out == want.as_bytes(), "passthrough changed");
    // (A loaded machine may also make the output queue want to spill, which it cannot with
    // no temporary directory either: that says so on a line of its own.)
    let lost: Vec<&str> = err.lines().filter(|l| l.contains("LOST")).collect();
    assert_eq!(lost.len(), 1, "{err}");
    assert!(!err.contains("import-spool"), "names no file: {err}");
    assert!(
        err.lines()
            .last()
            .is_some_and(|l| l.contains(&format!("{n2} events of session lost were lost"))),
        "{err}"
    );
}

/// The database's directory made read-only mid-run (by its owner, so the test is run as an
/// unprivileged user: root ignores the mode). SQLite needs no new file while the database and
/// its `-wal` are open, so wrapper must keep recording with no warning at all — and not
/// mistake the change for a broken database.
#[test]
fn database_directory_made_read_only_mid_run_keeps_recording() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;

    let env = Env::new();
    let dir = env.path("dbdir");
    std::fs::create_dir(&dir).expect("dbdir");
    let as_nobody = |cmd: &mut std::process::Command| {
        // SAFETY: setgid/setuid are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    };
    let root = nix::unistd::geteuid().is_root();
    if root {
        let mut probe = std::process::Command::new("true");
        as_nobody(&mut probe);
        if !probe.status().is_ok_and(|s| s.success()) {
            eprintln!("NOTE: root here cannot become nobody; the read-only case is skipped");
            return;
        }
    }
    let nobody = nix::unistd::Uid::from_raw(65534);
    if root {
        // Let `nobody` into the test's directory, and give it the database's.
        std::fs::set_permissions(env.path(""), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        nix::unistd::chown(&dir, Some(nobody), Some(nix::unistd::Gid::from_raw(65534)))
            .expect("chown");
    }
    let db = dir.join("w.db");
    let go = env.path("go");
    let (n1, n2) = (300, 700);
    let mut cmd = two_phase_cmd(&env, &db, "ro", n1, n2);
    if root {
        as_nobody(&mut cmd);
    }
    let w = Running::spawn(cmd);
    let committed = || {
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| {
                c.query_row(
                    "SELECT total_extraction_events FROM process_sessions",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .unwrap_or(0)
    };
    // Read only once the writer has made its `-shm`: root opening a WAL database first would
    // create it, owned by root, and `nobody`'s writer could not use its own database (a race
    // a loaded CI machine lost once).
    let shm = dir.join("w.db-shm");
    wait_until("phase one committed", || {
        shm.exists() && committed() == n1 as i64
    });
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).expect("chmod 555");
    touch(&go);
    let (code, out, err) = w.wait();
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    assert!(
        err.is_empty(),
        "no warning: {}",
        String::from_utf8_lossy(&err)
    );
    let want = numbered("a", n1) + &numbered("b", n2);
    assert!(out == want.as_bytes(), "passthrough changed");
    assert_eq!(committed(), (n1 + n2) as i64);
    let c = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open");
    let q = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).expect(sql) };
    assert_eq!(
        q("SELECT count(*) FROM extraction_events"),
        (n1 + n2) as i64
    );
    assert_eq!(
        q("SELECT count(*) FROM process_sessions WHERE state = 'completed'"),
        1
    );
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod back");
}

#[test]
fn database_file_replaced_mid_run_spools_and_imports_back() {
    database_breaks_between_phases(|env| {
        // Another valid wrapper database moved over the path (as a restore from backup
        // would do): writes to the old file would vanish with it.
        let other = env.path("other.db");
        drop(wrapper::store::open(&other, wrapper::store::OpenMode::Create).expect("create"));
        std::fs::rename(&other, env.db()).expect("replace db");
    });
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).expect("mount point");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn full_disk_mid_run_spools_to_the_temp_dir_and_imports_back() {
    let env = Env::new();
    let Some(fs) = Tmpfs::mount(&env.path("small"), "1m") else {
        eprintln!(
            "NOTE: cannot mount a 1 MiB tmpfs here (not root?); the full-disk case is skipped"
        );
        return;
    };
    let db = fs.0.join("w.db");
    let tmp = env.path("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp");
    let n = 20_000;
    let script = format!(
        "i=0; while [ $i -lt {n} ]; do i=$((i+1)); echo \"error: a$i padding padding padding padding\"; done"
    );
    let mut cmd = env.cmd();
    cmd.args([
        "codex",
        "--session-id",
        "full",
        "--no-default-patterns",
        "--patterns",
    ])
    .arg(env.rules())
    .arg("--db")
    .arg(&db)
    .args(["--", "sh", "-c", &script])
    .env("TMPDIR", &tmp);
    let w = Running::spawn(cmd);
    let (code, out, err) = w.wait();
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    let want: String = (1..=n)
        .map(|i| format!("error: a{i} padding padding padding padding\n"))
        .collect();
    assert!(out == want.as_bytes(), "passthrough changed");
    let spool = the_spool_warning(&err);
    // The disk beside the database is full, so the spool went to the temp dir.
    assert!(spool.starts_with(&tmp), "{}", spool.display());
    fs.resize("64m");
    let report = import_spool(&env, &spool, &db);
    eprintln!("full disk: {report}");
    let c = rusqlite::Connection::open(&db).expect("open");
    let q = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).expect(sql) };
    assert_eq!(q("SELECT count(*) FROM extraction_events"), n);
    assert_eq!(q("SELECT total_extraction_events FROM process_sessions"), n);
    assert_eq!(q("SELECT total_lines_processed FROM process_sessions"), n);
    assert_eq!(
        q("SELECT count(*) FROM process_sessions WHERE state = 'completed'"),
        1
    );
    drop(c);
}

// --- 5. exit codes -------------------------------------------------------------------------

#[test]
fn every_exit_code_from_0_to_255_propagates() {
    let env = Env::new();
    let db = env.db();
    let start = Instant::now();
    thread::scope(|s| {
        for t in 0..4 {
            let (env, db) = (&env, &db);
            s.spawn(move || {
                for code in (t..256).step_by(4) {
                    let out = env
                        .cmd()
                        .args(["codex", "--no-default-patterns", "--db"])
                        .arg(db)
                        .arg("--session-id")
                        .arg(format!("exit-{code}"))
                        .args(["--", "sh", "-c"])
                        .arg(format!("exit {code}"))
                        .stdin(Stdio::null())
                        .output()
                        .expect("run");
                    assert_eq!(out.status.code(), Some(code), "exit {code}");
                }
            });
        }
    });
    eprintln!("256 exit codes in {:?}", start.elapsed());
    // The states match: completed for 0, failed otherwise, with the code recorded.
    let rows = env.query_strings(
        "SELECT session_id || ' ' || state || ' ' || exit_code FROM process_sessions \
         ORDER BY exit_code",
    );
    let want: Vec<String> = (0..256)
        .map(|c| {
            let state = if c == 0 { "completed" } else { "failed" };
            format!("exit-{c} {state} {c}")
        })
        .collect();
    assert_eq!(rows, want);
}

const COMMON_SIGNALS: [Signal; 9] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGABRT,
    Signal::SIGKILL,
    Signal::SIGSEGV,
    Signal::SIGPIPE,
    Signal::SIGTERM,
    Signal::SIGUSR1,
];

#[test]
fn a_child_killing_itself_gives_128_plus_n_and_killed() {
    let env = Env::new();
    for sig in COMMON_SIGNALS {
        let sid = format!("self-{}", sig.as_str());
        let out = env.sh(
            &["--session-id", &sid],
            &format!("kill -{} $$", &sig.as_str()[3..]),
        );
        assert_eq!(out.status.code(), Some(128 + sig as i32), "{sig}");
        assert_eq!(
            env.session_outcome(&sid),
            [format!("killed:{}:{}", 128 + sig as i32, sig.as_str())]
        );
    }
}

#[test]
fn a_forwarded_terminating_signal_gives_128_plus_n_and_interrupted() {
    let env = Env::new();
    for sig in [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGTERM,
    ] {
        let sid = format!("fwd-{}", sig.as_str());
        let w = Running::spawn(env.run_cmd(
            "codex",
            &["--session-id", &sid],
            &["sh", "-c", "echo ready; exec sleep 60"],
        ));
        w.out.wait_for("ready");
        w.signal(sig);
        let (code, _, _) = w.wait();
        assert_eq!(code, 128 + sig as i32, "{sig}");
        assert_eq!(
            env.session_outcome(&sid),
            [format!("interrupted:{}:{}", 128 + sig as i32, sig.as_str())]
        );
    }
}

// --- 6. process groups, daemons, orphans ---------------------------------------------------

#[test]
fn forwarded_signals_reach_grandchildren() {
    let env = Env::new();
    let log = env.path("grandchild.log");
    let pidfile = env.path("grandchild.pid");
    // The grandchild traps USR1 and TERM; the child waits for it.
    let script = format!(
        "sh -c 'trap \"echo USR1 >> {log}\" USR1; trap \"echo TERM >> {log}; exit 0\" TERM; \
         echo $$ > {pid}; while :; do sleep 0.02; done' & wait",
        log = log.display(),
        pid = pidfile.display()
    );
    let w = Running::spawn(env.run_cmd("codex", &[], &["sh", "-c", &script]));
    let grandchild = read_pid(&pidfile);
    w.signal(Signal::SIGUSR1);
    wait_until("USR1 at the grandchild", || {
        std::fs::read_to_string(&log).is_ok_and(|s| s.contains("USR1"))
    });
    w.signal(Signal::SIGTERM);
    let (_, _, _) = w.wait();
    assert_eq!(std::fs::read_to_string(&log).expect("log"), "USR1\nTERM\n");
    assert!(process_gone(grandchild));
}

#[test]
fn kill_after_clears_the_group_even_when_the_child_itself_exits_on_term() {
    let env = Env::new();
    let pidfile = env.path("stubborn.pid");
    // The child leaves at once on TERM; a grandchild that ignores TERM (and does not hold the
    // pipes) stays behind. wrapper must SIGKILL it after --kill-after, not leave it running.
    let script = format!(
        "sh -c 'trap \"\" TERM; echo $$ > {pid}; exec >/dev/null 2>&1; while :; do sleep 0.02; done' & \
         trap 'exit 0' TERM; echo ready; while :; do sleep 0.02; done",
        pid = pidfile.display()
    );
    let w =
        Running::spawn(env.run_cmd("codex", &["--kill-after", "300ms"], &["sh", "-c", &script]));
    w.out.wait_for("ready");
    let stubborn = read_pid(&pidfile);
    w.signal(Signal::SIGTERM);
    let (code, _, err) = w.wait();
    assert_eq!(
        code,
        0,
        "the child's own exit: {}",
        String::from_utf8_lossy(&err)
    );
    assert!(process_gone(stubborn), "a grandchild survived wrapper");
    let reasons = env.query_strings(
        "SELECT json_extract(metadata_json, '$.reason') FROM process_state_changes \
         WHERE state = 'signaled' AND json_extract(metadata_json, '$.signal') = 'SIGKILL'",
    );
    assert_eq!(reasons, ["kill-after"]);
    assert_eq!(
        env.query_strings("SELECT state FROM process_sessions"),
        ["interrupted"]
    );
}

#[test]
fn a_daemonised_grandchild_holding_the_pipe_does_not_hang_wrapper() {
    let env = Env::new();
    let pidfile = env.path("daemon.pid");
    // setsid: its own session and group, out of reach of the group signals; it keeps
    // wrapper's stdout pipe open for 60 s.
    let script = format!(
        "setsid sh -c 'echo $$ > {pid}; exec sleep 60' & \
         while [ ! -s {pid} ]; do sleep 0.01; done; echo started; exit 3",
        pid = pidfile.display()
    );
    let start = Instant::now();
    let mut w = Running::spawn(env.run_cmd("codex", &[], &["sh", "-c", &script]));
    w.out.wait_for("started");
    let daemon = read_pid(&pidfile);
    // Wait on wrapper alone: the daemon still holds our end of its stdout copy.
    let status = loop {
        if let Some(s) = w.child.try_wait().expect("try_wait") {
            break s;
        }
        assert!(start.elapsed() < DEADLINE, "wrapper hung on the daemon");
        thread::sleep(std::time::Duration::from_millis(5));
    };
    let took = start.elapsed();
    let _ = signal::kill(Pid::from_raw(daemon), Signal::SIGKILL);
    assert_eq!(status.code(), Some(3));
    eprintln!("wrapper exited {took:?} after start with a daemon holding its pipe");
    assert_eq!(
        env.query_strings("SELECT state FROM process_sessions"),
        ["failed"]
    );
    let meta =
        env.query_strings("SELECT metadata_json FROM process_state_changes WHERE state = 'failed'");
    assert!(meta[0].contains(r#""drained":false"#), "{}", meta[0]);
}

/// The parent pid of `pid` from /proc, and whether it is a zombie.
fn ppid_and_zombie(pid: i32) -> Option<(i32, bool)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let ppid = field("PPid:")?.parse().ok()?;
    let zombie = field("State:")?.starts_with('Z');
    Some((ppid, zombie))
}

/// Zombies whose parent is `parent`.
fn zombies_of(parent: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| ppid_and_zombie(*pid) == Some((parent, true)))
        .collect()
}

/// A child whose grandchild double-forks: the orphan waits until it is re-parented, writes
/// its new parent's pid and its own, and exits while the child keeps running until `go`.
fn orphan_script(env: &Env) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let report = env.path("orphan.report");
    let go = env.path("go");
    let orphan = env.path("orphan.sh");
    std::fs::write(
        &orphan,
        "# $1: the pid of the parent that is about to exit; $2: where to report\n\
         while [ \"$(awk '/^PPid/{print $2}' /proc/$$/status)\" = \"$1\" ]; do sleep 0.01; done\n\
         echo \"$(awk '/^PPid/{print $2}' /proc/$$/status) $$\" > \"$2.tmp\"; mv \"$2.tmp\" \"$2\"\n",
    )
    .expect("orphan.sh");
    let script = format!(
        "sh -c 'sh {orphan} $$ {report} & exit 0'; echo spawned; \
         while [ ! -e {go} ]; do sleep 0.02; done",
        orphan = orphan.display(),
        report = report.display(),
        go = go.display()
    );
    (script, report, go)
}

fn read_orphan_report(path: &Path) -> (i32, i32) {
    wait_until("orphan report", || path.exists());
    let text = std::fs::read_to_string(path).expect("report");
    let mut it = text
        .split_whitespace()
        .map(|w| w.parse::<i32>().expect("pid"));
    (it.next().expect("ppid"), it.next().expect("pid"))
}

#[test]
fn subreaper_adopts_and_reaps_orphans_while_the_agent_runs() {
    let env = Env::new();
    let (script, report, go) = orphan_script(&env);
    let mut w = Running::spawn(env.run_cmd("codex", &["--subreaper"], &["sh", "-c", &script]));
    w.out.wait_for("spawned");
    let wrapper_pid = w.child.id() as i32;
    let (new_parent, orphan) = read_orphan_report(&report);
    assert_eq!(
        new_parent, wrapper_pid,
        "the orphan was re-parented to wrapper"
    );
    // It exited; wrapper, still running, must reap it: no zombie of wrapper's remains.
    wait_until("orphan reaped by wrapper", || {
        ppid_and_zombie(orphan).is_none_or(|(ppid, _)| ppid != wrapper_pid)
    });
    assert!(zombies_of(wrapper_pid).is_empty());
    assert!(
        w.child.try_wait().expect("try_wait").is_none(),
        "wrapper still running"
    );
    touch(&go);
    let (code, _, _) = w.wait();
    assert_eq!(code, 0);
}

#[test]
fn without_subreaper_orphans_are_not_adopted() {
    let env = Env::new();
    let (script, report, go) = orphan_script(&env);
    let w = Running::spawn(env.run_cmd("codex", &[], &["sh", "-c", &script]));
    w.out.wait_for("spawned");
    let (new_parent, _) = read_orphan_report(&report);
    assert_ne!(new_parent, w.child.id() as i32);
    touch(&go);
    assert_eq!(w.wait().0, 0);
}
