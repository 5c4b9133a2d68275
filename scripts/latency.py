#!/usr/bin/env python3
"""Added latency of a partial line through wrapper, and wrapper's start-up cost (SPEC §9).

Standard library only. Run by scripts/bench.sh; also usable alone:

    python3 scripts/latency.py --wrapper target/release/wrapper [--samples 200] [--starts 30]

Partial-line latency. A child (python3) prints a prompt with no newline that carries its
`time.monotonic_ns()` at the moment of the write, then blocks reading its stdin. This harness
reads the child's output through a pipe, timestamps the arrival of the complete prompt with the
same clock (CLOCK_MONOTONIC is shared by all processes), and writes an answer to the child's
stdin, which releases the next sample. The same child runs directly (harness <- pipe <- child)
and under wrapper (harness <- pipe <- wrapper <- pipe <- child; wrapper's stdin is inherited by
the child, so the answer goes straight to it). Added latency = wrapper - direct, at the median
and at p99. Modes alternate round by round.

Start-up. (a) Whole-process time of `true` run directly and under wrapper. (b) Start to exec:
the child is `date +%s%N`, which prints CLOCK_REALTIME as soon as it runs; the harness takes the
same clock just before spawning; direct and under wrapper; the difference is what wrapper adds
before the child starts (with the database on that includes opening/creating the database and
writing the `started` session row). Runs are interleaved; medians reported.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

CHILD = r"""
import os, sys, time
n = int(sys.argv[1])
for i in range(n):
    os.write(1, b"Apply patch %d to src/main.rs (t=%d)? [y/N] " % (i, time.monotonic_ns()))
    if not os.read(0, 64):
        break
"""
PROMPT_RE = re.compile(rb"Apply patch (\d+) to src/main\.rs \(t=(\d+)\)\? \[y/N\] $")


def pct(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def prompt_samples(argv, n, skip):
    """Run argv (whose tail is the prompting child) for n samples; latencies in ns."""
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, bufsize=0)
    out_fd, in_fd = p.stdout.fileno(), p.stdin.fileno()
    lat = []
    try:
        for i in range(n):
            buf = b""
            while True:
                chunk = os.read(out_fd, 4096)
                now = time.monotonic_ns()
                if not chunk:
                    raise SystemExit(f"latency: child ended early at sample {i}: {argv!r}")
                buf += chunk
                m = PROMPT_RE.search(buf)
                if m:
                    break
                if len(buf) > 65536:
                    raise SystemExit(f"latency: unexpected output {buf[:200]!r}")
            if int(m.group(1)) != i:
                raise SystemExit(f"latency: expected sample {i}, got {m.group(1)!r}")
            if i >= skip:
                lat.append(now - int(m.group(2)))
            os.write(in_fd, b"y\n")
    finally:
        p.stdin.close()
        rest = p.stdout.read()
        p.stdout.close()
        rc = p.wait()
    if rc != 0:
        raise SystemExit(f"latency: {argv!r} exited {rc} (trailing output {rest[:200]!r})")
    return lat


def run_quiet(argv):
    t0 = time.monotonic_ns()
    rc = subprocess.call(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    t1 = time.monotonic_ns()
    if rc != 0:
        raise SystemExit(f"startup: {argv!r} exited {rc}")
    return t1 - t0


def start_to_exec(argv):
    t0 = time.time_ns()
    out = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, check=True).stdout
    return int(out.split()[-1]) - t0


def rm_db(path):
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass


def ms(ns):
    return round(ns / 1e6, 3)


def measure(wrapper, work, samples=200, rounds=4, starts=30, log=print):
    py = sys.executable or "python3"
    child = [py, "-S", "-c", CHILD]
    db_lat = os.path.join(work, "latency.db")
    rm_db(db_lat)
    modes = {
        "direct": lambda n: child + [str(n)],
        "passthrough": lambda n: [wrapper, "bench", "--no-default-patterns", "--"] + child + [str(n)],
        "database": lambda n: [wrapper, "bench", "--db", db_lat, "--"] + child + [str(n)],
    }
    per_round = max(1, samples // rounds)
    skip = 2  # the first answers of each process include interpreter/allocator warm-up
    lat = {k: [] for k in modes}
    log(f"latency: {rounds} rounds x {per_round} partial-line prompts per mode "
        f"(direct, wrapper passthrough, wrapper with database)")
    for _ in range(rounds):
        for name, mk in modes.items():
            lat[name] += prompt_samples(mk(per_round + skip), per_round + skip, skip)
    rm_db(db_lat)

    result = {"samples_per_mode": len(lat["direct"]), "partial_line": {}}
    d_med, d_p99 = statistics.median(lat["direct"]), pct(lat["direct"], 99)
    for name, v in lat.items():
        med, p99 = statistics.median(v), pct(v, 99)
        entry = {"median_ms": ms(med), "p99_ms": ms(p99), "max_ms": ms(max(v))}
        if name != "direct":
            entry["added_median_ms"] = ms(med - d_med)
            entry["added_p99_ms"] = ms(p99 - d_p99)
        result["partial_line"][name] = entry

    # Start-up: interleaved; a fresh database file per run for the "fresh" modes, one reused
    # database for "db_existing" (the usual case: a user's database already exists).
    log(f"startup: {starts} interleaved runs of each start-up command")
    warm_db = os.path.join(work, "warm.db")
    rm_db(warm_db)
    run_quiet([wrapper, "bench", "--db", warm_db, "--", "true"])  # create it once
    fresh = os.path.join(work, "start.db")
    wb = [wrapper, "bench"]
    modes = {  # name -> wrapper options (None = the child alone)
        "child": None,
        "passthrough": ["--no-default-patterns"],
        "rules_no_db": [],
        "db_no_rules": ["--no-default-patterns", "--db", fresh],
        "db_fresh": ["--db", fresh],
        "db_existing": ["--db", warm_db],
    }
    whole = {k: [] for k in modes}
    exec_ = {k: [] for k in modes}
    date = ["date", "+%s%N"]
    for _ in range(starts):
        for k, opts in modes.items():
            rm_db(fresh)
            whole[k].append(run_quiet(["true"] if opts is None else wb + opts + ["--", "true"]))
            rm_db(fresh)
            exec_[k].append(start_to_exec(date if opts is None else wb + opts + ["--"] + date))
    rm_db(fresh)
    rm_db(warm_db)
    startup = {"runs": starts, "modes": {}}
    wbase, ebase = statistics.median(whole["child"]), statistics.median(exec_["child"])
    for k, opts in modes.items():
        wm, em = statistics.median(whole[k]), statistics.median(exec_[k])
        startup["modes"][k] = {
            "options": "(child alone)" if opts is None else " ".join(
                "FRESH.db" if o == fresh else "EXISTING.db" if o == warm_db else o for o in opts),
            "whole_median_ms": ms(wm), "whole_added_ms": ms(wm - wbase),
            "exec_median_ms": ms(em), "exec_added_ms": ms(em - ebase)}
    result["startup"] = startup
    return result


def print_report(r):
    print(f"\nPartial-line latency ({r['samples_per_mode']} samples per mode; "
          "arrival at the reader minus the child's write)")
    print(f"  {'mode':<24}{'median ms':>10}{'p99 ms':>10}{'added med':>11}{'added p99':>11}")
    for name, e in r["partial_line"].items():
        label = {"direct": "child alone", "passthrough": "wrapper, passthrough",
                 "database": "wrapper, database on"}[name]
        am = f"{e['added_median_ms']:.3f}" if "added_median_ms" in e else "-"
        ap = f"{e['added_p99_ms']:.3f}" if "added_p99_ms" in e else "-"
        print(f"  {label:<24}{e['median_ms']:>10.3f}{e['p99_ms']:>10.3f}{am:>11}{ap:>11}")
    s = r["startup"]
    print(f"\nStart-up ({s['runs']} interleaved runs, medians; child `true` for whole-process, "
          "`date +%s%N` for start->exec)")
    print(f"  {'wrapper bench <options> -- child':<44}{'whole ms':>9}{'added':>8}"
          f"{'->exec ms':>11}{'added':>8}")
    for k, e in s["modes"].items():
        print(f"  {e['options'] or '(default rules, no database)':<44}{e['whole_median_ms']:>9.2f}"
              f"{e['whole_added_ms']:>8.2f}{e['exec_median_ms']:>11.2f}{e['exec_added_ms']:>8.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wrapper", required=True)
    ap.add_argument("--samples", type=int, default=int(os.environ.get("LAT_SAMPLES", 200)))
    ap.add_argument("--starts", type=int, default=int(os.environ.get("START_RUNS", 30)))
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    import tempfile
    with tempfile.TemporaryDirectory() as work:
        env_work = os.path.join(work, "config")
        os.environ["XDG_CONFIG_HOME"] = env_work  # no user config or user patterns
        for k in ("WRAPPER_DB", "WRAPPER_ENV", "WRAPPER_ENABLE_DB"):
            os.environ.pop(k, None)
        r = measure(os.path.abspath(a.wrapper), work, a.samples, starts=a.starts)
    print_report(r)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=2)


if __name__ == "__main__":
    main()
