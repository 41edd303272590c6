"""Room ownership: one signalling node at a time holds a room's lease and renews it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from cluster import keys
from cluster.bus import Bus, BusUnavailable

log = logging.getLogger(__name__)

LEASE_TTL_MS = 5000
RENEW_EVERY_S = 1.5

LostHandler = Callable[[str], Awaitable[None]]
ReclaimedHandler = Callable[[str], Awaitable[None]]


class RoomLeases:
    """The rooms this node owns. A lease it cannot renew is lost, and the room let go."""

    def __init__(
        self, bus: Bus, node_id: str, on_lost: LostHandler, on_reclaimed: ReclaimedHandler
    ) -> None:
        self._bus = bus
        self._me = node_id.encode()
        self._on_lost = on_lost
        self._on_reclaimed = on_reclaimed
        self.owned: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._renew_forever(), name="room-leases")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def owner(self, room_id: str) -> str | None:
        value = await self._bus.get(keys.room_owner(room_id))
        return value.decode() if value is not None else None

    async def acquire(self, room_id: str) -> bool:
        key = keys.room_owner(room_id)
        if room_id in self.owned or await self._bus.renew(key, self._me, LEASE_TTL_MS):
            self.owned.add(room_id)
            return True
        if await self._bus.set(key, self._me, ttl_ms=LEASE_TTL_MS, only_new=True):
            self.owned.add(room_id)
            return True
        return False

    async def release(self, room_id: str) -> None:
        self.owned.discard(room_id)
        await self._bus.release(keys.room_owner(room_id), self._me)

    async def renew_all(self) -> None:
        """Renew every owned lease; hand rooms whose lease went to another node to on_lost."""
        for room_id in list(self.owned):
            key = keys.room_owner(room_id)
            if await self._bus.renew(key, self._me, LEASE_TTL_MS):
                continue
            # Expired (Redis restarted empty, or we were away too long): take it back if
            # free, and write the room back, since the bus may have lost its state too.
            if await self._bus.set(key, self._me, ttl_ms=LEASE_TTL_MS, only_new=True):
                await self._on_reclaimed(room_id)
                continue
            log.warning("lost the lease of a room to another node")
            self.owned.discard(room_id)
            await self._on_lost(room_id)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY_S)
            try:
                await self.renew_all()
            except BusUnavailable:
                log.debug("lease renewal skipped: the bus is unavailable")
