#!/usr/bin/env bash
# Installs the benchmarks' dependencies from the lock (requirements/bench.txt)
# and runs one benchmark: scripts/bench.sh media_fanout.py --json results/media.json
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VISITROOM_VENV:-.venv}"
[ $# -ge 1 ] || { echo "usage: scripts/bench.sh SCRIPT.py [ARGS...]  (scripts in bench/)" >&2; exit 2; }
bash scripts/install.sh bench
script="$1"; shift
exec "$VENV/bin/python" "bench/${script#bench/}" "$@"
