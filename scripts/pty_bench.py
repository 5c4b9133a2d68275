#!/usr/bin/env python3
"""PTY mode's costs (issue 11, item 8): keystroke-to-echo latency, throughput, peak memory.

Standard library only. Usage:

    python3 scripts/pty_bench.py --wrapper target/release/wrapper [--keys 2000] [--lines 1000000]

Keystroke to echo. The harness opens a pty pair and plays the user's terminal: the program
under test runs on the slave (its controlling terminal, in a session of its own); the harness
writes one byte to the master and times until the echoed byte comes back (CLOCK_MONOTONIC),
one key at a time. Three ways, rounds interleaved:
  direct   `cat` on the user's terminal: the kernel's own echo (the floor);
  script   `script -qfc cat /dev/null`: util-linux script, a pty in between;
  wrapper  `wrapper --pty bench -- cat`: PTY mode, no database (passthrough path);
  wrapper+db  the same with --db: the screen model and SQLite run beside it.
Added latency = (wrapper - direct) and (wrapper - script), median and p99.

Throughput. `scripts/gen_log.py N` (the same as ../shared/bench/gen_log.py) piped into `cat` on a pty, output to /dev/null, under
`script -q -c cat /dev/null` and under `wrapper --pty` (and with --db) in the same run,
interleaved, best of 3 wall times. Both echo the input (the pty's ECHO is on for piped input,
as under script), so each writes the log twice.

Peak RSS: VmHWM of wrapper from wait4's rusage (ru_maxrss, KiB) on the throughput runs.
"""
import argparse
import os
import pty
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
GEN = os.path.join(HERE, "gen_log.py")


def pct(values, p):
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def spawn_on_pty(argv):
    """Runs argv as session leader on a new pty; returns (pid, master fd)."""
    pid, master = pty.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    return pid, master


def read_until(fd, want, deadline):
    buf = b""
    while want not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"waiting for {want!r}, got {buf[-200:]!r}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise EOFError(buf)
            buf += chunk
    return buf


def echo_samples(argv, n):
    pid, m = spawn_on_pty(argv)
    lat = []
    try:
        # Wait until the program under test is reading: the marker's echo comes back.
        os.write(m, b"READY\r")
        read_until(m, b"READY", time.monotonic() + 20)
        time.sleep(0.3)
        while True:  # drain
            r, _, _ = select.select([m], [], [], 0.05)
            if not r:
                break
            os.read(m, 65536)
        for i in range(n):
            key = b"abcdefghijklmnopqrstuvwxyz"[i % 26:i % 26 + 1]
            t0 = time.monotonic_ns()
            os.write(m, key)
            buf = b""
            while key not in buf:
                buf += os.read(m, 4096)
            lat.append(time.monotonic_ns() - t0)
            if i % 64 == 63:
                os.write(m, b"\r")
                read_until(m, b"\n", time.monotonic() + 5)
    finally:
        os.write(m, b"\r\x04")
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        os.close(m)
    return lat


def timed(argv, input_path, out=subprocess.DEVNULL):
    """Wall time, peak RSS (KiB) and CPU seconds (user + system, with the children it
    waited for) of argv with stdin from input_path."""
    with open(input_path, "rb") as f:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdin=f, stdout=out, stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{argv} exited {p.returncode}")
    return wall, ru.ru_maxrss, ru.ru_utime + ru.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wrapper", default=os.path.join(HERE, "..", "target", "release", "wrapper"))
    ap.add_argument("--keys", type=int, default=2000)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-latency", action="store_true")
    a = ap.parse_args()
    w = os.path.abspath(a.wrapper)
    tmp = tempfile.mkdtemp(prefix="pty-bench-")
    db = os.path.join(tmp, "b.db")
    env_note = f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}"
    print(f"# pty_bench ({env_note})")

    ways = {
        "direct": ["cat"],
        "script": ["script", "-qfc", "cat", "/dev/null"],
        "wrapper": [w, "--pty", "bench", "--", "cat"],
        "wrapper+db": [w, "--pty", "bench", "--db", db, "--", "cat"],
    }
    if not shutil.which("script"):
        del ways["script"]
    lat = {k: [] for k in ways}
    per = max(1, a.keys // a.rounds)
    for _ in range(0 if a.skip_latency else a.rounds):
        for k, argv in ways.items():
            lat[k] += echo_samples(argv, per)
    if not a.skip_latency:
        report_latency(lat, per * a.rounds)
    throughput(a, w, tmp, db)
    shutil.rmtree(tmp, ignore_errors=True)


def report_latency(lat, n):
    print("\n## keystroke to echo (µs)")
    print(f"{'':12} {'median':>8} {'p99':>8}  (n={n})")
    for k, v in lat.items():
        print(f"{k:12} {statistics.median(v) / 1000:8.1f} {pct(v, 99) / 1000:8.1f}")
    base = statistics.median(lat["direct"])
    for k in ("wrapper", "wrapper+db"):
        print(f"added by {k}: median {(statistics.median(lat[k]) - base) / 1000:.1f} µs, "
              f"p99 {(pct(lat[k], 99) - pct(lat['direct'], 99)) / 1000:.1f} µs over direct")
        if "script" in lat:
            print(f"   vs script: median {(statistics.median(lat[k]) - statistics.median(lat['script'])) / 1000:+.1f} µs")


def throughput(a, w, tmp, db):

    log = os.path.join(tmp, "log.txt")
    with open(log, "wb") as f:
        subprocess.run([sys.executable, GEN, str(a.lines)], stdout=f, check=True)
    size = os.path.getsize(log)
    runs = {
        "script -q -c cat": ["script", "-q", "-c", "cat", "/dev/null"],
        "wrapper --pty cat": [w, "--pty", "bench", "--", "cat"],
        "wrapper --pty --db cat": [w, "--pty", "bench", "--db", db, "--", "cat"],
    }
    best = {k: (1e9, 0, 0.0) for k in runs}
    for _ in range(a.rounds):
        for k, argv in runs.items():
            if os.path.exists(db):
                os.remove(db)
            t, rss, cpu = timed(argv, log)
            if t < best[k][0]:
                best[k] = (t, best[k][1], cpu)
            best[k] = (best[k][0], max(best[k][1], rss), best[k][2])
    print(f"\n## cat of gen_log.py {a.lines} ({size / 1e6:.1f} MB) on a pty, best of {a.rounds}"
          f" (CPU: of that best run, per million lines)")
    base = best.get("script -q -c cat", (None,))[0]
    for k, (t, rss, cpu) in best.items():
        ratio = f"{t / base:5.2f}x script" if base else ""
        print(f"{k:26} {t:7.2f} s  {size / t / 1e6:6.1f} MB/s  {ratio}  "
              f"CPU {cpu / a.lines * 1e6:6.2f} s/M lines  peak RSS {rss / 1024:6.1f} MiB")


if __name__ == "__main__":
    main()
