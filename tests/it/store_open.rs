//! Opening a database (issue 10 part 2 and 6, issue 15 item 3): many wrappers creating the
//! same new file at once all run; a path that cannot be wrapper's database is refused in one
//! line that names it, says why and what to do, and is left exactly as it was.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::harness::{bin, wait_until, Env};

/// Starts `n` wrappers that each wait at one barrier (a read from a FIFO that the test holds
/// open for writing), then releases them all at once by closing it, and checks that every one
/// ran its agent and exited 0.
fn first_open_round(env: &Env, db: &Path, n: usize) {
    let fifo = env.path("barrier");
    let _ = fs::remove_file(&fifo);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    // Read+write: opening does not block, and the test is a writer until it drops this.
    let gate = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .expect("open fifo");
    let mut children = Vec::new();
    for i in 0..n {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(r#"exec 3<"$1"; read -r _ <&3; exec 3<&-; shift; exec "$@""#)
            .arg("sh")
            .arg(&fifo)
            .arg(bin())
            .arg("codex")
            .arg("--db")
            .arg(db)
            .arg("--no-default-patterns")
            .arg("--")
            .arg("sh")
            .arg("-c")
            .arg(format!("echo agent-{i}-ran"))
            .current_dir(env.dir.path())
            .env("XDG_CONFIG_HOME", env.path("config"))
            .env_remove("WRAPPER_DB")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        children.push(c.spawn().expect("spawn"));
    }
    // Every waiter holds the FIFO open before the gate is closed: a later one would wait for
    // a writer forever.
    for child in &children {
        let fd3 = PathBuf::from(format!("/proc/{}/fd/3", child.id()));
        wait_until("every wrapper at the barrier", || {
            fs::read_link(&fd3).is_ok_and(|p| p == fifo)
        });
    }
    drop(gate);
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("wait");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(0),
            "wrapper {i} of {n}: stderr {stderr}"
        );
        assert_eq!(stdout, format!("agent-{i}-ran\n"), "wrapper {i} of {n}");
        assert_eq!(stderr, "", "wrapper {i} of {n}");
    }
}

/// Before the fix, 2 wrappers starting together on a file that did not exist failed with
/// "database is locked" in about half the rounds, and 10 in a few of a hundred.
#[test]
fn wrappers_released_together_on_a_new_database_all_run() {
    let env = Env::new();
    let mut round = 0;
    for (n, rounds) in [(2, 10), (10, 3), (30, 2)] {
        for _ in 0..rounds {
            round += 1;
            let db = env.path(&format!("new-{round}.db"));
            first_open_round(&env, &db, n);
            let conn = rusqlite::Connection::open(&db).expect("open");
            let sessions: i64 = conn
                .query_row(
                    "SELECT count(*) FROM process_sessions WHERE state = 'completed'",
                    [],
                    |r| r.get(0),
                )
                .expect("count");
            assert_eq!(sessions, n as i64, "round {round}");
        }
    }
}

/// Every file in `dir`, with its bytes, so a test can show that nothing changed or appeared.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

fn refused(env: &Env, db: &Path) -> String {
    let out = env
        .cmd()
        .args(["codex", "--db"])
        .arg(db)
        .args(["--", "sh", "-c", "echo AGENT-RAN"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{}: {stderr}", db.display());
    assert!(!stdout.contains("AGENT-RAN"), "the agent must not run");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&*db.to_string_lossy()),
        "names the path: {stderr}"
    );
    assert!(!stderr.contains("Error code"), "in words: {stderr}");
    assert!(!stderr.contains("os error"), "in words: {stderr}");
    assert!(!stderr.contains("CREATE TABLE"), "no schema dump: {stderr}");
    stderr
}

/// Before the fix: a foreign database was modified (switched to WAL, with the error printing
/// its schema), one with a newer `user_version` was switched to WAL before being refused,
/// `/dev/full` got a `/dev/full-journal` beside it, and the errors repeated themselves.
#[test]
fn a_refused_database_is_left_as_it_was_and_the_error_is_one_line() {
    let env = Env::new();
    let files = env.path("files");
    fs::create_dir(&files).expect("mkdir");
    let sql = |name: &str, script: &str| {
        let c = rusqlite::Connection::open(files.join(name)).expect("open");
        c.execute_batch(script).expect("script");
    };
    sql(
        "foreign-same-table.db",
        "CREATE TABLE process_sessions (x); INSERT INTO process_sessions VALUES (1);",
    );
    sql(
        "foreign-app.db",
        "PRAGMA application_id = 7; CREATE TABLE t (x);",
    );
    sql(
        "foreign-wal.db",
        "PRAGMA journal_mode = WAL; CREATE TABLE notes (x);",
    );
    sql(
        "newer.db",
        &format!(
            "PRAGMA application_id = {}; PRAGMA user_version = 999; CREATE TABLE t (x);",
            0x5752_5052
        ),
    );
    fs::write(files.join("text.db"), "just some notes\n".repeat(20)).expect("write");
    fs::create_dir(files.join("dir.db")).expect("mkdir");
    let before = snapshot(&files);

    let cases: [(&str, &str); 6] = [
        ("foreign-same-table.db", "not a wrapper database"),
        ("foreign-app.db", "not a wrapper database"),
        ("foreign-wal.db", "not a wrapper database"),
        ("newer.db", "upgrade wrapper"),
        ("text.db", "is not a SQLite database"),
        ("dir.db", "is a directory"),
    ];
    for (name, says) in cases {
        let err = refused(&env, &files.join(name));
        assert!(err.contains(says), "{name}: {err}");
        assert_eq!(snapshot(&files), before, "{name} changed something");
    }
    assert!(
        !files.join("dir.db").join("wrapper.db").exists(),
        "nothing created in the directory"
    );

    // A device: refused before SQLite could create a journal beside it.
    let err = refused(&env, Path::new("/dev/full"));
    assert!(err.contains("is a device"), "{err}");
    assert!(!Path::new("/dev/full-journal").exists());

    // A directory that cannot be created: says which and why.
    let err = refused(&env, Path::new("/proc/nope/x.db"));
    assert!(err.contains("parent directory /proc/nope"), "{err}");

    // The query side says it the same way, also once.
    for name in ["text.db", "dir.db", "foreign-app.db"] {
        let out = env
            .cmd()
            .args(["sessions", "--db"])
            .arg(files.join(name))
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
    }
    assert_eq!(snapshot(&files), before);
}

/// A database file the user cannot read: one line, in words (run as `nobody` when root,
/// since root reads anything).
#[test]
fn an_unreadable_database_is_one_clear_line() {
    let env = Env::new();
    let db = env.db();
    let ok = env
        .cmd()
        .args(["codex", "--db"])
        .arg(&db)
        .args(["--", "true"])
        .status()
        .expect("run");
    assert!(ok.success());
    fs::set_permissions(&db, fs::Permissions::from_mode(0o000)).expect("chmod");
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut c = env.cmd();
    as_other_user(&mut c);
    let out = c.args(["sessions", "--db"]).arg(&db).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");
}

/// Found by an audit: a database that this user may read but not write (another user's
/// file, in a directory they cannot write) refused every query with "it cannot be written".
/// Queries open it read-only (as immutable when SQLite cannot create its `-shm` file and no
/// writer is at work), `search` searches what is indexed and says what is not, and `prune`,
/// which must write, says so in one line.
#[test]
fn a_database_this_user_cannot_write_still_answers_queries() {
    let env = Env::new();
    let dir = env.path("shared");
    fs::create_dir(&dir).expect("mkdir");
    let db = dir.join("w.db");
    let ok = env
        .cmd()
        .args(["codex", "--session-id", "ro-1", "--db"])
        .arg(&db)
        .args(["--", "sh", "-c", "echo 'error: readonly-marker'"])
        .output()
        .expect("run");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        !dir.join("w.db-wal").exists(),
        "a clean close leaves no -wal"
    );
    fs::set_permissions(&db, fs::Permissions::from_mode(0o444)).expect("chmod");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o555)).expect("chmod");
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let as_reader = |args: &[&str]| {
        let mut c = env.cmd();
        as_other_user(&mut c);
        c.args(args).arg("--db").arg(&db).output().expect("run")
    };
    for (args, needle) in [
        (&["sessions"][..], "ro-1"),
        (&["events"][..], "readonly-marker"),
        (&["show", "ro-1"][..], "ro-1"),
        (&["stats"][..], "events"),
        (
            &["export", "ro-1", "--format", "txt"][..],
            "readonly-marker",
        ),
        (&["search", "marker"][..], ""),
    ] {
        let out = as_reader(args);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stdout.contains(needle), "{args:?}: {stdout}");
        if args[0] == "search" {
            assert!(stderr.contains("read-only"), "{stderr}");
        }
    }
    let out = as_reader(&["prune", "--older-than", "0s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot be written"), "{stderr}");
    // Nothing was created beside it, and it is as it was.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    assert_eq!(names_in(&dir), ["w.db"]);

    // Found by a second audit: in a directory both may write (`/tmp`, mode 1777), the
    // reader's `-shm`/`-wal` would be its own, and the owner's next session could not open
    // them. The reader creates nothing there either, and the owner records on.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777)).expect("chmod");
    fs::set_permissions(&db, fs::Permissions::from_mode(0o644)).expect("chmod");
    crate::harness::assert_exit(&as_reader(&["sessions"]), 0);
    assert_eq!(names_in(&dir), ["w.db"]);
    let ok = env
        .cmd()
        .args(["codex", "--session-id", "ro-2", "--db"])
        .arg(&db)
        .args(["--", "true"])
        .output()
        .expect("run");
    crate::harness::assert_exit(&ok, 0);
}

/// Runs `c` as `nobody` when the tests run as root (root may read and write any file).
fn as_other_user(c: &mut Command) {
    if nix::unistd::geteuid().is_root() {
        let nobody = nix::unistd::User::from_name("nobody")
            .ok()
            .flatten()
            .expect("user nobody");
        use std::os::unix::process::CommandExt;
        c.uid(nobody.uid.as_raw()).gid(nobody.gid.as_raw());
    }
}

/// The names of the files in `dir`.
fn names_in(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}
