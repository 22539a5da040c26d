#!/usr/bin/env bash
# Make sure RabbitMQ and PostgreSQL are up for the test suite: start them if stopped,
# install them with apt-get if missing (and systemd, for `systemd-analyze verify` of the
# units in deploy/systemd, and Chromium, for the dashboard's browser tests).
# Idempotent; prints what it did.
set -euo pipefail

need_root() { [ "$(id -u)" -eq 0 ] || { echo "ensure-services: run as root to install/start $1" >&2; exit 1; }; }

wait_for() {  # name, command
  for _ in $(seq 1 60); do
    if eval "$2" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "ensure-services: $1 did not come up" >&2
  exit 1
}

if ! command -v systemd-analyze >/dev/null 2>&1; then
  need_root systemd
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q systemd
fi

# Debian's Chromium, for the dashboard's browser tests (driven by playwright-python with
# executable_path=/usr/bin/chromium; browsers are never downloaded by a test tool).
if ! [ -x /usr/bin/chromium ]; then
  need_root chromium
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi

if ! command -v rabbitmq-server >/dev/null 2>&1; then
  need_root rabbitmq
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q rabbitmq-server
fi
if ! rabbitmqctl -q status >/dev/null 2>&1; then
  need_root rabbitmq
  echo "ensure-services: starting RabbitMQ"
  rabbitmq-server -detached || true
  wait_for RabbitMQ "rabbitmqctl -q await_startup"
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  need_root postgresql
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  need_root postgresql
  echo "ensure-services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  wait_for PostgreSQL "pg_isready -q -h 127.0.0.1 -p 5432"
fi
if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1; then
  # A freshly installed cluster asks for passwords over TCP; the test suite uses
  # trust auth on loopback only, as the development machines are set up.
  need_root postgresql
  hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -n1)
  echo "ensure-services: enabling loopback trust auth in $hba for the test suite"
  sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main reload
  sleep 1
fi
psql -h 127.0.0.1 -U postgres -d postgres -tAc 'select 1' >/dev/null \
  || { echo "ensure-services: cannot log in to PostgreSQL as postgres on 127.0.0.1" >&2; exit 1; }
echo "ensure-services: RabbitMQ and PostgreSQL are up"
