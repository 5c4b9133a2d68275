#!/usr/bin/env bash
# Live end-to-end run of the REAL agent CLIs (codex, claude, gemini) against the scripted mock
# model server (scripts/mock_model.py) on 127.0.0.1. Nothing leaves the machine; keys are dummies.
#
#   scripts/real-agents.sh                 run every scenario, check the outputs and screens
#   scripts/real-agents.sh --record        ... and copy the outputs to tests/fixtures/agents/
#   scripts/real-agents.sh --wrapper       run every agent through target/debug/wrapper too
#                                          (with --pty when the binary has it; pipe mode otherwise)
#   scripts/real-agents.sh --only claude   just one agent (codex | claude | gemini)
#   scripts/real-agents.sh --scenarios test_fail   just these (fix_build,test_fail; the files
#                                          are tests/fixtures/agents/scenarios/NAME.json)
#   scripts/real-agents.sh --keep          keep the work directory for inspection
#
# Needs: node/npm (the clients are installed with `npm install -g` when missing), python3 with
# pytest (installed with pip when missing), gcc, git, tmux, asciinema (apt-get install tmux
# asciinema). Runs the TUIs in a tmux server of its own (socket `wrapper-real-agents`), records
# their pty output with timing through `asciinema rec` (asciicast v2), and ends every process
# it started by pid: the mock, the tmux server, and the `codex app-server` daemons the Codex TUI
# leaves behind.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SCENARIO=$REPO/tests/fixtures/agents/scenarios/fix_build.json
FIX=$REPO/tests/fixtures/agents
RECORD=0 KEEP=0 USE_WRAPPER=0 ONLY="" SCENARIOS="fix_build test_fail"
while (($#)); do
    case $1 in
    --record) RECORD=1 ;;
    --keep) KEEP=1 ;;
    --wrapper) USE_WRAPPER=1 ;;
    --only) ONLY=$2; shift ;;
    --scenarios) SCENARIOS=${2//,/ }; shift ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "real-agents.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
want() { [[ -z $ONLY || $ONLY == "$1" ]]; }
want_s() { [[ " $SCENARIOS " == *" $1 "* ]]; }

# Fixed paths, so that every recording shows the same directories. CODEX_HOME is kept out of
# /tmp: Codex refuses to create its helper binaries under a temporary directory and says so on
# the first line of every run.
WORK=/tmp/wrapper-real-agents
PROJ=$WORK/proj
OUT=$WORK/out
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/wrapper-real-agents
export CODEX_HOME=$CACHE/codex-home
CLAUDE_DIR=$WORK/claude-config
GEMINI_HOME=$WORK/gemini-home
TMUX_SOCK=wrapper-real-agents
KEY=sk-ant-mock-0000000000000000dummy # a dummy: the mock accepts anything
COLS=120 ROWS=40
FAILS=0
MOCK_PID=""

log() { printf '\033[1m== %s\033[0m\n' "$*"; }
check() { # check DESCRIPTION FILE EXTENDED-REGEX
    if grep -qE -- "$3" "$2" 2>/dev/null; then
        printf '  ok    %s\n' "$1"
    else
        printf '  FAIL  %s  (/%s/ not in %s)\n' "$1" "$3" "$2"
        FAILS=$((FAILS + 1))
    fi
}

# ---------------------------------------------------------------- clean-up, by pid
codex_daemon_pids() {
    # The Codex TUI starts `codex app-server` daemons that outlive it; they run from (and keep
    # their pid files in) our CODEX_HOME, which is how ours are told from anyone else's.
    local f p
    for f in "$CODEX_HOME"/app-server-daemon/*.pid; do
        # {"pid":12124,"processStartTime":...}
        [[ -f $f ]] && grep -o '"pid":[0-9]*' "$f" | head -1 | cut -d: -f2
    done
    for p in /proc/[0-9]*; do
        tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q -- "$CODEX_HOME/" && echo "${p#/proc/}"
    done
    return 0
}
end_pids() { # end_pids PID...  (TERM, then KILL what is left after 3 s)
    local p alive=() i
    for p in "$@"; do kill -0 "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null && alive+=("$p"); done
    for i in $(seq 30); do
        local left=()
        for p in "${alive[@]}"; do kill -0 "$p" 2>/dev/null && left+=("$p"); done
        alive=("${left[@]}")
        ((${#alive[@]})) || return 0
        sleep 0.1
    done
    kill -KILL "${alive[@]}" 2>/dev/null || true
}
cleanup() {
    local pids
    tmux -L "$TMUX_SOCK" kill-server 2>/dev/null || true
    mapfile -t pids < <(codex_daemon_pids | sort -u)
    ((${#pids[@]})) && end_pids "${pids[@]}"
    [[ -n $MOCK_PID ]] && end_pids "$MOCK_PID"
    if ((KEEP)); then echo "work directory kept: $WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# ---------------------------------------------------------------- prerequisites
need() { command -v "$1" >/dev/null || { echo "real-agents.sh: needs $1 ($2)" >&2; exit 2; }; }
need tmux "apt-get install -y tmux"
need asciinema "apt-get install -y asciinema"
need gcc "apt-get install -y gcc"
need git "apt-get install -y git"
need python3 "apt-get install -y python3"
# npm picks the newest release whose `engines` the machine's Node.js satisfies: on Node 20
# that is Claude Code 2.1.197, while 2.1.3xx (Node >= 22 declared, a native binary that runs
# on 20) needs naming: CLAUDE_PKG=@anthropic-ai/claude-code@2.1.332 (likewise CODEX_PKG,
# GEMINI_PKG).
for pkg in "codex:${CODEX_PKG:-@openai/codex}" "claude:${CLAUDE_PKG:-@anthropic-ai/claude-code}" \
    "gemini:${GEMINI_PKG:-@google/gemini-cli}"; do
    bin=${pkg%%:*}
    if want "$bin" && ! command -v "$bin" >/dev/null; then
        need npm "apt-get install -y npm"
        log "installing ${pkg#*:}"
        npm install -g "${pkg#*:}"
    fi
done
python3 -c 'import pytest' 2>/dev/null || python3 -m pip install -q pytest

WRAPPER=$REPO/target/debug/wrapper
PTY_FLAG=""
if ((USE_WRAPPER)); then
    [[ -x $WRAPPER ]] || (cd "$REPO" && cargo build -q)
    "$WRAPPER" --help 2>&1 | grep -q -- '--pty' && PTY_FLAG=--pty
    log "through wrapper ${PTY_FLAG:-(pipe mode: this wrapper has no --pty)}"
fi
# wrapped AGENT NAME CMD...: the command line, through wrapper when asked (db per run in $OUT).
# A TUI goes through wrapper only with --pty: in pipe mode the agent would see no terminal.
wrapped() {
    local agent=$1 name=$2
    shift 2
    if ((USE_WRAPPER)) && [[ $name != *tui* || -n $PTY_FLAG ]]; then
        printf '%q ' "$WRAPPER" "$agent" --db "$OUT/$name.db" $PTY_FLAG -- "$@"
    else
        printf '%q ' "$@"
    fi
}

rm -rf "$WORK" "$CODEX_HOME"
mkdir -p "$WORK" "$OUT" "$CODEX_HOME" "$CLAUDE_DIR" "$GEMINI_HOME/.gemini"

# What a run printed on stderr: through `wrapper --pty` the agent has one terminal for both
# streams (and colours what it prints there), so it is in the .stdout file.
err_of() {
    if ((USE_WRAPPER)) && [[ -n $PTY_FLAG ]]; then
        echo "$OUT/$1.stdout"
    else
        echo "$OUT/$1.stderr"
    fi
}
# A line start, past a colour sequence if there is one.
SOL='^(.\[[0-9;]*m)?'

# ---------------------------------------------------------------- the project the agents work on
make_project() {
    rm -rf "$PROJ"
    mkdir -p "$PROJ"
    cat >"$PROJ/broken.c" <<'EOF'
#include <stdio.h>

int main(void) {
    printf("hi\n")
    return 0;
}
EOF
    cat >"$PROJ/test_ok.py" <<'EOF'
def test_add():
    assert 1 + 1 == 2


def test_str():
    assert "a".upper() == "A"
EOF
    # files the scenario adds to the project ("files": {"name": "content"})
    python3 - "$SCENARIO" "$PROJ" <<'PY'
import json, os, sys
for name, text in json.load(open(sys.argv[1])).get("files", {}).items():
    with open(os.path.join(sys.argv[2], name), "w") as f:
        f.write(text)
PY
    git -C "$PROJ" init -q
}

# ---------------------------------------------------------------- the mock model
start_mock() { # start_mock [PORT]: the mock model playing $SCENARIO
    rm -f "$WORK/port"
    python3 "$REPO/scripts/mock_model.py" --scenario "$SCENARIO" --log "$OUT/mock-requests.jsonl" \
        --port "${1:-0}" --port-file "$WORK/port" >"$WORK/mock.out" 2>&1 &
    MOCK_PID=$!
    for _ in $(seq 100); do [[ -s $WORK/port ]] && break; sleep 0.05; done
    [[ -s $WORK/port ]] || { echo "real-agents.sh: mock model did not start:" >&2; cat "$WORK/mock.out" >&2; exit 1; }
    PORT=$(cat "$WORK/port")
    BASE=http://127.0.0.1:$PORT
    log "mock model on $BASE (pid $MOCK_PID), scenario $(basename "$SCENARIO")"
}
start_mock

# ---------------------------------------------------------------- agent configuration
cat >"$CODEX_HOME/config.toml" <<EOF
model = "mock-model"
model_provider = "mock"
check_for_update_on_startup = false

[model_providers.mock]
name = "mock"
base_url = "$BASE/v1"
env_key = "MOCK_API_KEY"
wire_api = "responses"

[projects."$PROJ"]
trust_level = "trusted"
EOF
python3 - "$CLAUDE_DIR/.claude.json" "$KEY" "$PROJ" <<'EOF'
import json, sys
path, key, proj = sys.argv[1:]
json.dump({"hasCompletedOnboarding": True, "theme": "dark", "numStartups": 5,
           "hasSeenTasksHint": True, "autoUpdates": False,
           "customApiKeyResponses": {"approved": [key[-20:]], "rejected": []},
           "projects": {proj: {"hasTrustDialogAccepted": True,
                               "hasCompletedProjectOnboarding": True, "allowedTools": []}}},
          open(path, "w"), indent=1)
EOF
cat >"$GEMINI_HOME/.gemini/settings.json" <<'EOF'
{"security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": false}},
 "privacy": {"usageStatisticsEnabled": false},
 "general": {"disableAutoUpdate": true, "disableUpdateNag": true},
 "ui": {"hideTips": true, "hideBanner": true}, "telemetry": {"enabled": false}}
EOF
CODEX_ENV=(CODEX_HOME="$CODEX_HOME" MOCK_API_KEY=dummy)
CLAUDE_ENV=(CLAUDE_CONFIG_DIR="$CLAUDE_DIR" ANTHROPIC_BASE_URL="$BASE" ANTHROPIC_API_KEY="$KEY"
    DISABLE_TELEMETRY=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_AUTOUPDATER=1)
# Claude Code 2.1.3xx starts in auto mode; against the mock that is a dialog of its own, so
# its TUI runs in manual mode (which 2.1.1xx does not know: it asks by default).
CLAUDE_TUI_ARGS=()
if want claude && claude --help 2>/dev/null | grep -q '"manual"'; then
    CLAUDE_TUI_ARGS=(--permission-mode manual)
fi
GEMINI_ENV=(HOME="$GEMINI_HOME" GEMINI_API_KEY=dummy GOOGLE_GEMINI_BASE_URL="$BASE"
    GEMINI_CLI_NO_RELAUNCH=1)
PROMPT="Fix the build"

newest() { # newest DIR GLOB: the most recently written matching file (empty if none)
    find "$1" -name "$2" -type f -printf '%T@ %p\n' 2>/dev/null | sort -n | tail -1 | cut -d' ' -f2-
}
# run_batch NAME AGENT ENV-ARRAY-NAME LOG-DIR LOG-GLOB CMD...: a non-interactive run with no
# stdin, stdout and stderr apart; then the agent's own session log that run wrote (the newest
# LOG-GLOB under LOG-DIR) is kept as NAME.session.<ext>; then the same run again with stdout and
# stderr merged in order, as a person at the terminal saw it (NAME.merged.txt).
run_batch() {
    local name=$1 agent=$2 envname=$3[@] logdir=$4 glob=$5
    shift 5
    make_project
    log "$name: $*"
    (cd "$PROJ" && env "${!envname}" timeout 120 bash -c "$(wrapped "$agent" "$name" "$@")" \
        </dev/null >"$OUT/$name.stdout" 2>"$OUT/$name.stderr") || echo "  (exit $?)"
    local f
    f=$(newest "$logdir" "$glob")
    [[ -n $f ]] && cp "$f" "$OUT/$name.session.${f##*.}"
    make_project
    (cd "$PROJ" && env "${!envname}" timeout 120 bash -c "$(wrapped "$agent" "$name-merged" "$@") 2>&1" \
        </dev/null >"$OUT/$name.merged.txt" 2>&1) || true
}

# ---------------------------------------------------------------- tmux + asciinema helpers
T() { tmux -L "$TMUX_SOCK" "$@"; }
screen() { T capture-pane -p -t "$1"; }
wait_screen() { # wait_screen SESSION ERE [SECONDS]
    local end=$((SECONDS + ${3:-60}))
    while ((SECONDS < end)); do
        screen "$1" 2>/dev/null | grep -qE -- "$2" && return 0
        sleep 0.25
    done
    echo "  FAIL  timeout waiting for /$2/ on $1's screen:" >&2
    screen "$1" >&2 || true
    FAILS=$((FAILS + 1))
    return 1
}
# type_line SESSION TEXT DONE-ERE: type, wait for the echo, Enter; Enter again if the TUI took
# the first one as part of a paste (Codex's paste-burst detection does that to fast input).
type_line() {
    T send-keys -t "$1" -l "$2"
    wait_screen "$1" "$2" 20 || return 1
    sleep 1
    T send-keys -t "$1" Enter
    local end=$((SECONDS + 4))
    while ((SECONDS < end)); do
        screen "$1" | grep -qE -- "$3" && return 0
        sleep 0.25
    done
    T send-keys -t "$1" Enter
}
# start_tui NAME ENV-ARRAY-NAME AGENT CMD...: the agent in a fresh COLSxROWS tmux session,
# recorded by asciinema into $OUT/NAME.cast
start_tui() {
    local name=$1 envname=$2[@] agent=$3
    shift 3
    make_project
    local cmd
    cmd=$(wrapped "$agent" "$name" "$@")
    log "$name: $cmd (tmux ${COLS}x$ROWS, asciinema)"
    T new-session -d -s "$name" -x "$COLS" -y "$ROWS" -c "$PROJ" \
        "$(printf '%q ' env "${!envname}" asciinema rec -q --overwrite \
            -c "$cmd" "$OUT/$name.cast"); echo __EXITED__" \; set-option remain-on-exit on
}
save_screen() { # save_screen SESSION FILE-SUFFIX
    screen "$1" >"$OUT/$1.$2.screen.txt"
}
dialog() { # dialog SESSION ERE: the question ERE names and the command shown under it, if up
    screen "$1" | grep -qE "$2" && screen "$1" | awk '/^ *╌/ { if (getline) print; exit }'
}
answer() { # answer SESSION KEY ERE: press KEY on the dialog ERE shows, once it has stood 1 s
    # (Claude Code 2.1.332 on 2026-12-04 let a key pressed at once pass unread, with or without
    # wrapper); once more if the same dialog, for the same command, still shows 8 s later (never
    # on the next one)
    local first end
    first=$(dialog "$1" "$3")
    sleep 1
    for _ in 1 2; do
        T send-keys -t "$1" "$2"
        end=$((SECONDS + 8))
        while ((SECONDS < end)); do
            [[ $(dialog "$1" "$3") == "$first" ]] || return 0
            sleep 0.2
        done
    done
}
no_key() { # no_key SESSION FILE-SUFFIX: the number of the "No" option on a saved Claude dialog
    grep -oE '([0-9])\. No$' "$OUT/$1.$2.screen.txt" | head -1 | cut -c1 || echo 3
}
finish_tui() { # finish_tui SESSION: keep the final screen and scrollback, quit with Ctrl-C
    save_screen "$1" final
    T capture-pane -p -S - -E - -t "$1" >"$OUT/$1.scrollback.txt"
    local i
    # Codex quits on the first Ctrl-C; Claude says "Press Ctrl-C again to exit" and quits on
    # the second. A Ctrl-C more, to an agent already shutting down, would kill asciinema.
    local end
    dead() { [[ $(T display-message -p -t "$1" '#{pane_dead}') == 1 ]]; }
    T send-keys -t "$1" C-c
    end=$((SECONDS + 5))
    until dead "$1" || screen "$1" | grep -qi 'again to exit' || ((SECONDS >= end)); do sleep 0.1; done
    dead "$1" || T send-keys -t "$1" C-c
    end=$((SECONDS + 15))
    until dead "$1" || ((SECONDS >= end)); do sleep 0.1; done
    if [[ $(T display-message -p -t "$1" '#{pane_dead}') != 1 ]] || ! screen "$1" | grep -q __EXITED__; then
        echo "  FAIL  $1 did not exit cleanly on Ctrl-C" >&2
        FAILS=$((FAILS + 1))
    fi
    T capture-pane -p -S - -E - -t "$1" >"$OUT/$1.exit.screen.txt"
    T kill-session -t "$1" 2>/dev/null || true
}

# ================================================================ codex
CLOG=("$CODEX_HOME/sessions" 'rollout-*.jsonl')
KLOG=("$CLAUDE_DIR/projects" '*.jsonl')
GLOG=("$GEMINI_HOME/.gemini" 'session-*.json*')
for a in codex claude gemini; do want $a && $a --version >"$OUT/$a.version"; done
want_s fix_build || ONLY_S2=1
if want codex && [[ -z ${ONLY_S2:-} ]]; then
    run_batch codex-exec-json codex CODEX_ENV "${CLOG[@]}" codex exec --json --skip-git-repo-check "$PROMPT"
    run_batch codex-exec-text codex CODEX_ENV "${CLOG[@]}" codex exec --skip-git-repo-check "$PROMPT"
    check "exec --json: failing gcc exit 1" "$OUT/codex-exec-json.stdout" '"command":"[^"]*gcc broken.c[^"]*".*"exit_code":1,"status":"failed"'
    check "exec --json: pytest passed" "$OUT/codex-exec-json.stdout" '2 passed.*"exit_code":0,"status":"completed"'
    check "exec --json: fenced code block" "$OUT/codex-exec-json.stdout" '```c'
    check "exec text: failing gcc" "$(err_of codex-exec-text)" "$SOL"' exited 1 in '
    check "exec text: escalation rejected" "$(err_of codex-exec-text)" 'reject command'

    # The TUI, approval policy `on-request`: gcc runs in the sandbox without asking; the model
    # `mock-model-tui` makes the mock ask for escalation for pytest (answered yes) and for the
    # rm (answered no, Esc).
    start_tui codex-tui CODEX_ENV codex codex -a on-request -m mock-model-tui
    if wait_screen codex-tui 'Ask Codex to do anything' 60; then
        type_line codex-tui "$PROMPT" 'Working|Would you like|compile'
        wait_screen codex-tui 'Exited \(status 1\) gcc|Ran gcc' 60
        wait_screen codex-tui '\$ python3 -m pytest -q' 60 &&
            save_screen codex-tui approval-1 && T send-keys -t codex-tui y
        wait_screen codex-tui '2 passed' 60
        wait_screen codex-tui '\$ rm -rf build' 60 &&
            save_screen codex-tui approval-2 && T send-keys -t codex-tui Escape
        wait_screen codex-tui 'Conversation interrupted|canceled' 60
        type_line codex-tui "Just show me the fix" 'Working|fixed file'
        wait_screen codex-tui 'again to confirm' 60
        wait_screen codex-tui 'Ask Codex to do anything' 30
    fi
    finish_tui codex-tui
    cp "$(newest "${CLOG[@]}")" "$OUT/codex-tui.session.jsonl"
    # Codex redraws its inline viewport: the early history is gone from tmux's scrollback by
    # the end, so the gcc cell is checked on the screen saved at the first approval question.
    check "tui: gcc failure shown" "$OUT/codex-tui.approval-1.screen.txt" 'Exited \(status 1\) gcc broken.c'
    check "tui: pytest ran" "$OUT/codex-tui.scrollback.txt" '• Ran python3 -m pytest -q'
    check "tui: approval question" "$OUT/codex-tui.approval-2.screen.txt" 'Would you like to run the following command\?'
    check "tui: decline shown" "$OUT/codex-tui.scrollback.txt" 'You canceled the request to run rm -rf build'
    check "tui: code answer" "$OUT/codex-tui.scrollback.txt" '^ +printf\("hi\\n"\);'
    mapfile -t daemons < <(codex_daemon_pids | sort -u)
    if ((${#daemons[@]})); then
        echo "  ending ${#daemons[@]} codex app-server process(es) left by the TUI: ${daemons[*]}"
        end_pids "${daemons[@]}"
    fi
fi

# ================================================================ claude
if want claude && [[ -z ${ONLY_S2:-} ]]; then
    ALLOW=(--allowedTools "Bash(gcc:*)" "Bash(python3 -m pytest:*)")
    run_batch claude-p-stream claude CLAUDE_ENV "${KLOG[@]}" claude -p --output-format stream-json --verbose "${ALLOW[@]}" -- "$PROMPT"
    run_batch claude-p-text claude CLAUDE_ENV "${KLOG[@]}" claude -p "${ALLOW[@]}" -- "$PROMPT"
    check "stream-json: gcc failed (is_error)" "$OUT/claude-p-stream.stdout" '"content":"Exit code 1\\nbroken.c'
    check "stream-json: permission denial" "$OUT/claude-p-stream.stdout" '"permission_denials":\[\{"tool_name":"Bash"'
    check "stream-json: fenced block" "$OUT/claude-p-stream.stdout" '```c'
    # Through `wrapper --pty` the output comes off a terminal, whose lines end in \r\n.
    check "text: answer with fence" "$OUT/claude-p-text.stdout" '^```c[[:space:]]*$'

    # The TUI: every Bash call asks; 1 (Yes), 1 (Yes), No, then a follow-up prompt. No is the
    # last option of the dialog, read off the screen (`no_key`): 3 in 2.1.1xx, 4 in most of
    # 2.1.3xx's (which add "Yes, and switch to auto mode"). 2.1.3xx also starts in auto mode, which against the mock opens a dialog of
    # its own ("Auto mode can't check actions in this session"): manual mode asks instead.
    # Once a call is done 2.1.3xx folds it into "Ran 1 shell command · 1 failed".
    start_tui claude-tui CLAUDE_ENV claude claude "${CLAUDE_TUI_ARGS[@]}"
    if wait_screen claude-tui '^❯' 60; then
        type_line claude-tui "$PROMPT" 'compile|Bash\(|⎿ +\$ gcc'
        for i in 1 2 3; do
            wait_screen claude-tui 'Do you want to proceed\?' 60 || break
            save_screen claude-tui "approval-$i"
            if ((i < 3)); then k=1; else k=$(no_key claude-tui "approval-$i"); fi
            answer claude-tui "$k" 'Do you want to proceed\?'
            wait_screen claude-tui "$([[ $i == 1 ]] && echo 'Exit code 1|· 1 failed' || ([[ $i == 2 ]] && echo '2 passed|Ran 1 shell command$' || echo 'Interrupted'))" 60
        done
        type_line claude-tui "Just show me the fix" 'fixed file'
        wait_screen claude-tui 'again to confirm' 60
        sleep 1
    fi
    finish_tui claude-tui
    cp "$(newest "${KLOG[@]}")" "$OUT/claude-tui.session.jsonl"
    check "tui: Bash(gcc) call" "$OUT/claude-tui.approval-1.screen.txt" '^● Bash\(gcc broken.c -o broken\)|⎿ +\$ gcc broken.c -o broken'
    check "tui: exit code line" "$OUT/claude-tui.scrollback.txt" '⎿ .*Error: Exit code 1|Ran 1 shell command · 1 failed'
    check "tui: approval dialog" "$OUT/claude-tui.approval-3.screen.txt" 'Do you want to proceed\?'
    check "tui: declined" "$OUT/claude-tui.scrollback.txt" 'Interrupted · What should Claude do instead\?'
    check "tui: code answer" "$OUT/claude-tui.scrollback.txt" '^ +printf\("hi\\n"\);'
fi

# ================================================================ gemini
if want gemini && [[ -z ${ONLY_S2:-} ]]; then
    # (the option takes one value per occurrence here, and -p goes last: with several values
    # yargs read the prompt as a positional and refused to run)
    GALLOW=(--allowed-tools "run_shell_command(gcc)" --allowed-tools "run_shell_command(python3)")
    run_batch gemini-p-stream gemini GEMINI_ENV "${GLOG[@]}" gemini "${GALLOW[@]}" --output-format stream-json -p "$PROMPT"
    run_batch gemini-p-text gemini GEMINI_ENV "${GLOG[@]}" gemini "${GALLOW[@]}" -p "$PROMPT"
    check "stream-json: gcc tool_use" "$OUT/gemini-p-stream.stdout" '"tool_name":"run_shell_command".*gcc broken.c'
    check "stream-json: fenced block" "$OUT/gemini-p-stream.stdout" '```c'
    check "stream-json: denied by policy" "$OUT/gemini-p-stream.stdout" '"status":"error","output":"Tool execution denied by policy'

    # The TUI: every shell call asks "Allow execution of [Shell]?"; 1 (Allow once), 1, 3 (No).
    echo "{\"$PROJ\": \"TRUST_FOLDER\"}" >"$GEMINI_HOME/.gemini/trustedFolders.json"
    start_tui gemini-tui GEMINI_ENV gemini gemini
    if wait_screen gemini-tui 'Type your message' 90; then
        type_line gemini-tui "$PROMPT" 'compile|Shell'
        for i in 1 2 3; do
            wait_screen gemini-tui 'Allow execution of' 60 || break
            save_screen gemini-tui "approval-$i"
            prev=$(screen gemini-tui)
            if ((i < 3)); then T send-keys -t gemini-tui 1; else T send-keys -t gemini-tui 3; fi
            e2=$((SECONDS + 15))
            while ((SECONDS < e2)) && [[ $(screen gemini-tui) == "$prev" ]]; do sleep 0.2; done
        done
        wait_screen gemini-tui 'Request cancelled' 30
        sleep 1
    fi
    finish_tui gemini-tui
    cp "$(newest "${GLOG[@]}")" "$OUT/gemini-tui.session.jsonl"
    check "tui: gcc cell" "$OUT/gemini-tui.scrollback.txt" '│ ✓  Shell gcc broken.c -o broken'
    check "tui log: the declined rm" "$OUT/gemini-tui.session.jsonl" '"command":"rm -rf build'
    check "tui: approval question" "$OUT/gemini-tui.approval-3.screen.txt" 'Allow execution of \[Shell\]\?'
    check "tui: declined cell" "$OUT/gemini-tui.scrollback.txt" '│ -  Shell rm -rf build'
fi

# ================================================================ scenario 2: test_fail
# Other failures; every command allowed. Outputs are named <agent>-test_fail-*.
answer_all() { # answer_all SESSION DONE-ERE: answer 1 (Yes) to every Claude dialog until done
    local i=0 end=$((SECONDS + 180)) prev
    while ((SECONDS < end)); do
        prev=$(screen "$1")
        grep -qE -- "$2" <<<"$prev" && return 0
        if grep -q 'Do you want to proceed?' <<<"$prev"; then
            i=$((i + 1))
            save_screen "$1" "approval-$i"
            T send-keys -t "$1" 1
            local e2=$((SECONDS + 15))
            while ((SECONDS < e2)) && [[ $(screen "$1") == "$prev" ]]; do sleep 0.2; done
        fi
        sleep 0.3
    done
    echo "  FAIL  timeout waiting for /$2/ on $1" >&2
    FAILS=$((FAILS + 1))
}
S1=$SCENARIO
want_s test_fail || SKIP_S2=1
SCENARIO=$REPO/tests/fixtures/agents/scenarios/test_fail.json
DONE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["done_marker"])' "$SCENARIO")
end_pids "$MOCK_PID"
start_mock "$PORT"
if want codex && [[ -z ${SKIP_S2:-} ]]; then
    run_batch codex-test_fail-exec-json codex CODEX_ENV "${CLOG[@]}" codex exec --json --skip-git-repo-check "$PROMPT"
    run_batch codex-test_fail-exec-text codex CODEX_ENV "${CLOG[@]}" codex exec --skip-git-repo-check "$PROMPT"
    check "test_fail exec: pytest failed" "$(err_of codex-test_fail-exec-text)" "$SOL"' exited 1 in '
    check "test_fail exec: exit 127" "$(err_of codex-test_fail-exec-text)" "$SOL"' exited 127 in '
    start_tui codex-test_fail-tui CODEX_ENV codex codex -a on-request
    if wait_screen codex-test_fail-tui 'Ask Codex to do anything' 60; then
        type_line codex-test_fail-tui "$PROMPT" 'Working|failing test'
        wait_screen codex-test_fail-tui "$DONE" 90 && sleep 1
    fi
    finish_tui codex-test_fail-tui
    cp "$(newest "${CLOG[@]}")" "$OUT/codex-test_fail-tui.session.jsonl"
    check "test_fail tui: pytest failure" "$OUT/codex-test_fail-tui.scrollback.txt" 'Exited \(status 1\) python3 -m pytest -q test_fail.py'
    check "test_fail tui: exit 127" "$OUT/codex-test_fail-tui.scrollback.txt" 'Exited \(status 127\) nosuchtool'
    mapfile -t daemons < <(codex_daemon_pids | sort -u)
    ((${#daemons[@]})) && end_pids "${daemons[@]}"
fi
if want claude && [[ -z ${SKIP_S2:-} ]]; then
    run_batch claude-test_fail-p-stream claude CLAUDE_ENV "${KLOG[@]}" claude -p --output-format stream-json --verbose --allowedTools Bash -- "$PROMPT"
    run_batch claude-test_fail-p-text claude CLAUDE_ENV "${KLOG[@]}" claude -p --allowedTools Bash -- "$PROMPT"
    check "test_fail stream-json: exit 127" "$OUT/claude-test_fail-p-stream.stdout" 'Exit code 127'
    start_tui claude-test_fail-tui CLAUDE_ENV claude claude "${CLAUDE_TUI_ARGS[@]}"
    if wait_screen claude-test_fail-tui '^❯' 60; then
        type_line claude-test_fail-tui "$PROMPT" 'failing test|Bash\(|⎿ +\$ '
        answer_all claude-test_fail-tui "$DONE"
        sleep 1
    fi
    finish_tui claude-test_fail-tui
    cp "$(newest "${KLOG[@]}")" "$OUT/claude-test_fail-tui.session.jsonl"
    # 2.1.3xx folds a finished call's output away: then the failures are in the session log.
    check "test_fail tui: exit 127" "$OUT/claude-test_fail-tui.scrollback.txt" 'Error: Exit code 127|Ran 2 shell commands · 1 failed'
    check "test_fail tui: pytest failure" "$OUT/claude-test_fail-tui.scrollback.txt" 'assert -1 == 5|Ran 1 shell command · 1 failed'
    check "test_fail log: exit 127" "$OUT/claude-test_fail-tui.session.jsonl" 'Exit code 127'
    check "test_fail log: pytest failure" "$OUT/claude-test_fail-tui.session.jsonl" 'assert -1 == 5'
fi
if want gemini && [[ -z ${SKIP_S2:-} ]]; then
    run_batch gemini-test_fail-p-stream gemini GEMINI_ENV "${GLOG[@]}" gemini --allowed-tools run_shell_command --output-format stream-json -p "$PROMPT"
    run_batch gemini-test_fail-p-text gemini GEMINI_ENV "${GLOG[@]}" gemini --allowed-tools run_shell_command -p "$PROMPT"
    check "test_fail stream-json: nosuchtool" "$OUT/gemini-test_fail-p-stream.stdout" 'nosuchtool'
fi
SCENARIO=$S1

# ================================================================ through wrapper: what was recorded
if ((USE_WRAPPER)) && command -v sqlite3 >/dev/null; then
    for db in "$OUT"/*.db; do
        [[ -f $db ]] || continue
        echo "  $(basename "$db"): $(sqlite3 "$db" "select group_concat(event_type || '=' || n, ' ') from (select event_type, count(*) n from extraction_events group by event_type)" 2>&1)"
    done
fi

# ================================================================ record
if ((RECORD)); then
    log "recording into tests/fixtures/agents/"
    for a in codex claude gemini; do
        want "$a" || continue
        mkdir -p "$FIX/$a"
        for f in "$OUT/$a"-*; do
            [[ -f $f && $f != *.db ]] || continue
            n=$(basename "$f")
            n=${n#"$a"-}
            [[ $n == test_fail-* ]] && mkdir -p "$FIX/$a/test_fail" && n=test_fail/${n#test_fail-}
            # normalise the names: *.stdout of a JSON mode is the stream itself
            case $n in
            *-json.stdout | *-stream.stdout) n=${n%.stdout}.jsonl ;;
            *.stdout | *.stderr) n=$n.txt ;;
            esac
            cp "$f" "$FIX/$a/$n"
        done
        cp "$OUT/$a.version" "$FIX/$a/VERSION"
    done
fi

if ((FAILS)); then
    log "$FAILS check(s) failed (outputs in $OUT)"
    KEEP=1
    exit 1
fi
log "all checks passed (outputs in $OUT)"
