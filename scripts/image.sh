#!/usr/bin/env bash
# Builds the visitroom container image with podman where no container registry
# is reachable: the base image is made from Debian's own packages (mmdebstrap,
# or debootstrap), then the Dockerfile builds on it (BASE build argument).
# Elsewhere a plain `podman build .` or `docker build .` uses python:3.11-slim.
#
#   bash scripts/image.sh                   # -> localhost/visitroom:latest
#   IMAGE=registry.example.org/visitroom:1.4 bash scripts/image.sh
#
# Settings (environment):
#   IMAGE       the image to build (default localhost/visitroom:latest)
#   BASE_IMAGE  the base (default localhost/visitroom-base:bookworm); built from
#               Debian packages when it does not exist yet, reused when it does
#               (remove it with `podman rmi` to refresh its security updates)
#   SUITE       Debian suite of the base (default bookworm: Python 3.11)
#   MIRROR      Debian mirror (default http://deb.debian.org/debian)
#   CA_BUNDLE   CA bundle pip trusts for PyPI during the build (default the
#               host's /etc/ssl/certs/ca-certificates.crt, passed only if it
#               exists): for networks that reach PyPI through a TLS-inspecting
#               proxy. It is mounted into the build, never copied into the image.
#   ISOLATION   podman build --isolation (default chroot: works as root on
#               hosts where the OCI runtime cannot create cgroups)
# Needs root and the Debian packages podman and mmdebstrap (or debootstrap).
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

IMAGE="${IMAGE:-localhost/visitroom:latest}"
BASE_IMAGE="${BASE_IMAGE:-localhost/visitroom-base:bookworm}"
SUITE="${SUITE:-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
ISOLATION="${ISOLATION:-chroot}"
PACKAGES="python3,python3-venv,ca-certificates"

build_base() {
    echo "image.sh: building $BASE_IMAGE from Debian $SUITE packages" >&2
    if command -v mmdebstrap >/dev/null; then
        # no documentation, manual pages or translations (copyright files stay)
        id="$(mmdebstrap --variant=minbase --include="$PACKAGES" \
            --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            --dpkgopt='path-exclude=/usr/share/info/*' \
            --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            "$SUITE" - "$MIRROR" | podman import -)"
    else
        root="$(mktemp -d)"
        trap 'rm -rf "$root"' EXIT
        debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" >&2
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
        id="$(tar -C "$root" -c . | podman import -)"
    fi
    # tagged only when the whole tree made it (pipefail): never a half base to reuse
    podman tag "$id" "$BASE_IMAGE"
}

if podman image exists "$BASE_IMAGE"; then
    echo "image.sh: reusing $BASE_IMAGE" >&2
else
    build_base
fi

build_args=(--isolation "$ISOLATION" --format docker --build-arg "BASE=$BASE_IMAGE")
if [ -f "$CA_BUNDLE" ]; then
    build_args+=(--build-arg "PIP_CERT=$CA_BUNDLE" -v "$CA_BUNDLE:$CA_BUNDLE:ro")
fi
# --format docker keeps the Dockerfile's HEALTHCHECK (the OCI format has none)
podman build "${build_args[@]}" -t "$IMAGE" .
