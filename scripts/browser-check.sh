#!/usr/bin/env bash
# The page of `wrapper serve` in a real browser: a test database recorded by the real wrapper,
# the real server on a loopback port with a token, headless Chromium opening the printed URL
# (the token in the fragment → the page keeps it and sends it as a header), then DOM checks on what the page rendered and a screenshot.
#
#   scripts/browser-check.sh                 # screenshot to docs/serve-page.png
#   SHOT=/tmp/x.png scripts/browser-check.sh
#
# Needs chromium (Debian: apt-get install -y chromium). Exits non-zero when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SHOT=${SHOT:-$ROOT/docs/serve-page.png}
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
[ -n "$CHROMIUM" ] || { echo "browser-check: chromium is not installed" >&2; exit 2; }

cargo build --quiet
W=$ROOT/target/debug/wrapper
WORK=$(mktemp -d)
SERVER=
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
export XDG_CONFIG_HOME=$WORK/config XDG_DATA_HOME=$WORK/data NO_COLOR=1
unset WRAPPER_DB WRAPPER_ENV WRAPPER_ENABLE_DB WRAPPER_SERVE_TOKEN
DB=$WORK/w.db

# Sessions of two agents, recorded by the real wrapper with the built-in rules.
"$W" codex --db "$DB" --session-id check-codex-1 -- sh -c '
  echo "Reading src/parser.rs"
  echo "error[E0308]: mismatched types"
  echo "  --> src/parser.rs:42:17"
  echo "warning: unused variable: \`tmp\`"
  echo "test result: FAILED. 11 passed; 1 failed; 0 ignored"
  printf "Do you want to run rm -rf target? [y/N] \n"
  exit 1' > /dev/null || true
"$W" claude --db "$DB" --session-id check-claude-1 -- sh -c '
  echo "$ cargo test"
  echo "test result: ok. 12 passed; 0 failed; 0 ignored"' > /dev/null
"$W" search --db "$DB" mismatched > /dev/null   # bring the search index up to date

TOKEN=browsercheck-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
WRAPPER_SERVE_TOKEN=$TOKEN "$W" serve --db "$DB" --listen 127.0.0.1:0 > "$WORK/serve.out" 2> "$WORK/serve.err" &
SERVER=$!
for _ in $(seq 1 200); do
  grep -q 'http://' "$WORK/serve.out" 2>/dev/null && break
  sleep 0.05
done
BASE=$(grep -o 'http://[0-9.:]*/' "$WORK/serve.out" | head -1)
[ -n "$BASE" ] || { echo "browser-check: the server did not start" >&2; cat "$WORK/serve.err" >&2; exit 1; }
URL="${BASE}#token=${TOKEN}&session=check-codex-1"

chrome() {
  "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --disable-extensions \
    --user-data-dir="$WORK/profile-$1" --window-size=1280,1280 --virtual-time-budget=5000 \
    "${@:2}" 2> "$WORK/chrome-$1.err"
}

chrome dom --dump-dom "$URL" > "$WORK/dom.html"
fail=0
check() {
  if grep -q -- "$2" "$WORK/dom.html"; then echo "ok   $1"; else echo "FAIL $1 (no ${2@Q} in the DOM)"; fail=1; fi
}
check "the page finished loading"           'data-ready="1"'
check "the session list shows both agents"  'data-session="check-claude-1"'
check "the codex session is selected"       'class="state-failed selected"'
check "its timeline has the error event"    'class="event type-error"'
check "the error's text"                    'mismatched types'
check "the prompt and its risk"             'Do you want to run rm -rf target?'
check "state changes in the timeline"       'class="state-change state-failed"'
check "the event counts"                    'test_result 1'
check "the replay player is shown"         'class="ap-wrapper'
python3 - "$WORK/dom.html" <<'PY' && echo "ok   the player shows the captured screen" || { echo "FAIL the player does not show the captured output"; fail=1; }
import re, sys
dom = open(sys.argv[1], encoding="utf-8").read()
player = dom[dom.find('id="player"'):]
player = player[:player.find('>Timeline')]
text = re.sub(r"<[^>]+>", "", player)
sys.exit(0 if "mismatched types" in text.replace("\xa0", " ") else 1)
PY
if grep -q 'id="player-box"[^>]*hidden' "$WORK/dom.html"; then echo "FAIL the player box is hidden"; fail=1; fi

mkdir -p "$(dirname "$SHOT")"
chrome shot --screenshot="$SHOT" --hide-scrollbars "$URL" > /dev/null
[ -s "$SHOT" ] && echo "ok   screenshot $SHOT" || { echo "FAIL no screenshot"; fail=1; }

# Without the token the page loads (it holds no data) and the API refuses it every row.
chrome noauth --dump-dom "${BASE}" > "$WORK/noauth.html"
if grep -q 'this server needs its token' "$WORK/noauth.html" && ! grep -q 'data-session=' "$WORK/noauth.html"; then
  echo "ok   no token, no data"
else
  echo "FAIL the page showed data without the token"; fail=1
fi
# An older URL with the token in the query: 303 to the fragment, then the page as above.
chrome old --dump-dom "${BASE}?token=${TOKEN}" > "$WORK/old.html"
if grep -q 'data-session="check-claude-1"' "$WORK/old.html"; then echo "ok   the older ?token= URL"; else echo "FAIL the older ?token= URL"; fail=1; fi
exit $fail
