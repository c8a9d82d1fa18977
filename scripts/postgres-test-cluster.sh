#!/usr/bin/env bash
# A private PostgreSQL cluster for the tests and benchmarks: `start` creates it (once) in a
# folder owned by the `postgres` user (PostgreSQL refuses to run as root), starts it on
# 127.0.0.1 only, and prints its URL; `stop` stops it; `url` prints the URL of a running one.
#
#   eval "$(scripts/postgres-test-cluster.sh start)"   # exports FLOWBOT_TEST_POSTGRES_URL
#   scripts/postgres-test-cluster.sh stop
#
# Needs Debian's `postgresql` package (`apt-get install -y postgresql`). Settings:
#   FLOWBOT_PG_DIR   the cluster folder (default /tmp/flowbot-pg)
#   FLOWBOT_PG_PORT  the port (default: the first free one from 54329)
# Authentication is `trust` on loopback: a throwaway cluster for tests, never for data.
set -euo pipefail

dir="${FLOWBOT_PG_DIR:-/tmp/flowbot-pg}"
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "no PostgreSQL server found under /usr/lib/postgresql: apt-get install -y postgresql" >&2
  exit 2
fi

# Runs a command as the owner of the cluster: `postgres` when we are root, else ourselves.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

port_of() { sed -n 's/^port = \([0-9]*\).*/\1/p' "$dir/data/postgresql.auto.conf" 2>/dev/null | tail -n 1; }

url() { echo "postgres://postgres@127.0.0.1:$(port_of)/postgres"; }

free_port() {
  local port="${FLOWBOT_PG_PORT:-54329}"
  while (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}

case "${1:-}" in
  start)
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      mkdir -p "$dir"
      [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
      as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
      port="$(free_port)"
      # Loopback only, a socket folder inside the cluster folder; settings stated in bench/README.md.
      as_owner tee -a "$dir/data/postgresql.auto.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
shared_buffers = '256MB'
fsync = on
synchronous_commit = on
EOF
    fi
    if ! as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
        || { cat "$dir/server.log" >&2; exit 1; }
    fi
    echo "export FLOWBOT_TEST_POSTGRES_URL=$(url)"
    ;;
  stop)
    if [ -f "$dir/data/PG_VERSION" ] && as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    fi
    ;;
  restart)
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m fast -w restart >/dev/null
    ;;
  url)
    url
    ;;
  *)
    echo "usage: $0 start|stop|restart|url" >&2
    exit 2
    ;;
esac
