"""One machine: every room is served here and kept in a file in the data directory.

Each change is written (FileRoomState: one queue, committed in order, its
waiters woken in order) before clients hear of it, so a restart within the
resume window brings the rooms back and loses nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from cluster.bus import BusUnavailable
from cluster.coordinator import ALIVE_EVERY_S, LOCAL, RoomHost, Route
from cluster.filestate import FileRoomState
from cluster.keeper import StateKeeper
from cluster.registry import NodeInfo
from cluster.roomstate import Change, touched
from waiting_room.events import Event
from waiting_room.room import Room

log = logging.getLogger(__name__)


class LocalCoordinator(StateKeeper):
    """The `Coordinator` of a single node, with durable room state in `state`."""

    multi_node = False

    def __init__(self, state: FileRoomState, node_id: str, host: RoomHost) -> None:
        self.node_id = node_id
        self.draining = False
        super().__init__(state, host)
        self._state = state
        self._alive: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Bring back the rooms of the last run, then note, every second, that we are alive."""
        await self._state.start()
        for room in await self._state.restore():
            log.warning("restored a room after a restart (%d people)", len(room.participants))
            self._host.adopt(room)
        await self._state.beat()
        self._alive = asyncio.create_task(self._keep_alive(), name="room-state-alive")

    async def stop(self) -> None:
        if self._alive is not None:
            self._alive.cancel()
            await asyncio.gather(self._alive, return_exceptions=True)
        await self._state.close()

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(ALIVE_EVERY_S)
            with contextlib.suppress(BusUnavailable):
                await self._state.beat()
            for room_id in list(self._dirty):  # a failed write is retried in full
                await self._write_back(room_id)

    @property
    def accepting(self) -> bool:
        return not self.draining

    @property
    def healthy(self) -> bool:
        return True

    async def start_draining(self) -> None:
        self.draining = True

    # --- routing: every room is here ---------------------------------------------------

    async def route(self, room_id: str) -> Route:
        return LOCAL

    def suspect(self, node_id: str) -> None:
        return None

    def owns(self, room_id: str) -> bool:
        return self._host.live(room_id) is not None

    async def owner_elsewhere(self, room_id: str) -> bool:
        return False

    async def nodes(self) -> list[NodeInfo]:
        return []

    async def record(self, room_id: str) -> bytes | None:
        return None

    async def shared_records(self) -> list[bytes]:
        return []

    async def share_record(self, room_id: str, packed: bytes) -> None:
        return None

    async def peek(self, room_id: str) -> Room | None:
        return None

    # --- persisting changes ------------------------------------------------------------

    def prepare(self, room: Room, events: Iterable[Event]) -> Change | None:
        return Change(room, touched(events))

    async def commit(self, change: Change | None, announce: Callable[[], None]) -> None:
        """One queue in the file state keeps the order per room: no lock needed, and the
        changes of many commands share a transaction."""
        if change is not None:
            await self._write(change)
        announce()

    async def forget_room(self, room_id: str) -> None:
        with contextlib.suppress(BusUnavailable):
            await self._state.forget_room(room_id)

    async def hand_over(self, room: Room) -> bool:
        return False  # nobody to hand it to: the room is kept in the file for a restart

    # --- notices: no other node --------------------------------------------------------

    async def notify(self, kind: str, **fields: Any) -> None:
        return None

    async def next_notice(self) -> dict[str, Any]:
        await asyncio.Event().wait()  # never set: no other node sends notices
        raise AssertionError("unreachable")
