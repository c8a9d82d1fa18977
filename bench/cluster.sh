#!/usr/bin/env bash
# Several `flowbot serve --cluster` nodes on one PostgreSQL database beside one node on sled (group
# commit), same run: start-instance of the order flow (to its review task) over HTTP, 32
# keep-alive connections spread over the nodes (tests/examples/http_load.rs), for 1, 2 and 3
# nodes, each run in a fresh database. Prints the server's settings, then one line per run:
# requests/s, p50, p99 and max latency in ms.
#
# Usage: bench/cluster.sh [SECONDS] [CONNECTIONS]   (from the repository root; builds --release,
# or the dev profile with PROFILE=dev; the private cluster of scripts/postgres-test-cluster.sh
# unless FLOWBOT_BENCH_POSTGRES_URL names a server)
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN="${1:-10}"
CONNECTIONS="${2:-32}"
TARGET="${CARGO_TARGET_DIR:-target}"
PROFILE="${PROFILE:-release}"
if [ "$PROFILE" = dev ]; then
  cargo build -q -p flowbot >&2
  cargo build -q -p flowbot-e2e --example http_load >&2
  OUT_DIR="$TARGET/debug"
else
  cargo build -q --release -p flowbot >&2
  cargo build -q --release -p flowbot-e2e --example http_load >&2
  OUT_DIR="$TARGET/release"
fi
BIN="$OUT_DIR/flowbot"
LOAD="$OUT_DIR/examples/http_load"

SERVER_URL="${FLOWBOT_BENCH_POSTGRES_URL:-}"
if [ -z "$SERVER_URL" ]; then
  eval "$(scripts/postgres-test-cluster.sh start)"
  SERVER_URL="$FLOWBOT_TEST_POSTGRES_URL"
fi
PG_URL="${SERVER_URL%/*}/flowbot_bench_cluster"

WORK="$(mktemp -d)"
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/workflows"
cp workflows/order_processing.yaml workflows/order_review.dmn "$WORK/workflows/"
cp -r rules "$WORK/rules"

echo "PostgreSQL: $(psql -Atq "$SERVER_URL" -c 'SHOW server_version')," \
  "$(psql -Atq "$SERVER_URL" -c "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'max_wal_size', 'full_page_writes')")"
echo "$(nproc) CPUs; $SECONDS_PER_RUN s per run, $CONNECTIONS connections (uptime: $(uptime | sed 's/.*load/load/'))"

# Starts node NAME with the store arguments after it; sets BASE to its base URL.
start_node() {
  local name="$1"
  shift
  RUST_LOG=warn "$BIN" serve --addr 127.0.0.1:0 --data "$WORK/data-$name" \
    --workflows "$WORK/workflows" --rules "$WORK/rules" --complete-jobs "$@" \
    >/dev/null 2>"$WORK/serve-$name.log" &
  PIDS+=($!)
  for _ in $(seq 200); do
    grep -q "listening on" "$WORK/serve-$name.log" && break
    sleep 0.1
  done
  BASE="$(sed -n 's/^listening on //p' "$WORK/serve-$name.log")"
}

# Waits until every base URL answers /readyz with 200 (each node serves some shards).
wait_ready() {
  for base in "$@"; do
    for _ in $(seq 300); do
      [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ] && break
      sleep 0.1
    done
  done
}

stop_nodes() {
  kill -TERM "${PIDS[@]}" 2>/dev/null || true
  wait "${PIDS[@]}" 2>/dev/null || true
  PIDS=()
}

printf '%-28s ' "sled, 1 node"
start_node sled
wait_ready "$BASE"
"$LOAD" "$BASE" start "$CONNECTIONS" "$SECONDS_PER_RUN"
stop_nodes

for nodes in 1 2 3; do
  psql -q "$SERVER_URL" -c "DROP DATABASE IF EXISTS flowbot_bench_cluster WITH (FORCE)" \
    -c "CREATE DATABASE flowbot_bench_cluster"
  bases=()
  for n in $(seq "$nodes"); do
    start_node "pg-$nodes-$n" --store "$PG_URL" --cluster --node-id "bench-$n"
    bases+=("$BASE")
  done
  wait_ready "${bases[@]}"
  # Rounds settle the shares (every third of the 10 s lease): wait until they cover all 64.
  sleep 8
  printf '%-28s ' "postgres, $nodes node(s)"
  "$LOAD" "$(IFS=,; echo "${bases[*]}")" start "$CONNECTIONS" "$SECONDS_PER_RUN"
  stop_nodes
done
