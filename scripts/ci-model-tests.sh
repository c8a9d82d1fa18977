#!/usr/bin/env bash
# CI for the model runtime: fetch the default model first, so the real-model tests run (they fail,
# by design, when the model is absent).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p flowbot
"${CARGO_TARGET_DIR:-target}/debug/flowbot" model fetch
FLOWBOT_MODEL="$PWD/.data/models/SmolLM2-135M-Instruct.Q4_1.gguf" cargo test -p flowbot-model-runtime
cargo test -p flowbot-engine llm::
