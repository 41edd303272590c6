#!/usr/bin/env bash
# Refreshes the dependency lock in requirements/ from pyproject.toml (and
# requirements/build.in, the build backend for the editable install). Run it on
# purpose, when a range in pyproject.toml changes or to take new releases, and
# commit the result with the change that needed it (docs/operations.md).
# Extra arguments go to `uv pip compile`, e.g. --upgrade-package aiohttp.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION="0.13.9"
TOOLS="${VISITROOM_LOCK_VENV:-.venv-lock}"
[ -x "$TOOLS/bin/uv" ] || { python3 -m venv "$TOOLS" && "$TOOLS/bin/pip" install -q "uv==$UV_VERSION"; }
compile() {  # compile OUTPUT [--extra NAME]
    local out="$1"; shift
    "$TOOLS/bin/uv" pip compile pyproject.toml requirements/build.in "$@" \
        --generate-hashes --python-version 3.11 --universal --quiet -o "$out" "${EXTRA_ARGS[@]}"
}
EXTRA_ARGS=("$@")
compile requirements/server.txt
compile requirements/test.txt --extra test
compile requirements/bench.txt --extra bench
echo "lock written: requirements/server.txt test.txt bench.txt"
