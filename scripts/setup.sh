#!/usr/bin/env bash
# Install everything StreamLedger needs on this machine, idempotently:
#   1. checks Python >= 3.11, a JDK >= 17 and Maven (installs JDK/Maven with apt-get when missing and root);
#   2. a virtualenv in .venv with the exact pins of constraints.txt (pip cache: ~/.cache/pip);
#   3. `streamledger infra install`: Kafka jars from Maven Central (cache: ~/.m2 and
#      ~/.cache/streamledger) and PostgreSQL server binaries (apt-get when missing and root).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }
fail() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

apt_install() {
  if [ "$(id -u)" != 0 ]; then fail "missing $*; install it (apt-get install $*) or run as root"; fi
  say "installing $* with apt-get"
  if [ ! -f /var/lib/apt/periodic/streamledger-updated ] ; then
    apt-get update -qq && mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/streamledger-updated
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null || fail "python3 not found; StreamLedger needs Python 3.11+"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || fail "Python 3.11+ is required, found $("$PYTHON" --version 2>&1)"
command -v java >/dev/null || apt_install openjdk-17-jdk-headless
command -v mvn >/dev/null || apt_install maven
java_major=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
[ "${java_major%%.*}" -ge 17 ] 2>/dev/null || fail "JDK 17+ is required, found ${java_major:-none}"

stamp=.venv/.installed
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "creating .venv and installing pinned packages (constraints.txt)"
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
  echo "$want" > "$stamp"
else
  say ".venv is up to date"
fi

.venv/bin/streamledger infra install
