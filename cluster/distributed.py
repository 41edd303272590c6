"""Several machines (`--redis`): rooms are leased to nodes and kept on the bus.

A room is served by the node holding its lease; other nodes proxy its
clients there. The owner writes each change to the bus before clients hear
of it; a node that finds a room without a live owner takes it over from the
bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import msgpack

from cluster import keys
from cluster.bus import Bus, BusUnavailable
from cluster.coordinator import LOCAL, UNAVAILABLE, RoomHost, Route, RouteKind
from cluster.keeper import StateKeeper
from cluster.leases import LEASE_TTL_MS, RoomLeases
from cluster.registry import NodeInfo, NodeRegistry
from cluster.roomstate import Change, RoomStateStore, touched
from waiting_room.clock import Clock
from waiting_room.events import Event
from waiting_room.room import Room

log = logging.getLogger(__name__)

ROUTE_DEADLINE_S = 8.0
ROUTE_RETRY_S = 0.2


class RedisCoordinator(StateKeeper):
    """The `Coordinator` of one node of a cluster sharing `bus` (Redis)."""

    multi_node = True

    def __init__(self, bus: Bus, node_id: str, node_url: str, clock: Clock, host: RoomHost) -> None:
        self.bus = bus
        self.node_id = node_id
        self.draining = False
        self._clock = clock
        self._store = RoomStateStore(bus)
        super().__init__(self._store, host)
        self._registry = NodeRegistry(bus, node_id, node_url)
        self._leases = RoomLeases(bus, node_id, self._lost, self._write_back)
        self._locks: dict[str, asyncio.Lock] = {}
        self._suspects: dict[str, float] = {}  # node id -> until (monotonic)
        self._notices: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        await self.bus.start()
        self.bus.subscribe(keys.EVENTS, self._on_notice)
        await self._registry.start()
        await self._leases.start()
        recovered = getattr(self.bus, "on_recovered", None)
        if isinstance(recovered, list):
            recovered.append(self._recovered)

    async def stop(self) -> None:
        await self._leases.stop()
        await self._registry.stop()
        await self.bus.close()

    @property
    def accepting(self) -> bool:
        return not self.draining and self.bus.healthy

    @property
    def healthy(self) -> bool:
        return self.bus.healthy

    async def start_draining(self) -> None:
        self.draining = True
        await self._registry.set_draining()

    # --- routing -----------------------------------------------------------------------

    async def route(self, room_id: str) -> Route:
        try:
            async with asyncio.timeout(ROUTE_DEADLINE_S):
                while True:
                    route = await self._route_once(room_id)
                    if route is not None:
                        return route
                    await asyncio.sleep(ROUTE_RETRY_S)
        except (TimeoutError, BusUnavailable):
            return UNAVAILABLE

    async def _route_once(self, room_id: str) -> Route | None:
        """LOCAL or REMOTE when decided; None while a dead owner's lease runs out."""
        owner = await self._leases.owner(room_id)
        if owner == self.node_id or (owner is None and await self._claim(room_id)):
            await self._ensure_loaded(room_id)
            return LOCAL
        if owner is None:
            return None
        node = await self._registry.get(owner)
        if node is None or node.draining or self._suspected(owner):
            return None
        return Route(RouteKind.REMOTE, node)

    def suspect(self, node_id: str) -> None:
        self._suspects[node_id] = time.monotonic() + LEASE_TTL_MS / 1000

    def _suspected(self, node_id: str) -> bool:
        until = self._suspects.get(node_id)
        if until is not None and time.monotonic() >= until:
            del self._suspects[node_id]
            return False
        return until is not None

    async def _claim(self, room_id: str) -> bool:
        if self.draining:
            return False
        return await self._leases.acquire(room_id)

    async def _ensure_loaded(self, room_id: str) -> None:
        self._leases.owned.add(room_id)
        if self._host.live(room_id) is not None:
            return
        room = await self._store.load(room_id, self._clock)
        if room is not None:
            log.warning("took over a room from the bus (%d people)", len(room.participants))
            self._host.adopt(room)

    def owns(self, room_id: str) -> bool:
        return room_id in self._leases.owned

    async def owner_elsewhere(self, room_id: str) -> bool:
        return await self._leases.owner(room_id) is not None

    async def nodes(self) -> list[NodeInfo]:
        return await self._registry.nodes()

    # --- scheduled room records --------------------------------------------------------

    async def record(self, room_id: str) -> bytes | None:
        return await self.bus.get(keys.room_record(room_id))

    async def shared_records(self) -> list[bytes]:
        """Every scheduled room known to the cluster (rooms created on any node)."""
        packed = []
        for key in await self.bus.members(keys.ROOM_RECORD_PREFIX):
            value = await self.bus.get(key)
            if value is not None:
                packed.append(value)
        return packed

    async def share_record(self, room_id: str, packed: bytes) -> None:
        await self.bus.set(keys.room_record(room_id), packed)

    async def peek(self, room_id: str) -> Room | None:
        with contextlib.suppress(BusUnavailable):
            return await self._store.load(room_id, self._clock)
        return None

    # --- persisting changes ------------------------------------------------------------

    def prepare(self, room: Room, events: Iterable[Event]) -> Change | None:
        return Change(room, touched(events))

    async def commit(self, change: Change | None, announce: Callable[[], None]) -> None:
        if change is None:
            announce()
            return
        async with self._locks.setdefault(change.room_id, asyncio.Lock()):
            await self._write(change)
            announce()

    async def forget_room(self, room_id: str) -> None:
        self._locks.pop(room_id, None)
        with contextlib.suppress(BusUnavailable):
            await self._store.forget_room(room_id)
            await self._leases.release(room_id)

    async def hand_over(self, room: Room) -> bool:
        """Leave a room's state on the bus and free its lease for another node."""
        with contextlib.suppress(BusUnavailable):
            await self._store.save_all(room)
            await self._leases.release(room.id)
        return True

    # --- notices between nodes (pub/sub) -----------------------------------------------

    async def notify(self, kind: str, **fields: Any) -> None:
        await self.bus.publish(keys.EVENTS, msgpack.packb({"kind": kind, **fields}))

    async def next_notice(self) -> dict[str, Any]:
        return await self._notices.get()

    async def _on_notice(self, data: bytes) -> None:
        try:
            notice = msgpack.unpackb(data, raw=False)
        except (ValueError, TypeError, msgpack.UnpackException):
            notice = None
        if not isinstance(notice, dict) or not isinstance(notice.get("kind"), str):
            log.warning("dropped a malformed cluster notice")
            return
        self._notices.put_nowait(notice)

    # --- failures ----------------------------------------------------------------------

    async def _lost(self, room_id: str) -> None:
        self._host.room_lost(room_id)

    async def _recovered(self) -> None:
        """The bus is back: renew the leases (re-claimed ones are written back in full)
        and write the rooms that changed while it was away."""
        with contextlib.suppress(BusUnavailable):
            await self._registry.beat()  # the other nodes must see us again at once
            await self._leases.renew_all()
        for room_id in list(self._dirty):
            await self._write_back(room_id)
