"""The registry of SFU workers on the bus: each node publishes its own, everyone reads all.

`BusWorkerDirectory` is the `sfu.workers.remote.WorkerDirectory` of a
cluster: one key per worker (``vr:worker:{node}:{index}``, msgpack, 3 s
expiry, renewed by its node's pool every second), so a node that dies takes
its workers out of the registry within 3 s.  It has its own bus connection,
since the media plane starts before and stops after the room service.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import msgpack

from cluster import keys
from cluster.bus import Bus, BusUnavailable

log = logging.getLogger(__name__)

WORKER_TTL_MS = 3000


class BusWorkerDirectory:
    def __init__(self, bus: Bus, node_id: str) -> None:
        self._bus = bus
        self._node_id = node_id
        self._published: set[str] = set()

    async def start(self) -> None:
        await self._bus.start()

    async def close(self) -> None:
        if self._published:
            with contextlib.suppress(BusUnavailable):
                await self._bus.delete(*self._published)
        await self._bus.close()

    async def publish(self, entries: list[dict[str, Any]]) -> None:
        names = set()
        for entry in entries:
            name = keys.worker(self._node_id, int(entry["index"]))
            names.add(name)
            packed: bytes = msgpack.packb(entry)
            await self._bus.set(name, packed, ttl_ms=WORKER_TTL_MS)
        gone = self._published - names
        if gone:
            await self._bus.delete(*gone)
        self._published = names

    async def entries(self) -> list[dict[str, Any]]:
        found = []
        for name in await self._bus.members(keys.WORKER_PREFIX):
            data = await self._bus.get(name)
            if data is None:
                continue
            try:
                entry = msgpack.unpackb(data)
            except Exception:  # another version's or a broken entry: skip it
                log.warning("unreadable worker entry %s", name)
                continue
            if isinstance(entry, dict):
                found.append(entry)
        return found
