#!/usr/bin/env bash
# Records the JSON streams, text output and session logs of the real Codex and Claude Code
# clients against the scripted mock model (scripts/mock_model.py, from the `real` branch or
# MOCK=path), into tests/fixtures/streams/. Dummy keys only; nothing leaves 127.0.0.1.
#   scripts/record_agent_json.sh [OUT_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/tests/fixtures/streams}
mock=${MOCK:-$here/scripts/mock_model.py}
scenario=${SCENARIO:-$here/tests/fixtures/agents/scenarios/fix_build.json}
work=/tmp/wrapper-rec
rm -rf "$work" && mkdir -p "$work/proj" "$out"
cd "$work/proj"
reset_proj() {
  rm -rf "$work/proj"/* "$work/proj"/.pytest_cache
  printf '#include <stdio.h>\nint main(void) {\n  printf("hi\\n")\n  return 0;\n}\n' > broken.c
}
python3 "$mock" --scenario "$scenario" --port 0 --port-file "$work/port" > "$work/mock.out" 2>&1 &
mock_pid=$!
trap 'kill $mock_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
port=$(cat "$work/port")

codex_run() { # name, extra args...
  local name=$1; shift
  reset_proj
  rm -rf "$work/codex" && mkdir -p "$work/codex"
  cat > "$work/codex/config.toml" <<TOML
model = "mock-model"
model_provider = "mock"
[model_providers.mock]
name = "mock"
base_url = "http://127.0.0.1:$port/v1"
wire_api = "responses"
env_key = "MOCK_KEY"
TOML
  MOCK_KEY=dummy CODEX_HOME="$work/codex" timeout 120 codex exec --skip-git-repo-check \
    --sandbox workspace-write "$@" "fix the build" < /dev/null > "$out/$name.out" 2> "$out/$name.err" || true
  cp "$(find "$work/codex/sessions" -name 'rollout-*.jsonl' | head -1)" "$out/$name.rollout.jsonl"
}

claude_run() { # name, extra args...
  local name=$1; shift
  reset_proj
  rm -rf "$work/claude" && mkdir -p "$work/claude"
  ANTHROPIC_BASE_URL="http://127.0.0.1:$port" ANTHROPIC_API_KEY=dummy CLAUDE_CONFIG_DIR="$work/claude" \
    timeout 120 claude -p "$@" --allowedTools 'Bash(gcc:*)' 'Bash(python3:*)' -- "fix the build" \
    < /dev/null > "$out/$name.out" 2> "$out/$name.err" || true
  cp "$(find "$work/claude/projects" -name '*.jsonl' | head -1)" "$out/$name.log.jsonl"
}

codex_run codex_exec_json --json
codex_run codex_exec_text
claude_run claude_stream_json --output-format stream-json --verbose
claude_run claude_text
echo "recorded into $out (codex $(codex --version), claude $(claude --version))"
