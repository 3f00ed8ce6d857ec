#!/bin/sh
# First start: a cluster whose postgres user has POSTGRES_PASSWORD (scram), reachable from
# the compose network; then PostgreSQL itself, in place of this shell (exec).
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pw="$(mktemp)"
  printf '%s\n' "${POSTGRES_PASSWORD:-postgres}" > "$pw"
  # UTF8 like the official image (a bare initdb here would pick SQL_ASCII, whose text
  # psycopg hands back as bytes).
  initdb -D "$PGDATA" -U postgres --pwfile="$pw" --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pw"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/run/postgresql
