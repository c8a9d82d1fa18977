#!/usr/bin/env bash
# The PostgreSQL store beside sled, same run: `flowbot bench` on the reference order flow
# (../shared/bench/order_flow.rhai.bpmn, amounts alternating 500/1,500, 1,000 in flight), sled with
# group commit and PostgreSQL with group commit (one transaction per group), runs alternating,
# median of 3 each; each PostgreSQL run in a fresh database. Prints the server's settings first.
#
# Usage: bench/postgres.sh [INSTANCES]   (from the repository root; the dev build unless
# FLOWBOT_BIN names a binary; the private cluster of scripts/postgres-test-cluster.sh unless
# FLOWBOT_BENCH_POSTGRES_URL names a server)
set -euo pipefail
N="${1:-10000}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FLOW="$ROOT/../shared/bench/order_flow.rhai.bpmn"
VARS='[{"amount":500},{"amount":1500}]'
[ -f "$FLOW" ] || { echo "missing $FLOW (../shared/bench beside the repository)" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ -z "${FLOWBOT_BIN:-}" ]; then
  (cd "$ROOT" && cargo build -q -p flowbot)
fi
BIN="${FLOWBOT_BIN:-$CARGO_TARGET_DIR/debug/flowbot}"
SERVER_URL="${FLOWBOT_BENCH_POSTGRES_URL:-}"
if [ -z "$SERVER_URL" ]; then
  eval "$("$ROOT/scripts/postgres-test-cluster.sh" start)"
  SERVER_URL="$FLOWBOT_TEST_POSTGRES_URL"
fi
DB_URL="${SERVER_URL%/*}/flowbot_bench"

echo "PostgreSQL: $(psql -Atq "$SERVER_URL" -c 'SHOW server_version')," \
  "$(psql -Atq "$SERVER_URL" -c "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'wal_level', 'shared_buffers', 'max_wal_size', 'checkpoint_timeout', 'full_page_writes')")"
echo "flowbot bench, $N instances, median of 3, alternating (uptime: $(uptime | sed 's/.*load/load/'))"

# Runs flowbot bench; prints "instances_per_s".
run() {
  "$BIN" bench "$FLOW" --vars "$VARS" --json --instances "$N" --in-flight 1000 "$@" \
    | grep '^{' | tail -1 | python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["instances_per_s"])'
}
sled=()
pg=()
for _ in 1 2 3; do
  sled+=("$(run --store sled --durability group)")
  psql -q "$SERVER_URL" -c "DROP DATABASE IF EXISTS flowbot_bench WITH (FORCE)" -c "CREATE DATABASE flowbot_bench"
  pg+=("$(run --store postgres --store-url "$DB_URL" --durability group)")
done
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
printf '%-36s %10s   runs\n' "store" "inst/s"
printf '%-36s %10s   %s\n' "sled, group commit" "$(median "${sled[@]}")" "${sled[*]}"
printf '%-36s %10s   %s\n' "postgres, group commit (one node)" "$(median "${pg[@]}")" "${pg[*]}"
python3 -c 'import sys; print("postgres / sled: %.2f (goal >= 0.5)" % (float(sys.argv[2]) / float(sys.argv[1])))' \
  "$(median "${sled[@]}")" "$(median "${pg[@]}")"
