"""Prometheus metrics, read from live state at scrape time (nothing on the hot path)."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator, Callable, Iterable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from common.audit import AuditEntry
from common.keys import AUDIT
from signalling.guard import GUARD
from signalling.keys import CONFIG, HUB, METRICS, METRICS_ADDRESS, ROOMS, SERVICE, WEBHOOKS

LAG_INTERVAL_S = 0.5
LOOPBACK = "127.0.0.1"
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="metrics"'}


class LoopLag:
    """How late the event loop wakes a periodic timer: the latency every message pays."""

    def __init__(self) -> None:
        self.last_s = 0.0
        self.max_s = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(LAG_INTERVAL_S)
            lag = max(0.0, loop.time() - started - LAG_INTERVAL_S)
            self.last_s = lag
            self.max_s = max(self.max_s, lag)


class SignallingCollector(Collector):
    def __init__(self, app: web.Application, lag: LoopLag) -> None:
        self._app = app
        self._lag = lag

    def collect(self) -> Iterable[Metric]:
        rooms = self._app[ROOMS].live_rooms()
        hub = self._app[HUB]
        yield _gauge("visitroom_rooms", "Live rooms", len(rooms))
        people = GaugeMetricFamily(
            "visitroom_participants", "Participants by state", labels=["state"]
        )
        for state in ("waiting", "on_hold", "joined"):
            count = sum(1 for r in rooms for p in r.participants if p.status.value == state)
            people.add_metric([state], count)
        yield people
        yield _gauge("visitroom_ws_connections", "Open WebSockets", len(hub.connections()))
        yield _counter("visitroom_ws_messages_sent", "WebSocket messages sent", hub.messages_sent)
        received = self._app[SERVICE].messages_received
        yield _counter("visitroom_ws_messages_received", "WebSocket messages received", received)
        yield _gauge("visitroom_event_loop_lag_seconds", "Last event-loop lag", self._lag.last_s)
        yield _gauge("visitroom_event_loop_lag_max_seconds", "Max loop lag", self._lag.max_s)
        for name, value in self._app[GUARD].stats().items():
            yield _gauge(f"visitroom_{name}", f"Connection guard: {name}", value)
        yield from self._media_metrics()
        yield from self._webhook_metrics()

    def _webhook_metrics(self) -> Iterator[Metric]:
        hooks = self._app[WEBHOOKS]
        if not hooks.enabled:
            return
        stats = hooks.stats
        yield _counter("visitroom_webhook_deliveries", "Webhook deliveries accepted (2xx)",
                       stats.delivered)  # fmt: skip
        yield _counter("visitroom_webhook_failed_attempts", "Webhook attempts without a 2xx",
                       stats.failed_attempts)  # fmt: skip
        yield _counter("visitroom_webhook_failures", "Webhook deliveries given up (or 410)",
                       stats.failed)  # fmt: skip
        yield _gauge("visitroom_webhook_pending", "Webhook deliveries waiting", stats.pending)
        yield _gauge("visitroom_webhook_lag_seconds", "Age of the oldest waiting webhook event",
                     hooks.lag_s())  # fmt: skip

    def _media_metrics(self) -> Iterator[Metric]:
        media = self._app[SERVICE].media
        stats: Callable[[], dict[str, float]] | None = getattr(media, "stats", None)
        if stats is None:
            return
        for name, value in sorted(stats().items()):
            yield _gauge(f"visitroom_media_{name}", f"Media plane: {name}", value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def setup(app: web.Application) -> None:
    registry = CollectorRegistry(auto_describe=False)
    lag = LoopLag()
    registry.register(SignallingCollector(app, lag))
    app[METRICS] = registry
    app.router.add_get("/metrics", guarded_metrics)

    async def lag_task(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(lag.run(), name="loop-lag")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    app.cleanup_ctx.append(lag_task)
    app.cleanup_ctx.append(metrics_port)


def _exposition(registry: CollectorRegistry) -> web.Response:
    return web.Response(
        body=generate_latest(registry),
        content_type="text/plain",
        charset="utf-8",
        headers={"Cache-Control": "no-store"},
    )


def bearer_ok(header: str, expected: str | None) -> bool:
    """`Authorization: Bearer <expected>`, compared in constant time."""
    scheme, _, given = header.partition(" ")
    if expected is None or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


async def guarded_metrics(request: web.Request) -> web.Response:
    """/metrics on the public port: only with ``VISITROOM_METRICS_TOKEN`` as a bearer token."""
    expected = request.app[CONFIG].metrics_token
    if bearer_ok(request.headers.get("Authorization", ""), expected):
        return _exposition(request.app[METRICS])
    reason = "not_enabled" if expected is None else "bad_token"
    details = {"reason": reason, "address": request.remote or ""}
    request.app[AUDIT].record(AuditEntry("metrics", "unauthorized", None, None, None, details))
    if expected is None:
        raise web.HTTPForbidden(
            text="metrics are not served on this port: set VISITROOM_METRICS_TOKEN "
            "or VISITROOM_METRICS_PORT"
        )
    raise web.HTTPUnauthorized(text="metrics need a bearer token", headers=BEARER_CHALLENGE)


async def metrics_port(app: web.Application) -> AsyncIterator[None]:
    """``VISITROOM_METRICS_PORT``: /metrics without a token, on 127.0.0.1 only."""
    port = app[CONFIG].metrics_port
    if port is None:
        yield
        return
    registry = app[METRICS]

    async def plain(request: web.Request) -> web.Response:
        return _exposition(registry)

    side = web.Application()
    side.router.add_get("/metrics", plain)
    runner = web.AppRunner(side, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, port)
    await site.start()
    host, bound = runner.addresses[0][:2]
    app[METRICS_ADDRESS] = (str(host), int(bound))
    yield
    await runner.cleanup()
