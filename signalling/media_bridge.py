"""Between the rooms and the media plane: media calls out, media events in.

`MediaBridge` starts the media calls the room decided (each ordered at call
time, watched until done) and remembers who has a media session on this
node. `RoomMediaEvents` is the `MediaEvents` the media plane reports to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from sfu.control import MediaControl, PrecallStats, Publishers, Slot
from signalling import effects as fx
from signalling import outbound
from signalling.hub import Hub
from signalling.rooms import RoomStore

log = logging.getLogger(__name__)

MediaCall = Callable[[MediaControl], Coroutine[Any, Any, None]]


class MediaBridge:
    def __init__(self, media: MediaControl | None) -> None:
        """`media` None: this server has no media plane (signalling only)."""
        self.media = media
        self._opened: set[str] = set()  # participants with a session on this node
        self._tasks: set[asyncio.Task[None]] = set()

    def has_session(self, participant_id: str) -> bool:
        return participant_id in self._opened

    def open(self, room_id: str, group: str, participant_id: str) -> None:
        self._opened.add(participant_id)
        self._call(lambda m: m.open(room_id, group, participant_id))

    def close(self, participant_id: str) -> None:
        self._opened.discard(participant_id)
        self._call(lambda m: m.close(participant_id))

    def close_room(self, room_id: str, participant_ids: Iterable[str]) -> None:
        self._opened.difference_update(participant_ids)
        self._call(lambda m: m.close_room(room_id))

    def move(self, participant_id: str, group: str) -> None:
        self._call(lambda m: m.move(participant_id, group))

    def forget(self, participant_id: str) -> None:
        """The session is gone elsewhere (the room moved, the participant left)."""
        self._opened.discard(participant_id)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _call(self, call: MediaCall) -> None:
        """Start a media call now (its effect is ordered at call time) and watch it."""
        if self.media is None:
            return
        task = asyncio.ensure_future(call(self.media))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("media call failed", exc_info=task.exception())


class RoomMediaEvents:
    """The `MediaEvents` of the signalling server: each event becomes a message."""

    def __init__(self, hub: Hub, rooms: RoomStore) -> None:
        self._hub = hub
        self._rooms = rooms

    def slots_changed(self, participant_id: str, slots: list[Slot], publishers: Publishers) -> None:
        self._hub.deliver([participant_id], outbound.slots(slots, publishers))

    def active_speaker(self, room_id: str, group: str, participant_id: str) -> None:
        room = self._rooms.live(room_id)
        if room is None:
            return
        members = [p.id for p in room.joined if fx.group_of(p) == group]
        self._hub.deliver(members, outbound.active_speaker(participant_id))

    def media_closed(self, participant_id: str, reason: str) -> None:
        self._hub.deliver([participant_id], {"type": "media_closed", "reason": reason})

    def precall_stats(self, participant_id: str, stats: PrecallStats) -> None:
        self._hub.deliver([participant_id], {"type": "precall_stats", **stats})

    def ice_restart_needed(self, participant_id: str) -> None:
        self._hub.deliver([participant_id], {"type": "ice_restart_needed"})

    def publish_layers(self, participant_id: str, mid: str, active: list[str]) -> None:
        self._hub.deliver([participant_id], outbound.publish_layers(mid, active))

    def downlink(self, participant_id: str, estimate_kbps: int) -> None:
        self._hub.deliver([participant_id], outbound.downlink(estimate_kbps))
