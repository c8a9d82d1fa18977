#!/usr/bin/env bash
# HTTP throughput of `flowbot serve` on loopback: start-instance (the order flow to its first wait,
# the review task) and get-instance, 32 keep-alive connections from a second process (the Rust load
# generator tests/examples/http_load.rs), for the sled store with group commit, the memory store
# and, with STORES including `postgres`, the PostgreSQL store (group commit) on the private cluster
# of scripts/postgres-test-cluster.sh (or the server of $FLOWBOT_BENCH_POSTGRES_URL), in a fresh
# database `flowbot_bench`. Prints one line per run: store, route, and a JSON object with
# requests/s, p50, p99 and max latency in ms.
#
# Usage: [STORES="sled memory postgres"] [GENERATOR=wrk] bench/http.sh [SECONDS] [CONNECTIONS]
# (from the repository root; builds --release, or the dev profile with PROFILE=dev).
# GENERATOR=wrk drives the same loads with wrk (Debian's `wrk` package; bench/http_load.lua, two
# threads), which spends about a third of http_load's CPU per request on the shared cores.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN="${1:-10}"
CONNECTIONS="${2:-32}"
TARGET="${CARGO_TARGET_DIR:-target}"
PROFILE="${PROFILE:-release}"
if [ "$PROFILE" = dev ]; then
  cargo build -p flowbot >&2
  cargo build -p flowbot-e2e --example http_load >&2
  OUT_DIR="$TARGET/debug"
else
  cargo build --release -p flowbot >&2
  cargo build --release -p flowbot-e2e --example http_load >&2
  OUT_DIR="$TARGET/release"
fi
BIN="$OUT_DIR/flowbot"
LOAD="$OUT_DIR/examples/http_load"

WORK="$(mktemp -d)"
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/workflows"
cp workflows/order_processing.yaml workflows/order_review.dmn "$WORK/workflows/"
cp -r rules "$WORK/rules"

STORES="${STORES:-sled memory}"
if [[ " $STORES " == *" postgres "* ]]; then
  SERVER_URL="${FLOWBOT_BENCH_POSTGRES_URL:-}"
  if [ -z "$SERVER_URL" ]; then
    eval "$(scripts/postgres-test-cluster.sh start)"
    SERVER_URL="$FLOWBOT_TEST_POSTGRES_URL"
  fi
  PG_URL="${SERVER_URL%/*}/flowbot_bench"
fi

for store in $STORES; do
  DATA="$WORK/data-$store"
  STORE_ARGS=()
  [ "$store" = memory ] && STORE_ARGS=(--store memory)
  if [ "$store" = postgres ]; then
    psql -q "$SERVER_URL" -c "DROP DATABASE IF EXISTS flowbot_bench WITH (FORCE)" -c "CREATE DATABASE flowbot_bench"
    STORE_ARGS=(--store "$PG_URL")
  fi
  RUST_LOG=warn "$BIN" serve --addr 127.0.0.1:0 --data "$DATA" --workflows "$WORK/workflows" \
    --rules "$WORK/rules" --complete-jobs "${STORE_ARGS[@]}" 2>"$WORK/serve-$store.log" &
  SERVER=$!
  for _ in $(seq 100); do
    grep -q "listening on" "$WORK/serve-$store.log" && break
    sleep 0.1
  done
  BASE="$(sed -n 's/^listening on //p' "$WORK/serve-$store.log")"
  for mode in start get; do
    printf '%-6s %-5s ' "$store" "$mode"
    if [ "${GENERATOR:-http_load}" = wrk ]; then
      # wrk needs the instance of `get` named up front.
      INSTANCE=""
      if [ "$mode" = get ]; then
        INSTANCE="/api/v1/instances/$(curl -sf "$BASE/api/v1/instances" -H 'Content-Type: application/json' \
          -d '{"process":"order_processing","variables":{"order_id":"SO-get","customer":"c","amount":20000}}' |
          sed -n 's/.*"id":"\([^"]*\)".*/\1/p')"
      fi
      wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" -s bench/http_load.lua "$BASE" -- "$mode" $INSTANCE | tail -1
    else
      "$LOAD" "$BASE" "$mode" "$CONNECTIONS" "$SECONDS_PER_RUN"
    fi
  done
  kill -TERM "$SERVER"
  wait "$SERVER" || true
done
