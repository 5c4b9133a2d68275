#!/usr/bin/env bash
# From a fresh clone: build wrapper, run a stand-in agent through it into a SQLite file, and show
# what was recorded with a plain SQL query. Uses the sqlite3 command when it is installed, else
# Python's built-in sqlite3 module (python3 is on every machine this project targets).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x target/release/wrapper ]; then
  echo "== building wrapper (release) =="
else
  echo "== building wrapper (release): the first build compiles SQLite and takes 3-5 minutes on 2 cores =="
fi
cargo build --release
echo
db="${WRAPPER_DEMO_DB:-target/demo/wrapper.db}"
mkdir -p "$(dirname "$db")"
rm -f "$db" "$db-wal" "$db-shm"

echo "== the agent's output, passed through by wrapper =="
set +e
target/release/wrapper demo --db "$db" -- sh scripts/demo-agent.sh
code=$?
set -e
echo "== wrapper exited $code (the agent's own exit code) =="
echo

query() {
  if command -v sqlite3 >/dev/null 2>&1; then
    sqlite3 -header -column "$db" "$1"
  else
    python3 - "$db" "$1" <<'PY'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
cur = con.execute(sys.argv[2])
cols = [d[0] for d in cur.description]
rows = [[("" if v is None else str(v)) for v in r] for r in cur.fetchall()]
w = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
print("  ".join(c.ljust(w[i]) for i, c in enumerate(cols)))
print("  ".join("-" * w[i] for i in range(len(cols))))
for r in rows:
    print("  ".join(v.ljust(w[i]) for i, v in enumerate(r)))
PY
  fi
}

echo "== $db: the session =="
query "SELECT agent_name, state, exit_code, total_lines_processed AS lines, total_extraction_events AS events FROM process_sessions"
echo
echo "== its events =="
query "SELECT line_number AS line, stream, event_type, pattern, risk_level AS risk, substr(matched_value, 1, 60) AS value FROM extraction_events ORDER BY line_number, id"
echo
echo "== secrets are masked before anything is stored (the terminal above showed the key) =="
query "SELECT line_number AS line, event_type, original_line FROM extraction_events WHERE original_line LIKE '%REDACTED%'"
echo
echo "Query it yourself:  sqlite3 $db 'SELECT event_type, count(*) FROM extraction_events GROUP BY 1'"
