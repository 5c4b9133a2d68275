#!/usr/bin/env python3
"""A scripted mock model server for driving the real agent CLIs offline.

Speaks, on 127.0.0.1 only:
  * the OpenAI Responses API with SSE      POST /v1/responses            (codex)
  * the Anthropic Messages API with SSE    POST /v1/messages             (claude)
                                           POST /v1/messages/count_tokens
  * the Gemini API (generateContent, streamGenerateContent?alt=sse, countTokens)
                                           POST /v1beta/models/<m>:<method>  (gemini)

The conversation is scripted by a scenario file (JSON):

    {"turns": [
        {"say": "Let me compile it.", "run": "gcc broken.c", "description": "Compile"},
        {"run": "python3 -m pytest -q"},
        {"answer": "Done. The fix:\n```c\nint main(void) { return 0; }\n```\n"}
    ]}

The server is stateless: which turn to play is the number of tool results already in the
request's conversation (function_call_output items, tool_result blocks, functionResponse
parts), so retries, side requests and several clients at once all get consistent answers.
A turn's `"escalate": true` makes Codex's shell call ask for escalated permissions (so an
`on-request` approval policy asks the user); `"escalate": ["model", ...]` does so only when the
request names one of those models (e.g. a TUI run started with `-m mock-model-tui`).
Once the script is exhausted the last `answer` is repeated. Requests that offer no tools
(Claude's title / topic side calls, Gemini's next-speaker check) get a short neutral answer.

Usage:
    mock_model.py --scenario s.json [--port 0] [--port-file F] [--log requests.jsonl]

Prints `port N` on stdout (one line, flushed) once it listens. Stdlib only.
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

DEFAULT_SCENARIO = {
    "turns": [
        {"say": "I'll compile the program first.", "run": "gcc broken.c -o broken",
         "description": "Compile broken.c"},
        {"say": "The compile failed. Let me run the tests.", "run": "python3 -m pytest -q",
         "description": "Run the test suite"},
        {"answer": "The missing semicolon is on line 3. Fixed version:\n\n```c\n"
                   "#include <stdio.h>\n\nint main(void) {\n    printf(\"hi\\n\");\n"
                   "    return 0;\n}\n```\n"},
    ]
}


class Scenario:
    def __init__(self, data):
        turns = data.get("turns") if isinstance(data, dict) else None
        if not isinstance(turns, list) or not turns:
            raise ValueError("scenario: `turns` must be a non-empty list")
        for i, t in enumerate(turns):
            if not isinstance(t, dict) or not ("run" in t or "answer" in t):
                raise ValueError(f"scenario: turn {i} needs `run` or `answer`")
        self.turns = turns
        self.model = data.get("model", "mock-model")

    def turn(self, step):
        if step < len(self.turns):
            return self.turns[step]
        answers = [t for t in self.turns if "answer" in t]
        return answers[-1] if answers else {"answer": "Done."}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-model/1"

    # ------------------------------------------------------------------ plumbing
    def log_message(self, fmt, *args):  # quiet; requests go to --log instead
        pass

    def _log(self, **kw):
        path = self.server.log_path
        if not path:
            return
        kw["t"] = round(time.time(), 3)
        with self.server.log_lock, open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(kw) + "\n")

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if self.headers.get("Content-Encoding") == "zstd":
            raise ValueError("zstd request bodies are not supported")
        try:
            return json.loads(raw or b"{}")
        except json.JSONDecodeError:
            return {}

    def _json(self, obj, status=200):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _sse_start(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _sse(self, event, obj):
        head = f"event: {event}\n" if event else ""
        self._chunk((head + "data: " + json.dumps(obj) + "\n\n").encode())
        time.sleep(self.server.delay)

    def _sse_end(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def do_GET(self):
        path = urlparse(self.path).path
        self._log(method="GET", path=path)
        if path.endswith("/models"):
            self._json({"object": "list", "data": [], "models": []})
        else:
            self._json({"ok": True})

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        path = urlparse(self.path).path
        try:
            body = self._body()
        except ValueError as e:
            self._json({"error": {"message": str(e)}}, 400)
            return
        try:
            if path.endswith("/responses"):
                self.openai_responses(body, path)
            elif path.endswith("/messages/count_tokens"):
                self._log(method="POST", path=path)
                self._json({"input_tokens": 42})
            elif path.endswith("/messages"):
                self.anthropic_messages(body, path)
            elif ":" in path and "/models/" in path:
                self.gemini(body, path)
            else:
                self._log(method="POST", path=path, unknown=True)
                self._json({"error": {"message": f"mock: no route {path}"}}, 404)
        except (BrokenPipeError, ConnectionResetError):
            pass

    # ------------------------------------------------------------------ OpenAI Responses
    def openai_responses(self, body, path):
        items = body.get("input") or []
        step = sum(1 for i in items if isinstance(i, dict)
                   and i.get("type") in ("function_call_output", "custom_tool_call_output",
                                         "local_shell_call_output"))
        tools = [t.get("name") or t.get("type") for t in body.get("tools") or []
                 if isinstance(t, dict)]
        turn = self.server.scenario.turn(step)
        self._log(method="POST", path=path, api="responses", step=step, tools=tools,
                  model=body.get("model"), stream=body.get("stream"))
        rid = f"resp_{step}_{int(time.time() * 1000) % 100000}"
        usage = {"input_tokens": 1200 + 300 * step,
                 "input_tokens_details": {"cached_tokens": 1000 if step else 0},
                 "output_tokens": 40 + step, "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": 1240 + 301 * step}
        self._sse_start()
        self._sse("response.created", {"type": "response.created",
                                       "response": {"id": rid, "status": "in_progress"}})
        out = []
        if turn.get("say"):
            out.append(self._oa_message(turn["say"], f"msg_{step}_say"))
        if "run" in turn:
            out.append(self._oa_call(turn, tools, step, body.get("model")))
        elif "answer" in turn:
            out.append(self._oa_message(turn["answer"], f"msg_{step}_answer"))
        self._sse("response.completed", {"type": "response.completed",
                                         "response": {"id": rid, "status": "completed",
                                                      "output": out, "usage": usage}})
        self._sse_end()

    def _oa_message(self, text, mid):
        item = {"type": "message", "id": mid, "role": "assistant", "status": "in_progress",
                "content": []}
        self._sse("response.output_item.added", {"type": "response.output_item.added",
                                                 "output_index": 0, "item": item})
        for piece in _pieces(text):
            self._sse("response.output_text.delta", {"type": "response.output_text.delta",
                                                     "item_id": mid, "output_index": 0,
                                                     "content_index": 0, "delta": piece})
        done = dict(item, status="completed",
                    content=[{"type": "output_text", "text": text, "annotations": []}])
        self._sse("response.output_item.done", {"type": "response.output_item.done",
                                                "output_index": 0, "item": done})
        return done

    def _oa_call(self, turn, tools, step, model):
        cmd = turn["run"]
        call_id = f"call_{step}"
        if "shell_command" in tools:
            name, args = "shell_command", {"command": cmd}
        elif "exec_command" in tools:
            name, args = "exec_command", {"cmd": cmd}
        else:
            name, args = "shell", {"command": ["bash", "-lc", cmd]}
        if turn.get("workdir"):
            args["workdir"] = turn["workdir"]
        esc = turn.get("escalate")
        if esc is True or (isinstance(esc, list) and model in esc):
            args["sandbox_permissions"] = "require_escalated"
            args["justification"] = turn.get("description", "Needs approval")
        item = {"type": "function_call", "id": f"fc_{step}", "call_id": call_id, "name": name,
                "arguments": json.dumps(args), "status": "completed"}
        self._sse("response.output_item.added", {"type": "response.output_item.added",
                                                 "output_index": 1,
                                                 "item": dict(item, arguments="")})
        self._sse("response.output_item.done", {"type": "response.output_item.done",
                                                "output_index": 1, "item": item})
        return item

    # ------------------------------------------------------------------ Anthropic Messages
    def anthropic_messages(self, body, path):
        msgs = body.get("messages") or []
        step = 0
        for m in msgs:
            if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), list):
                step += sum(1 for b in m["content"]
                            if isinstance(b, dict) and b.get("type") == "tool_result")
        tools = [t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
        side = "Bash" not in tools
        self._log(method="POST", path=path, api="messages", step=step, side=side,
                  ntools=len(tools), model=body.get("model"), stream=body.get("stream"),
                  max_tokens=body.get("max_tokens"))
        if side:
            turn = {"answer": self.server.scenario.turns[0].get("title", "Scripted session")}
        else:
            turn = self.server.scenario.turn(step)
        blocks = []
        if turn.get("say"):
            blocks.append({"type": "text", "text": turn["say"]})
        if "run" in turn:
            inp = {"command": turn["run"]}
            if turn.get("description"):
                inp["description"] = turn["description"]
            blocks.append({"type": "tool_use", "id": f"toolu_mock_{step:02d}", "name": "Bash",
                           "input": inp})
        elif "answer" in turn:
            blocks.append({"type": "text", "text": turn["answer"]})
        stop = "tool_use" if "run" in turn else "end_turn"
        model = body.get("model") or "claude-mock"
        mid = f"msg_mock_{step}_{int(time.time() * 1000) % 100000}"
        usage = {"input_tokens": 1500 + 200 * step, "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": 1200 if step else 0, "output_tokens": 30 + step}
        if not body.get("stream"):
            self._json({"id": mid, "type": "message", "role": "assistant", "model": model,
                        "content": blocks, "stop_reason": stop, "stop_sequence": None,
                        "usage": usage})
            return
        self._sse_start()
        self._sse("message_start", {"type": "message_start", "message": {
            "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": dict(usage, output_tokens=1)}})
        for i, b in enumerate(blocks):
            if b["type"] == "text":
                self._sse("content_block_start", {"type": "content_block_start", "index": i,
                                                  "content_block": {"type": "text", "text": ""}})
                for piece in _pieces(b["text"]):
                    self._sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                                      "delta": {"type": "text_delta",
                                                                "text": piece}})
            else:
                self._sse("content_block_start", {"type": "content_block_start", "index": i,
                                                  "content_block": dict(b, input={})})
                self._sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                                  "delta": {"type": "input_json_delta",
                                                            "partial_json": json.dumps(b["input"])}})
            self._sse("content_block_stop", {"type": "content_block_stop", "index": i})
        self._sse("message_delta", {"type": "message_delta",
                                    "delta": {"stop_reason": stop, "stop_sequence": None},
                                    "usage": {"output_tokens": usage["output_tokens"]}})
        self._sse("message_stop", {"type": "message_stop"})
        self._sse_end()

    # ------------------------------------------------------------------ Gemini
    def gemini(self, body, path):
        model, _, method = path.rsplit("/", 1)[-1].partition(":")
        if method == "countTokens":
            self._log(method="POST", path=path, api="gemini", call=method)
            self._json({"totalTokens": 42})
            return
        contents = body.get("contents") or []
        step = 0
        for c in contents:
            for p in (c.get("parts") or []) if isinstance(c, dict) else []:
                if isinstance(p, dict) and "functionResponse" in p:
                    step += 1
        decls = []
        for t in body.get("tools") or []:
            for d in (t.get("functionDeclarations") or []) if isinstance(t, dict) else []:
                decls.append(d.get("name"))
        gen = body.get("generationConfig") or {}
        side = "run_shell_command" not in decls
        self._log(method="POST", path=path, api="gemini", call=method, step=step, side=side,
                  ntools=len(decls), model=model)
        if side:
            if gen.get("responseMimeType") == "application/json" or gen.get("responseJsonSchema") \
                    or gen.get("responseSchema"):
                # one object that satisfies the CLI's JSON side calls: the next-speaker check
                # and the model router's classifiers
                parts = [{"text": json.dumps({"reasoning": "The model finished its turn.",
                                              "next_speaker": "user",
                                              "complexity_reasoning": "A small scripted task.",
                                              "complexity_score": 10,
                                              "model_choice": "flash"})}]
            else:
                parts = [{"text": "Scripted session"}]
        else:
            turn = self.server.scenario.turn(step)
            parts = []
            if turn.get("say"):
                parts.append({"text": turn["say"]})
            if "run" in turn:
                args = {"command": turn["run"]}
                if turn.get("description"):
                    args["description"] = turn["description"]
                parts.append({"functionCall": {"name": "run_shell_command", "args": args}})
            elif "answer" in turn:
                parts.append({"text": turn["answer"]})
        usage = {"promptTokenCount": 1400 + 100 * step, "candidatesTokenCount": 25,
                 "totalTokenCount": 1425 + 100 * step}
        resp = {"candidates": [{"content": {"role": "model", "parts": parts},
                                "finishReason": "STOP", "index": 0}],
                "usageMetadata": usage, "modelVersion": model}
        if method == "streamGenerateContent":
            self._sse_start()
            self._sse(None, resp)
            self._sse_end()
        else:
            self._json(resp)


def _pieces(text, n=24):
    """Split text into deltas of about n characters (so clients really stream)."""
    return [text[i:i + n] for i in range(0, len(text), n)] or [""]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--scenario", help="JSON scenario file (default: a built-in script)")
    ap.add_argument("--log", help="append one JSON line per request to this file")
    ap.add_argument("--port-file", help="also write the port to this file")
    ap.add_argument("--delay", type=float, default=0.005, help="seconds between SSE events")
    a = ap.parse_args()
    try:
        data = DEFAULT_SCENARIO
        if a.scenario:
            with open(a.scenario, encoding="utf-8") as f:
                data = json.load(f)
        scenario = Scenario(data)
    except (OSError, ValueError) as e:
        print(f"mock_model: {a.scenario}: {e}", file=sys.stderr)
        sys.exit(2)
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    srv.scenario = scenario
    srv.log_path = a.log
    srv.log_lock = threading.Lock()
    srv.delay = a.delay
    port = srv.server_address[1]
    if a.port_file:
        with open(a.port_file, "w") as f:
            f.write(f"{port}\n")
    print(f"port {port}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
