"""The room domain, without sockets: lobby, host controls, capacity, window, resume."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from waiting_room import errors
from waiting_room.clock import FakeClock
from waiting_room.errors import RoomError
from waiting_room.events import (
    Admitted,
    Audited,
    Joined,
    Knocked,
    Left,
    LobbyLeft,
    LobbyStatusChanged,
    Rejected,
    SessionEnded,
)
from waiting_room.participant import Role, Status
from waiting_room.room import Room
from waiting_room.schedule import CLOSES_AFTER_S, OPENS_BEFORE_S, RoomStatus, Schedule


def kinds(events: Sequence[object]) -> list[str]:
    return [type(e).__name__ for e in events]


def audits(events: Sequence[object]) -> list[tuple[str, str, str | None, str | None]]:
    return [(e.action, e.outcome, e.actor, e.subject) for e in events if isinstance(e, Audited)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def room(clock: FakeClock) -> Room:
    room = Room("visit-1", clock, max_participants=3)
    room.enter("h1", "Dr Smith", Role.HOST, "dr-smith")
    return room


def knock(room: Room, pid: str, identity: str | None = None) -> None:
    room.enter(pid, f"Guest {pid}", Role.GUEST, identity)


def test_a_host_joins_at_once_and_a_guest_waits(room: Room) -> None:
    events = room.enter("g1", "Pat", Role.GUEST, "pat")
    assert kinds(events) == ["Knocked", "LobbyStatusChanged", "Audited"]
    assert room.get("h1").status is Status.JOINED
    assert room.get("g1").status is Status.WAITING
    assert audits(events) == [("knock", "ok", "pat", "pat")]


def test_a_host_joining_gets_audited_join(clock: FakeClock) -> None:
    room = Room("r", clock)
    events = room.enter("h1", "Dr", Role.HOST, "dr")
    assert audits(events) == [("join", "ok", "dr", "dr")]
    assert isinstance(events[-1], Joined)


def test_admit_lets_named_guests_in_and_says_who_admitted(room: Room) -> None:
    knock(room, "g1", "pat")
    knock(room, "g2")
    events = room.admit("h1", ["g1"])
    admitted = next(e for e in events if isinstance(e, Admitted))
    assert [p.id for p in admitted.participants] == ["g1"]
    assert room.get("g1").is_joined and room.get("g1").admitted_by == "dr-smith"
    assert room.get("g2").is_waiting
    assert ("admit", "ok", "dr-smith", "pat") in audits(events)
    assert ("join", "ok", "pat", "pat") in audits(events)
    assert any(isinstance(e, LobbyLeft) and e.reason == "admitted" for e in events)


def test_admit_all_includes_guests_on_hold_in_knock_order(room: Room, clock: FakeClock) -> None:
    knock(room, "g1")
    clock.advance(1)
    knock(room, "g2")
    room.hold("h1", "g1", "Five more minutes")
    events = room.admit("h1", None)
    admitted = next(e for e in events if isinstance(e, Admitted))
    assert [p.id for p in admitted.participants] == ["g1", "g2"]
    assert room.get("g1").hold_message is None
    details = [e.details for e in events if isinstance(e, Audited) and e.action == "admit"]
    assert details == [{"all": True, "count": 2}] * 2


def test_admit_past_capacity_is_refused_and_the_guest_keeps_waiting(room: Room) -> None:
    for pid in ("g1", "g2", "g3"):
        knock(room, pid)
    events = room.admit("h1", None)
    admitted = next(e for e in events if isinstance(e, Admitted))
    assert [p.id for p in admitted.participants] == ["g1", "g2"]
    assert admitted.room_full
    assert room.get("g3").is_waiting
    assert room.joined_count == 3
    assert ("admit", "room_full", "dr-smith", "g3") in audits(events)


def test_admit_reports_ids_that_are_not_waiting(room: Room) -> None:
    knock(room, "g1")
    events = room.admit("h1", ["g1", "nobody", "h1"])
    admitted = next(e for e in events if isinstance(e, Admitted))
    assert admitted.unknown == ("nobody", "h1")


def test_a_guest_cannot_use_host_commands(room: Room) -> None:
    knock(room, "g1")
    knock(room, "g2")
    commands: tuple[Callable[[], object], ...] = (
        lambda: room.admit("g1", None),
        lambda: room.hold("g1", "g2", "x"),
        lambda: room.reject("g1", "g2"),
        lambda: room.remove("g1", "h1"),
        lambda: room.remove_all("g1"),
        lambda: room.end("g1"),
    )
    for command in commands:
        with pytest.raises(RoomError) as caught:
            command()
        assert caught.value.code == errors.FORBIDDEN
    assert room.get("g2").is_waiting and room.joined_count == 1


def test_hold_shows_the_message_and_keeps_the_guest_waiting(room: Room) -> None:
    knock(room, "g1", "pat")
    events = room.hold("h1", "g1", "  The doctor is running late  ")
    guest = room.get("g1")
    assert guest.status is Status.ON_HOLD and guest.hold_message == "The doctor is running late"
    assert any(isinstance(e, LobbyStatusChanged) for e in events)
    assert audits(events) == [("hold", "ok", "dr-smith", "pat")]


@pytest.mark.parametrize("message", ["", "   ", "x" * 1001])
def test_hold_needs_a_sensible_message(room: Room, message: str) -> None:
    knock(room, "g1")
    with pytest.raises(RoomError) as caught:
        room.hold("h1", "g1", message)
    assert caught.value.code == errors.BAD_REQUEST
    assert room.get("g1").status is Status.WAITING


def test_reject_takes_the_guest_out_of_the_lobby(room: Room) -> None:
    knock(room, "g1")
    events = room.reject("h1", "g1")
    assert room.find("g1") is None
    assert kinds(events) == ["Audited", "Rejected", "LobbyLeft"]


def test_reject_and_hold_only_apply_to_waiting_guests(room: Room) -> None:
    knock(room, "g1")
    room.admit("h1", ["g1"])
    commands: tuple[Callable[[], object], ...] = (
        lambda: room.reject("h1", "g1"),
        lambda: room.hold("h1", "g1", "x"),
    )
    for command in commands:
        with pytest.raises(RoomError) as caught:
            command()
        assert caught.value.code == errors.NOT_FOUND
    assert room.get("g1").is_joined


def test_remove_takes_a_joined_participant_out(room: Room) -> None:
    knock(room, "g1", "pat")
    room.admit("h1", ["g1"])
    events = room.remove("h1", "g1")
    assert room.find("g1") is None
    left = next(e for e in events if isinstance(e, Left))
    assert (left.reason, left.was_joined) == ("removed", True)
    assert audits(events) == [("remove", "ok", "dr-smith", "pat")]


def test_a_host_cannot_remove_itself(room: Room) -> None:
    with pytest.raises(RoomError) as caught:
        room.remove("h1", "h1")
    assert caught.value.code == errors.BAD_REQUEST


def test_remove_all_keeps_hosts_and_the_lobby(room: Room) -> None:
    room.enter("h2", "Nurse", Role.HOST, "nurse")
    knock(room, "g1")
    knock(room, "g2")
    room.admit("h1", ["g1"])
    events = room.remove_all("h1")
    assert {p.id for p in room.joined} == {"h1", "h2"}
    assert room.get("g2").is_waiting
    assert [e.participant.id for e in events if isinstance(e, Left)] == ["g1"]


def test_end_empties_the_room_and_starts_a_new_session(room: Room) -> None:
    knock(room, "g1")
    knock(room, "g2")
    room.admit("h1", ["g1"])
    events = room.end("h1")
    assert room.is_empty and room.session == 2
    reasons = {e.participant.id: (e.reason, e.was_joined) for e in events if isinstance(e, Left)}
    assert reasons == {"h1": ("ended", True), "g1": ("ended", True), "g2": ("ended", False)}
    assert isinstance(events[-1], SessionEnded)


def test_leave_from_the_lobby_tells_hosts(room: Room) -> None:
    knock(room, "g1")
    events = room.leave("g1")
    assert any(isinstance(e, LobbyLeft) and e.reason == "left" for e in events)
    assert room.find("g1") is None


def test_names_are_trimmed_and_bounded(room: Room) -> None:
    room.enter("g1", "  Pat\n  Doe ", Role.GUEST, None)
    assert room.get("g1").name == "Pat Doe"
    for bad in ("", "   ", "x" * 81):
        with pytest.raises(RoomError):
            room.enter("g9", bad, Role.GUEST, None)


def test_the_join_window_opens_30_minutes_before_and_closes_2_hours_after(
    clock: FakeClock,
) -> None:
    start = clock.now + 3600
    schedule = Schedule(start, start + 1800)
    room = Room("r", clock, schedule)
    clock.now = start - OPENS_BEFORE_S - 1
    with pytest.raises(RoomError) as caught:
        room.enter("g1", "Pat", Role.GUEST, None)
    assert caught.value.code == errors.OUTSIDE_JOIN_WINDOW
    assert caught.value.details == {"opens_at": schedule.opens_at, "closes_at": schedule.closes_at}
    assert room.status() is RoomStatus.SCHEDULED
    clock.now = start - OPENS_BEFORE_S
    room.enter("g1", "Pat", Role.GUEST, None)
    clock.now = start + 1800 + CLOSES_AFTER_S + 1
    assert room.status() is RoomStatus.ENDED
    with pytest.raises(RoomError):
        room.enter("h1", "Dr", Role.HOST, "dr")


def test_when_the_window_closes_the_session_ends(clock: FakeClock) -> None:
    schedule = Schedule(clock.now, clock.now + 600)
    room = Room("r", clock, schedule)
    room.enter("h1", "Dr", Role.HOST, "dr")
    clock.now = schedule.closes_at + 1
    events = room.expire(30)
    assert room.is_empty
    assert ("end", "ok", None, None) in audits(events)


def test_a_dropped_participant_keeps_its_place_for_the_resume_window(
    room: Room, clock: FakeClock
) -> None:
    knock(room, "g1")
    room.disconnect("g1")
    clock.advance(29)
    assert room.expire(30) == []
    room.reconnect("g1")
    clock.advance(60)
    assert room.expire(30) == []
    room.disconnect("g1")
    clock.advance(30)
    events = room.expire(30)
    assert room.find("g1") is None
    assert ("leave", "disconnected", "g1", "g1") in audits(events)


def test_the_same_identity_is_never_in_the_room_twice(room: Room) -> None:
    knock(room, "g1", "pat")
    with pytest.raises(RoomError) as caught:
        knock(room, "g2", "pat")
    assert caught.value.code == errors.CONFLICT
    room.admit("h1", ["g1"])
    room.disconnect("g1")
    events = room.enter("g2", "Pat", Role.GUEST, "pat")
    assert room.find("g1") is None
    assert room.get("g2").is_waiting, "a second device knocks again; it is never auto-admitted"
    assert any(isinstance(e, Left) and e.reason == "disconnected" for e in events)
    assert any(isinstance(e, Knocked) for e in events)


def test_a_newer_host_connection_takes_the_hosts_place(room: Room) -> None:
    knock(room, "g1")
    room.admit("h1", ["g1"])
    taken = room.take_over("dr-smith", Role.HOST)
    assert taken is not None
    person, events = taken
    assert person.id == "h1" and person.is_joined and person.connected
    assert [p.id for p in room.joined] == ["h1", "g1"], "one place, no second host"
    assert audits([*events]) == [("take_over", "ok", "dr-smith", "dr-smith")]


def test_a_guest_token_identity_never_takes_a_place(room: Room) -> None:
    knock(room, "g1", "family-link")
    room.admit("h1", ["g1"])
    assert room.take_over("family-link", Role.GUEST) is None
    assert room.take_over("family-link", Role.HOST) is None, "a host token never takes a guest"
    assert room.take_over("nobody", Role.HOST) is None
    assert room.get("g1").is_joined and len(room.participants) == 2


def test_a_host_cannot_join_a_full_room(clock: FakeClock) -> None:
    room = Room("r", clock, max_participants=1)
    room.enter("h1", "Dr", Role.HOST, "dr")
    with pytest.raises(RoomError) as caught:
        room.enter("h2", "Nurse", Role.HOST, "nurse")
    assert caught.value.code == errors.ROOM_FULL


def test_a_room_survives_a_round_trip_through_plain_data(room: Room, clock: FakeClock) -> None:
    knock(room, "g1", "pat")
    knock(room, "g2")
    room.hold("h1", "g2", "wait")
    room.admit("h1", ["g1"])
    copy = Room.from_dict(room.to_dict(), clock)
    assert copy.to_dict() == room.to_dict()
    assert copy.get("g2").hold_message == "wait"
    assert [p.id for p in copy.joined] == ["h1", "g1"]


def test_rejected_guest_event_carries_the_participant(room: Room) -> None:
    knock(room, "g1")
    rejected = next(e for e in room.reject("h1", "g1") if isinstance(e, Rejected))
    assert rejected.participant.id == "g1"


def test_after_a_server_stop_everyone_may_resume_within_the_window_from_the_stop(
    room: Room, clock: FakeClock
) -> None:
    knock(room, "g1")
    stopped_at = clock.now
    clock.advance(10)
    room.interrupt(stopped_at)
    assert all(not p.connected and p.disconnected_at == stopped_at for p in room.participants)
    room.reconnect("h1")
    clock.advance(19)
    assert room.expire(30) == []
    clock.advance(1)
    events = room.expire(30)
    assert room.find("g1") is None and room.find("h1") is not None
    assert ("leave", "interrupted", "g1", "g1") in audits(events)
    assert any(isinstance(e, LobbyLeft) and e.reason == "left" for e in events)


def test_a_participant_who_resumed_after_a_stop_later_leaves_as_disconnected(
    room: Room, clock: FakeClock
) -> None:
    room.interrupt(clock.now)
    room.reconnect("h1")
    room.disconnect("h1")
    clock.advance(30)
    assert ("leave", "disconnected", "dr-smith", "dr-smith") in audits(room.expire(30))
