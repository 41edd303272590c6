"""Hypothesis state machine over the room: the rules hold after any sequence of commands."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from waiting_room.clock import FakeClock
from waiting_room.errors import RoomError
from waiting_room.events import Admitted, Event, Left, Rejected
from waiting_room.participant import Role
from waiting_room.room import Room

PEOPLE = [f"p{i}" for i in range(8)]
CAPACITY = 4


class RoomMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.room = Room("r", self.clock, max_participants=CAPACITY)
        self.admitted_by_host: set[str] = set()
        self.gone: set[str] = set()
        self.ended = False
        self.serial = 0

    def _run(self, command: object) -> list[Event]:
        try:
            events: list[Event] = command()  # type: ignore[operator]
        except RoomError:
            return []
        for event in events:
            if isinstance(event, Admitted):
                self.admitted_by_host |= {p.id for p in event.participants}
            if isinstance(event, Left | Rejected):
                self.gone.add(event.participant.id)
        return events

    def _new_id(self, base: str) -> str:
        self.serial += 1
        return f"{base}-{self.serial}"

    @rule(who=st.sampled_from(PEOPLE), host=st.booleans())
    def enter(self, who: str, host: bool) -> None:
        self.ended = False
        role = Role.HOST if host else Role.GUEST
        pid = self._new_id(who)
        self._run(lambda: self.room.enter(pid, who, role, who if host else None))

    @rule(data=st.data())
    def admit_some(self, data: st.DataObject) -> None:
        ids = [p.id for p in self.room.participants] + ["ghost"]
        chosen = data.draw(st.lists(st.sampled_from(ids), min_size=1, max_size=4))
        actor = data.draw(st.sampled_from(ids))
        self._run(lambda: self.room.admit(actor, chosen))

    @rule(data=st.data())
    def admit_all(self, data: st.DataObject) -> None:
        actor = data.draw(st.sampled_from([p.id for p in self.room.participants] + ["ghost"]))
        self._run(lambda: self.room.admit(actor, None))

    @rule(data=st.data(), message=st.sampled_from(["wait", "", "ok"]))
    def hold(self, data: st.DataObject, message: str) -> None:
        ids = [p.id for p in self.room.participants] + ["ghost"]
        actor, target = data.draw(st.sampled_from(ids)), data.draw(st.sampled_from(ids))
        self._run(lambda: self.room.hold(actor, target, message))

    @rule(data=st.data(), command=st.sampled_from(["reject", "remove"]))
    def reject_or_remove(self, data: st.DataObject, command: str) -> None:
        ids = [p.id for p in self.room.participants] + ["ghost"]
        actor, target = data.draw(st.sampled_from(ids)), data.draw(st.sampled_from(ids))
        self._run(lambda: getattr(self.room, command)(actor, target))

    @rule(data=st.data())
    def remove_all(self, data: st.DataObject) -> None:
        actor = data.draw(st.sampled_from([p.id for p in self.room.participants] + ["ghost"]))
        self._run(lambda: self.room.remove_all(actor))

    @rule(data=st.data())
    def end(self, data: st.DataObject) -> None:
        actor = data.draw(st.sampled_from([p.id for p in self.room.participants] + ["ghost"]))
        if self._run(lambda: self.room.end(actor)):
            self.ended = True

    @rule(who=st.sampled_from(PEOPLE), host=st.booleans())
    def a_newer_connection_of_an_identity(self, who: str, host: bool) -> None:
        """Only a host's newer connection takes a place, its own, and nobody is added."""
        before, count = self.room.find_identity(who), len(self.room.participants)
        taken = self.room.take_over(who, Role.HOST if host else Role.GUEST)
        if taken is not None:
            assert host and before is not None and before.is_host and taken[0] is before
        assert len(self.room.participants) == count

    @precondition(lambda self: bool(self.room.participants))
    @rule(data=st.data())
    def leave_or_drop(self, data: st.DataObject) -> None:
        person = data.draw(st.sampled_from(self.room.participants))
        if data.draw(st.booleans()):
            self._run(lambda: self.room.leave(person.id))
        else:
            self.room.disconnect(person.id)
            self.clock.advance(31)
            self._run(lambda: self.room.expire(30))

    @invariant()
    def a_guest_is_never_joined_without_an_admit_by_a_host(self) -> None:
        for person in self.room.joined:
            if not person.is_host:
                assert person.id in self.admitted_by_host
                assert person.admitted_by is not None

    @invariant()
    def the_count_never_exceeds_capacity(self) -> None:
        assert self.room.joined_count <= CAPACITY

    @invariant()
    def a_rejected_or_removed_guest_holds_no_place(self) -> None:
        present = {p.id for p in self.room.participants}
        assert not (present & self.gone)

    @invariant()
    def end_empties_everything(self) -> None:
        if self.ended:
            assert self.room.is_empty

    @invariant()
    def every_identity_is_present_once(self) -> None:
        identities = [p.identity for p in self.room.participants if p.identity]
        assert len(identities) == len(set(identities))

    @invariant()
    def waiting_and_joined_partition_the_room(self) -> None:
        people = self.room.participants
        assert len(people) == len(self.room.joined) + len(self.room.waiting)


RoomMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestRoomRules = RoomMachine.TestCase
