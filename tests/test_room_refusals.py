"""Refused knocks, without sockets: a rejected or removed identity stays out of this visit
until a host lets it knock again."""

from __future__ import annotations

import pytest

from waiting_room import errors
from waiting_room.clock import FakeClock
from waiting_room.errors import RoomError
from waiting_room.events import Audited, Event, RefusalsChanged
from waiting_room.participant import Role
from waiting_room.room import Room


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def room(clock: FakeClock) -> Room:
    room = Room("visit-1", clock, max_participants=5)
    room.enter("h1", "Dr Smith", Role.HOST, "dr-smith")
    return room


def knock(room: Room, pid: str, identity: str | None = None) -> list[Event]:
    return room.enter(pid, f"Guest {pid}", Role.GUEST, identity)


def refused_code(room: Room, pid: str, identity: str | None) -> str | None:
    try:
        knock(room, pid, identity)
    except RoomError as exc:
        return exc.code
    return None


def audits(events: list[Event]) -> list[tuple[str, str, str | None, str | None]]:
    return [(e.action, e.outcome, e.actor, e.subject) for e in events if isinstance(e, Audited)]


def test_a_rejected_identity_cannot_knock_again(room: Room) -> None:
    knock(room, "g1", "pat")
    events = room.reject("h1", "g1")
    assert any(isinstance(e, RefusalsChanged) for e in events)
    before = room.to_dict()
    assert refused_code(room, "g2", "pat") == errors.KNOCK_REFUSED
    assert room.to_dict() == before


def test_a_removed_identity_cannot_knock_again(room: Room) -> None:
    knock(room, "g1", "pat")
    room.admit("h1", ["g1"])
    room.remove("h1", "g1")
    assert refused_code(room, "g2", "pat") == errors.KNOCK_REFUSED
    assert [r.public() for r in room.refusals.entries] == [
        {"id": "g1", "name": "Guest g1", "reason": "removed"}
    ]


def test_remove_all_refuses_everyone_it_removed(room: Room) -> None:
    knock(room, "g1", "pat")
    knock(room, "g2", "sam")
    room.admit("h1", None)
    events = room.remove_all("h1")
    assert sum(isinstance(e, RefusalsChanged) for e in events) == 1
    assert refused_code(room, "g3", "pat") == refused_code(room, "g4", "sam")
    assert refused_code(room, "g5", "sam") == errors.KNOCK_REFUSED


def test_a_guest_who_left_or_dropped_may_knock_again(room: Room, clock: FakeClock) -> None:
    knock(room, "g1", "pat")
    room.leave("g1")
    knock(room, "g2", "pat")
    room.disconnect("g2")
    clock.advance(31)
    room.expire(30)
    assert refused_code(room, "g3", "pat") is None


def test_an_anonymous_guest_has_nothing_to_refuse(room: Room) -> None:
    knock(room, "g1")
    events = room.reject("h1", "g1")
    assert not any(isinstance(e, RefusalsChanged) for e in events)
    assert len(room.refusals) == 0


def test_a_host_lets_a_refused_participant_knock_again(room: Room) -> None:
    knock(room, "g1", "pat")
    room.reject("h1", "g1")
    events = room.allow_knock("h1", participant_id="g1")
    assert audits(events) == [("allow_knock", "ok", "dr-smith", "pat")]
    assert any(isinstance(e, RefusalsChanged) for e in events)
    assert refused_code(room, "g2", "pat") is None


def test_a_host_may_name_the_identity_instead(room: Room) -> None:
    knock(room, "g1", "pat")
    room.reject("h1", "g1")
    room.allow_knock("h1", identity="pat")
    assert len(room.refusals) == 0


def test_allow_knock_needs_a_host_and_a_refused_person(room: Room) -> None:
    knock(room, "g1", "pat")
    room.reject("h1", "g1")
    knock(room, "g2", "sam")
    with pytest.raises(RoomError) as not_host:
        room.allow_knock("g2", participant_id="g1")
    assert not_host.value.code == errors.FORBIDDEN
    for target in ({"participant_id": "g2"}, {"identity": "nobody"}):
        with pytest.raises(RoomError) as unknown:
            room.allow_knock("h1", **target)
        assert unknown.value.code == errors.NOT_FOUND
    assert len(room.refusals) == 1


def test_a_room_that_allows_reknocks_refuses_nobody(clock: FakeClock) -> None:
    room = Room("r", clock, allow_reknock=True)
    room.enter("h1", "Dr", Role.HOST, "dr")
    knock(room, "g1", "pat")
    room.reject("h1", "g1")
    assert refused_code(room, "g2", "pat") is None


def test_end_clears_the_refusals_for_the_next_visit(room: Room) -> None:
    knock(room, "g1", "pat")
    room.reject("h1", "g1")
    room.end("h1")
    assert refused_code(room, "g2", "pat") is None


def test_refusals_survive_a_round_trip_through_plain_data(room: Room, clock: FakeClock) -> None:
    knock(room, "g1", "pat")
    room.reject("h1", "g1")
    copy = Room.from_dict(room.to_dict(), clock)
    assert refused_code(copy, "g2", "pat") == errors.KNOCK_REFUSED
    assert copy.allow_reknock is False
