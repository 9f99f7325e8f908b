#!/usr/bin/env bash
# Install everything StreamLedger needs on this machine, idempotently:
#   1. checks Python >= 3.11, a JDK >= 17 and Maven (installs JDK/Maven with apt-get when missing and root);
#   2. a virtualenv in .venv with the exact pins of constraints.txt (pip cache: ~/.cache/pip);
#   3. the pure core compiled with mypyc into build/native/ (scripts/build_native.py, decision
#      0048): skipped when its sources are unchanged since the last build; a failed build stops
#      the setup. STREAMLEDGER_PURE_PYTHON=1 runs the Python sources instead;
#   4. the project's packages byte-compiled (decision 0121);
#   5. `streamledger infra install`: Kafka jars from Maven Central (cache: ~/.m2 and
#      ~/.cache/streamledger) and PostgreSQL server binaries (apt-get when missing and root).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }
fail() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

apt_install() {
  if [ "$(id -u)" != 0 ]; then fail "missing $*; install it (apt-get install $*) or run as root"; fi
  command -v apt-get >/dev/null || fail "missing $*; install it with your package manager"
  say "installing $* with apt-get"
  if [ ! -f /var/lib/apt/periodic/streamledger-updated ] ; then
    apt-get update -qq && mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/streamledger-updated
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# The interpreter that builds .venv: STREAMLEDGER_SETUP_PYTHON, else the first Python 3.11+ found.
find_python() {
  for candidate in "${STREAMLEDGER_SETUP_PYTHON:-}" python3 python3.13 python3.12 python3.11 /usr/bin/python3; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}
if ! PYTHON=$(find_python); then
  apt_install python3 python3-venv
  PYTHON=$(find_python) || fail "no Python 3.11+ with venv found; install python3 (3.11+) and python3-venv"
fi
command -v java >/dev/null || apt_install openjdk-17-jdk-headless
command -v mvn >/dev/null || apt_install maven
# pdftotext/pdftoppm: the statement PDF tests read the rendered pages back (issue 19)
command -v pdftotext >/dev/null || apt_install poppler-utils
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

# Before anything imports the core (the CLI below does): a build left stale by a pull would
# refuse to load. A C compiler is needed for the compiled core (mypyc).
command -v cc >/dev/null || command -v gcc >/dev/null || apt_install gcc libc6-dev
.venv/bin/python scripts/build_native.py
# Byte-compile the project's own packages once: with PYTHONDONTWRITEBYTECODE set (this machine
# sets it) every process would compile them again at start, ~1.6 s of CPU per CLI command and
# per child the tests and the demo start (decision 0121). Stale files are recompiled in memory.
.venv/bin/python -m compileall -q -j 0 api bench kafka_adapter ledger notifications pipeline \
  processors producers projections reconciliation schemas streamledger workloads >/dev/null

.venv/bin/streamledger infra install
