#!/usr/bin/env bash
# Installs visitroom in ./.venv from the lock and starts it on the embedded
# default: one machine, no Redis, data in ./data. Extra arguments go to
# `visitroom serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VISITROOM_VENV:-.venv}"
bash scripts/install.sh server
exec "$VENV/bin/visitroom" serve --data-dir "${VISITROOM_DATA_DIR:-data}" "$@"
