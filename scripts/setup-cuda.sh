#!/usr/bin/env bash
# Installs what `cargo build --features cuda` needs, without a GPU and without a system CUDA
# toolkit: NVIDIA's PyPI wheels of CUDA 13.0 (nvcc, headers, cudart, cuBLAS, cuRAND, NVRTC) in a
# virtual environment, plus the two things the wheels lack for linking:
#   - unversioned `libX.so` links next to the wheels' `libX.so.N`,
#   - `lib/stubs/libcuda.so`, a stub of the driver library made from the symbols of `cuda.h`
#     (the real `libcuda.so.1` comes with the NVIDIA driver on the machine that runs the binary).
#
# Prints `export` lines on stdout; use it as
#     eval "$(scripts/setup-cuda.sh)"
# Progress goes to stderr. Running it again reuses the environment.
#
# Environment:
#   FLOWBOT_CUDA_DIR   where the virtual environment goes (default: .data/cuda in the repo)
#   CUDA_COMPUTE_CAP   GPU generation to compile kernels for (default 90: H100/H200; 80: A100)
#
# CUDA 13.0 is chosen because NVRTC/PTX from a toolkit newer than the driver do not load: 13.0 PTX
# loads on any CUDA 13 driver (580 and later).
set -euo pipefail
cd "$(dirname "$0")/.."

CUDA_TOOLKIT_VERSION=13.0.2
PACKAGES=("cuda-toolkit[nvcc,crt,nvvm,cudart,cccl,cublas,curand,nvrtc]==$CUDA_TOOLKIT_VERSION")

dir="${FLOWBOT_CUDA_DIR:-$PWD/.data/cuda}"
venv="$dir/venv"
marker="$venv/.flowbot-cuda-packages"

log() { echo "setup-cuda: $*" >&2; }

if [[ ! -f "$marker" || "$(cat "$marker")" != "${PACKAGES[*]}" ]]; then
    log "installing ${PACKAGES[*]} into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}" >&2
    printf '%s' "${PACKAGES[*]}" >"$marker"
fi

# The wheels share one tree laid out like a toolkit: bin/nvcc, include/, lib/, nvvm/.
root="$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
[[ -x "$root/bin/nvcc" ]] || { log "no nvcc in $root/bin: the wheels did not install"; exit 1; }

for versioned in "$root"/lib/lib*.so.*; do
    name="$(basename "$versioned")"
    [[ "$name" == *.alt.so.* ]] && continue
    ln -sfn "$name" "$root/lib/${name%%.so.*}.so"
done

stub="$root/lib/stubs/libcuda.so"
if [[ ! -f "$stub" ]]; then
    log "building the link stub $stub"
    mkdir -p "$root/lib/stubs"
    "$venv/bin/python" - "$root/include/cuda.h" "$root/lib/stubs/libcuda_stub.c" <<'PY'
import re, subprocess, sys

header, out = sys.argv[1], sys.argv[2]
raw = open(header).read()
# Preprocessing applies the header's `#define cuX cuX_v2` renames, which are the names linked.
expanded = subprocess.run(["cc", "-E", "-P", "-I", header.rsplit("/", 1)[0], header],
                          check=True, capture_output=True, text=True).stdout
names = sorted(set(re.findall(r"\b(cu[A-Z]\w*)\s*\(", expanded)) |
               set(re.findall(r"\b(cu[A-Z]\w*)\s*\(", raw)))
with open(out, "w") as f:
    f.write("/* Link stub of the CUDA driver library: never loaded at run time. */\n")
    for name in names:
        f.write(f"int {name}(void) {{ return 999; }}\n")
PY
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub" "$root/lib/stubs/libcuda_stub.c"
fi

cat <<EOF
export PATH="$root/bin:\$PATH"
export CUDA_HOME="$root"
export CUDA_PATH="$root"
export CUDA_ROOT="$root"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export FLOWBOT_CUDA_LIB_DIR="$root/lib"
EOF
