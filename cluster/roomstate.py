"""Room state kept on the bus so another node can take a room over.

The owner writes what a command changed (the participants it touched and the
room's meta) before it tells any client, so a takeover never forgets what
clients were told. Writes are O(changes), not O(room).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import msgpack

from cluster import keys
from cluster.bus import Bus
from waiting_room.clock import Clock
from waiting_room.events import (
    Admitted,
    Event,
    HelpRequested,
    Joined,
    Knocked,
    Left,
    LobbyLeft,
    LobbyStatusChanged,
    Moved,
    Rejected,
)
from waiting_room.room import Room


def _pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False)


def touched(events: Iterable[Event]) -> set[str]:
    """The participants whose stored record a batch of events changes."""
    ids: set[str] = set()
    for event in events:
        match event:
            case Admitted(people) | Joined(people):
                ids.update(p.id for p in people)
            case (
                Knocked(person)
                | LobbyStatusChanged(person)
                | LobbyLeft(person, _)
                | Rejected(person)
                | Left(person, _, _)
                | Moved(person, _, _)
                | HelpRequested(person, _)
            ):
                ids.add(person.id)
    return ids


def _meta(room: Room) -> dict[str, Any]:
    data = room.to_dict()
    del data["participants"]
    return data


class Change:
    """What one command changed, serialised at the moment it happened."""

    def __init__(self, room: Room, participant_ids: Iterable[str]) -> None:
        self.room_id = room.id
        self.present: dict[str, bytes] = {}
        self.gone: list[str] = []
        for pid in participant_ids:
            person = room.find(pid)
            if person is None:
                self.gone.append(pid)
            else:
                self.present[pid] = _pack(person.to_dict())
        self.meta = _pack(_meta(room))


def rebuild(meta: bytes, people: Iterable[bytes], clock: Clock) -> Room:
    """A room from its stored meta and participant records."""
    data = _unpack(meta)
    data["participants"] = [_unpack(value) for value in people]
    return Room.from_dict(data, clock)


class RoomState(Protocol):
    """Where the owner of a room keeps its live state: Redis (a cluster) or SQLite in
    the data directory (one machine). `write` returns only once the change is stored."""

    async def write(self, change: Change) -> None: ...

    async def save_all(self, room: Room) -> None: ...

    async def load(self, room_id: str, clock: Clock) -> Room | None: ...

    async def remember_resume(self, room_id: str, digest: str, participant_id: str) -> None: ...

    async def forget_resume(self, room_id: str, *digests: str) -> None: ...

    async def find_resume(self, room_id: str, digest: str) -> str | None: ...

    async def forget_room(self, room_id: str) -> None: ...


class RoomStateStore:
    """Room state on the bus (Redis), for a cluster."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def write(self, change: Change) -> None:
        people = keys.room_people(change.room_id)
        await self._bus.apply(
            {people: change.present},
            {people: tuple(change.gone)},
            {keys.room_meta(change.room_id): change.meta},
        )

    async def save(self, room: Room, participant_ids: Iterable[str]) -> None:
        await self.write(Change(room, participant_ids))

    async def save_all(self, room: Room) -> None:
        """A full snapshot, for recovery after the bus was away."""
        people = keys.room_people(room.id)
        stored = await self._bus.hgetall(people)
        current = {p.id for p in room.participants}
        await self.save(room, current | set(stored))

    async def load(self, room_id: str, clock: Clock) -> Room | None:
        meta = await self._bus.get(keys.room_meta(room_id))
        if meta is None:
            return None
        stored = await self._bus.hgetall(keys.room_people(room_id))
        room = rebuild(meta, stored.values(), clock)
        room.drop_all(clock())  # their sockets were on the old owner
        return room

    async def remember_resume(self, room_id: str, digest: str, participant_id: str) -> None:
        await self._bus.hset(keys.room_resume(room_id), {digest: participant_id.encode()})

    async def forget_resume(self, room_id: str, *digests: str) -> None:
        await self._bus.hdel(keys.room_resume(room_id), *digests)

    async def find_resume(self, room_id: str, digest: str) -> str | None:
        value = await self._bus.hget(keys.room_resume(room_id), digest)
        return value.decode() if value is not None else None

    async def forget_room(self, room_id: str) -> None:
        await self._bus.delete(
            keys.room_meta(room_id), keys.room_people(room_id), keys.room_resume(room_id)
        )
