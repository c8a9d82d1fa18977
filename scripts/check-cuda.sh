#!/usr/bin/env bash
# Checks that the `cuda` feature builds: installs the CUDA toolchain from PyPI
# (scripts/setup-cuda.sh), then builds the release `flowbot` binary with `--features cuda`.
# No GPU is needed. The build goes to its own target folder, `$CARGO_TARGET_DIR/cuda`
# (default target/cuda), so it neither replaces the default binary nor rebuilds its dependencies.
#
# The binary ends at `$CARGO_TARGET_DIR/cuda/release/flowbot`; it needs at run time the NVIDIA
# driver's libcuda.so.1 and the CUDA 13 libraries cudart, cuBLAS, cuRAND and NVRTC
# (bench/cuda.sh finds them on a GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/setup-cuda.sh)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/cuda"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== cargo build --release -p flowbot --features cuda (CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP, $(nvcc --version | grep -o 'release [0-9.]*'))"
started=$SECONDS
cargo build --locked --release -p flowbot --features cuda
echo "built $CARGO_TARGET_DIR/release/flowbot in $((SECONDS - started)) s"

# The binary must name the CUDA libraries it loads, and must still run where no GPU is present.
binary="$CARGO_TARGET_DIR/release/flowbot"
needed="$(readelf -d "$binary" | grep NEEDED)"
for lib in libcuda.so.1 libcudart.so.13 libcublas.so.13 libcurand.so.10 libnvrtc.so.13; do
    grep -q "\[$lib\]" <<<"$needed" || { echo "error: $binary does not link $lib" >&2; exit 1; }
done
echo "links: $(grep -o '\[lib[^]]*\]' <<<"$needed" | tr -d '[]' | tr '\n' ' ')"
