# syntax=docker/dockerfile:1
# Multi-stage build: wheels in a build stage, a slim non-root runtime. Every
# dependency comes from the lock (requirements/server.txt), with hashes.
FROM python:3.11-slim AS build
WORKDIR /src
COPY requirements ./requirements
RUN pip install --no-cache-dir --require-hashes -r requirements/server.txt
COPY pyproject.toml README.md ./
COPY common ./common
COPY signalling ./signalling
COPY waiting_room ./waiting_room
COPY sfu ./sfu
COPY cluster ./cluster
COPY portal ./portal
COPY staff ./staff
COPY web ./web
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/visitroom visitroom
COPY --from=build /wheels /wheels
COPY requirements/server.txt /tmp/server.txt
RUN pip install --no-cache-dir --require-hashes -r /tmp/server.txt \
    && pip install --no-cache-dir --no-deps /wheels/*.whl && rm -rf /wheels /tmp/server.txt
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
HEALTHCHECK --interval=10s --timeout=3s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')"
ENTRYPOINT ["visitroom"]
CMD ["serve"]
