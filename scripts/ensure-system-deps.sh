#!/usr/bin/env bash
# The test suite starts a real PostgreSQL server; install its binaries from Debian's packages when
# they are missing (CI and fresh machines run as root; elsewhere, say what to install).
set -euo pipefail

have_postgres() {
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ] && return 0
  done
  command -v initdb >/dev/null 2>&1
}

if ! have_postgres; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing the PostgreSQL server (Debian package 'postgresql')"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "The tests need the PostgreSQL server binaries: apt-get install postgresql (or your OS's package)." >&2
    exit 1
  fi
fi
