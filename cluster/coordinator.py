"""What the signalling service needs from the cluster, one object for both modes.

One machine (the embedded default): every room is local; each change is
written to a file in the data directory before clients hear of it, so a
restart brings the rooms back (cluster/filestate.py). Several machines
(`--redis`): a room is served by the node holding its lease; other nodes proxy its clients there;
the owner writes each change to the bus before clients hear of it; a node
that finds a room without a live owner takes it over from the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgpack

from cluster import keys
from cluster.bus import Bus, BusUnavailable
from cluster.filestate import FileRoomState
from cluster.leases import LEASE_TTL_MS, RoomLeases
from cluster.registry import NodeInfo, NodeRegistry
from cluster.roomstate import Change, RoomState, RoomStateStore, touched
from waiting_room.clock import Clock
from waiting_room.events import Event
from waiting_room.room import Room

log = logging.getLogger(__name__)

ROUTE_DEADLINE_S = 8.0
ROUTE_RETRY_S = 0.2
ALIVE_EVERY_S = 1.0

LiveRooms = Callable[[str], Room | None]
NoticeHandler = Callable[[dict[str, Any]], Awaitable[None]]


class RouteKind(enum.Enum):
    LOCAL = "local"
    REMOTE = "remote"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Route:
    kind: RouteKind
    node: NodeInfo | None = None


LOCAL = Route(RouteKind.LOCAL)
UNAVAILABLE = Route(RouteKind.UNAVAILABLE)


class Coordinator:
    def __init__(
        self,
        bus: Bus,
        node_id: str,
        node_url: str,
        clock: Clock,
        multi_node: bool,
        local_state: FileRoomState | None = None,
    ) -> None:
        """`local_state`: where one machine keeps its rooms (None: in memory only)."""
        self.bus = bus
        self.node_id = node_id
        self.multi_node = multi_node
        self.clock = clock
        self.registry = NodeRegistry(bus, node_id, node_url)
        self.leases = RoomLeases(bus, node_id, self._lost, self._write_back)
        self.local_state = None if multi_node else local_state
        self.store: RoomState = self.local_state or RoomStateStore(bus)
        self.persists = multi_node or self.local_state is not None
        self._alive: asyncio.Task[None] | None = None
        self.draining = False
        self.dirty: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._suspects: dict[str, float] = {}  # node id -> until (monotonic)
        self.live: LiveRooms = lambda room_id: None
        self.adopt: Callable[[Room], None] = lambda room: None
        self.on_room_lost: Callable[[str], None] = lambda room_id: None
        self.resume_digests: Callable[[str], dict[str, str]] = lambda room_id: {}
        self._notice_handlers: dict[str, NoticeHandler] = {}

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        await self.bus.start()
        if self.local_state is not None:
            await self._restore(self.local_state)
        if self.multi_node:
            self.bus.subscribe(keys.EVENTS, self._on_notice)
            await self.registry.start()
            await self.leases.start()
            recovered = getattr(self.bus, "on_recovered", None)
            if isinstance(recovered, list):
                recovered.append(self._recovered)

    async def stop(self) -> None:
        if self._alive is not None:
            self._alive.cancel()
            await asyncio.gather(self._alive, return_exceptions=True)
        if self.local_state is not None:
            await self.local_state.close()
        if self.multi_node:
            await self.leases.stop()
            await self.registry.stop()
        await self.bus.close()

    async def _restore(self, state: FileRoomState) -> None:
        """Bring back the rooms of the last run, then note, every second, that we are alive."""
        await state.start()
        for room in await state.restore():
            log.warning("restored a room after a restart (%d people)", len(room.participants))
            self.adopt(room)
        await state.beat()
        self._alive = asyncio.create_task(self._keep_alive(state), name="room-state-alive")

    async def _keep_alive(self, state: FileRoomState) -> None:
        while True:
            await asyncio.sleep(ALIVE_EVERY_S)
            with contextlib.suppress(BusUnavailable):
                await state.beat()
            for room_id in list(self.dirty):  # a failed write is retried in full
                await self._write_back(room_id)

    @property
    def accepting(self) -> bool:
        """New participants are taken only with a reachable bus and when not draining."""
        return not self.draining and self.bus.healthy

    # --- routing -----------------------------------------------------------------------

    async def route(self, room_id: str) -> Route:
        if not self.multi_node:
            return LOCAL
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
        owner = await self.leases.owner(room_id)
        if owner == self.node_id or (owner is None and await self._claim(room_id)):
            await self._ensure_loaded(room_id)
            return LOCAL
        if owner is None:
            return None
        node = await self.registry.get(owner)
        if node is None or node.draining or self._suspected(owner):
            return None
        return Route(RouteKind.REMOTE, node)

    def suspect(self, node_id: str) -> None:
        """A node that does not answer is taken for dead until its lease runs out."""
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
        return await self.leases.acquire(room_id)

    async def _ensure_loaded(self, room_id: str) -> None:
        self.leases.owned.add(room_id)
        if self.live(room_id) is not None:
            return
        room = await self.store.load(room_id, self.clock)
        if room is not None:
            log.warning("took over a room from the bus (%d people)", len(room.participants))
            self.adopt(room)

    async def record(self, room_id: str) -> bytes | None:
        if not self.multi_node:
            return None
        return await self.bus.get(keys.room_record(room_id))

    async def shared_records(self) -> list[bytes]:
        """Every scheduled room known to the cluster (rooms created on any node)."""
        if not self.multi_node:
            return []
        packed = []
        for key in await self.bus.members(keys.ROOM_RECORD_PREFIX):
            value = await self.bus.get(key)
            if value is not None:
                packed.append(value)
        return packed

    async def share_record(self, room_id: str, packed: bytes) -> None:
        if self.multi_node:
            await self.bus.set(keys.room_record(room_id), packed)

    # --- persisting changes --------------------------------------------------------------

    def prepare(self, room: Room, events: Iterable[Event]) -> Change | None:
        """Serialise what changed now, before anything else can change the room."""
        if not self.persists:
            return None
        return Change(room, touched(events))

    async def commit(self, change: Change | None, announce: Callable[[], None]) -> None:
        """Write the change, then announce it; per room, in the order commands ran."""
        if change is None:
            announce()
            return
        if self.local_state is not None:
            # One queue, committed in order, its waiters woken in order: no lock needed,
            # and the changes of many commands share a transaction.
            await self._write(change)
            announce()
            return
        lock = self._locks.setdefault(change.room_id, asyncio.Lock())
        async with lock:
            await self._write(change)
            announce()

    async def _write(self, change: Change) -> None:
        try:
            await self.store.write(change)
        except BusUnavailable:
            self.dirty.add(change.room_id)  # written in full once the store is back

    async def forget_room(self, room_id: str) -> None:
        self._locks.pop(room_id, None)
        if self.persists:
            with contextlib.suppress(BusUnavailable):
                await self.store.forget_room(room_id)
                if self.multi_node:
                    await self.leases.release(room_id)

    # --- resume tokens -----------------------------------------------------------------

    async def remember_resume(self, room_id: str, digest: str, participant_id: str) -> None:
        if self.persists:
            with contextlib.suppress(BusUnavailable):
                await self.store.remember_resume(room_id, digest, participant_id)

    async def forget_resume(self, room_id: str, *digests: str) -> None:
        if self.persists and digests:
            with contextlib.suppress(BusUnavailable):
                await self.store.forget_resume(room_id, *digests)

    async def find_resume(self, room_id: str, digest: str) -> str | None:
        if not self.persists:
            return None
        with contextlib.suppress(BusUnavailable):
            return await self.store.find_resume(room_id, digest)
        return None

    # --- notices between nodes (pub/sub) ---------------------------------------------

    def on_notice(self, kind: str, handler: NoticeHandler) -> None:
        self._notice_handlers[kind] = handler

    async def notify(self, kind: str, **fields: Any) -> None:
        """Tell every node (the owner of a room acts on it); raises BusUnavailable."""
        await self.bus.publish(keys.EVENTS, msgpack.packb({"kind": kind, **fields}))

    async def _on_notice(self, data: bytes) -> None:
        try:
            notice = msgpack.unpackb(data, raw=False)
            handler = self._notice_handlers.get(notice.get("kind"))
        except (ValueError, TypeError, AttributeError, msgpack.UnpackException):
            log.warning("dropped a malformed cluster notice")
            return
        if handler is not None:
            await handler(notice)

    async def peek(self, room_id: str) -> Room | None:
        """A read-only copy of a room another node owns (for REST counts)."""
        if not self.multi_node:
            return None
        with contextlib.suppress(BusUnavailable):
            return await self.store.load(room_id, self.clock)
        return None

    # --- failures and draining ---------------------------------------------------------

    async def _lost(self, room_id: str) -> None:
        self.on_room_lost(room_id)

    async def _recovered(self) -> None:
        """The bus is back: renew the leases (re-claimed ones are written back in full)
        and write the rooms that changed while it was away."""
        with contextlib.suppress(BusUnavailable):
            await self.registry.beat()  # the other nodes must see us again at once
            await self.leases.renew_all()
        for room_id in list(self.dirty):
            await self._write_back(room_id)

    async def _write_back(self, room_id: str) -> None:
        """Write an owned room in full, resume tokens included (the bus may be empty)."""
        room = self.live(room_id)
        if room is None:
            self.dirty.discard(room_id)  # gone meanwhile: nothing to write
            return
        with contextlib.suppress(BusUnavailable):
            await self.store.save_all(room)
            for digest, pid in self.resume_digests(room_id).items():
                await self.store.remember_resume(room_id, digest, pid)
            self.dirty.discard(room_id)

    async def hand_over(self, room: Room) -> None:
        """Draining: leave a room's state on the bus and free its lease for another node."""
        with contextlib.suppress(BusUnavailable):
            await self.store.save_all(room)
            await self.leases.release(room.id)

    async def start_draining(self) -> None:
        self.draining = True
        if self.multi_node:
            await self.registry.set_draining()

    async def nodes(self) -> list[NodeInfo]:
        if not self.multi_node:
            return []
        return await self.registry.nodes()


def pack_record(fields: dict[str, object]) -> bytes:
    packed: bytes = msgpack.packb(fields)
    return packed
