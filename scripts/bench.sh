#!/usr/bin/env bash
# Whole-process benchmarks (SPEC §9): wrapper against `cat | cat`, `tee`, `script` and `ts`
# on the standard input, plus partial-line latency, start-up cost and peak memory.
#
#   scripts/bench.sh                      # everything, ~5-10 minutes on 2 cores
#   RUNS=9 scripts/bench.sh               # more timed rounds (default 5, plus one warm-up)
#   BIG_GB=10 scripts/bench.sh            # the full 10 GiB memory run (default 1)
#   SKIP=memory,latency scripts/bench.sh  # throughput table only (also: otlp, pty, queries)
#   NO_BUILD=1 WRAPPER=path/to/wrapper scripts/bench.sh   # benchmark a given binary
#
# Knobs: RUNS, LINES (1000000), BIG_GB (1), LONG_GB (1), LAT_SAMPLES (200), START_RUNS (30),
# SKIP, BENCH_TMP (where inputs and databases go; default $TMPDIR or /tmp), WRAPPER, NO_BUILD.
# Prints the tables and writes every figure, with all samples and a description of the
# machine, to target/bench/latest.json. Exits non-zero if a check fails (output not byte-exact,
# committed events != events extraction produced, lines lost). See docs/PERFORMANCE.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

RUNS=${RUNS:-5}
LINES=${LINES:-1000000}
BIG_GB=${BIG_GB:-1}
LONG_GB=${LONG_GB:-1}
LAT_SAMPLES=${LAT_SAMPLES:-200}
START_RUNS=${START_RUNS:-30}
SKIP=${SKIP:-}
# shellcheck source=scripts/bench_env.sh
source "$ROOT/scripts/bench_env.sh"
bench_setup bench "${BENCH_TMP:-}" "$LINES"

mkdir -p "$ROOT/target/bench"
python3 "$ROOT/scripts/bench.py" \
  --wrapper "$W" --input "$WORK/input.log" --input-source "$SRC" --work "$WORK" \
  --json "$ROOT/target/bench/latest.json" --runs "$RUNS" --big-gb "$BIG_GB" \
  --long-gb "$LONG_GB" --lat-samples "$LAT_SAMPLES" --start-runs "$START_RUNS" --skip "$SKIP"

# PTY mode against `script` in the same run (scripts/pty_bench.py: the input piped into `cat`
# on a pty under each, best of 2, with CPU per million lines and peak RSS).
if [[ ",$SKIP," != *,pty,* ]]; then
  python3 "$ROOT/scripts/pty_bench.py" --wrapper "$W" --skip-latency --rounds 2 --lines "$LINES"
fi
