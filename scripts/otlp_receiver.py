#!/usr/bin/env python3
"""A loopback OTLP/HTTP logs receiver for benchmarks and demos: accepts POST /v1/logs
(HTTP/1.1 keep-alive), counts the log records in each protobuf body by walking its three
outer levels (ExportLogsServiceRequest.resource_logs -> ResourceLogs.scope_logs ->
ScopeLogs.log_records, each field skipped by its length, nothing else decoded), answers 200.

    scripts/otlp_receiver.py PORT_FILE STATS_FILE

It binds 127.0.0.1 on a free port and writes the port to PORT_FILE; on SIGTERM it writes
{"requests", "records", "bytes", "first_s", "last_s"} (monotonic seconds of the first and
last request) to STATS_FILE and exits. The full decoding with the official types is in the
test suite (tests/it/otlp.rs); this one only needs to be fast enough not to be the limit.
"""
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def varint(b, i):
    shift = value = 0
    while True:
        c = b[i]
        i += 1
        value |= (c & 0x7F) << shift
        if c < 0x80:
            return value, i
        shift += 7


def fields(b):
    """(field number, wire type, payload slice or None) for each top-level field."""
    i, n = 0, len(b)
    while i < n:
        key, i = varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            _, i = varint(b, i)
            yield num, wt, None
        elif wt == 1:
            i += 8
            yield num, wt, None
        elif wt == 2:
            ln, i = varint(b, i)
            yield num, wt, b[i:i + ln]
            i += ln
        elif wt == 5:
            i += 4
            yield num, wt, None
        else:
            raise ValueError(f"wire type {wt}")


def count_records(body):
    n = 0
    for f1, _, rl in fields(body):
        if f1 != 1 or rl is None:
            continue
        for f2, _, sl in fields(rl):
            if f2 != 2 or sl is None:
                continue
            n += sum(1 for f3, _, _ in fields(sl) if f3 == 2)
    return n


class Stats:
    lock = threading.Lock()
    requests = records = nbytes = 0
    first = last = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        n = count_records(memoryview(body).tobytes())
        now = time.monotonic()
        with Stats.lock:
            Stats.requests += 1
            Stats.records += n
            Stats.nbytes += len(body)
            Stats.first = Stats.first if Stats.first is not None else now
            Stats.last = now
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def main():
    port_file, stats_file = sys.argv[1], sys.argv[2]
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True

    def stop(*_):
        with Stats.lock:
            out = {"requests": Stats.requests, "records": Stats.records, "bytes": Stats.nbytes,
                   "first_s": Stats.first, "last_s": Stats.last}
        with open(stats_file, "w") as f:
            json.dump(out, f)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.replace(port_file + ".tmp", port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
