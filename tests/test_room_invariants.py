"""Hypothesis state machine over the room: the rules hold after any sequence of commands."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from waiting_room import errors
from waiting_room.clock import FakeClock
from waiting_room.errors import RoomError
from waiting_room.events import Admitted, Audited, Event, Left, Rejected, SessionEnded
from waiting_room.participant import Participant, Role
from waiting_room.room import Room

PEOPLE = [f"p{i}" for i in range(8)]
CAPACITY = 4
LOBBY_CAP = 3


class RoomMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.room = Room("r", self.clock, max_participants=CAPACITY, max_waiting=LOBBY_CAP)
        self.admitted_by_host: set[str] = set()
        self.gone: set[str] = set()
        self.refused: set[str] = set()  # identities a host rejected or removed this visit
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
            self._track_refusal(event)
        return events

    def _track_refusal(self, event: Event) -> None:
        """The model: who a host rejected or removed (guests with an identity only)."""
        match event:
            case Rejected(person) | Left(person, "removed", _):
                if person.identity is not None and not person.is_host:
                    self.refused.add(person.identity)
            case Audited("allow_knock", "ok", _, subject) if subject is not None:
                self.refused.discard(subject)
            case SessionEnded():
                self.refused.clear()

    def _new_id(self, base: str) -> str:
        self.serial += 1
        return f"{base}-{self.serial}"

    @rule(who=st.sampled_from(PEOPLE), host=st.booleans(), named=st.booleans())
    def enter(self, who: str, host: bool, named: bool) -> None:
        self.ended = False
        role = Role.HOST if host else Role.GUEST
        pid = self._new_id(who)
        # Guests with a token identity may be refused; anonymous ones never are.
        identity = f"host-{who}" if host else (f"id-{who}" if named else None)
        waiting_before = len(self.room.waiting)
        try:
            self.room.enter(pid, who, role, identity)
        except RoomError as exc:
            if not host and identity in self.refused:
                assert exc.code == errors.KNOCK_REFUSED
            if exc.code == errors.LOBBY_FULL:
                assert waiting_before >= LOBBY_CAP
            return
        assert host or identity is None or identity not in self.refused

    @precondition(lambda self: bool(self.room.hosts) and any(_named_guests(self.room)))
    @rule(data=st.data())
    def a_host_turns_away_a_named_guest(self, data: st.DataObject) -> None:
        host = data.draw(st.sampled_from(self.room.hosts))
        guest = data.draw(st.sampled_from(_named_guests(self.room)))
        command = self.room.reject if guest.is_waiting else self.room.remove
        self._run(lambda: command(host.id, guest.id))

    @precondition(lambda self: bool(self.refused))
    @rule(data=st.data())
    def a_refused_guest_knocks_again(self, data: st.DataObject) -> None:
        identity = data.draw(st.sampled_from(sorted(self.refused)))
        before = self.room.to_dict()
        try:
            self.room.enter(self._new_id("again"), "Again", Role.GUEST, identity)
        except RoomError as exc:
            assert exc.code == errors.KNOCK_REFUSED
            assert self.room.to_dict() == before
            return
        raise AssertionError(f"{identity} was refused but knocked again")

    @rule(data=st.data(), by_id=st.booleans())
    def allow_knock(self, data: st.DataObject, by_id: bool) -> None:
        actor = data.draw(st.sampled_from([p.id for p in self.room.participants] + ["ghost"]))
        refused = self.room.refusals.entries
        if not refused:
            return
        target = data.draw(st.sampled_from(refused))
        if by_id:
            self._run(lambda: self.room.allow_knock(actor, participant_id=target.participant_id))
        else:
            self._run(lambda: self.room.allow_knock(actor, identity=target.identity))

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
    def the_lobby_never_exceeds_its_cap(self) -> None:
        assert len(self.room.waiting) <= LOBBY_CAP

    @invariant()
    def a_refused_identity_is_nowhere_in_the_room_until_a_host_allows_it(self) -> None:
        assert {r.identity for r in self.room.refusals.entries} == self.refused
        guests = {p.identity for p in self.room.participants if not p.is_host}
        assert not (guests & self.refused)

    @invariant()
    def waiting_and_joined_partition_the_room(self) -> None:
        people = self.room.participants
        assert len(people) == len(self.room.joined) + len(self.room.waiting)


def _named_guests(room: Room) -> list[Participant]:
    return [p for p in room.participants if p.identity and not p.is_host]


RoomMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestRoomRules = RoomMachine.TestCase
