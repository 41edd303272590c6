#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian/Ubuntu machine, then runs
# ruff, mypy and the whole pytest suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VISITROOM_VENV:-.venv}"

apt_packages="redis-server chromium chromium-driver fonts-dejavu-core iproute2 nodejs"
if [ "${VISITROOM_SKIP_APT:-0}" != 1 ] && command -v apt-get >/dev/null; then
    missing=""
    for pkg in $apt_packages; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
    done
    if [ -n "$missing" ]; then
        SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
        $SUDO apt-get update -q
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
    fi
fi

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -e '.[test]'

"$VENV/bin/ruff" check .
"$VENV/bin/mypy"
exec "$VENV/bin/pytest" -q "$@"
