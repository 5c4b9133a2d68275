#!/usr/bin/env bash
# Recall and precision of the built-in rules on the labelled corpus (tests/corpus/): the table
# per event type and per source kind, then every miss and false positive. The same test runs in
# `cargo test` and fails below its floors (tests/it/quality.rs).
#
#   bash scripts/quality.sh            # build, score, print
#   bash scripts/quality.sh | grep MISS
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --quiet --test it quality::builtin_rules_reach_their_floors_on_the_labelled_corpus \
  -- --nocapture 2>&1 | grep -v -E '^(running [0-9]+ tests?|test result:|test quality::|$)'
