#!/bin/sh
# A stand-in agent for the demo: prints what a coding agent's run looks like (commands it ran,
# a compiler error, a failing test summary, a code block, an approval prompt) on both streams,
# then exits 1 like a run that left a test failing. No network, no real agent needed.
echo "OpenAI Codex v0.146.0 (research preview)"
echo "--------"
echo "workdir: $PWD"
echo "exec"
echo "/bin/bash -lc \"cargo test -p parser\" in $PWD"
echo " exited 101 in 2.41s:"
echo "error[E0425]: cannot find value \`tokens\` in this scope" >&2
echo "  --> src/parser.rs:88:17" >&2
echo "warning: unused variable: \`span\`" >&2
echo "test result: FAILED. 41 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out"
echo "codex"
echo "The fix is to bind the token stream before the loop:"
echo '```rust'
echo 'let tokens = lexer.tokens();'
echo 'for t in &tokens { parse(t)?; }'
echo '```'
echo "Do you want to run this command? [y/N] git push --force origin main"
echo "See https://doc.rust-lang.org/error_codes/E0425.html"
echo "error: the API refused OPENAI_API_KEY=sk-proj-demoDemoDemoDemoDemo1234 (a fake key: see it masked in the database)" >&2
exit 1
