#!/usr/bin/env bash
# Makes sure RabbitMQ and Postgres answer, in this order of preference:
#   1. they already answer (anywhere HOOKLINE_AMQP_URL / HOOKLINE_DATABASE_URL point);
#   2. local installs exist: start them;
#   3. a Docker engine works: deploy/compose.yaml;
#   4. Debian/Ubuntu as root: apt-get install them, start them, let `postgres` in on loopback;
#   5. otherwise: say exactly what to install.
# Idempotent, and silent when both already answer.
set -euo pipefail

cd "$(dirname "$0")/.."
WAIT_S="${HOOKLINE_SERVICES_WAIT_S:-60}"

# host and port of a URL like scheme://user:pass@host:port/path
url_host() { local rest="${1#*://}"; rest="${rest##*@}"; rest="${rest%%/*}"; echo "${rest%%:*}"; }
url_port() {
  local rest="${1#*://}"; rest="${rest##*@}"; rest="${rest%%/*}"
  if [[ "$rest" == *:* ]]; then echo "${rest##*:}"; else echo "$2"; fi
}

AMQP_URL="${HOOKLINE_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}"
DB_URL="${HOOKLINE_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/hookline}"
MQ_HOST="$(url_host "$AMQP_URL")"; MQ_PORT="$(url_port "$AMQP_URL" 5672)"
PG_HOST="$(url_host "$DB_URL")"; PG_PORT="$(url_port "$DB_URL" 5432)"

say() { echo "ensure-services: $*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
is_local() { [[ "$1" == 127.0.0.1 || "$1" == localhost || "$1" == ::1 ]]; }
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

rabbit_up() {
  port_open "$MQ_HOST" "$MQ_PORT" || return 1
  # The port opens before the broker is fully booted; the node itself knows better, when local.
  if is_local "$MQ_HOST" && have rabbitmq-diagnostics && pgrep -x beam.smp >/dev/null 2>&1; then
    rabbitmq-diagnostics -q ping >/dev/null 2>&1 || return 1
  fi
}

postgres_up() {
  port_open "$PG_HOST" "$PG_PORT" || return 1
  if have pg_isready; then pg_isready -q -h "$PG_HOST" -p "$PG_PORT" || return 1; fi
}

both_up() { rabbit_up && postgres_up; }

wait_for_both() {
  local deadline=$((SECONDS + WAIT_S))
  until both_up; do
    if ((SECONDS >= deadline)); then
      rabbit_up || say "RabbitMQ does not answer on $MQ_HOST:$MQ_PORT after ${WAIT_S}s"
      postgres_up || say "Postgres does not answer on $PG_HOST:$PG_PORT after ${WAIT_S}s"
      return 1
    fi
    sleep 1
  done
}

pg_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1; }

start_local_rabbit() {
  is_local "$MQ_HOST" && have rabbitmq-server || return 1
  say "starting the local RabbitMQ (rabbitmq-server -detached)"
  rabbitmq-server -detached >/dev/null 2>&1 || true
}

start_local_postgres() {
  is_local "$PG_HOST" && have pg_ctlcluster && [[ -n "$(pg_version)" ]] || return 1
  say "starting the local Postgres $(pg_version)"
  pg_ctlcluster --skip-systemctl-redirect "$(pg_version)" main start >/dev/null 2>&1 || true
}

start_local() {
  local started=1
  if ! rabbit_up && start_local_rabbit; then started=0; fi
  if ! postgres_up && start_local_postgres; then started=0; fi
  return $started
}

start_docker() {
  have docker && docker info >/dev/null 2>&1 || return 1
  say "starting RabbitMQ and Postgres with docker compose (deploy/compose.yaml)"
  docker compose -f deploy/compose.yaml up -d rabbitmq postgres
}

# HOOKLINE_DATABASE_URL defaults to `postgres` without a password on 127.0.0.1: trust exactly
# that, and only on an install this script made, never on one it found.
trust_postgres_on_loopback() {
  local hba="/etc/postgresql/$(pg_version)/main/pg_hba.conf"
  [[ -f "$hba" ]] || return 0
  if ! grep -q '^# hookline: trust postgres on loopback' "$hba"; then
    local tmp; tmp="$(mktemp)"
    {
      echo '# hookline: trust postgres on loopback (development install by ensure-services.sh)'
      echo 'host all postgres 127.0.0.1/32 trust'
      echo 'host all postgres ::1/128 trust'
      cat "$hba"
    } >"$tmp"
    cat "$tmp" >"$hba" && rm -f "$tmp"
  fi
}

install_with_apt() {
  [[ -f /etc/debian_version && "$(id -u)" == 0 ]] && have apt-get || return 1
  is_local "$MQ_HOST" && is_local "$PG_HOST" || return 1
  say "installing rabbitmq-server and postgresql with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server postgresql >/dev/null
  trust_postgres_on_loopback
  rabbit_up || start_local_rabbit || true
  if postgres_up; then
    pg_ctlcluster --skip-systemctl-redirect "$(pg_version)" main reload >/dev/null 2>&1 || true
  else
    start_local_postgres || true
  fi
}

explain_and_fail() {
  say "cannot make RabbitMQ and Postgres answer on this machine. Install either:"
  say "  - RabbitMQ 3.10+ (listening on $MQ_HOST:$MQ_PORT, user guest/guest) and PostgreSQL 15+"
  say "    (on $PG_HOST:$PG_PORT, user postgres allowed without a password from 127.0.0.1,"
  say "    or set HOOKLINE_DATABASE_URL / HOOKLINE_AMQP_URL to where yours are), or"
  say "  - Docker, then run: docker compose -f deploy/compose.yaml up -d rabbitmq postgres"
  exit 1
}

main() {
  both_up && exit 0
  if start_local && wait_for_both; then exit 0; fi
  if start_docker && wait_for_both; then exit 0; fi
  if install_with_apt && wait_for_both; then exit 0; fi
  explain_and_fail
}

main "$@"
