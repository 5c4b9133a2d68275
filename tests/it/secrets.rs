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
