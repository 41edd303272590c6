"""The lobby cap, without sockets: a room holds at most `max_waiting` knocking guests."""

from __future__ import annotations

import pytest

from waiting_room import errors
from waiting_room.clock import FakeClock
from waiting_room.errors import RoomError
from waiting_room.participant import Role
from waiting_room.room import Room, lobby_cap


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def knock(room: Room, pid: str, identity: str | None = None) -> None:
    room.enter(pid, f"Guest {pid}", Role.GUEST, identity)


def fill(room: Room, count: int) -> None:
    for index in range(count):
        knock(room, f"g{index}")


def test_the_lobby_takes_twice_the_capacity_by_default(clock: FakeClock) -> None:
    room = Room("r", clock, max_participants=3)
    assert room.max_waiting == 6
    fill(room, 6)
    with pytest.raises(RoomError) as refused:
        knock(room, "g-late")
    assert refused.value.code == errors.LOBBY_FULL
    assert room.find("g-late") is None and len(room.waiting) == 6


def test_a_room_may_set_its_own_lobby_cap(clock: FakeClock) -> None:
    room = Room("r", clock, max_participants=3, max_waiting=2)
    fill(room, 2)
    with pytest.raises(RoomError) as refused:
        knock(room, "g-late", "pat")
    assert refused.value.code == errors.LOBBY_FULL


def test_the_cap_follows_a_factor_and_is_at_least_one() -> None:
    assert lobby_cap(200, 2.0) == 400
    assert lobby_cap(3, 0.5) == 2
    assert lobby_cap(1, 0.01) == 1


def test_a_cap_below_one_is_a_bug(clock: FakeClock) -> None:
    with pytest.raises(ValueError):
        Room("r", clock, max_waiting=0)


def test_hosts_never_count_against_the_lobby_and_join_when_it_is_full(clock: FakeClock) -> None:
    room = Room("r", clock, max_participants=3, max_waiting=1)
    fill(room, 1)
    room.enter("h1", "Dr", Role.HOST, "dr")
    assert room.get("h1").is_joined


def test_guests_on_hold_count_and_a_place_frees_when_one_is_let_in_or_leaves(
    clock: FakeClock,
) -> None:
    room = Room("r", clock, max_participants=3, max_waiting=2)
    room.enter("h1", "Dr", Role.HOST, "dr")
    fill(room, 2)
    room.hold("h1", "g0", "One minute")
    with pytest.raises(RoomError):
        knock(room, "g2")
    room.admit("h1", ["g0"])
    knock(room, "g2")
    room.leave("g1")
    knock(room, "g3")
    assert [p.id for p in room.waiting] == ["g2", "g3"]


def test_a_dropped_knock_of_the_same_identity_gives_way_even_in_a_full_lobby(
    clock: FakeClock,
) -> None:
    room = Room("r", clock, max_waiting=2)
    knock(room, "g0")
    knock(room, "g1", "pat")
    room.disconnect("g1")
    knock(room, "g2", "pat")
    assert [p.id for p in room.waiting] == ["g0", "g2"]


def test_the_cap_survives_a_round_trip_through_plain_data(clock: FakeClock) -> None:
    room = Room("r", clock, max_participants=5, max_waiting=3)
    copy = Room.from_dict(room.to_dict(), clock)
    assert copy.max_waiting == 3
    old = room.to_dict()
    del old["max_waiting"]  # state written before the cap existed
    assert Room.from_dict(old, clock).max_waiting == 10
