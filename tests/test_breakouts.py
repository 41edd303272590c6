"""Breakout rules in the pure core, and media isolation through the effect planner."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from sfu.control import MAIN_GROUP
from signalling import effects as fx
from waiting_room import errors
from waiting_room.breakouts import (
    AUTO_CLOSE_COUNTDOWN_S,
    MAX_BREAKOUT_NAME,
    MAX_BREAKOUTS,
    BreakoutSpec,
)
from waiting_room.clock import FakeClock
from waiting_room.errors import RoomError
from waiting_room.events import Audited, Broadcast, Event, HelpRequested, Moved
from waiting_room.participant import Role
from waiting_room.room import Room


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def room(clock: FakeClock) -> Room:
    room = Room("group", clock, max_participants=20)
    room.enter("h1", "Therapist", Role.HOST, "dr")
    for i in range(1, 7):
        room.enter(f"g{i}", f"Guest {i}", Role.GUEST, None)
    room.admit("h1", None)
    return room


def where(room: Room) -> dict[str, str | None]:
    return {p.id: p.breakout for p in room.joined}


def test_auto_assign_spreads_guests_evenly_and_leaves_hosts_in_the_main_room(room: Room) -> None:
    room.open_breakouts("h1", [BreakoutSpec("A"), BreakoutSpec("B"), BreakoutSpec("C")], auto=True)
    placed = where(room)
    assert placed["h1"] is None
    sizes = sorted(sum(1 for b in placed.values() if b == bid) for bid in ("b1", "b2", "b3"))
    assert sizes == [2, 2, 2]


def test_listed_participants_go_where_they_are_listed_and_auto_fills_the_rest(room: Room) -> None:
    specs = [BreakoutSpec("A", ("g1", "g2", "h1")), BreakoutSpec("B")]
    room.open_breakouts("h1", specs, auto=True)
    placed = where(room)
    assert placed["g1"] == placed["g2"] == placed["h1"] == "b1"
    assert [placed[f"g{i}"] for i in range(3, 7)] == ["b2", "b2", "b2", "b1"]


def test_manual_only_leaves_unlisted_participants_in_the_main_room(room: Room) -> None:
    room.open_breakouts("h1", [BreakoutSpec("Interpreter", ("g1",))])
    assert where(room)["g1"] == "b1" and where(room)["g2"] is None


@pytest.mark.parametrize(
    "specs",
    [
        [],
        [BreakoutSpec("A", ("nobody",))],
        [BreakoutSpec("A", ("g1",)), BreakoutSpec("B", ("g1",))],
        [BreakoutSpec("x" * (MAX_BREAKOUT_NAME + 1))],
        [BreakoutSpec(f"B{i}") for i in range(MAX_BREAKOUTS + 1)],
    ],
)
def test_bad_breakout_plans_change_nothing(room: Room, specs: list[BreakoutSpec]) -> None:
    with pytest.raises(RoomError):
        room.open_breakouts("h1", specs)
    assert not room.breakouts.is_open and set(where(room).values()) == {None}


def test_only_hosts_open_move_broadcast_and_close(room: Room) -> None:
    room.open_breakouts("h1", [BreakoutSpec("A", ("g1",))])
    commands: tuple[Callable[[], object], ...] = (
        lambda: room.open_breakouts("g2", [BreakoutSpec("X")]),
        lambda: room.move_to_breakout("g2", "g1", None),
        lambda: room.broadcast("g2", "hi"),
        lambda: room.close_breakouts("g2", None),
    )
    for command in commands:
        with pytest.raises(RoomError) as caught:
            command()
        assert caught.value.code == errors.FORBIDDEN


def test_a_host_moves_itself_to_visit_and_back(room: Room) -> None:
    room.open_breakouts("h1", [BreakoutSpec("A", ("g1",))])
    events = room.move_to_breakout("h1", "h1", "b1")
    assert where(room)["h1"] == "b1"
    assert any(isinstance(e, Moved) and e.target == "b1" for e in events)
    room.move_to_breakout("h1", "h1", None)
    assert where(room)["h1"] is None


def test_moving_to_an_unknown_breakout_is_not_found(room: Room) -> None:
    room.open_breakouts("h1", [BreakoutSpec("A")])
    with pytest.raises(RoomError) as caught:
        room.move_to_breakout("h1", "g1", "b9")
    assert caught.value.code == errors.NOT_FOUND


def test_broadcast_reaches_everyone_in_breakouts_and_the_hosts_and_audits_no_text(
    room: Room,
) -> None:
    room.open_breakouts("h1", [BreakoutSpec("A", ("g1", "g2"))])
    events = room.broadcast("h1", "  Five minutes left  ")
    sent = next(e for e in events if isinstance(e, Broadcast))
    assert sent.text == "Five minutes left"
    assert set(sent.recipients) == {"g1", "g2", "h1"}
    audit = next(e for e in events if isinstance(e, Audited))
    assert "Five" not in repr(audit)


def test_close_with_a_countdown_returns_everyone_when_it_runs_out(
    room: Room, clock: FakeClock
) -> None:
    room.open_breakouts("h1", [BreakoutSpec("A"), BreakoutSpec("B")], auto=True)
    room.close_breakouts("h1", 30)
    assert room.breakouts.closing_at == clock.now + 30
    clock.advance(29)
    assert room.expire(30) == []
    clock.advance(1)
    room.expire(30)
    assert not room.breakouts.is_open and set(where(room).values()) == {None}


def test_a_duration_starts_the_close_countdown_on_its_own(room: Room, clock: FakeClock) -> None:
    room.open_breakouts("h1", [BreakoutSpec("A")], auto=True, duration_s=600)
    clock.advance(600)
    room.expire(30)
    assert room.breakouts.closing_at == clock.now + AUTO_CLOSE_COUNTDOWN_S
    clock.advance(AUTO_CLOSE_COUNTDOWN_S)
    room.expire(30)
    assert not room.breakouts.is_open


def test_guests_admitted_while_breakouts_are_open_land_in_the_main_room(room: Room) -> None:
    room.open_breakouts("h1", [BreakoutSpec("A")], auto=True)
    room.enter("late", "Late", Role.GUEST, None)
    room.admit("h1", ["late"])
    assert where(room)["late"] is None


def test_remove_all_and_end_work_across_breakouts(room: Room) -> None:
    room.open_breakouts("h1", [BreakoutSpec("A"), BreakoutSpec("B")], auto=True)
    room.remove_all("h1")
    assert [p.id for p in room.joined] == ["h1"]
    room.end("h1")
    assert room.is_empty and not room.breakouts.is_open


def test_help_requests_name_the_breakout_and_need_one(room: Room) -> None:
    room.open_breakouts("h1", [BreakoutSpec("A", ("g1",))])
    events = room.request_help("g1")
    assert next(e for e in events if isinstance(e, HelpRequested)).breakout_id == "b1"
    with pytest.raises(RoomError):
        room.request_help("g2")


def test_capacity_counts_the_whole_room(clock: FakeClock) -> None:
    room = Room("r", clock, max_participants=3)
    room.enter("h1", "H", Role.HOST, "h")
    for pid in ("a", "b", "c"):
        room.enter(pid, pid, Role.GUEST, None)
    room.admit("h1", ["a"])
    room.open_breakouts("h1", [BreakoutSpec("A", ("a",))])
    room.admit("h1", None)
    assert room.joined_count == 3 and room.get("c").is_waiting


def test_breakouts_survive_a_round_trip_through_plain_data(room: Room, clock: FakeClock) -> None:
    room.open_breakouts("h1", [BreakoutSpec("A"), BreakoutSpec("B")], auto=True, duration_s=60)
    copy = Room.from_dict(room.to_dict(), clock)
    assert where(copy) == where(room) and copy.breakouts == room.breakouts


class BreakoutMachine(RuleBasedStateMachine):
    """After any sequence of commands: one place per participant, and media follows it."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.room = Room("r", self.clock, max_participants=10)
        self.media_group: dict[str, str] = {}
        self.serial = 0
        self._apply(self.room.enter("h1", "Host", Role.HOST, "h"))

    def _apply(self, events: list[Event]) -> None:
        for effect in fx.plan(self.room, events):
            match effect:
                case fx.MediaOpen(_, group, pid):
                    self.media_group[pid] = group
                case fx.MediaMove(pid, group):
                    self.media_group[pid] = group
                case fx.MediaClose(pid):
                    self.media_group.pop(pid, None)
                case fx.MediaCloseRoom():
                    self.media_group.clear()

    def _try(self, command: object) -> None:
        with contextlib.suppress(RoomError):
            self._apply(command())  # type: ignore[operator]

    def _someone(self, data: st.DataObject) -> str:
        ids = [p.id for p in self.room.participants] + ["ghost"]
        return data.draw(st.sampled_from(ids))

    @rule()
    def guest_arrives_and_is_admitted(self) -> None:
        self.serial += 1
        pid = f"g{self.serial}"
        self._try(lambda: self.room.enter(pid, pid, Role.GUEST, None))
        self._try(lambda: self.room.admit("h1", [pid]))

    @rule(count=st.integers(1, 3), auto=st.booleans(), data=st.data())
    def open_breakouts(self, count: int, auto: bool, data: st.DataObject) -> None:
        listed = tuple(data.draw(st.lists(st.sampled_from(["h1", "g1", "g2"]), max_size=2)))
        specs = [BreakoutSpec(f"B{i}", listed if i == 0 else ()) for i in range(count)]
        self._try(lambda: self.room.open_breakouts("h1", specs, auto))

    @rule(data=st.data())
    def move(self, data: st.DataObject) -> None:
        targets = [None, *self.room.breakouts.rooms, "b99"]
        target = data.draw(st.sampled_from(targets))
        who = self._someone(data)
        self._try(lambda: self.room.move_to_breakout("h1", who, target))

    @rule(countdown=st.sampled_from([None, 0, 5]))
    def close(self, countdown: int | None) -> None:
        self._try(lambda: self.room.close_breakouts("h1", countdown))

    @rule(seconds=st.sampled_from([1, 10, 100]))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)
        self._try(lambda: self.room.expire(1000))

    @rule(data=st.data())
    def someone_leaves_or_is_removed(self, data: st.DataObject) -> None:
        who = self._someone(data)
        if who == "h1":
            return
        if data.draw(st.booleans()):
            self._try(lambda: self.room.leave(who))
        else:
            self._try(lambda: self.room.remove("h1", who))

    @invariant()
    def everyone_is_in_exactly_one_place(self) -> None:
        for person in self.room.joined:
            assert person.breakout is None or person.breakout in self.room.breakouts.rooms

    @invariant()
    def media_flows_only_within_the_same_place(self) -> None:
        expected = {p.id: p.breakout or MAIN_GROUP for p in self.room.joined}
        assert self.media_group == expected


BreakoutMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None
)
TestBreakoutRules = BreakoutMachine.TestCase
