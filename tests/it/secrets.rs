//! No secret is stored, and what holds agent output is private (issue 10 parts 1, 3, 5, 7).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::harness::Env;

fn mode(p: &std::path::Path) -> u32 {
    fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

/// Runs `cmd` as `nobody` when the tests run as root (root reads any file). `false` when root
/// cannot become nobody here.
fn as_nobody(cmd: &mut Command) -> bool {
    if !nix::unistd::geteuid().is_root() {
        return true;
    }
    let mut probe = Command::new("true");
    // SAFETY: setgid/setuid are async-signal-safe.
    unsafe {
        probe.pre_exec(|| {
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    if !probe.status().is_ok_and(|s| s.success()) {
        return false;
    }
    // SAFETY: as above.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    true
}

/// Before the fix `--events-out FILE` was created 0644, readable by every user.
#[test]
fn events_out_files_are_private() {
    let env = Env::new();
    let fresh = env.path("fresh.jsonl");
    let old = env.path("old.jsonl");
    fs::write(&old, "stale\n").expect("write");
    fs::set_permissions(&old, fs::Permissions::from_mode(0o644)).expect("chmod");
    for out in [&fresh, &old] {
        let o = env
            .run_cmd(
                "codex",
                &["--events-out", out.to_str().expect("utf-8")],
                &["sh", "-c", "echo 'error: boom'"],
            )
            .stdin(Stdio::null())
            .output()
            .expect("run");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(mode(out), 0o600, "{}", out.display());
        assert!(fs::read_to_string(out).expect("read").contains("boom"));
    }
    for f in ["w.db", "w.db-wal", "w.db-shm"] {
        let p = env.path(f);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{f}");
        }
    }
}

/// Before the fix a default config file the user could not read (HOME pointing at another
/// user's home) gave exit 2 for every run.
#[test]
fn an_unreadable_default_config_is_a_warning_and_the_run_goes_on() {
    let env = Env::new();
    let dir = env.path("config").join("wrapper");
    fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("config.toml");
    fs::write(&file, "batch_size = 1\n").expect("write");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o000)).expect("chmod");
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    for d in [env.path("config"), dir.clone()] {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    let mut c = env.cmd();
    c.args(["codex", "--", "echo", "agent ran"]);
    if !as_nobody(&mut c) {
        eprintln!("NOTE: root here cannot become nobody; the unreadable-config case is skipped");
        return;
    }
    let o = c.stdin(Stdio::null()).output().expect("run");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "agent ran\n");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains(&*file.to_string_lossy()),
        "{stderr}"
    );

    // Named with --config, the same file stays an error.
    let mut c = env.cmd();
    c.arg("codex")
        .arg("--config")
        .arg(&file)
        .args(["--", "echo", "agent ran"]);
    assert!(as_nobody(&mut c));
    let o = c.stdin(Stdio::null()).output().expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty(), "the agent must not run");
}

// --- every secret shape, planted everywhere, found nowhere ---------------------------------

const OPENAI: &str = "sk-proj-Q7mZ2vX9pL4kR8tY1wB6nC3dF5gH0jK2";
const GITHUB: &str = "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8";
const AWS: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY";
const BEARER: &str = "zq8Xw7Vu6Ts5Rq4Po3Nm";
const DIGITS: &str = "31415926";
const WORDS: [&str; 4] = ["zebra", "quokka", "narwhal", "axolotl"];
/// Values of the shapes a second audit found unmasked: each after its own name or flag.
const NAMED: [&str; 12] = [
    "Vb3Kq8Lm1Nx",
    "Wc4Lr9Mn2Oy",
    "Xd5Ms0No3Pz",
    "Ye6Nt1Op4Qa",
    "Zf7Ou2Pq5Rb",
    "Ag8Pv3Qr6Sc",
    "Bh9Qw4Rs7Td",
    "Ci0Rx5St8Ue",
    "Dj1Sy6Tu9Vf",
    "Ek2Tz7Uv0Wg",
    "Fl3Ua8Vw1Xh",
    "Gm4Vb9Wx2Yi",
];

/// A private key body that exists nowhere else: two 64-character lines and a short last one.
fn key_body() -> [String; 3] {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut line = |n: usize| -> String {
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                B64[(x >> 58) as usize] as char
            })
            .collect()
    };
    [line(64), line(64), format!("{}==", line(22))]
}

/// What must not be found in any file: pieces of every secret, so that a part kept (the
/// head of a key before a cut, 3 of 4 words) counts as a leak too.
fn needles() -> Vec<String> {
    let mut v = Vec::new();
    for s in [OPENAI, GITHUB, AWS, BEARER] {
        v.push(s[..12].to_string());
        v.push(s[s.len() - 12..].to_string());
    }
    v.push(DIGITS.to_string());
    v.extend(WORDS.iter().map(|w| w.to_string()));
    v.extend(NAMED.iter().map(|w| w.to_string()));
    for l in key_body() {
        v.push(l[..12].to_string());
        v.push(l[l.len() - 12..].to_string());
    }
    v
}

/// The lines the agent prints, each carrying secrets in one of the shapes the attack found.
fn secret_lines() -> Vec<String> {
    let [a, b, c] = key_body();
    let words = WORDS.join(" ");
    let mut v = vec![
        format!("error: request with key {OPENAI} failed"),
        format!("export GH_TOKEN={GITHUB}"),
        format!("$ aws configure set aws_secret_access_key {AWS}"),
        format!("AWS_SECRET_ACCESS_KEY = {AWS}"),
        format!("curl -H 'authorization: bearer {BEARER}' https://api.example.test"),
        format!("mysql --user=app password={DIGITS}"),
        format!("password=\"{words}\""),
        format!(r#"{{"type":"message","text":"password=\"{words}\""}}"#),
        // A service-account JSON: the key as one `\n`-escaped string.
        format!(
            r#"{{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\n{a}\n{b}\n{c}\n-----END PRIVATE KEY-----\n", "client_email": "svc@example.test"}}"#
        ),
        format!(
            r#"{{"k": "-----BEGIN RSA PRIVATE KEY-----\n{a}\n{b}\n{c}\n-----END RSA PRIVATE KEY-----\n"}}"#
        ),
        // A plain PEM block, then one indented in YAML.
        "-----BEGIN OPENSSH PRIVATE KEY-----".to_string(),
        a.clone(),
        b.clone(),
        c.clone(),
        "-----END OPENSSH PRIVATE KEY-----".to_string(),
        "tls:".to_string(),
        "  key: |".to_string(),
        "    -----BEGIN EC PRIVATE KEY-----".to_string(),
        format!("    {a}"),
        format!("    {c}"),
        "    -----END EC PRIVATE KEY-----".to_string(),
    ];
    // Command output inside agents' JSON: a key right after a `\n` escape (the `n` is a
    // letter, so no word boundary before the key), `\u003d` for `=`, `\/` in a URL.
    v.push(format!(
        r#"{{"type":"item.completed","item":{{"type":"command_execution","aggregated_output":"DEBUG=1\n{GITHUB}\n","exit_code":1}}}}"#
    ));
    v.push(format!(
        r#"{{"type":"user","message":{{"content":[{{"type":"tool_result","content":"API_KEY\u003d{}\nDB=postgres:\/\/app:{}@db\/x"}}]}}}}"#,
        NAMED[0], NAMED[1]
    ));
    let n = NAMED;
    v.extend([
        format!("DJANGO_SECRET_KEY={}", n[2]),
        format!("SECRET_KEY_BASE={}", n[3]),
        format!("REDIS_PASS={} MYSQL_PWD={}", n[4], n[5]),
        format!("Cookie: theme=dark; session={}", n[6]),
        format!("REDIS_URL=redis://:{}@cache:6379/0", n[7]),
        format!(
            "AccountName=acct;AccountKey={}==;EndpointSuffix=core.windows.net",
            n[8]
        ),
        format!("$ curl -u deploy:{} https://api.example.test", n[9]),
        format!("$ sshpass -p {} ssh deploy@host", n[10]),
        format!("$ mysql -u root -p{} shop", n[11]),
    ]);
    // A key across the --max-line 120 cut of the second run.
    v.push(format!("error: {} {OPENAI} trailing", "x".repeat(104)));
    v
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The agent: every secret line on stdout, on stderr, inside a fenced code block, coloured
/// (escapes inside the secret too), and one line split across two writes (it waits for the
/// test to see the first half pass through). At the end it waits for `end`.
fn agent_script(dir: &std::path::Path) -> String {
    let mut s = String::from("set -e\n");
    s.push_str(&format!(
        "while [ ! -e {go} ]; do sleep 0.01; done\n",
        go = dir.join("go").display()
    ));
    for l in secret_lines() {
        s.push_str(&format!("printf '%s\\n' {}\n", sh_quote(&l)));
        s.push_str(&format!("printf '%s\\n' {} >&2\n", sh_quote(&l)));
    }
    s.push_str("printf '%s\\n' 'Here is the config:' '```yaml'\n");
    for l in secret_lines() {
        s.push_str(&format!("printf '%s\\n' {}\n", sh_quote(&l)));
    }
    s.push_str("printf '%s\\n' '```'\n");
    let (k1, k2) = OPENAI.split_at(12);
    s.push_str(&format!(
        "printf '\\033[31merror:\\033[0m token \\033[1m{k1}\\033[0m{k2} and password=\"{w0} \\033[32m{w1}\\033[0m {w2} {w3}\"\\n'\n",
        w0 = WORDS[0],
        w1 = WORDS[1],
        w2 = WORDS[2],
        w3 = WORDS[3]
    ));
    let (g1, g2) = GITHUB.split_at(20);
    s.push_str(&format!("printf 'error: split GH_TOKEN={g1}'\n"));
    s.push_str(&format!(
        "while [ ! -e {half} ]; do sleep 0.01; done\n",
        half = dir.join("half").display()
    ));
    s.push_str(&format!("printf '{g2} end\\n'\n"));
    s.push_str("echo 'error: DONE-MARKER'\n");
    s.push_str(&format!(
        "while [ ! -e {end} ]; do sleep 0.01; done\n",
        end = dir.join("end").display()
    ));
    s
}

/// Files under `root` (not `input/`, which holds the script with the secrets) that contain
/// any needle, with the needle.
fn leaks(root: &std::path::Path) -> Vec<String> {
    let needles = needles();
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).expect("read dir").flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == "input") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let Ok(bytes) = fs::read(&p) else { continue };
            for n in &needles {
                if memchr::memmem::find(&bytes, n.as_bytes()).is_some() {
                    found.push(format!("{} holds {n:?}", p.display()));
                }
            }
        }
    }
    found
}

/// Before the fix: argv (`--api-key …`, `Authorization: Bearer …`, `--password=…`, a bare
/// `ghp_…`), cwd and the `--env` label were stored as given; PEM bodies in code blocks, YAML
/// and `\n`-escaped JSON; lower-case `authorization: bearer`; `aws configure set …`; digit
/// passwords; 3 of 4 words of a quoted password; the head of a key cut by `max_line`.
#[test]
fn secrets_planted_everywhere_are_found_in_no_file_wrapper_writes() {
    let env = Env::new();
    let input = env.path("input");
    fs::create_dir(&input).expect("mkdir");
    fs::write(
        input.join("all.toml"),
        "version = 1\n[[pattern]]\nname = \"any\"\nevent_type = \"line\"\nregex = '''(?P<value>.+)'''\nsamples = [\"x\"]\n",
    )
    .expect("rules");
    let cwd = env.path(&format!("work-{GITHUB}"));
    fs::create_dir(&cwd).expect("cwd");
    let words = WORDS.join(" ");
    let argv_secrets: Vec<String> = vec![
        "--api-key".into(),
        OPENAI.into(),
        "-H".into(),
        format!("Authorization: Bearer {BEARER}"),
        format!("--password={DIGITS}"),
        GITHUB.into(),
        format!("password=\"{words}\""),
        "-u".into(),
        format!("deploy:{}", NAMED[9]),
        "--pass".into(),
        NAMED[10].into(),
        format!("--user=bob:{}", NAMED[11]),
    ];
    let db = env.db();
    for (round, max_line) in [("db", None), ("spool", Some("120"))] {
        let db = if round == "db" {
            db.clone()
        } else {
            env.path("gone.db")
        };
        for f in ["go", "half", "end"] {
            let _ = fs::remove_file(env.path(f));
        }
        let script = input.join(format!("agent-{round}.sh"));
        fs::write(&script, agent_script(env.dir.path())).expect("script");
        let mut c = env.cmd();
        c.current_dir(&cwd)
            .env("TMPDIR", env.dir.path())
            .arg("codex")
            .arg("--db")
            .arg(&db)
            .arg("--no-default-patterns")
            .arg("--patterns")
            .arg(input.join("all.toml"))
            .args(["--env", &format!("staging {OPENAI}")])
            .args(["--flush-interval", "20ms"])
            .arg("--events-out")
            .arg(env.path(&format!("events-{round}.jsonl")));
        if let Some(m) = max_line {
            c.args(["--max-line", m]);
        }
        c.arg("--").arg("sh").arg(&script).args(&argv_secrets);
        let w = crate::harness::Running::spawn(c);
        crate::harness::wait_until("the session running", || {
            rusqlite::Connection::open(&db)
                .and_then(|c| {
                    c.query_row(
                        "SELECT count(*) FROM process_sessions WHERE state = 'running'",
                        [],
                        |r| r.get::<_, i64>(0),
                    )
                })
                .is_ok_and(|n| n == 1)
        });
        if round == "spool" {
            // The database goes away: everything from here on is spooled.
            fs::remove_file(&db).expect("remove db");
        }
        touch(&env.path("go"));
        w.out.wait_for(&format!("GH_TOKEN={}", &GITHUB[..20]));
        touch(&env.path("half"));
        w.out.wait_for("DONE-MARKER");
        if round == "db" {
            crate::harness::wait_until("every line committed", || {
                env.query_i64(
                    "SELECT count(*) FROM extraction_events WHERE original_line LIKE '%DONE-MARKER%'",
                ) == 1
            });
            // While the session runs: the database, its -wal and -shm.
            let found = leaks(env.dir.path());
            assert!(found.is_empty(), "while running:\n{}", found.join("\n"));
        }
        touch(&env.path("end"));
        let (code, out, err) = w.wait();
        assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
        // The terminal is never redacted.
        let out = String::from_utf8_lossy(&out);
        assert!(out.contains(OPENAI) && out.contains(&key_body()[2]));
        if round == "spool" {
            let err = String::from_utf8_lossy(&err);
            assert!(err.contains("import-spool"), "spooled: {err}");
        }
    }
    // The search index (built by `search`) and a backup.
    let restored = env.path("restored.db");
    for args in [
        vec!["import-spool".to_string()],
        vec!["search".into(), "error".into()],
        vec!["backup".into(), env.path("backup.db").display().to_string()],
    ] {
        let mut c = env.cmd();
        c.args(&args[..1]);
        if args[0] == "import-spool" {
            let spool = fs::read_dir(env.dir.path())
                .expect("ls")
                .flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().contains(".spool-"))
                .expect("a spool file");
            c.arg(spool).arg("--db").arg(&restored);
        } else {
            c.args(&args[1..]).arg("--db").arg(&db);
        }
        let o = c.output().expect("run");
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = env
        .cmd()
        .args(["search", "quokka", "--db"])
        .arg(&restored)
        .output()
        .expect("search");
    assert!(o.status.success());
    let n: i64 = rusqlite::Connection::open(&db)
        .expect("open")
        .query_row("SELECT count(*) FROM extraction_events", [], |r| r.get(0))
        .expect("count");
    assert!(n > 50, "events were stored: {n}");
    let found = leaks(env.dir.path());
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// An agent name or `--session-id` that a rule finds a secret in is copied into every event
/// and spool line: refused before anything runs, rather than stored or silently changed.
#[test]
fn a_secret_looking_agent_name_or_session_id_is_refused() {
    let env = Env::new();
    for (agent, extra) in [
        (GITHUB, vec![]),
        (
            "codex",
            vec!["--session-id".to_string(), format!("run-{OPENAI}")],
        ),
    ] {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let o = env
            .run_cmd(agent, &extra, &["sh", "-c", "echo AGENT-RAN"])
            .stdin(Stdio::null())
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(o.stdout.is_empty(), "the agent must not run");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("looks like a secret"), "{err}");
        assert!(
            !err.contains(&GITHUB[4..]) && !err.contains(&OPENAI[8..]),
            "{err}"
        );
    }
    assert!(!env.db().exists() || env.query_i64("SELECT count(*) FROM process_sessions") == 0);
}

fn touch(p: &std::path::Path) {
    fs::write(p, b"").expect("touch");
}
