#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian/Ubuntu machine, then runs
# ruff (lint and format), mypy and the whole pytest suite. Python packages come
# from the committed lock (requirements/test.txt, scripts/install.sh). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VISITROOM_VENV:-.venv}"

apt_packages="gcc libc6-dev redis-server chromium chromium-driver fonts-dejavu-core iproute2 nodejs coturn iptables nginx glewlwyd podman runc catatonit mmdebstrap debootstrap"
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

bash scripts/install.sh test

"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy"
"$VENV/bin/lint-imports"
# both cores for everything but the tests that must run alone (tests/serial.py), then those;
# either pass failing (5 = no test selected counts too) fails the run
status=0
"$VENV/bin/pytest" -q -n 2 -m "not serial" "$@" || status=$?
"$VENV/bin/pytest" -q -m serial "$@" || status=$?
exit "$status"
