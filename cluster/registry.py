"""Nodes announce themselves with a heartbeat; a node whose key expired is dead."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import asdict, dataclass

import msgpack

from cluster import keys
from cluster.bus import Bus, BusUnavailable

log = logging.getLogger(__name__)

HEARTBEAT_S = 1.0
NODE_TTL_MS = 3000


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    url: str  # where other nodes reach this one (its WebSocket/HTTP base URL)
    started_at: float
    draining: bool = False

    def pack(self) -> bytes:
        packed: bytes = msgpack.packb(asdict(self))
        return packed

    @classmethod
    def unpack(cls, data: bytes) -> NodeInfo:
        return cls(**msgpack.unpackb(data))


class NodeRegistry:
    def __init__(self, bus: Bus, node_id: str, url: str) -> None:
        self._bus = bus
        self.me = NodeInfo(node_id, url, time.time())
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        with contextlib.suppress(BusUnavailable):
            await self.beat()
        self._task = asyncio.create_task(self._beat_forever(), name="node-heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(BusUnavailable):
            await self._bus.delete(keys.node(self.me.node_id))

    async def beat(self) -> None:
        await self._bus.set(keys.node(self.me.node_id), self.me.pack(), ttl_ms=NODE_TTL_MS)

    async def set_draining(self) -> None:
        self.me = NodeInfo(self.me.node_id, self.me.url, self.me.started_at, draining=True)
        with contextlib.suppress(BusUnavailable):
            await self.beat()

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self.beat()
            except BusUnavailable:
                log.debug("heartbeat skipped: the bus is unavailable")

    async def get(self, node_id: str) -> NodeInfo | None:
        data = await self._bus.get(keys.node(node_id))
        return NodeInfo.unpack(data) if data is not None else None

    async def nodes(self) -> list[NodeInfo]:
        found = []
        for key in await self._bus.members(keys.NODE_PREFIX):
            data = await self._bus.get(key)
            if data is not None:
                found.append(NodeInfo.unpack(data))
        return found
