#!/usr/bin/env bash
# Installs visitroom into a virtualenv from the committed lock (requirements/).
# Usage: scripts/install.sh server|test|bench   (VISITROOM_VENV, default .venv)
# Every package comes pinned with its hash; visitroom itself is then installed
# editable without resolving anything (see docs/operations.md, "Dependencies
# and the lock"; refresh the lock with scripts/lock.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-server}"
lock="requirements/$which.txt"
[ -f "$lock" ] || { echo "install.sh: no lock $lock (server, test or bench)" >&2; exit 2; }
VENV="${VISITROOM_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --require-hashes -r "$lock"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
