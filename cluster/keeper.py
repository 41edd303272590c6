"""What both coordinators do with the room state they keep (a file, or Redis)."""

from __future__ import annotations

import contextlib

from cluster.bus import BusUnavailable
from cluster.coordinator import RoomHost
from cluster.roomstate import Change, RoomState


class StateKeeper:
    """Resume tokens kept with the rooms' state, and the rooms a failed write left
    behind (`_dirty`), written back in full. While the store is away nothing is
    remembered, forgotten or found: the client knocks again."""

    def __init__(self, state: RoomState, host: RoomHost) -> None:
        self._kept = state
        self._host = host
        self._dirty: set[str] = set()

    async def remember_resume(self, room_id: str, digest: str, participant_id: str) -> None:
        with contextlib.suppress(BusUnavailable):
            await self._kept.remember_resume(room_id, digest, participant_id)

    async def forget_resume(self, room_id: str, *digests: str) -> None:
        if digests:
            with contextlib.suppress(BusUnavailable):
                await self._kept.forget_resume(room_id, *digests)

    async def find_resume(self, room_id: str, digest: str) -> str | None:
        with contextlib.suppress(BusUnavailable):
            return await self._kept.find_resume(room_id, digest)
        return None

    async def _write(self, change: Change) -> None:
        """Store one change; if the store is away, the room is written in full later."""
        try:
            await self._kept.write(change)
        except BusUnavailable:
            self._dirty.add(change.room_id)

    async def _write_back(self, room_id: str) -> None:
        """Write a room in full, resume tokens included (the store may have lost it)."""
        room = self._host.live(room_id)
        if room is None:
            self._dirty.discard(room_id)  # gone meanwhile: nothing to write
            return
        with contextlib.suppress(BusUnavailable):
            await self._kept.save_all(room)
            for digest, pid in self._host.resume_digests(room_id).items():
                await self._kept.remember_resume(room_id, digest, pid)
            self._dirty.discard(room_id)
