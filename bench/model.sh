#!/usr/bin/env bash
# Model runtime speed: Flowbot's fast backend, the candle backend (candle's quantized llama, or
# for gemma3 files our Gemma 3 on candle's quantized tensors)
# and llama.cpp on the same GGUF, reference prompt (57 tokens) and 128 greedy decode steps,
# at 1 and 2 threads, the runtimes alternating run by run. Prints medians and the
# fast/llama.cpp and fast/candle ratios.
#
# Usage: bench/model.sh [MODEL.gguf]   (run from the repository root)
# Environment: RUNS (default 3), THREADS (default "1 2"), FLOWBOT_BIN (default: build
# target/release/flowbot), LLAMA_PY (default /tmp/peers/llama/bin/python, see
# ../shared/bench/peers/README.md), SKIP_CANDLE=1 to leave candle out.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL="${1:-${FLOWBOT_MODEL:-${FLOWBOT_DATA_DIR:-$HOME/.cache/flowbot}/models/SmolLM2-135M-Instruct.Q4_1.gguf}}"
RUNS="${RUNS:-3}"
THREADS="${THREADS:-1 2}"
LLAMA_PY="${LLAMA_PY:-/tmp/peers/llama/bin/python}"
HARNESS="../shared/bench/peers/llamacpp_bench.py"
[ -f "$MODEL" ] || { echo "model $MODEL not found (fetch it first or pass a path)" >&2; exit 1; }
MODEL="$(realpath "$MODEL")"
HARNESS="$(realpath "$HARNESS" 2>/dev/null || echo "$HARNESS")"

if [ -z "${FLOWBOT_BIN:-}" ]; then
  cargo build --release -q -p flowbot
  FLOWBOT_BIN="${CARGO_TARGET_DIR:-target}/release/flowbot"
fi

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs"
echo "flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|f16c|avx512f|avx512bw|avx512vl|avx512_vnni|avx_vnni)$' | tr '\n' ' ')"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "model: $MODEL"

results=$(mktemp)
trap 'rm -f "$results"' EXIT
if ! [ -x "$LLAMA_PY" ] || ! [ -f "$HARNESS" ]; then
  echo "llama.cpp not installed at $LLAMA_PY: skipped" >&2
  LLAMA_PY=""
fi
# The runtimes alternate run by run, so a drift of the machine's speed reaches all of them.
for t in $THREADS; do
  for _ in $(seq "$RUNS"); do
    echo "fast $t $("$FLOWBOT_BIN" model bench --model "$MODEL" --threads "$t" --json)" >>"$results"
    if [ -z "${SKIP_CANDLE:-}" ]; then
      echo "candle $t $("$FLOWBOT_BIN" model bench --model "$MODEL" --threads "$t" --backend candle --json)" >>"$results"
    fi
    if [ -n "$LLAMA_PY" ]; then
      (cd /tmp && "$LLAMA_PY" "$HARNESS" "$MODEL" "$t" 1 128 ignore_eos) \
        | sed -n 's/^RESULT /llama.cpp '"$t"' /p' >>"$results"
    fi
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$results" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, threads, payload = line.split(" ", 2)
    r = json.loads(payload)
    if name == "llama.cpp":
        r = dict(load_ms=r["load_ms"], prompt_tok_s=r["pp_tok_s"], decode_tok_s=r["decode_tok_s"], ttft_ms=r["pp_ms"])
    rows.setdefault((name, int(threads)), []).append(r)
med = {k: {m: statistics.median(r[m] for r in v) for m in ("load_ms", "prompt_tok_s", "decode_tok_s", "ttft_ms")} for k, v in rows.items()}
print(f"\n| runtime | threads | load ms | prompt tok/s | decode tok/s | TTFT ms | runs |")
print("|---|---|---|---|---|---|---|")
for (name, t), m in sorted(med.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    print(f"| {name} | {t} | {m['load_ms']:.0f} | {m['prompt_tok_s']:.0f} | {m['decode_tok_s']:.1f} | {m['ttft_ms']:.0f} | {len(rows[(name, t)])} |")
print()
for t in sorted({t for _, t in med}):
    f = med.get(("fast", t))
    for other in ("llama.cpp", "candle"):
        o = med.get((other, t))
        if f and o:
            print(f"threads {t}: fast / {other}: prompt {f['prompt_tok_s'] / o['prompt_tok_s']:.2f}x, decode {f['decode_tok_s'] / o['decode_tok_s']:.2f}x")
match = [json.loads(l.split(" ", 2)[2]).get("reference_ids_match") for l in open(sys.argv[1]) if l.startswith("fast ")]
print(f"fast backend reproduces the reference greedy ids: {all(match)}")
PY
