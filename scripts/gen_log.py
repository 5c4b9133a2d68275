#!/usr/bin/env python3
"""The standard benchmark input, for checkouts without ../shared.

Deterministic synthetic agent transcript in the mix a coding agent prints: prose, shell
commands, rustc errors and warnings, Python tracebacks, test results, approval prompts,
URLs, fenced code blocks and coloured `✓` progress lines (some non-ASCII text).

This is the same generator as ../shared/bench/gen_log.py (the same seeded random draws in the
same order), so `gen_log.py 1000000` writes the byte-identical 1,000,000-line file (~48 MB).
scripts/bench.sh prefers the shared copy and falls back to this one; it prints which it used
and the SHA-256 of the input.

Usage: gen_log.py LINES > file
"""
import random
import sys

WORDS = ("the agent reads the file and applies a patch to fix the failing test then "
         "runs the suite again checking output for regressions in module parser").split()
PATHS = ["src/main.rs", "src/lib/parser.rs", "tests/test_api.py", "pkg/server/handler.go",
         "web/src/App.tsx", "crates/core/src/flags/defs.rs"]
LANGS = ["rust", "python", "bash", "json", ""]


def records(n, rnd):
    """Yield (text, line_count) records until n lines are out (a code block may overshoot)."""
    i = 0
    while i < n:
        r = rnd.random()
        if r < 0.55:
            text = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(6, 14)))
        elif r < 0.62:
            text = f"$ cargo test -p core -- --nocapture {rnd.randint(1, 999)}"
        elif r < 0.67:
            code = rnd.randint(100, 999)
            path = rnd.choice(PATHS)
            text = f"error[E0{code}]: mismatched types in {path}:{rnd.randint(1, 900)}:{rnd.randint(1, 80)}"
        elif r < 0.71:
            var = rnd.randint(0, 99)
            text = f"warning: unused variable `x{var}` at {rnd.choice(PATHS)}:{rnd.randint(1, 900)}"
        elif r < 0.75:
            path = rnd.choice(PATHS)
            text = f"Traceback (most recent call last): File \"{path}\", line {rnd.randint(1, 500)}"
        elif r < 0.79:
            passed = rnd.randint(0, 200)
            text = f"test result: FAILED. {passed} passed; {rnd.randint(1, 9)} failed; 0 ignored"
        elif r < 0.81:
            text = "Do you want to run this command? [y/N] rm -rf build/"
        elif r < 0.84:
            issue = rnd.randint(1, 9999)
            text = f"https://github.com/example/repo/issues/{issue} referenced in {rnd.choice(PATHS)}"
        elif r < 0.87:
            lang = rnd.choice(LANGS)
            body = [f"    let v{k} = compute({k}, {rnd.randint(0, 9)});"
                    for k in range(rnd.randint(2, 8))]
            lines = [f"```{lang}"] + body + ["```"]
            yield "\n".join(lines), len(lines)
            i += len(lines)
            continue
        else:
            text = f"\x1b[32m✓\x1b[0m step {rnd.randint(1, 99)} done in {rnd.random():.3f}s"
        yield text, 1
        i += 1


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    out = sys.stdout
    chunk = []
    for text, _ in records(n, random.Random(42)):
        chunk.append(text)
        if len(chunk) >= 10000:
            out.write("\n".join(chunk) + "\n")
            chunk = []
    if chunk:
        out.write("\n".join(chunk) + "\n")


if __name__ == "__main__":
    main()
