#!/usr/bin/env bash
# Where the time goes, per thread: `perf record` of wrapper's pipelines on the standard input,
# then each thread's share of all CPU samples, its hottest functions and a timeline of when it
# ran (docs/PERFORMANCE.md, issue 17: "where a target is not reached, the note shows the
# profile that limits it").
#
#   scripts/profile.sh                    # database pipeline, 200 k lines
#   scripts/profile.sh db nocapture pty-db extract
#   LINES=1000000 TOP=12 scripts/profile.sh db
#   NO_BUILD=1 WRAPPER=path/to/wrapper scripts/profile.sh
#
# Modes: db (`bench --db`, capture on), nocapture (`--no-capture`), extract (`--events-out`
# to a file, no database), pty-db (`--pty bench --db`, the input `cat`ed on the pty, stdin
# /dev/null so no echo). Samples are `cpu-clock` (also in a VM without hardware counters) at
# FREQ Hz, no call graphs: shares and self time, which is what says which thread limits a
# run and what it does. A whole run on two cores is CPU-bound when the threads' shares add up
# to about twice its wall time; then every thread's CPU counts, not only the longest one's.
#
# The timeline is each thread's samples per STEP_MS (100; 0 for none) and what the cpus spent
# elsewhere: it shows a thread that stalls while another works alone.
#
# Needs perf (Debian: `apt-get install linux-perf`) and perf_event_paranoid <= 1 (or root).
# Knobs: LINES (200000), FREQ (2000), TOP (8 functions per thread), STEP_MS, WRAPPER, NO_BUILD,
# PROFILE_TMP (where input, databases and perf data go; default $TMPDIR or /tmp).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

LINES=${LINES:-200000}
FREQ=${FREQ:-2000}
TOP=${TOP:-8}
STEP_MS=${STEP_MS:-100}
MODES=("$@")
[ ${#MODES[@]} -gt 0 ] || MODES=(db)
for m in "${MODES[@]}"; do
  case $m in
    db | nocapture | extract | pty-db) ;;
    *) echo "profile: unknown mode '$m' (db, nocapture, extract, pty-db)" >&2; exit 2 ;;
  esac
done

if ! command -v perf > /dev/null; then
  echo "profile: perf is not installed (Debian: apt-get install linux-perf)" >&2
  exit 2
fi
if ! perf stat -e cpu-clock true > /dev/null 2>&1; then
  echo "profile: perf cannot count here: run as root or set kernel.perf_event_paranoid=1" >&2
  exit 2
fi

# shellcheck source=scripts/bench_env.sh
source "$ROOT/scripts/bench_env.sh"
bench_setup profile "${PROFILE_TMP:-}" "$LINES"
echo "input: $(wc -c < "$WORK/input.log") bytes; wrapper: $("$W" --version)"
echo "machine: $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)"

for mode in "${MODES[@]}"; do
  db=$WORK/$mode.db
  rm -f "$db" "$db-wal" "$db-shm"
  case $mode in
    db) cmd=("$W" bench --db "$db" -- cat "$WORK/input.log") ;;
    nocapture) cmd=("$W" bench --db "$db" --no-capture -- cat "$WORK/input.log") ;;
    extract) cmd=("$W" bench --events-out "$WORK/events.jsonl" -- cat "$WORK/input.log") ;;
    pty-db) cmd=("$W" --pty bench --db "$db" -- cat "$WORK/input.log") ;;
  esac
  # Once as it is, for its wall and CPU time (perf's own start and finish would be counted),
  # then under perf.
  TIMEFORMAT="%R %U %S"
  times=$( { time "${cmd[@]}" < /dev/null > /dev/null 2> "$WORK/err"; } 2>&1 ) || {
    echo "profile: $mode failed:" >&2
    cat "$WORK/err" >&2
    exit 1
  }
  rm -f "$db" "$db-wal" "$db-shm"
  data=$WORK/$mode.perf
  perf record -q -e cpu-clock -F "$FREQ" -o "$data" -- "${cmd[@]}" < /dev/null > /dev/null 2> "$WORK/err" || {
    echo "profile: $mode failed under perf:" >&2
    cat "$WORK/err" >&2
    exit 1
  }
  echo
  echo "== $mode: ${cmd[*]##*/}"
  read -r wall user sys <<< "$times"
  echo "  run alone: wall $wall s, CPU $user user + $sys system s"
  # Shares by thread (comm), and the samples they stand for as CPU seconds at FREQ Hz.
  by_thread=$(perf report -i "$data" --stdio --sort comm -g none --no-children 2> /dev/null)
  awk -v f="$FREQ" '
        /^# Samples: / { n = $3; sub(/K$/, "000", n); total = n }
        /^ *[0-9.]+%/ { pct = $1; sub(/%/, "", pct); $1 = ""; name = substr($0, 2);
                        rows[++k] = sprintf("  %-20s %6.1f%%", name, pct); share[k] = pct }
        END {
          printf "  under perf: %d samples = %.2f CPU s, by thread:\n", total, total / f
          for (i = 1; i <= k; i++) if (share[i] >= 0.5) print rows[i]
        }' <<< "$by_thread"
  # Each busy thread's hottest functions (self time, share of all samples). Sorted by thread
  # and symbol together: `--comm X --sort sym` adds other threads' samples of the same
  # function to X's (the twelfth session's lists had the masking DFA of the capture thread in
  # extraction's).
  by_sym=$(perf report -i "$data" --stdio --sort comm,dso,sym -g none --no-children 2> /dev/null \
    | grep -E '^ *[0-9.]+%')
  awk '/^ *[0-9.]+%/ { pct = $1; sub(/%/, "", pct); if (pct + 0 >= 5) { $1 = ""; print substr($0, 2) } }' <<< "$by_thread" \
    | while read -r comm; do
        echo "  -- $comm"
        awk -v c="$comm" -v n="$TOP" '$2 == c { $2 = ""; if (++k <= n) print "     " $0 }' \
          <<< "$by_sym" | cut -c1-110
      done
  # When each thread ran: samples per STEP_MS, and what the cpus did not spend on this run
  # (idle, or other processes). A thread that stops while another works alone is a stall.
  if [ "$STEP_MS" -gt 0 ]; then
    perf script -i "$data" -F comm,time 2> /dev/null | awk -v step="$STEP_MS" -v f="$FREQ" \
      -v cpus="$(nproc)" '
        { t = $NF; sub(/:$/, "", t); $NF = ""; c = $0; sub(/ +$/, "", c); sub(/^ +/, "", c)
          if (t0 == "") t0 = t
          k = int((t - t0) * 1000 / step); n[k, c]++; tot[k]++; if (k > last) last = k
          if (!(c in seen)) { seen[c] = 1; names[++m] = c } all[c]++ }
        END {
          cap = cpus * f * step / 1000
          printf "  timeline, samples per %d ms (of %d the cpus can give):\n  %8s", step, cap, "ms"
          for (i = 1; i <= m; i++) if (all[names[i]] * 100 >= NR) { l = names[i]; sub(/^wrapper-/, "", l); printf " %9.9s", l }
          printf " %9s\n", "not ours"
          for (k = 0; k <= last; k++) {
            printf "  %8d", k * step
            for (i = 1; i <= m; i++) if (all[names[i]] * 100 >= NR) printf " %9d", n[k, names[i]]
            idle = cap - tot[k]; printf " %9d\n", (idle > 0 ? idle : 0)
          }
        }'
  fi
done
