#!/bin/sh
set -eu
DATA=/var/lib/postgresql/data
mkdir -p "$DATA" /var/run/postgresql
chown -R postgres:postgres "$DATA" /var/run/postgresql
chmod 700 "$DATA"
if [ ! -f "$DATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
  chown postgres "$pwfile"
  runuser -u postgres -- initdb -D "$DATA" -U "$POSTGRES_USER" --pwfile="$pwfile" \
    -E UTF8 --auth-local=trust --auth-host=scram-sha-256
  rm -f "$pwfile"
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$DATA/pg_hba.conf"
  runuser -u postgres -- pg_ctl -D "$DATA" -w start -o "-c listen_addresses=''"
  runuser -u postgres -- createdb -U "$POSTGRES_USER" "$POSTGRES_DB"
  runuser -u postgres -- pg_ctl -D "$DATA" -w stop
fi
exec runuser -u postgres -- postgres -D "$DATA" -c listen_addresses='*'
