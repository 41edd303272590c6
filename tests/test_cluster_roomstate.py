"""Room state on a real redis-server: what a takeover rebuilds includes the lobby cap and
who may not knock again."""

from __future__ import annotations

import pytest

from cluster.redisbus import RedisBus
from cluster.roomstate import Change, RoomStateStore, touched
from tests.redis_server import RedisServer
from waiting_room import errors
from waiting_room.clock import FakeClock
from waiting_room.errors import RoomError
from waiting_room.participant import Role
from waiting_room.room import Room


async def test_a_taken_over_room_keeps_its_cap_and_its_refusals(
    redis_server: RedisServer,
) -> None:
    bus = RedisBus(redis_server.url)
    await bus.start()
    store = RoomStateStore(bus)
    clock = FakeClock()
    room = Room("visit-1", clock, max_participants=4, max_waiting=3)
    for events in (
        room.enter("h1", "Dr", Role.HOST, "dr"),
        room.enter("g1", "Pat", Role.GUEST, "pat"),
        room.reject("h1", "g1"),
    ):
        await store.write(Change(room, touched(events)))
    rebuilt = await store.load("visit-1", clock)
    await bus.close()
    assert rebuilt is not None and rebuilt.max_waiting == 3
    with pytest.raises(RoomError) as refused:
        rebuilt.enter("g2", "Pat", Role.GUEST, "pat")
    assert refused.value.code == errors.KNOCK_REFUSED
