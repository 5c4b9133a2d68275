#!/usr/bin/env python3
"""Whole-process benchmark of wrapper against its peers (SPEC §9). Standard library only.

Run through scripts/bench.sh, which builds the release binary and generates the input; see
docs/PERFORMANCE.md. Steps:

1. verify   - each wrapper mode once with its output captured: stdout must be the input byte
              for byte; an `--events-out FILE` run gives the reference event count (and counts
              per pattern) that every database run must commit.
2. throughput - `cat | cat`, `tee`, `script`, `ts` (if installed) and wrapper in three modes,
              interleaved round-robin (the starting command rotates each round), RUNS timed
              rounds after one warm-up round; median wall time, lines/s, MB/s, ratio to
              `cat | cat`; peak RSS (ru_maxrss from wait4, the figure `/usr/bin/time -v` prints)
              from the untimed warm-up round and one untimed final round (see Rss).
              Every database run uses a fresh file and is checked: committed events == the
              reference count, total_lines_processed == input lines, state completed.
3. latency/startup - scripts/latency.py.
4. memory   - peak RSS with the database on for BIG_GB of many-line output and for one
              LONG_LINE_GB line without newline.

Writes every figure (with all samples) and a description of the machine to --json.
"""
import argparse
import hashlib
import json
import os
import platform
import resource
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in scripts/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import latency  # noqa: E402

DEVNULL = subprocess.DEVNULL


class BenchFailure(SystemExit):
    pass


def fail(msg):
    print(f"\nBENCH FAILURE: {msg}", file=sys.stderr)
    raise BenchFailure(1)


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------- running and measuring

# Peak RSS. ru_maxrss of a process includes the memory image it had before exec, so a child
# spawned straight from this (47 MB) Python process would report Python's size. Each stage is
# therefore measured through a small launcher that forks it and reads its wait4 rusage:
# GNU time (`/usr/bin/time -f %M`, what `/usr/bin/time -v` prints as "Maximum resident set
# size") when present, else a Python launcher whose own image (its `floor`, measured on `true`
# and reported) is the smallest figure it can show. The launcher costs a few milliseconds per
# stage, so RSS comes from separate untimed runs and never from the timed ones.
PY_LAUNCHER = r"""
import os, sys
out, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
with open(out, "w") as f:
    f.write(f"{ru.ru_maxrss}\n")
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


class Rss:
    def __init__(self, work):
        self.out = os.path.join(work, "rss.txt")
        gnu = ["/usr/bin/time", "-f", "%M", "-o", self.out]
        self.tool = "python launcher (os.wait4 ru_maxrss)"
        self.prefix = [sys.executable or "python3", "-S", "-I", "-c", PY_LAUNCHER, self.out]
        if os.access("/usr/bin/time", os.X_OK) and os.environ.get("BENCH_RSS") != "python":
            ok = subprocess.run(gnu + ["true"], stdout=DEVNULL, stderr=DEVNULL).returncode == 0
            if ok and self._read() is not None:
                self.tool, self.prefix = "/usr/bin/time -f %M (GNU time, wait4 ru_maxrss)", gnu
        self.floor_kib = None
        self.floor_kib = self.measure([["true"]])[1]

    def _read(self):
        try:
            with open(self.out) as f:
                lines = f.read().split()
            return int(lines[-1])
        except (OSError, ValueError, IndexError):
            return None

    def measure(self, stages, stdout=DEVNULL):
        """Run the stages like run_pipeline, each under the launcher; (secs, peak KiB, codes)."""
        peak, codes = 0, []
        outs = []
        for i, argv in enumerate(stages):
            outs.append(f"{self.out}.{i}")
        wrapped = [self.prefix[:-1] + [outs[i]] + argv for i, argv in enumerate(stages)]
        t, _, codes = run_pipeline(wrapped, stdout)
        for o in outs:
            try:
                with open(o) as f:
                    peak = max(peak, int(f.read().split()[-1]))
                os.unlink(o)
            except (OSError, ValueError, IndexError):
                fail(f"no RSS figure from {self.tool} for {stages!r}")
        return t, peak, codes


def run_pipeline(stages, stdout=DEVNULL):
    """Run argv stages connected by pipes, stdin from /dev/null, the last stage's stdout to
    `stdout`, every stderr to /dev/null. Returns (wall seconds, CPU seconds, exit codes):
    CPU is user + system time of every process of the pipeline and their children (a
    wrapper's agent included), from getrusage(RUSAGE_CHILDREN) around the run."""
    procs = []
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    prev = DEVNULL
    for i, argv in enumerate(stages):
        last = i == len(stages) - 1
        p = subprocess.Popen(argv, stdin=prev, stdout=stdout if last else subprocess.PIPE,
                             stderr=DEVNULL)
        if prev is not DEVNULL:
            prev.close()
        prev = None if last else p.stdout
        procs.append(p)
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, codes


def capture(argv):
    """Run argv with stdin /dev/null; return (sha256 of stdout, stdout bytes, stderr, exit)."""
    p = subprocess.Popen(argv, stdin=DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    h, n = hashlib.sha256(), 0
    # stderr is small (diagnostics); read stdout to the end first, then stderr.
    while True:
        chunk = p.stdout.read(1 << 20)
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
    err = p.stderr.read()
    return h.hexdigest(), n, err.decode(errors="replace"), p.wait()


def rm_db(path):
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass


def db_figures(path):
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        events = con.execute("SELECT count(*) FROM extraction_events").fetchone()[0]
        sessions = con.execute(
            "SELECT total_lines_processed, total_extraction_events, state, exit_code "
            "FROM process_sessions").fetchall()
        per_pattern = dict(con.execute(
            "SELECT pattern, count(*) FROM extraction_events GROUP BY pattern").fetchall())
        blocks = con.execute("SELECT count(*) FROM code_blocks").fetchone()[0]
    finally:
        con.close()
    if len(sessions) != 1:
        fail(f"{path}: expected one session, found {len(sessions)}")
    lines, total_events, state, exit_code = sessions[0]
    return {"events": events, "total_lines_processed": lines,
            "total_extraction_events": total_events, "state": state, "exit_code": exit_code,
            "per_pattern": per_pattern, "code_blocks": blocks}


def check_capture(path, n_bytes, label):
    """The capture of a database run: every output byte stored (the standard input has no
    secret, so masking changes nothing), and how small it is."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT coalesce(sum(raw_bytes), 0), coalesce(sum(stored_bytes), 0), "
                          "coalesce(sum(frames), 0), coalesce(sum(blocks), 0) "
                          "FROM capture_sessions").fetchone()
        blob = con.execute("SELECT coalesce(sum(length(data)), 0) FROM capture_blocks").fetchone()[0]
    finally:
        con.close()
    raw, stored, frames, blocks = row
    if raw != n_bytes:
        fail(f"{label}: capture holds {raw} bytes of output, the input has {n_bytes}")
    if blob != stored:
        fail(f"{label}: capture_sessions says {stored} stored bytes, the blocks hold {blob}")
    return {"raw_bytes": raw, "stored_bytes": stored, "frames": frames, "blocks": blocks,
            "ratio": stored / raw if raw else None}


def check_db(path, expect_events, expect_lines, expect_per_pattern=None, label="database run"):
    f = db_figures(path)
    problems = []
    if f["events"] != expect_events:
        problems.append(f"committed events {f['events']} != extraction produced {expect_events}")
    if f["total_extraction_events"] != f["events"]:
        problems.append(f"total_extraction_events {f['total_extraction_events']} != rows {f['events']}")
    if expect_lines is not None and f["total_lines_processed"] != expect_lines:
        problems.append(f"total_lines_processed {f['total_lines_processed']} != {expect_lines}")
    if f["state"] != "completed" or f["exit_code"] != 0:
        problems.append(f"session state {f['state']!r} exit {f['exit_code']!r}")
    if expect_per_pattern is not None and f["per_pattern"] != expect_per_pattern:
        diff = {k: (f["per_pattern"].get(k, 0), expect_per_pattern.get(k, 0))
                for k in set(f["per_pattern"]) | set(expect_per_pattern)
                if f["per_pattern"].get(k, 0) != expect_per_pattern.get(k, 0)}
        problems.append(f"events per pattern differ (db, events-out): {diff}")
    if problems:
        fail(f"{label} ({path}): " + "; ".join(problems))
    return f


def machine(work):
    info = {"nproc": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
            "kernel": platform.release(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["mem_total_mib"] = int(line.split()[1]) // 1024
    except OSError:
        pass
    try:
        out = subprocess.run(["df", "-PT", work], capture_output=True, text=True).stdout
        info["work_dir_fs"] = out.splitlines()[-1].split()[1]
    except (OSError, IndexError):
        pass
    return info


def git_state():
    """Commit of the checkout the script lives in, and whether its sources differ from it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "src", "Cargo.toml",
                                "Cargo.lock", "patterns", "build.rs"],
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        return None
    return {"commit": head or None, "sources_modified": bool(dirty)}


def load():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


# ---------------------------------------------------------------- the steps

def verify(w, inp, work, in_sha, in_bytes):
    """Passthrough is byte-exact in every mode; reference event count from --events-out."""
    ev = os.path.join(work, "reference-events.jsonl")
    db = os.path.join(work, "verify.db")
    rm_db(db)
    runs = {
        "passthrough": [w, "bench", "--no-default-patterns", "--", "cat", inp],
        "extraction": [w, "bench", "--events-out", ev, "--", "cat", inp],
        "database": [w, "bench", "--db", db, "--", "cat", inp],
    }
    notes = []
    for name, argv in runs.items():
        sha, n, err, rc = capture(argv)
        if rc != 0:
            fail(f"verify {name}: exit {rc}: {err[:500]}")
        if sha != in_sha or n != in_bytes:
            fail(f"verify {name}: stdout is not the input byte for byte ({n} of {in_bytes} bytes)")
        if err.strip():
            notes.append(f"{name} wrote to stderr: {err.strip()[:300]}")
    events, per_pattern = 0, {}
    with open(ev, "rb") as f:
        for line in f:
            events += 1
            try:
                pat = json.loads(line).get("pattern")
            except ValueError:
                fail(f"--events-out line {events} is not JSON: {line[:200]!r}")
            per_pattern[pat] = per_pattern.get(pat, 0) + 1
    os.unlink(ev)
    return events, per_pattern, db, notes


class OtlpReceiver:
    """scripts/otlp_receiver.py on a loopback port: counts the OTLP log records it gets."""

    def __init__(self, work, name):
        self.port_file = os.path.join(work, f"{name}.port")
        self.stats_file = os.path.join(work, f"{name}.stats")
        here = os.path.dirname(os.path.abspath(__file__))
        self.proc = subprocess.Popen([sys.executable, os.path.join(here, "otlp_receiver.py"),
                                      self.port_file, self.stats_file], stdin=DEVNULL)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.port_file):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                fail("the OTLP receiver did not start")
            time.sleep(0.01)
        with open(self.port_file) as f:
            self.url = f"http://127.0.0.1:{f.read().strip()}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        with open(self.stats_file) as f:
            return json.load(f)


def otlp_rate(w, inp, work, receiver_work):
    """Records/s the exporter sustains to a loopback receiver: every event of the input may
    queue (OTEL_BLRP_MAX_QUEUE_SIZE), so the export thread is the limit; the rate is the
    records received between the first and the last request."""
    rx = OtlpReceiver(receiver_work, "rate")
    env = dict(os.environ, OTEL_BLRP_MAX_QUEUE_SIZE="10000000")
    t0 = time.perf_counter()
    p = subprocess.run([w, "bench", "--otlp-endpoint", rx.url, "--events-out", "/dev/null",
                        "--", "cat", inp], stdin=DEVNULL, stdout=DEVNULL, stderr=subprocess.PIPE,
                       env=env)
    wall = time.perf_counter() - t0
    st = rx.stop()
    span = (st["last_s"] or 0) - (st["first_s"] or 0)
    return {"records": st["records"], "requests": st["requests"], "bytes": st["bytes"],
            "span_s": span, "wall_s": wall,
            "records_per_s": st["records"] / span if span > 0 else None,
            "bytes_per_record": st["bytes"] / st["records"] if st["records"] else None,
            "exit": p.returncode, "warning": p.stderr.decode(errors="replace").strip()}


def throughput(w, inp, work, rss_tool, runs, n_lines, n_bytes, expect_events, per_pattern,
               otlp_url=None):
    tee_out = os.path.join(work, "tee.out")
    cmds = [
        ("cat | cat", "limit", lambda db: [["cat", inp], ["cat"]]),
        ("tee", "peer", lambda db: [["cat", inp], ["tee", tee_out]]),
        ("script -q -c cat", "peer", lambda db: [["script", "-q", "-c", f"cat {shlex.quote(inp)}", "/dev/null"]]),
    ]
    skipped = []
    if shutil.which("ts"):
        cmds.append(("ts (moreutils)", "peer", lambda db: [["cat", inp], ["ts"]]))
    else:
        skipped.append("ts (moreutils) not installed: skipped")
    if not shutil.which("script"):
        cmds = [c for c in cmds if c[0] != "script -q -c cat"]
        skipped.append("script not installed: skipped")
    cmds += [
        ("wrapper passthrough", "wrapper",
         lambda db: [[w, "bench", "--no-default-patterns", "--", "cat", inp]]),
        ("wrapper extraction", "wrapper",
         lambda db: [[w, "bench", "--events-out", "/dev/null", "--", "cat", inp]]),
        ("wrapper + database", "wrapper",
         lambda db: [[w, "bench", "--db", db, "--", "cat", inp]]),
        # Output capture is on by default with the database; this row is the same pipeline
        # without it, so the difference is what capture costs (issue 13: at most 10%).
        ("wrapper + db, no capture", "wrapper",
         lambda db: [[w, "bench", "--db", db, "--no-capture", "--", "cat", inp]]),
    ]
    if otlp_url:
        # Export on, default queue: what an agent pays for it (records beyond the queue
        # are dropped and counted, never waited for).
        cmds.append(("wrapper + database + OTLP", "wrapper",
                     lambda db: [[w, "bench", "--db", db, "--otlp-endpoint", otlp_url,
                                  "--", "cat", inp]]))
    samples = {name: [] for name, _, _ in cmds}
    cpus = {name: [] for name, _, _ in cmds}
    rss = {name: [] for name, _, _ in cmds}
    checks = []
    # Round 0: warm-up, untimed, under the RSS launcher. Rounds 1..runs: timed, no launcher.
    # Last round: untimed, under the RSS launcher again. Peak RSS = the larger of the two.
    last = runs + 1
    log(f"throughput: {len(cmds)} commands x {runs} interleaved timed rounds "
        f"(+ warm-up and final rounds for peak RSS, {rss_tool.tool})")
    for r in range(last + 1):
        timed = 0 < r < last
        order = cmds[r % len(cmds):] + cmds[:r % len(cmds)]
        for name, _, mk in order:
            db = os.path.join(work, f"run-{r}.db")
            rm_db(db)
            if timed:
                t, cpu, codes = run_pipeline(mk(db))
            else:
                t, peak, codes = rss_tool.measure(mk(db))
            if any(codes):
                fail(f"{name}: exit codes {codes}")
            if name.startswith("wrapper + d"):
                f = check_db(db, expect_events, n_lines, per_pattern, f"round {r} {name} run")
                row = {"round": r, "command": name, "events": f["events"],
                       "total_lines_processed": f["total_lines_processed"]}
                if name == "wrapper + database":
                    row["capture"] = check_capture(db, n_bytes, f"round {r} database run")
                checks.append(row)
            rm_db(db)
            if timed:
                samples[name].append(t)
                cpus[name].append(cpu)
            else:
                rss[name].append(peak)
        log(f"  round {r}{'' if timed else ' (untimed, peak RSS)'} done")
    try:
        os.unlink(tee_out)
    except FileNotFoundError:
        pass
    base = statistics.median(samples["cat | cat"])
    rows = []
    for name, kind, mk in cmds:
        med = statistics.median(samples[name])
        rows.append({
            "command": name, "kind": kind,
            "argv": [shlex.join(s) for s in mk("FRESH.db")],
            "median_s": med, "min_s": min(samples[name]), "max_s": max(samples[name]),
            "lines_per_s": n_lines / med, "mb_per_s": n_bytes / med / 1e6,
            "ratio_to_cat": med / base,
            "ratio_to_script": (med / statistics.median(samples["script -q -c cat"])
                                if samples.get("script -q -c cat") else None),
            # What a user pays: user + system CPU seconds per million input lines.
            "cpu_s": statistics.median(cpus[name]),
            "cpu_s_per_m_lines": statistics.median(cpus[name]) / n_lines * 1e6,
            "peak_rss_mib": max(rss[name]) / 1024,
            "samples_s": samples[name],
        })
    return rows, skipped, checks


def memory(w, inp, work, rss_tool, big_gb, long_gb, in_lines, in_bytes):
    out = {}
    copies = int(big_gb * 2**30 // in_bytes) + 1
    nbytes = int(big_gb * 2**30)
    gen = ('n=$1; i=0; while [ "$i" -lt "$n" ]; do cat "$0" || exit 0; i=$((i+1)); done '
           '| head -c "$2"')
    db = os.path.join(work, "big.db")
    rm_db(db)
    argv = [w, "bench", "--db", db, "--", "sh", "-c", gen, inp, str(copies), str(nbytes)]
    log(f"memory: {big_gb:g} GiB of agent output ({copies} copies of the input, cut at "
        f"{nbytes} bytes) through wrapper with the database on")
    t, peak, codes = rss_tool.measure([argv])
    if any(codes):
        fail(f"big output run: exit {codes}")
    with open(inp, "rb") as f:
        data = f.read()
    full, rem = divmod(nbytes, len(data))
    expect_lines = full * in_lines + data[:rem].count(b"\n") + (1 if rem and data[rem - 1:rem] != b"\n" else 0)
    f = db_figures(db)
    rm_db(db)
    out["big_output"] = {
        "gib": big_gb, "bytes": nbytes, "seconds": t, "peak_rss_mib": peak / 1024,
        "lines_per_s": expect_lines / t, "mb_per_s": nbytes / t / 1e6,
        "expected_lines": expect_lines, "total_lines_processed": f["total_lines_processed"],
        "events": f["events"], "total_extraction_events": f["total_extraction_events"],
        "state": f["state"], "command": shlex.join(argv[:3] + ["BIG.db"] + argv[4:]),
    }
    if f["events"] != f["total_extraction_events"]:
        fail(f"big output: {f['events']} event rows but total_extraction_events "
             f"{f['total_extraction_events']}")
    if abs(f["total_lines_processed"] - expect_lines) > 1:
        fail(f"big output: total_lines_processed {f['total_lines_processed']} != {expect_lines}")

    db = os.path.join(work, "long.db")
    rm_db(db)
    size = f"{int(long_gb * 1024)}M"
    argv = [w, "bench", "--db", db, "--", "head", "-c", size, "/dev/zero"]
    log(f"memory: one {long_gb:g} GiB line of NUL bytes with no newline, database on")
    t, peak, codes = rss_tool.measure([argv])
    if any(codes):
        fail(f"long line run: exit {codes}")
    f = db_figures(db)
    rm_db(db)
    out["long_line"] = {
        "gib": long_gb, "seconds": t, "peak_rss_mib": peak / 1024,
        "total_lines_processed": f["total_lines_processed"], "events": f["events"],
        "state": f["state"], "command": shlex.join(argv[:3] + ["LONG.db"] + argv[4:]),
    }
    return out


def queries(w, inp, work, sessions=3, runs=7):
    """Query speed on a database of 1 M+ events (issue 17, item 5): the input recorded
    `sessions` times into one database, then each query command run `runs` times as a user
    runs it (a whole process: start-up, open, query, print to a pipe). Median and max ms."""
    db = os.path.join(work, "queries.db")
    rm_db(db)
    for _ in range(sessions):
        _, _, codes = run_pipeline([[w, "bench", "--db", db, "--no-capture", "--", "cat", inp]])
        if any(codes):
            fail(f"queries: recording exited {codes}")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    events = con.execute("SELECT count(*) FROM extraction_events").fetchone()[0]
    sid = con.execute("SELECT session_id FROM process_sessions ORDER BY id DESC").fetchone()[0]
    con.close()
    cmds = [
        ("events --agent bench (first page)", ["events", "--agent", "bench"]),
        ("events --type error (first page)", ["events", "--type", "error"]),
        ("events --session S (first page)", ["events", "--session", sid]),
        ("events (first page)", ["events"]),
        ("stats", ["stats"]),
        ("stats --agent bench", ["stats", "--agent", "bench"]),
        ("sessions", ["sessions"]),
    ]
    out = []
    for name, args in cmds:
        argv = [w] + args + ["--db", db]
        ts = []
        for _ in range(runs):
            t0 = time.perf_counter()
            r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            ts.append((time.perf_counter() - t0) * 1000)
            if r.returncode != 0:
                fail(f"queries: {shlex.join(argv)} exited {r.returncode}: {r.stderr[-300:]!r}")
        out.append({"query": name, "argv": shlex.join(argv), "median_ms": statistics.median(ts),
                    "max_ms": max(ts), "samples_ms": ts})
    rm_db(db)
    return {"events": events, "sessions": sessions, "runs": runs, "queries": out}


# ---------------------------------------------------------------- report

def fmt_rate(x):
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.0f} k"


def print_table(rows):
    head = (f"{'command':<27}{'median s':>10}{'lines/s':>10}{'MB/s':>9}{'x cat|cat':>11}"
            f"{'x script':>10}{'CPU s/M lines':>15}{'peak RSS MiB':>14}")
    print("\n" + head)
    print("-" * len(head))
    for r in rows:
        xs = f"{r['ratio_to_script']:.2f}" if r.get("ratio_to_script") else "-"
        print(f"{r['command']:<27}{r['median_s']:>10.3f}{fmt_rate(r['lines_per_s']):>10}"
              f"{r['mb_per_s']:>9.0f}{r['ratio_to_cat']:>11.1f}{xs:>10}"
              f"{r['cpu_s_per_m_lines']:>15.2f}{r['peak_rss_mib']:>14.1f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wrapper", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--input-source", default="")
    ap.add_argument("--work", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--big-gb", type=float, default=1)
    ap.add_argument("--long-gb", type=float, default=1)
    ap.add_argument("--lat-samples", type=int, default=200)
    ap.add_argument("--start-runs", type=int, default=30)
    ap.add_argument("--skip", default="", help="comma list of: latency, memory, otlp, queries")
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    w, inp, work = os.path.abspath(a.wrapper), os.path.abspath(a.input), a.work

    with open(inp, "rb") as f:
        data = f.read()
    n_bytes, n_lines = len(data), data.count(b"\n")
    in_sha = hashlib.sha256(data).hexdigest()
    del data
    version = subprocess.run([w, "--version"], capture_output=True, text=True).stdout.strip()
    started = time.time()
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wrapper": {"path": w, "version": version, "source": git_state()},
        "machine": machine(work),
        "load_before": load(),
        "input": {"source": a.input_source, "lines": n_lines, "bytes": n_bytes, "sha256": in_sha},
    }
    log(f"input: {n_lines} lines, {n_bytes} bytes, sha256 {in_sha[:16]}...  ({a.input_source})")
    src = report["wrapper"]["source"] or {}
    log(f"wrapper: {version} from {(src.get('commit') or '?')[:12]}"
        f"{' (sources modified)' if src.get('sources_modified') else ''}; "
        f"load average {report['load_before']}")

    rss_tool = Rss(work)
    report["peak_rss_method"] = {"tool": rss_tool.tool, "floor_mib": rss_tool.floor_kib / 1024}
    log(f"peak RSS: {rss_tool.tool}; `true` measures {rss_tool.floor_kib / 1024:.1f} MiB")
    log("verify: passthrough is byte-exact in every mode; reference event count from --events-out")
    expect_events, per_pattern, vdb, notes = verify(w, inp, work, in_sha, n_bytes)
    f = check_db(vdb, expect_events, n_lines, per_pattern, "verify database run")
    check_capture(vdb, n_bytes, "verify database run")
    con = sqlite3.connect(f"file:{vdb}?mode=ro", uri=True)
    sid = con.execute("SELECT session_id FROM process_sessions").fetchone()[0]
    con.close()
    replayed = subprocess.run([w, "replay", "--db", vdb, sid], capture_output=True, check=True).stdout
    if hashlib.sha256(replayed).hexdigest() != in_sha:
        fail(f"verify: `wrapper replay` of the capture is not the input ({len(replayed)} bytes)")
    log("  the capture replays to the input byte for byte")
    del replayed
    rm_db(vdb)
    log(f"  {expect_events} events from --events-out == {f['events']} committed; "
        f"{f['total_lines_processed']} lines processed; {f['code_blocks']} code blocks")
    for n in notes:
        log(f"  note: {n}")
    report["verify"] = {"events": expect_events, "per_pattern": per_pattern,
                        "code_blocks": f["code_blocks"], "notes": notes}

    otlp = None if "otlp" in skip else OtlpReceiver(work, "pipeline")
    rows, skipped, checks = throughput(w, inp, work, rss_tool, a.runs, n_lines, n_bytes,
                                       expect_events, per_pattern, otlp and otlp.url)
    if otlp:
        report["otlp_pipeline_receiver"] = otlp.stop()
    report["runs"] = a.runs
    report["throughput"] = rows
    report["skipped"] = skipped
    report["database_checks"] = checks
    print_table(rows)
    for s in skipped:
        print(f"note: {s}")
    print(f"every database run committed {expect_events} events (== --events-out) and "
          f"counted {n_lines} lines")
    by = {r["command"]: r for r in rows}
    if "script -q -c cat" in by:
        sc, cat = by["script -q -c cat"]["median_s"], by["cat | cat"]["median_s"]
        targets = [("wrapper + database", sc, 1.0, "x script"),
                   ("wrapper extraction", sc, 0.5, "x script"),
                   ("wrapper passthrough", cat, 1.5, "x cat|cat")]
        report["targets"] = []
        print("targets (issue 17), medians of this run:")
        for name, base_s, bar, unit in targets:
            if name in by:
                x = by[name]["median_s"] / base_s
                report["targets"].append({"command": name, "ratio": x, "bar": bar, "unit": unit})
                print(f"  {name:<24} {x:6.2f} {unit:<9} (bar <= {bar}: {'met' if x <= bar else 'NOT met'})")
    caps = [c["capture"] for c in checks if "capture" in c]
    if caps and "wrapper + db, no capture" in by:
        on, off = by["wrapper + database"], by["wrapper + db, no capture"]
        cost = on["median_s"] / off["median_s"] - 1
        ratio = max(c["ratio"] for c in caps)
        report["capture"] = {"cost": cost, "stored_ratio": ratio, "runs": caps,
                             "peak_rss_mib": on["peak_rss_mib"]}
        print(f"capture: {cost * 100:+.1f}% pipeline time (median {on['median_s']:.3f} s on, "
              f"{off['median_s']:.3f} s off; bar <= 10%: {'met' if cost <= 0.10 else 'NOT met'}); "
              f"stored {caps[-1]['stored_bytes']} bytes for {caps[-1]['raw_bytes']} of output = "
              f"{ratio:.3f}x (bar <= 0.3x: {'met' if ratio <= 0.3 else 'NOT met'}) in "
              f"{caps[-1]['blocks']} blocks, {caps[-1]['frames']} frames; peak RSS "
              f"{on['peak_rss_mib']:.1f} MiB (bar < 32: {'met' if on['peak_rss_mib'] < 32 else 'NOT met'})")

    if otlp:
        off = next(r for r in rows if r["command"] == "wrapper + database")
        on = next(r for r in rows if r["command"] == "wrapper + database + OTLP")
        print(f"\nOTLP export on vs off (same run, database on): {on['median_s']:.3f} s vs "
              f"{off['median_s']:.3f} s median, ratio {on['median_s'] / off['median_s']:.2f}")
        log("otlp: exporter rate to a loopback receiver (every event queued)")
        rate = otlp_rate(w, inp, work, work)
        report["otlp_rate"] = rate
        rps = rate["records_per_s"]
        print(f"OTLP exporter: {rate['records']} records in {rate['requests']} requests, "
              f"{rate['span_s']:.2f} s first to last ({fmt_rate(rps) if rps else '?'} records/s, "
              f"{rate['bytes_per_record'] or 0:.0f} bytes/record); wrapper took {rate['wall_s']:.2f} s")
        if rate["warning"]:
            print(f"  wrapper said: {rate['warning']}")
    if "queries" not in skip:
        log("queries: the input recorded 3 times into one database, each query 7 times")
        q = queries(w, inp, work)
        report["queries"] = q
        print(f"\nQueries on {q['events']} events ({q['sessions']} sessions), whole process, "
              f"{q['runs']} runs (bar for the first page of events --agent and stats: < 50 ms)")
        for r in q["queries"]:
            print(f"  {r['query']:<36} median {r['median_ms']:6.1f} ms   max {r['max_ms']:6.1f} ms")
    if "latency" not in skip:
        lat = latency.measure(w, work, a.lat_samples, starts=a.start_runs, log=log)
        report["latency"] = lat
        latency.print_report(lat)
    if "memory" not in skip:
        mem = memory(w, inp, work, rss_tool, a.big_gb, a.long_gb, n_lines, n_bytes)
        report["memory"] = mem
        b, l = mem["big_output"], mem["long_line"]
        print(f"\nPeak RSS, database on")
        print(f"  {b['gib']:g} GiB of output ({b['expected_lines']} lines): {b['peak_rss_mib']:.1f} MiB, "
              f"{b['seconds']:.1f} s ({fmt_rate(b['lines_per_s'])} lines/s), "
              f"{b['events']} events committed")
        print(f"  one {l['gib']:g} GiB line, no newline:  {l['peak_rss_mib']:.1f} MiB, {l['seconds']:.1f} s, "
              f"{l['total_lines_processed']} line(s), {l['events']} events")
        for k, v in (("big output", b), ("long line", l)):
            if v["peak_rss_mib"] >= 32:
                print(f"  WARNING: {k} peak RSS {v['peak_rss_mib']:.1f} MiB is over the 32 MiB bar")

    report["load_after"] = load()
    report["elapsed_s"] = round(time.time() - started, 1)
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    with open(a.json, "w") as fh:
        json.dump(report, fh, indent=2)
    print(f"\nload average before {report['load_before']}, after {report['load_after']}; "
          f"{report['elapsed_s']} s; figures in {a.json}")


if __name__ == "__main__":
    main()
