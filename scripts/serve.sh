#!/usr/bin/env bash
# Installs visitroom in ./.venv and starts it on the embedded default: one
# machine, no Redis, data in ./data. Extra arguments go to `visitroom serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VISITROOM_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -e .
exec "$VENV/bin/visitroom" serve --data-dir "${VISITROOM_DATA_DIR:-data}" "$@"
