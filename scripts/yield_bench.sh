#!/usr/bin/env bash
# Does recording slow the agent down? An agent that floods its output (the standard input,
# `cat` twice) while two CPU-bound jobs of its own run: each job's time alone, then under
# `wrapper --db`, rounds interleaved; the session's whole time beside them. wrapper's
# recording threads run at a lower priority (src/run/nice.rs): the jobs should take about
# what they take alone plus their share of the pump, however much recording there is.
#
#   scripts/yield_bench.sh                # 1 M lines, 4 rounds
#   LINES=200000 ROUNDS=2 WRAPPER=path/to/wrapper NO_BUILD=1 scripts/yield_bench.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
LINES=${LINES:-1000000}
ROUNDS=${ROUNDS:-4}
W=${WRAPPER:-target/release/wrapper}
[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
python3 scripts/gen_log.py "$LINES" > "$T/in.log"
cat > "$T/work.py" <<'PY'
import sys, time
t = time.monotonic()
s = 0
for i in range(25_000_000):
    s += i
with open(sys.argv[1], "a") as f:
    f.write(f"{time.monotonic() - t:.3f}\n")
PY
echo "# yield_bench: $(nproc) cpus, load $(cut -d' ' -f1 /proc/loadavg), $LINES lines x2"
python3 "$T/work.py" "$T/alone.t"
echo "one job alone: $(cat "$T/alone.t") s"
for r in $(seq "$ROUNDS"); do
  rm -f "$T/jobs.t" "$T/db.db"*
  start=$(date +%s%N)
  "$W" bench --db "$T/db.db" -- sh -c \
    "python3 '$T/work.py' '$T/jobs.t' & python3 '$T/work.py' '$T/jobs.t' & cat '$T/in.log' '$T/in.log'; wait" \
    > /dev/null
  end=$(date +%s%N)
  ms=$(((end - start) / 1000000))
  printf 'round %d: jobs %ss; session %d.%03d s\n' "$r" "$(sort -n "$T/jobs.t" | tr '\n' ' ')" \
    $((ms / 1000)) $((ms % 1000))
done
