#!/usr/bin/env bash
# Engine throughput: `flowbot bench` on the reference order flow for the memory store and for sled
# with per-step and group flushing (1,000 instances in flight), with peak memory, then the peer
# engines (SpiffWorkflow, bpmn-engine) on their copies of the same graph, and the ratios.
#
# Usage: bench/engine.sh [INSTANCES]   (from the repository root; needs ../shared/bench)
# Peers are looked up in /tmp/peers (see ../shared/bench/peers/README.md to install them).
set -euo pipefail
N="${1:-20000}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="$ROOT/../shared/bench"
FLOW="$SHARED/order_flow.rhai.bpmn"
VARS='[{"amount":500},{"amount":1500}]'
[ -f "$FLOW" ] || { echo "missing $FLOW (../shared/bench beside the repository)" >&2; exit 1; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
(cd "$ROOT" && cargo build --release -q -p flowbot)
BIN="${FLOWBOT_BIN:-$CARGO_TARGET_DIR/release/flowbot}"

# Runs flowbot bench; prints "instances_per_s steps_per_s peak_rss_kib".
run_flowbot() {
    local out
    out=$( { /usr/bin/time -v "$BIN" bench "$FLOW" --vars "$VARS" --json "$@" 2>&1 1>&3 3>&-; } 3>&1 )
    local json rss
    json=$(printf '%s\n' "$out" | grep '^{' | tail -1)
    rss=$(printf '%s\n' "$out" | awk -F': ' '/Maximum resident set size/ {print $2}')
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.0f %.0f %s" % (d["instances_per_s"], d["steps_per_s"], sys.argv[2]))' "$json" "$rss"
}

median3() { # command... → the run with the median instances/s
    local runs=()
    for _ in 1 2 3; do runs+=("$("$@")"); done
    printf '%s\n' "${runs[@]}" | sort -n | sed -n 2p
}

echo "flowbot bench, $N instances of order_flow.rhai.bpmn, median of 3 (uptime: $(uptime | sed 's/.*load/load/'))"
printf '%-34s %12s %12s %14s\n' "configuration" "inst/s" "steps/s" "peak RSS KiB"
read -r mem_ips mem_sps mem_rss < <(median3 run_flowbot --instances "$N" --store memory)
printf '%-34s %12s %12s %14s\n' "memory" "$mem_ips" "$mem_sps" "$mem_rss"
SLED_N=$(( N < 5000 ? N : 5000 ))
read -r grp_ips grp_sps grp_rss < <(median3 run_flowbot --instances "$N" --store sled --durability group --in-flight 1000)
printf '%-34s %12s %12s %14s\n' "sled, group commit, 1000 in flight" "$grp_ips" "$grp_sps" "$grp_rss"
read -r stp_ips stp_sps stp_rss < <(median3 run_flowbot --instances "$SLED_N" --store sled --durability step --in-flight 1000)
printf '%-34s %12s %12s %14s\n' "sled, flush per step ($SLED_N inst.)" "$stp_ips" "$stp_sps" "$stp_rss"

spiff_ips=""
node_ips=""
if [ -x /tmp/peers/venv/bin/python ]; then
    spiff_out=$(cd "$SHARED" && /tmp/peers/venv/bin/python peers/spiff_peer.py bench order_flow.bpmn --n 3000 --repeat 3 2>&1 || true)
    echo "SpiffWorkflow: $(printf '%s\n' "$spiff_out" | tail -3 | tr '\n' ' ')"
    spiff_ips=$(printf '%s\n' "$spiff_out" | grep -oE '"median_instances_per_sec": [0-9.]+' | grep -oE '[0-9.]+$' | tail -1 || true)
else
    echo "SpiffWorkflow not installed in /tmp/peers/venv: skipped"
fi
if [ -d "${PEERS_NODE_DIR:-/tmp/peers/node}/node_modules/bpmn-engine" ]; then
    node_out=$(cd "$SHARED" && node peers/bpmn_engine_peer.mjs bench order_flow.js.bpmn --n 1000 --repeat 3 2>&1 || true)
    echo "bpmn-engine: $(printf '%s\n' "$node_out" | tail -3 | tr '\n' ' ')"
    node_ips=$(printf '%s\n' "$node_out" | grep -oE '"median_instances_per_sec": ?[0-9.]+' | grep -oE '[0-9.]+$' | tail -1 || true)
else
    echo "bpmn-engine not installed in /tmp/peers/node: skipped"
fi

echo
echo "ratios"
python3 - "$mem_ips" "$grp_ips" "$stp_ips" "${spiff_ips:-0}" "${node_ips:-0}" <<'PY'
import sys
mem, grp, stp, spiff, node = (float(x or 0) for x in sys.argv[1:])
print(f"sled group / memory           {grp / mem:6.2f}  (target >= 0.5)")
print(f"sled step  / memory           {stp / mem:6.2f}")
if spiff: print(f"memory / SpiffWorkflow        {mem / spiff:6.1f}x (target >= 100x)")
if node:  print(f"memory / bpmn-engine          {mem / node:6.1f}x")
if spiff: print(f"sled group / SpiffWorkflow    {grp / spiff:6.1f}x")
PY
