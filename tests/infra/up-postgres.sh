#!/usr/bin/env bash
# A PostgreSQL server for the team-store tests: a cluster of its own (its own data
# directory, socket directory and port on 127.0.0.1), never the machine's. Roles:
# runctl_test_admin (makes databases and roles: what a DBA runs `runctl store init` as),
# alice and bob (two teammates). Their passwords are in $STATE/pgpass (0600), the libpq
# password file the tests point PGPASSFILE at. Idempotent: a server that answers on the
# port is reused as it is.
set -euo pipefail
STATE=${RUNCTL_TEST_PG_STATE:-/var/lib/runctl-test-pg}
PORT=${RUNCTL_TEST_PG_PORT:-55433}
export DEBIAN_FRONTEND=noninteractive

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
    bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
id postgres >/dev/null 2>&1 || useradd --system --home-dir "$STATE" --shell /usr/sbin/nologin postgres

mkdir -p "$STATE/sock"
chown postgres "$STATE" "$STATE/sock"
chmod 700 "$STATE"
as_pg() { runuser -u postgres -- "$@"; }

if ! as_pg "$bindir/pg_isready" -q -h "$STATE/sock" -p "$PORT"; then
    if [ ! -s "$STATE/data/PG_VERSION" ]; then
        rm -rf "$STATE/data"
        as_pg "$bindir/initdb" -D "$STATE/data" -U postgres --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    fi
    as_pg "$bindir/pg_ctl" -D "$STATE/data" -l "$STATE/server.log" -w -t 60 start \
        -o "-p $PORT -k $STATE/sock -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" >/dev/null
fi

if [ ! -s "$STATE/passwords" ]; then
    umask 077
    for who in runctl_test_admin alice bob; do echo "$who $(head -c 18 /dev/urandom | base64 | tr -d '/+=')"; done >"$STATE/passwords"
fi
: >"$STATE/pgpass.new"
while read -r who pw; do
    as_pg psql -q -h "$STATE/sock" -p "$PORT" -d postgres -v ON_ERROR_STOP=1 -v who="$who" -v pw="$pw" <<'SQL' >/dev/null
SELECT format('CREATE ROLE %I LOGIN', :'who') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'who') \gexec
SELECT format('ALTER ROLE %I PASSWORD %L', :'who', :'pw') \gexec
SQL
    echo "127.0.0.1:$PORT:*:$who:$pw" >>"$STATE/pgpass.new"
done <"$STATE/passwords"
as_pg psql -q -h "$STATE/sock" -p "$PORT" -d postgres -c "ALTER ROLE runctl_test_admin CREATEDB CREATEROLE" >/dev/null
chmod 600 "$STATE/pgpass.new"
mv "$STATE/pgpass.new" "$STATE/pgpass"
echo "postgres ok: 127.0.0.1:$PORT (roles runctl_test_admin, alice, bob; PGPASSFILE=$STATE/pgpass)"
