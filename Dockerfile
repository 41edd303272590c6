# syntax=docker/dockerfile:1
# Multi-stage build: wheels in a build stage, a slim non-root runtime.
FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir --upgrade pip
COPY pyproject.toml README.md ./
COPY signalling ./signalling
COPY waiting_room ./waiting_room
COPY sfu ./sfu
COPY cluster ./cluster
COPY portal ./portal
COPY web ./web
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/visitroom visitroom
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
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
