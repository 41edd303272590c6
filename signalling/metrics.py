"""Prometheus metrics, read from live state at scrape time (nothing on the hot path)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from signalling.guard import GUARD
from signalling.keys import HUB, METRICS, ROOMS, SERVICE

LAG_INTERVAL_S = 0.5


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
    app.router.add_get("/metrics", metrics)

    async def lag_task(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(lag.run(), name="loop-lag")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    app.cleanup_ctx.append(lag_task)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=generate_latest(request.app[METRICS]),
        content_type="text/plain",
        charset="utf-8",
        headers={"Cache-Control": "no-store"},
    )
