#!/usr/bin/env bash
# Checks that the `cuda` feature builds: installs the CUDA toolchain from PyPI
# (scripts/setup-cuda.sh), then builds the release `flowbot` binary with `--features cuda`.
# No GPU is needed. The build goes to its own target folder, `$CARGO_TARGET_DIR/cuda`
# (default target/cuda), so it neither replaces the default binary nor rebuilds its dependencies.
#
# The binary ends at `$CARGO_TARGET_DIR/cuda/release/flowbot`. It loads at start the NVIDIA
# driver's libcuda.so.1 and the CUDA 13 libraries libcudart.so.13, libcublas.so.13 (with its
# libcublasLt.so.13) and libcurand.so.10; bench/cuda.sh finds them on a GPU machine.
#
# When a model is at hand ($FLOWBOT_MODEL, else the default model in the model cache), the binary is
# also run against the link stub of libcuda: `--device cuda` must fail with a clear error, and the
# candle backend must still generate on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/setup-cuda.sh)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/cuda"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== cargo build --release -p flowbot --features cuda (CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP, $(nvcc --version | grep -o 'release [0-9.]*'))"
started=$SECONDS
cargo build --locked --release -p flowbot --features cuda
echo "built $CARGO_TARGET_DIR/release/flowbot in $((SECONDS - started)) s"

binary="$CARGO_TARGET_DIR/release/flowbot"
needed="$(readelf -d "$binary" | grep NEEDED)"
for lib in libcuda.so.1 libcudart.so.13 libcublas.so.13 libcurand.so.10; do
    grep -q "\[$lib\]" <<<"$needed" || { echo "error: $binary does not link $lib" >&2; exit 1; }
done
echo "links: $(grep -o '\[lib[^]]*\]' <<<"$needed" | tr -d '[]' | tr '\n' ' ')"

model="${FLOWBOT_MODEL:-${FLOWBOT_DATA_DIR:-$HOME/.cache/flowbot}/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
if [[ ! -f "$model" ]]; then
    echo "no model at $model: run-time checks skipped"
    exit 0
fi
# The stub answers every driver call with an error, as a machine without a usable GPU would.
stub_dir="$(mktemp -d)"
trap 'rm -rf "$stub_dir"' EXIT
ln -s "$CUDA_HOME/lib/stubs/libcuda.so" "$stub_dir/libcuda.so.1"
export LD_LIBRARY_PATH="$stub_dir:$FLOWBOT_CUDA_LIB_DIR"
if message="$("$binary" model generate --model "$model" --device cuda --prompt hi --max-tokens 1 2>&1)"; then
    echo "error: --device cuda succeeded against the driver stub" >&2
    exit 1
fi
grep -q "cannot open cuda:0" <<<"$message" || { echo "error: unexpected failure: $message" >&2; exit 1; }
echo "--device cuda without a GPU: $message"
text="$(FLOWBOT_BACKEND=candle "$binary" model generate --model "$model" --device cpu --prompt "Say hello" --max-tokens 4)"
[[ -n "$text" ]] || { echo "error: the cuda build generated nothing on the CPU" >&2; exit 1; }
echo "--device cpu with the cuda build (candle): $text"
