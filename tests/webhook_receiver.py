"""A real webhook receiver on loopback, as an integrator would run one: it checks each
delivery's signature, can answer with an error, slowly, or not listen at all, and
keeps what it accepted (deduplicated by event id, as receivers must)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from common import webhooksig
from tests.servers import free_port

SECRET = "w" * 40


@dataclass
class Delivery:
    body: bytes
    headers: dict[str, str]
    event: dict[str, Any] = field(default_factory=dict)
    late: bool = False  # answered 2xx only after `delay_s`


class Receiver:
    def __init__(self, secret: str = SECRET, path: str = "/hooks") -> None:
        self.secret = secret
        self.path = path
        self.port = free_port()
        self.status = 200  # what to answer
        self.delay_s = 0.0  # how long to take before answering
        self.attempts: list[Delivery] = []  # every request, in arrival order
        self.accepted: list[Delivery] = []  # 2xx answers, first per event id, in order
        self.bad_signatures = 0
        self._arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self.path, self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        """Stop listening: deliveries now meet a refused connection."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        delivery = Delivery(body, dict(request.headers))
        self.attempts.append(delivery)
        try:
            webhooksig.verify(
                self.secret,
                body,
                request.headers.get(webhooksig.SIGNATURE_HEADER),
                request.headers.get(webhooksig.TIMESTAMP_HEADER),
            )
        except webhooksig.SignatureError:
            self.bad_signatures += 1
            return web.Response(status=400)
        if self.delay_s:
            delivery.late = True
            await asyncio.sleep(self.delay_s)  # the scenario: a receiver that takes its time
        if 200 <= self.status < 300:
            delivery.event = json.loads(body)
            if delivery.event["id"] not in {d.event["id"] for d in self.accepted}:
                self.accepted.append(delivery)
            self._arrived.set()
        return web.Response(status=self.status)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [d.event for d in self.accepted]

    def names(self) -> list[str]:
        return [e["event"] for e in self.events]

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until `count` distinct events were accepted; return them in arrival order."""
        try:
            async with asyncio.timeout(timeout):
                while len(self.accepted) < count:
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise AssertionError(
                f"{len(self.accepted)} of {count} events: {self.names()}"
            ) from None
        return self.events

    async def wait_event(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if event["event"] == name:
                        return event
                self._arrived.clear()
                await self._arrived.wait()
