# syntax=docker/dockerfile:1
# Multi-stage build: a virtualenv with every dependency from the lock
# (requirements/server.txt, with hashes, binary wheels only) and the project's
# wheel (with sfu/native's compiled modules) in a build stage; a non-root
# runtime with no compiler.
# BASE is any Debian-like image with Python 3.11 and its venv module: the
# public python:3.11-slim by default, or a base built from Debian's own
# packages where no registry is reachable (scripts/image.sh, docs/operations.md).
ARG BASE=python:3.11-slim
FROM ${BASE} AS build
# a CA bundle for pip where PyPI is reached through a TLS-inspecting proxy (build only)
ARG PIP_CERT
ENV PATH=/opt/visitroom/bin:$PATH
# A C compiler and the Python headers, in this build stage only, for sfu/native's
# compiled per-packet paths (the runtime stage below has no compiler): whatever
# the base lacks comes from its Debian archive.
RUN need=""; command -v gcc >/dev/null || need="gcc libc6-dev"; \
    include="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"; \
    [ -f "$include/Python.h" ] || need="$need python3-dev"; \
    if [ -n "$need" ]; then \
        apt-get update && apt-get install -y --no-install-recommends $need \
        && rm -rf /var/lib/apt/lists/*; \
    fi
RUN python3 -m venv /opt/visitroom
WORKDIR /src
COPY requirements ./requirements
RUN pip install --no-cache-dir --require-hashes --only-binary :all: -r requirements/server.txt
COPY pyproject.toml README.md hatch_build.py ./
COPY common ./common
COPY signalling ./signalling
COPY waiting_room ./waiting_room
COPY sfu ./sfu
COPY cluster ./cluster
COPY portal ./portal
COPY visitroom ./visitroom
COPY staff ./staff
COPY web ./web
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .
# the wheel must carry every compiled module (a failed compile would leave the image on pure Python)
RUN python3 -c "import pathlib, sys, zipfile; \
wheel = next(pathlib.Path('/wheels').glob('*.whl')); names = zipfile.ZipFile(wheel).namelist(); \
sources = {p.stem for p in pathlib.Path('sfu/native').glob('_*.c')}; \
built = {n.split('/')[-1].split('.')[0] for n in names if n.startswith('sfu/native/_') and n.endswith('.so')}; \
sys.exit(f'not compiled: {sorted(sources - built)}' if sources - built else 0)"

FROM ${BASE}
ENV PATH=/opt/visitroom/bin:$PATH
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/visitroom visitroom
COPY --from=build /opt/visitroom /opt/visitroom
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-deps /wheels/*.whl && rm -rf /wheels \
    && pip uninstall --yes hatchling editables
USER visitroom
WORKDIR /var/lib/visitroom
# patient data: the volume starts as this directory, owned by visitroom and 0700
RUN mkdir -m 0700 /var/lib/visitroom/data
ENV VISITROOM_HOST=0.0.0.0 \
    VISITROOM_PORT=8080 \
    VISITROOM_DATA_DIR=/var/lib/visitroom/data \
    VISITROOM_RTC_PORTS=40000-40999
EXPOSE 8080/tcp 40000-40999/udp
VOLUME ["/var/lib/visitroom/data"]
# `visitroom health` probes VISITROOM_HOST:VISITROOM_PORT (add --tls with --tls-cert).
HEALTHCHECK --interval=10s --timeout=5s CMD ["visitroom", "health"]
ENTRYPOINT ["visitroom"]
CMD ["serve"]
