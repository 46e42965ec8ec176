#!/usr/bin/env bash
# `make test-postgres`: the shared-study test against a real PostgreSQL server. Installs Debian's
# postgresql when it is missing (and removes it after), starts a throwaway cluster owned by the
# postgres user on loopback (a random port, its socket in the cluster's folder), runs the test,
# then stops the server and deletes the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
installed_here=0
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y --no-install-recommends postgresql >/dev/null
  installed_here=1
fi
bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cluster=$(mktemp -d "${TMPDIR:-/tmp}/afa-pg.XXXXXX")
[ "$(id -u)" -eq 0 ] && chown postgres "$cluster"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
cleanup() {
  as_pg "$bin/pg_ctl" -D "$cluster/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$cluster"
  if [ "$installed_here" -eq 1 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get purge -y postgresql 'postgresql-*' >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
echo "$password" > "$cluster/pw" && [ "$(id -u)" -eq 0 ] && chown postgres "$cluster/pw"
as_pg "$bin/initdb" -D "$cluster/data" -U afa --pwfile="$cluster/pw" -A scram-sha-256 >/dev/null
as_pg "$bin/pg_ctl" -D "$cluster/data" -l "$cluster/log" -w -o "-c listen_addresses=127.0.0.1 -p $port -k $cluster" start >/dev/null
PGPASSWORD="$password" as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U afa afa_test
export AFA_TEST_POSTGRES_URL="postgresql+psycopg://afa:$password@127.0.0.1:$port/afa_test"
node_modules/.bin/mocha --no-config -n import=tsx --require test/setup.ts --timeout 300000 --exit test/postgres/shared-study.pg.ts
