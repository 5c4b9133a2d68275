# Sourced by scripts/bench.sh and scripts/profile.sh (not run on its own): what both need before
# they measure anything.
#
#   bench_setup NAME TMP_DIR LINES
#
# builds the release binary (unless NO_BUILD is set) and checks it (W: the binary, or WRAPPER),
# makes a work directory under TMP_DIR (else $TMPDIR, else /tmp) that is removed at exit (WORK),
# keeps the user's config, patterns, database and log level out of the runs, and writes the
# standard input of LINES lines to $WORK/input.log with ../shared/bench/gen_log.py, or this
# repository's identical generator when ../shared is absent (SRC says which).
bench_setup() {
  local name=$1 tmp=$2 lines=$3
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
  if [ -z "${NO_BUILD:-}" ]; then
    echo "building: cargo build --release" >&2
    cargo build --release --quiet
  fi
  W=${WRAPPER:-$CARGO_TARGET_DIR/release/wrapper}
  [ -x "$W" ] || { echo "$name: no wrapper binary at $W" >&2; exit 2; }

  WORK=$(mktemp -d "${tmp:-${TMPDIR:-/tmp}}/wrapper-$name.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
  trap 'exit 130' INT TERM

  # No user config, user patterns or database from the environment.
  export XDG_CONFIG_HOME=$WORK/config XDG_DATA_HOME=$WORK/data
  unset WRAPPER_DB WRAPPER_ENV WRAPPER_ENABLE_DB RUST_LOG
  export NO_COLOR=1 PYTHONDONTWRITEBYTECODE=1

  local gen shared
  shared=$(git -C "$ROOT" rev-parse --show-toplevel 2> /dev/null || echo "$ROOT")/../shared/bench/gen_log.py
  if [ -f "$shared" ]; then
    gen=$shared; SRC="../shared/bench/gen_log.py $lines"
  else
    gen=$ROOT/scripts/gen_log.py; SRC="scripts/gen_log.py $lines (../shared absent; same output)"
  fi
  echo "input: $SRC" >&2
  python3 "$gen" "$lines" > "$WORK/input.log"
}
