#!/usr/bin/env bash
# Sets up everything Amivono needs on Debian or Ubuntu, as root, and reuses
# what is already there: Debian packages, PostgreSQL, Asterisk, the venv.
# Sourced by scripts/run.sh and scripts/test.sh; safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { echo "setup: $*" >&2; }
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then apt-get update -qq >&2; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# Python 3.11+ with venv.
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  say "installing python3 and python3-venv"
  apt_install python3 python3-venv python3-dev gcc
  PY=/usr/bin/python3
fi

# Tools the sandbox and set-up use.
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v psql >/dev/null || missing+=(postgresql-client)
command -v curl >/dev/null || missing+=(curl ca-certificates)
# Text-to-speech for voice messages' `text` (English, Swedish and more; GPL-3).
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
if [ ${#missing[@]} -gt 0 ]; then say "installing ${missing[*]}"; apt_install "${missing[@]}"; fi

# PostgreSQL on 127.0.0.1:5432. CI and these machines run one already; on a
# fresh machine install Debian's and let the local postgres role in over
# loopback without a password, as those machines do.
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
if ! pg_up; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    say "installing PostgreSQL"
    apt_install postgresql
  fi
  ver=$(ls /etc/postgresql | sort -V | tail -1)
  hba="/etc/postgresql/$ver/main/pg_hba.conf"
  if ! grep -q "amivono" "$hba"; then
    sed -i '1i host all postgres 127.0.0.1/32 trust # amivono: local demo and tests' "$hba"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start >&2 || pg_ctlcluster "$ver" main start >&2
  for _ in $(seq 50); do pg_up && break; sleep 0.2; done
fi

# Asterisk: the system's, or a cached Debian sid root (a minute, once).
bash asterisk/install.sh >/dev/null

# The venv, reinstalled only when pyproject.toml changes.
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
stamp=".venv/.amivono-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  say "installing Python packages"
  if ! { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -e '.[test]'; } \
      >.venv/pip.log 2>&1; then
    cat .venv/pip.log >&2
    exit 1
  fi
  rm -f .venv/.amivono-*
  touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
