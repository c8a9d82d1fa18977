#!/usr/bin/env bash
# Runs every fuzz target (fuzz/src/bin/*.rs) for SECONDS each (default 60), one after another,
# under libFuzzer with a 2 GB RSS/malloc limit and a 10 s per-input timeout, so panics, aborts,
# hangs and unbounded growth are all findings. Prints one line per target (executions, time,
# findings) and exits 1 when any target found something; a finding's input is kept under
# target/fuzz/artifacts/TARGET/ (turn it into a regression test, see docs/fuzzing.md).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Builds with coverage instrumentation on the stable toolchain into $CARGO_TARGET_DIR/fuzz (or
# target/fuzz). Seeds: the shipped workflows and rules, the test data, fuzz/seeds/, and
# ../shared/corpus when present; the growing corpus lives in target/fuzz/corpus/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
SECONDS_PER_TARGET="${1:-60}"
shift || true
BASE="${CARGO_TARGET_DIR:-$ROOT/target}/fuzz"
BUILD="${FUZZ_BUILD_DIR:-$BASE/build}"
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"

mapfile -t ALL < <(ls fuzz/src/bin/*.rs | xargs -n1 basename | sed 's/\.rs$//')
TARGETS=("${@:-${ALL[@]}}")

echo "== build fuzz targets (${TARGETS[*]})"
start=$(date +%s)
(cd fuzz && CARGO_TARGET_DIR="$BUILD" cargo build --locked --release --target "$TRIPLE" \
    $(printf -- '--bin %s ' "${TARGETS[@]}"))
echo "build: $(( $(date +%s) - start )) s"

# seed TARGET: copies the seed files of TARGET into its corpus folder.
seed() {
    local target="$1" corpus="$BASE/corpus/$1"
    mkdir -p "$corpus"
    local files=()
    case "$target" in
        yaml) files=(workflows/*.yaml engine/tests/data/yaml/*.yaml) ;;
        bpmn) files=(workflows/*.bpmn engine/tests/data/bpmn/*/*.bpmn) ;;
        compile) files=(workflows/*.yaml workflows/*.bpmn engine/tests/data/yaml/*.yaml) ;;
        rhai | rules) files=(rules/*.rhai rules/lib/*.rhai) ;;
        intake) files=(examples/data/*.csv examples/data/*.json) ;;
        dmn) files=(workflows/*.dmn) ;;
    esac
    if [ -d "fuzz/seeds/$target" ]; then files+=("fuzz/seeds/$target"/*); fi
    if [ "$target" = gguf ]; then python3 fuzz/seeds/gguf.py "$corpus/seed.gguf"; fi
    if [ -d ../shared/corpus/dmn-tck ] && [ "$target" = dmn ]; then
        # The decision-table models of the DMN TCK (a sample).
        mapfile -t shared < <(find ../shared/corpus/dmn-tck -name '*.dmn' | sort | awk 'NR % 3 == 1')
        files+=("${shared[@]}")
    fi
    if [ -d ../shared/corpus ] && [[ "$target" = bpmn || "$target" = compile ]]; then
        # A sample of the third-party BPMN corpus (data files only; see its README).
        mapfile -t shared < <(find ../shared/corpus -name '*.bpmn' | sort | awk 'NR % 4 == 1')
        files+=("${shared[@]}")
    fi
    for f in "${files[@]}"; do
        [ -f "$f" ] && cp "$f" "$corpus/$(echo "$f" | tr '/' '_')"
    done
}

status=0
printf '%-12s %12s %8s %9s %s\n' target executions seconds findings corpus
for target in "${TARGETS[@]}"; do
    seed "$target"
    artifacts="$BASE/artifacts/$target"
    mkdir -p "$artifacts"
    log="$BASE/logs/$target.log"
    mkdir -p "$(dirname "$log")"
    before=$(ls "$artifacts" | wc -l)
    t0=$(date +%s)
    "$BUILD/$TRIPLE/release/$target" "$BASE/corpus/$target" \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
        -max_len=65536 -artifact_prefix="$artifacts/" -print_final_stats=1 -close_fd_mask=1 \
        > "$log" 2>&1 || true
    t1=$(date +%s)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    found=$(( $(ls "$artifacts" | wc -l) - before ))
    printf '%-12s %12s %8s %9s %s\n' "$target" "${execs:-?}" "$((t1 - t0))" "$found" "$(ls "$BASE/corpus/$target" | wc -l)"
    if [ "$found" -gt 0 ]; then
        status=1
        grep -E "panicked|ERROR: libFuzzer|SUMMARY" "$log" | head -5 | sed 's/^/    /'
        ls "$artifacts" | tail -"$found" | sed "s|^|    $artifacts/|"
    fi
done
exit "$status"
