#!/usr/bin/env bash
# Builds the order-extraction model tuned on the shipped example data, on this machine, and
# compares it with the base model on the 32 hand-written e-mails of examples/order_emails (never
# used for training):
#   1. the example ERP exports aligned into orders (flowbot intake),
#   2. a data set of e-mails written from those orders, the hand-labelled e-mails of
#      examples/data/emails and 180 invented orders, split 8:1:1 (flowbot dataset build),
#   3. the default model trained on it (flowbot model finetune): its output layer (`head`, the
#      default), or with METHOD=lora low-rank adapters on every projection (about an hour),
#   4. base and tuned model side by side (flowbot model eval-extract --compare).
# The tuned model is OUT/model/model.gguf (default OUT: .data/tuned-extract), with its
# manifest.json. Give it the extract steps with `[model] extract_path` in flowbot.toml (or
# $FLOWBOT_EXTRACT_MODEL); the other steps keep the general model. METHOD=lora also writes
# OUT/model/adapter.gguf, the adapters alone: `[model] extract_adapter` (or
# $FLOWBOT_EXTRACT_ADAPTER) applies it to the general model for the extract steps, at the base
# model's decode speed.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.data/tuned-extract}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build -p flowbot
flowbot="$CARGO_TARGET_DIR/debug/flowbot"
base="$("$flowbot" model fetch)"
mkdir -p "$out"

echo "== orders from the example ERP exports"
"$flowbot" intake examples/data --mapping examples/data/mapping.toml --out "$out/orders.jsonl" >/dev/null
echo "== data set"
"$flowbot" dataset build --orders "$out/orders.jsonl" --emails examples/data/emails \
  --synthetic 180 --emails-per-order 1 --seed 42 --out "$out/data"
method="${METHOD:-head}"
echo "== fine-tuning ($method)"
case "$method" in
  head) recipe=(--epochs 4 --lr 3e-4 --batch 8 --max-minutes 6) ;;
  lora) recipe=(--rank 8 --alpha 16 --epochs 2 --patience 2 --lr 1e-3 --batch 8 --max-minutes 75) ;;
  *) echo "METHOD must be head or lora, not $method" >&2; exit 2 ;;
esac
"$flowbot" model finetune --model "$base" --method "$method" "${recipe[@]}" --seed 42 \
  --train "$out/data/train.jsonl" --dev "$out/data/dev.jsonl" --out "$out/model"
echo "== base and tuned model on examples/order_emails"
if [ "$method" = lora ]; then
  "$flowbot" model eval-extract examples/order_emails --model "$base" \
    --compare "$base" "$out/model/adapter.gguf"
else
  "$flowbot" model eval-extract examples/order_emails --compare "$base" "$out/model/model.gguf"
fi
