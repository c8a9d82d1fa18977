#!/usr/bin/env bash
# The local model on an NVIDIA GPU against the CPU, with a binary built elsewhere
# (scripts/check-cuda.sh) and carried to the GPU machine, which needs nothing else but the NVIDIA
# driver (CUDA 13, 580 or later) and the CUDA 13 libraries cudart, cuBLAS and cuRAND.
#
#   bench/cuda.sh pack [MODEL.gguf]  on the build machine: puts into .gpu/ (git-ignored) the cuda
#                                    binary, xz-compressed, and the model in parts of $PART_MB MiB
#                                    (default 48), so that no carried set passes 64 MiB
#   bench/cuda.sh stash              on the GPU machine: keeps the model parts present in .gpu/ in
#                                    /tmp/flowbot-gpu, for a later call that carries the others
#   bench/cuda.sh                    on the GPU machine: joins the model, then runs
#       flowbot model bench --device cuda --backend candle --json   (twice: the first run
#                                    includes the driver's compilation of the kernels' PTX)
#       flowbot model generate --device cuda                         (once, greedy)
#     and the CPU figures on the same machine (fast and candle backends, the same prompt).
#
# Environment: FLOWBOT_BIN (default .gpu/flowbot, unpacked from .gpu/flowbot.xz), FLOWBOT_MODEL
# (default .gpu/model.gguf, joined from model.gguf.part-* in .gpu/ and /tmp/flowbot-gpu),
# FLOWBOT_CUDA_LIB_DIR (folder of libcublas.so.13 and the other CUDA 13 libraries; default: the
# `nvidia` wheels of python3, else /usr/local/cuda), OUT (results folder; default .gpu/out).
set -euo pipefail
cd "$(dirname "$0")/.."

PART_MB="${PART_MB:-48}"
STASH=/tmp/flowbot-gpu
SYSTEM="You write short, polite order confirmations."
PROMPT="Confirm order SO-1042: 12 pallets of A4 paper for Acme GmbH, delivery to Hamburg on 2026-12-03."

case "${1:-run}" in
pack)
    model="${2:-${FLOWBOT_MODEL:-${FLOWBOT_DATA_DIR:-$HOME/.cache/flowbot}/models/SmolLM2-135M-Instruct.Q4_1.gguf}}"
    binary="${FLOWBOT_BIN:-${CARGO_TARGET_DIR:-target}/cuda/release/flowbot}"
    [[ -x "$binary" ]] || { echo "no cuda binary at $binary: run scripts/check-cuda.sh" >&2; exit 1; }
    [[ -f "$model" ]] || { echo "no model at $model" >&2; exit 1; }
    rm -rf .gpu && mkdir -p .gpu
    if exclude="$(git rev-parse --git-path info/exclude 2>/dev/null)"; then
        mkdir -p "$(dirname "$exclude")"
        grep -qx '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >>"$exclude"
    fi
    xz -T2 -6 -c "$binary" >.gpu/flowbot.xz
    split -b "${PART_MB}M" -d "$(realpath "$model")" .gpu/model.gguf.part-
    sha256sum "$(realpath "$model")" | cut -d' ' -f1 >.gpu/model.gguf.sha256
    ls -l .gpu
    exit 0
    ;;
stash)
    mkdir -p "$STASH"
    cp -v .gpu/model.gguf.part-* "$STASH"/
    exit 0
    ;;
run) ;;
*)
    echo "usage: bench/cuda.sh [pack [MODEL.gguf] | stash | run]" >&2
    exit 2
    ;;
esac

BIN="${FLOWBOT_BIN:-.gpu/flowbot}"
MODEL="${FLOWBOT_MODEL:-.gpu/model.gguf}"
OUT="${OUT:-.gpu/out}"
mkdir -p "$OUT"
exec > >(tee "$OUT/cuda-bench.txt") 2>&1

if [[ ! -x "$BIN" && -f "$BIN.xz" ]]; then
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$BIN.xz" "$BIN"
    chmod +x "$BIN"
fi
if [[ ! -f "$MODEL" ]]; then
    # Each part from .gpu/ or, when a previous call carried it, from the stash.
    parts=()
    for part in $( (ls .gpu/ "$STASH"/ 2>/dev/null || true) | grep "^$(basename "$MODEL").part-" | sort -u); do
        if [[ -f ".gpu/$part" ]]; then parts+=(".gpu/$part"); else parts+=("$STASH/$part"); fi
    done
    [[ ${#parts[@]} -gt 0 ]] && cat "${parts[@]}" >"$MODEL"
    if [[ -f "$MODEL.sha256" ]] && [[ "$(sha256sum "$MODEL" | cut -d' ' -f1)" != "$(cat "$MODEL.sha256")" ]]; then
        echo "error: $MODEL joined from its parts does not match its sha256" >&2
        exit 1
    fi
fi
[[ -x "$BIN" ]] || { echo "error: no flowbot binary at $BIN" >&2; exit 1; }
[[ -f "$MODEL" ]] || { echo "error: no model at $MODEL" >&2; exit 1; }

# The CUDA 13 libraries the binary links; libcuda.so.1 comes with the driver.
lib_dir="${FLOWBOT_CUDA_LIB_DIR:-}"
if [[ -z "$lib_dir" ]]; then
    for candidate in \
        "$(python3 -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null || true)" \
        /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
        if [[ -n "$candidate" && -e "$candidate/libcublas.so.13" ]]; then lib_dir="$candidate"; break; fi
    done
fi
for driver_dir in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
    [[ -d "$driver_dir" ]] && LD_LIBRARY_PATH="$driver_dir:${LD_LIBRARY_PATH:-}"
done
[[ -n "$lib_dir" ]] && LD_LIBRARY_PATH="$lib_dir:${LD_LIBRARY_PATH:-}"
export LD_LIBRARY_PATH
missing="$(ldd "$BIN" | grep 'not found' || true)"
if [[ -n "$missing" ]]; then
    echo "error: libraries not found (set FLOWBOT_CUDA_LIB_DIR):" >&2
    echo "$missing" >&2
    exit 1
fi

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs"
echo "CUDA libraries: ${lib_dir:-system}"
ldd "$BIN" | grep -E 'libcuda|libcudart|libcublas|libcurand|libnvrtc'

# Runs flowbot with the given arguments, keeps its stdout in $OUT/NAME.out, goes on after a failure.
run() {
    local name="$1"; shift
    echo "== $name: flowbot $*"
    local started=$SECONDS
    if "$BIN" "$@" >"$OUT/$name.out"; then
        cat "$OUT/$name.out"
    else
        echo "FAILED (exit $?)"
        rm -f "$OUT/$name.out"
    fi
    echo "($((SECONDS - started)) s)"
}

run cuda-bench-1 model bench --model "$MODEL" --device cuda --backend candle --json
run cuda-bench-2 model bench --model "$MODEL" --device cuda --backend candle --json
run cuda-generate model generate --model "$MODEL" --device cuda --max-tokens 64 --verbose --system "$SYSTEM" --prompt "$PROMPT"
run cpu-fast-bench model bench --model "$MODEL" --device cpu --backend fast --json
run cpu-candle-bench model bench --model "$MODEL" --device cpu --backend candle --json
export FLOWBOT_BACKEND=candle
run cpu-generate model generate --model "$MODEL" --device cpu --max-tokens 64 --verbose --system "$SYSTEM" --prompt "$PROMPT"
unset FLOWBOT_BACKEND

python3 - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
print("\n| run | load ms | prompt tok/s | decode tok/s | TTFT ms | reference ids |")
print("|---|---|---|---|---|---|")
for name in ("cuda-bench-1", "cuda-bench-2", "cpu-fast-bench", "cpu-candle-bench"):
    path = out / f"{name}.out"
    if not path.exists():
        print(f"| {name} | failed | | | | |")
        continue
    r = json.loads(path.read_text())
    print(f"| {name} | {r['load_ms']:.0f} | {r['prompt_tok_s']:.0f} | {r['decode_tok_s']:.1f} | {r['ttft_ms']:.1f} | {r['reference_ids_match']} |")
texts = [out / "cuda-generate.out", out / "cpu-generate.out"]
if all(p.exists() for p in texts):
    cuda, cpu = (p.read_text().strip() for p in texts)
    print(f"\ngreedy text on cuda equals candle on the CPU: {cuda == cpu}")
PY
