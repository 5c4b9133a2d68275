#!/usr/bin/env python3
"""Requests/s and latency of `wrapper serve` over loopback, and commit-to-SSE latency.

    scripts/serve_bench.py DB [--seconds 5] [--clients 4]

Starts the release binary on 127.0.0.1:0 with a token, then, for each endpoint, runs a
bounded closed loop: CLIENTS threads, each with one keep-alive HTTP/1.1 connection, for
SECONDS, and prints requests/s, p50 and p99. Then the tail: a wrapper records a session that
prints one error line per 100 ms into the same database; an SSE client on
/api/events/stream measures the time from the line's timestamp (when wrapper read it) to the
event's arrival, and from the commit (the poller's view) as well as the whole path.
The client is Python: on 2 cores it competes with the server for CPU, so the numbers are a
floor for the server, not a ceiling.
"""
import http.client, json, os, re, subprocess, sys, threading, time, datetime, argparse

ap = argparse.ArgumentParser()
ap.add_argument("db")
ap.add_argument("--seconds", type=float, default=5)
ap.add_argument("--clients", type=int, default=4)
ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "wrapper"))
ap.add_argument("--agent", default="codex")
a = ap.parse_args()
TOKEN = "bench-" + os.urandom(12).hex()
env = dict(os.environ, WRAPPER_SERVE_TOKEN=TOKEN)
srv = subprocess.Popen([a.bin, "serve", "--db", a.db, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, env=env, text=True)
line = srv.stdout.readline()
port = int(re.search(r"127\.0\.0\.1:(\d+)/", line).group(1))
H = {"Authorization": "Bearer " + TOKEN, "Host": f"127.0.0.1:{port}"}

def loop(path, deadline, lat, errors):
    c = http.client.HTTPConnection("127.0.0.1", port)
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        c.request("GET", path, headers=H)
        r = c.getresponse(); r.read()
        lat.append(time.perf_counter() - t)
        if r.status != 200: errors.append(r.status)

def bench(path):
    lats, errs = [], []
    deadline = time.perf_counter() + a.seconds
    ts = [threading.Thread(target=loop, args=(path, deadline, lats, errs)) for _ in range(a.clients)]
    t0 = time.perf_counter()
    for t in ts: t.start()
    for t in ts: t.join()
    el = time.perf_counter() - t0
    lats.sort()
    p = lambda q: lats[min(len(lats) - 1, int(q * len(lats)))] * 1000
    print(f"{path:58s} {len(lats)/el:8.0f} req/s   p50 {p(.5):6.2f} ms   p99 {p(.99):6.2f} ms   errors {len(errs)}")

print(f"wrapper serve on {a.db}: {a.clients} keep-alive clients, {a.seconds:.0f} s each")
for path in [f"/api/query/extractions?agent={a.agent}", f"/api/query/stats/agent/{a.agent}",
             f"/api/query/extractions?agent={a.agent}&type=error&since=30d", "/api/health"]:
    bench(path)

# Commit-to-SSE latency.
c = http.client.HTTPConnection("127.0.0.1", port)
c.request("GET", "/api/events/stream?agent=latency", headers=H)
r = c.getresponse()
assert r.status == 200
def events():
    ev = {}
    while True:
        l = r.fp.readline().decode()
        if not l: return
        l = l.rstrip("\r\n")
        if not l:
            if ev: yield ev
            ev = {}
        elif l.startswith("event:"): ev["event"] = l[6:].strip()
        elif l.startswith("data:"): ev["data"] = l[5:].strip()
it = events()
next(it)  # ready
N = 40
SKIP = 5  # the first lines wait for the recording wrapper's writer to start; not the tail's cost
rec = subprocess.Popen([a.bin, "latency", "--db", a.db, "--flush-interval", "20ms", "--", "sh", "-c",
                        f"i=0; while [ $i -lt {N} ]; do i=$((i+1)); echo \"error: latency probe $i\"; sleep 0.1; done"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
lat = []
for ev in it:
    if ev.get("event") != "extraction": continue
    e = json.loads(ev["data"])
    read_at = datetime.datetime.strptime(e["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()
    lat.append((time.time() - read_at) * 1000)
    if len(lat) == N: break
rec.wait()
lat = sorted(lat[SKIP:])
print(f"line read by wrapper -> SSE client (flush 20 ms, poll 50 ms), {len(lat)} events after the first {SKIP}: "
      f"p50 {lat[len(lat)//2]:.0f} ms, p99 {lat[-1]:.0f} ms, min {lat[0]:.0f} ms")
srv.terminate(); srv.wait()
