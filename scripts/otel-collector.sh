#!/usr/bin/env bash
# A session into a real OpenTelemetry Collector: an OTLP/HTTP receiver and a file exporter,
# one wrapper session (the demo agent, in a scratch git repository where it commits), then
# the records the Collector wrote, counted by event name, with the session's end record.
#
#   scripts/otel-collector.sh                         # find or build a Collector, run, show
#   OTELCOL=/usr/bin/otelcol-contrib scripts/otel-collector.sh   # a Collector you have
#   NO_BUILD=1 WRAPPER=path/to/wrapper scripts/otel-collector.sh
#
# Which Collector: $OTELCOL, else `otelcol-contrib` or `otelcol` on PATH (the releases ship
# both receiver and file exporter), else one built here with the Collector's own builder
# (`go install go.opentelemetry.io/collector/cmd/builder@vVERSION`, then a manifest with the
# core otlpreceiver and debugexporter and contrib's fileexporter) from the Go module proxy.
# (`go install …/cmd/otelcorecol@…` itself cannot work: that module's go.mod has replace
# directives, and it has no file exporter.) The builder needs a recent Go (1.24+ for
# v0.161.0); Go 1.21+ fetches it by itself (GOTOOLCHAIN), older Go cannot.
# Exit status: 0 when the records arrived, 1 when they did not, 3 when no Collector can be
# had on this machine (the reason is printed).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VERSION=${OTELCOL_VERSION:-0.161.0}
PORT=${OTLP_PORT:-14318}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/wrapper-otelcol.XXXXXX")
COLLECTOR_PID=
cleanup() {
  if [ -n "$COLLECTOR_PID" ]; then kill "$COLLECTOR_PID" 2>/dev/null || true; wait "$COLLECTOR_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
say() { printf '%s\n' "$*" >&2; }

if [ -z "${NO_BUILD:-}" ]; then
  say "building wrapper: cargo build --release"
  (cd "$ROOT" && cargo build --release --quiet)
fi
W=${WRAPPER:-$ROOT/target/release/wrapper}
[ -x "$W" ] || { say "no wrapper binary at $W"; exit 1; }
W=$(cd "$(dirname "$W")" && pwd)/$(basename "$W")

# ---- a Collector
find_collector() {
  if [ -n "${OTELCOL:-}" ]; then echo "$OTELCOL"; return; fi
  for c in otelcol-contrib otelcol; do
    if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return; fi
  done
  local built=${OTELCOL_CACHE:-$ROOT/target/otelcol}/otelcol-wrapper-$VERSION
  if [ -x "$built" ]; then echo "$built"; return; fi
  command -v go >/dev/null 2>&1 || { say "no Collector on PATH and no Go to build one (apt-get install golang-go)"; return 3; }
  local gov; gov=$(go env GOVERSION 2>/dev/null || go version | awk '{print $3}')
  say "building the Collector $VERSION with the builder ($gov; GOPROXY=$(go env GOPROXY))"
  if ! timeout 60 go list -m "go.opentelemetry.io/collector/cmd/builder@v$VERSION" >"$WORK/probe.log" 2>&1; then
    say "the Go module proxy does not answer for go.opentelemetry.io/collector/cmd/builder@v$VERSION:"
    sed 's/^/    /' "$WORK/probe.log" | head -5 >&2
    say "so no Collector can be built here. Install one (a release's otelcol-contrib) and set OTELCOL."
    return 3
  fi
  mkdir -p "$(dirname "$built")" "$WORK/gobin"
  if ! GOBIN="$WORK/gobin" go install "go.opentelemetry.io/collector/cmd/builder@v$VERSION" >"$WORK/build.log" 2>&1; then
    say "go install of the builder failed ($gov; it needs Go 1.24 or newer, which Go 1.21+ fetches itself):"
    tail -5 "$WORK/build.log" | sed 's/^/    /' >&2
    return 3
  fi
  cat > "$WORK/manifest.yaml" <<EOF
dist:
  name: otelcol-wrapper
  description: OTLP receiver and file exporter for wrapper's scripts/otel-collector.sh
  output_path: $WORK/dist
receivers:
  - gomod: go.opentelemetry.io/collector/receiver/otlpreceiver v$VERSION
exporters:
  - gomod: go.opentelemetry.io/collector/exporter/debugexporter v$VERSION
  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter v$VERSION
EOF
  if ! "$WORK/gobin/builder" --config "$WORK/manifest.yaml" >"$WORK/build.log" 2>&1; then
    say "the builder failed:"; tail -10 "$WORK/build.log" | sed 's/^/    /' >&2
    return 3
  fi
  cp "$WORK/dist/otelcol-wrapper" "$built"
  echo "$built"
}
set +e
COL=$(find_collector); rc=$?
set -e
[ $rc -eq 0 ] || exit "$rc"
say "collector: $COL ($("$COL" --version 2>/dev/null | head -1))"

# ---- run it: OTLP/HTTP in, a JSON file out
cat > "$WORK/collector.yaml" <<EOF
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:$PORT
exporters:
  file:
    path: $WORK/records.json
    flush_interval: 100ms
  debug:
    verbosity: basic
service:
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [file, debug]
  telemetry:
    metrics:
      level: none
EOF
"$COL" --config "$WORK/collector.yaml" >"$WORK/collector.log" 2>&1 &
COLLECTOR_PID=$!
wait_for() { # what, seconds, command...
  local what=$1 secs=$2; shift 2
  local until=$(( $(date +%s) + secs ))
  until "$@"; do
    if [ "$(date +%s)" -ge "$until" ]; then say "timed out waiting for $what"; tail -20 "$WORK/collector.log" >&2; return 1; fi
    sleep 0.1
  done
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
wait_for "the Collector on port $PORT" 30 port_open

# ---- one session: the demo agent in a scratch repository, committing as it goes
REPO=$WORK/repo
mkdir -p "$REPO" && cd "$REPO"
export GIT_AUTHOR_NAME=demo GIT_AUTHOR_EMAIL=demo@example.com GIT_COMMITTER_NAME=demo GIT_COMMITTER_EMAIL=demo@example.com
git init -q -b main && echo hello > README && git add README && git commit -qm "initial"
git remote add origin "https://bot:not-a-real-token@example.com/team/app.git"
export XDG_CONFIG_HOME=$WORK/config XDG_DATA_HOME=$WORK/data
"$W" codex --db "$WORK/w.db" --otlp-endpoint "http://127.0.0.1:$PORT" -- \
  sh -c 'sh "$0"; echo fix > fix.txt; git add fix.txt; git commit -qm "fix the parser"; exit 0' \
  "$ROOT/scripts/demo-agent.sh" > "$WORK/agent.out" 2>&1 || true
say "session recorded: $("$W" sessions --db "$WORK/w.db" --limit 1 --json | python3 -c 'import json,sys; s=json.load(sys.stdin)[0]; print(s["session_id"], s["state"], "commits:", (s.get("git") or {}).get("commit_count"))')"

has_end() { [ -f "$WORK/records.json" ] && grep -q 'wrapper.session.end' "$WORK/records.json"; }
if ! wait_for "the session's records in the Collector's file" 30 has_end; then exit 1; fi

python3 - "$WORK/records.json" <<'EOF'
import collections, json, sys
recs = []
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    for rl in json.loads(line).get("resourceLogs", []):
        res = {a["key"]: a["value"] for a in rl.get("resource", {}).get("attributes", [])}
        for sl in rl.get("scopeLogs", []):
            for r in sl.get("logRecords", []):
                recs.append((res, r))
def val(v):
    return next(iter(v.values())) if isinstance(v, dict) and v else v
names = collections.Counter(r.get("eventName") or "?" for _, r in recs)
print(f"The Collector wrote {len(recs)} log records:")
for n, c in sorted(names.items()):
    print(f"  {c:4d}  {n}")
res, end = next((res, r) for res, r in recs if r.get("eventName") == "wrapper.session.end")
print("resource:", ", ".join(f"{k}={val(v)}" for k, v in res.items()))
print("wrapper.session.end:", end.get("severityText"), val(end.get("body", {})))
for a in end.get("attributes", []):
    print(f"    {a['key']} = {val(a['value'])}")
blob = open(sys.argv[1]).read()
assert "not-a-real-token" not in blob and "sk-proj-demo" not in blob, "a secret reached the Collector"
print("no credential or secret in what the Collector received")
EOF
