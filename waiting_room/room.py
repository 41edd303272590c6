"""A visit room: lobby, roster and host controls. Pure and synchronous.

Every command checks first and changes after, so a refused command (a
`RoomError`) leaves the room exactly as it was.  Commands return events;
the shell turns them into messages, media calls and audit rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from waiting_room import errors
from waiting_room.breakouts import BreakoutRules, BreakoutSpec, BreakoutState
from waiting_room.clock import Clock
from waiting_room.errors import RoomError
from waiting_room.events import (
    Admitted,
    Audited,
    BreakoutsChanged,
    Event,
    Joined,
    Knocked,
    Left,
    LobbyLeft,
    LobbyStatusChanged,
    RefusalsChanged,
    Rejected,
    SessionEnded,
)
from waiting_room.participant import Participant, Role, Status
from waiting_room.refusals import REJECTED, REMOVED, Refusal, Refusals
from waiting_room.schedule import RoomStatus, Schedule
from waiting_room.visit import Visit

DEFAULT_CAPACITY = 200
DEFAULT_LOBBY_FACTOR = 2.0
MAX_HOLD_MESSAGE = 1000
MAX_NAME = 80
OK = "ok"


def clean_name(name: object) -> str:
    """A display name as given, trimmed; shown as text by every client, never as markup."""
    if not isinstance(name, str) or not name.strip():
        raise RoomError(errors.BAD_REQUEST, "a display name is required")
    name = " ".join(name.split())
    if len(name) > MAX_NAME:
        raise RoomError(errors.BAD_REQUEST, f"a display name has at most {MAX_NAME} characters")
    return name


def lobby_cap(capacity: int, factor: float = DEFAULT_LOBBY_FACTOR) -> int:
    """How many guests may wait for a room of `capacity`: `factor` times it, at least one."""
    return max(1, math.ceil(capacity * factor))


class Room:
    def __init__(
        self,
        room_id: str,
        clock: Clock,
        schedule: Schedule | None = None,
        max_participants: int = DEFAULT_CAPACITY,
        max_waiting: int | None = None,
        allow_reknock: bool = False,
    ) -> None:
        if max_participants < 1:
            raise ValueError("max_participants must be at least 1")
        if max_waiting is not None and max_waiting < 1:
            raise ValueError("max_waiting must be at least 1")
        self.id = room_id
        self.schedule = schedule
        self.max_participants = max_participants
        self.max_waiting = max_waiting or lobby_cap(max_participants)
        self.allow_reknock = allow_reknock  # False: a rejected/removed identity stays out
        self.refusals = Refusals()
        self.session = 1
        self._clock = clock
        self._people: dict[str, Participant] = {}
        self.breakouts = BreakoutState()
        self.breakout_rules = BreakoutRules(self, self._now)
        self.visit = Visit()  # for integrators: start time and counts (waiting_room/visit.py)

    def _now(self) -> float:
        return self._clock()

    # --- breakouts (the rules: waiting_room/breakouts.py) ------------------------------

    def members(self, breakout_id: str | None) -> list[Participant]:
        """The joined participants of a breakout (None: the main room)."""
        return self.breakout_rules.members(breakout_id)

    def open_breakouts(
        self,
        actor_id: str,
        specs: Sequence[BreakoutSpec],
        auto: bool = False,
        duration_s: float | None = None,
    ) -> list[Event]:
        return self.breakout_rules.open_breakouts(actor_id, specs, auto, duration_s)

    def move_to_breakout(
        self, actor_id: str, participant_id: str, target: str | None
    ) -> list[Event]:
        return self.breakout_rules.move_to_breakout(actor_id, participant_id, target)

    def broadcast(self, actor_id: str, text: str) -> list[Event]:
        return self.breakout_rules.broadcast(actor_id, text)

    def close_breakouts(self, actor_id: str | None, countdown_s: float | None) -> list[Event]:
        return self.breakout_rules.close_breakouts(actor_id, countdown_s)

    def request_help(self, participant_id: str) -> list[Event]:
        return self.breakout_rules.request_help(participant_id)

    def tick_breakouts(self) -> list[Event]:
        return self.breakout_rules.tick_breakouts()

    # --- queries -----------------------------------------------------------------------

    def get(self, participant_id: str) -> Participant:
        person = self._people.get(participant_id)
        if person is None:
            raise RoomError(errors.NOT_FOUND, "no such participant in this room")
        return person

    def find(self, participant_id: str) -> Participant | None:
        return self._people.get(participant_id)

    def find_identity(self, identity: str) -> Participant | None:
        for person in self._people.values():
            if person.identity == identity:
                return person
        return None

    @property
    def participants(self) -> list[Participant]:
        return list(self._people.values())

    @property
    def joined(self) -> list[Participant]:
        return [p for p in self._people.values() if p.is_joined]

    @property
    def waiting(self) -> list[Participant]:
        """The lobby, in knock order."""
        lobby = [p for p in self._people.values() if p.is_waiting]
        return sorted(lobby, key=lambda p: p.knocked_at)

    @property
    def hosts(self) -> list[Participant]:
        return [p for p in self._people.values() if p.is_joined and p.is_host]

    @property
    def joined_count(self) -> int:
        return sum(1 for p in self._people.values() if p.is_joined)

    @property
    def is_empty(self) -> bool:
        return not self._people

    def status(self) -> RoomStatus:
        if self.schedule is None:
            return RoomStatus.OPEN
        return self.schedule.status(self._clock())

    def require_joined(self, participant_id: str) -> Participant:
        person = self.get(participant_id)
        if not person.is_joined:
            raise RoomError(errors.NOT_ADMITTED, "you are waiting to be let in")
        return person

    def require_host(self, participant_id: str) -> Participant:
        person = self.get(participant_id)
        if not person.is_host:
            raise RoomError(errors.FORBIDDEN, "only a host may do this")
        return person

    # --- entering ----------------------------------------------------------------------

    def enter(
        self, participant_id: str, name: str, role: Role, identity: str | None
    ) -> list[Event]:
        """A verified `hello`: a host joins at once, a guest knocks and waits."""
        if self.schedule is not None:
            self.schedule.check(self._clock())
        if participant_id in self._people:
            raise RoomError(errors.CONFLICT, "participant id already in use")
        name = clean_name(name)
        if role is Role.GUEST:
            self._check_knock(identity)
        events: list[Event] = []
        if identity is not None:
            events.extend(self._replace_stale(identity))
        if role is Role.HOST and self.joined_count >= self.max_participants:
            raise RoomError(errors.ROOM_FULL, "the room is full")
        person = Participant(participant_id, name, role, identity, knocked_at=self._clock())
        self._people[participant_id] = person
        if role is Role.HOST:
            return events + self._join([person], admitted_by=None)
        events.append(Knocked(person))
        events.append(LobbyStatusChanged(person))
        events.append(Audited("knock", OK, person.audit_id, person.audit_id))
        return events

    def _check_knock(self, identity: str | None) -> None:
        """A refused identity stays out; a full lobby takes nobody (a dropped knock of the
        same identity gives way, so it does not count)."""
        if identity is not None and identity in self.refusals:
            raise RoomError(
                errors.KNOCK_REFUSED,
                "the host has not allowed you to knock again in this visit",
            )
        waiting = sum(1 for p in self._people.values() if p.is_waiting)
        stale = self.find_identity(identity) if identity is not None else None
        if stale is not None and stale.is_waiting and not stale.connected:
            waiting -= 1
        if waiting >= self.max_waiting:
            raise RoomError(errors.LOBBY_FULL, "the waiting room is full; try again later")

    def _replace_stale(self, identity: str) -> list[Event]:
        """One place per identity: a dropped session of the same person gives way.

        A still-connected session wins instead, so the same token used on two
        devices at once is never in the room twice.
        """
        old = self.find_identity(identity)
        if old is None:
            return []
        if old.connected:
            raise RoomError(errors.CONFLICT, "you are already in this room from another connection")
        return self._drop(old, "disconnected", actor=old.audit_id, action="leave")

    def take_over(self, identity: str, role: Role) -> tuple[Participant, list[Event]] | None:
        """A newer connection of a host identity takes that host's place at once.

        A host token names one person, so its newest connection (a reload, a second
        window) wins and keeps the id, role and place. Guest tokens may be shared (one
        link for a patient and a relative), so a guest's identity never takes a place:
        a guest comes back only with its session's resume token. None: no take-over.
        """
        old = self.find_identity(identity)
        if role is not Role.HOST or old is None or not old.is_host:
            return None
        if self.schedule is not None:
            self.schedule.check(self._clock())
        self.reconnect(old.id)
        return old, [Audited("take_over", OK, old.audit_id, old.audit_id)]

    # --- lobby -------------------------------------------------------------------------

    def admit(self, actor_id: str, participant_ids: Sequence[str] | None) -> list[Event]:
        """Let in the named guests, or everyone waiting (on hold included) when None."""
        host = self.require_host(actor_id)
        admit_all = participant_ids is None
        if participant_ids is None:
            candidates = self.waiting
            unknown: list[str] = []
        else:
            candidates, unknown = self._lobby_members(participant_ids)
        room = self.max_participants - self.joined_count
        let_in, kept = candidates[: max(room, 0)], candidates[max(room, 0) :]
        events: list[Event] = []
        details = {"all": True, "count": len(let_in)} if admit_all else {}
        for person in let_in:
            events.append(Audited("admit", OK, host.audit_id, person.audit_id, details))
        for person in kept:
            events.append(Audited("admit", errors.ROOM_FULL, host.audit_id, person.audit_id))
        events.append(Admitted(tuple(let_in), room_full=bool(kept), unknown=tuple(unknown)))
        for person in let_in:
            events.append(LobbyLeft(person, "admitted"))
        return events + self._join(let_in, admitted_by=host.audit_id)

    def _lobby_members(self, ids: Sequence[str]) -> tuple[list[Participant], list[str]]:
        found: list[Participant] = []
        unknown: list[str] = []
        for pid in dict.fromkeys(ids):
            person = self._people.get(pid)
            if person is not None and person.is_waiting:
                found.append(person)
            else:
                unknown.append(pid)
        return found, unknown

    def _join(self, people: list[Participant], admitted_by: str | None) -> list[Event]:
        now = self._clock()
        for person in people:
            person.set_status(Status.JOINED)
            person.hold_message = None
            person.joined_at = now
            person.admitted_by = admitted_by
            person.breakout = None
        events: list[Event] = [Audited("join", OK, p.audit_id, p.audit_id) for p in people]
        if people:
            events.append(Joined(tuple(people)))
            if self.breakouts.is_open:
                events.append(BreakoutsChanged())
        return events

    def hold(self, actor_id: str, participant_id: str, message: str) -> list[Event]:
        host = self.require_host(actor_id)
        guest = self._waiting_guest(participant_id)
        if not isinstance(message, str) or not message.strip():
            raise RoomError(errors.BAD_REQUEST, "a hold needs a message for the guest")
        if len(message) > MAX_HOLD_MESSAGE:
            raise RoomError(errors.BAD_REQUEST, f"at most {MAX_HOLD_MESSAGE} characters")
        guest.set_status(Status.ON_HOLD)
        guest.hold_message = message.strip()
        return [
            Audited("hold", OK, host.audit_id, guest.audit_id),
            LobbyStatusChanged(guest),
        ]

    def reject(self, actor_id: str, participant_id: str) -> list[Event]:
        host = self.require_host(actor_id)
        guest = self._waiting_guest(participant_id)
        self._remove(guest)
        events: list[Event] = [
            Audited("reject", OK, host.audit_id, guest.audit_id),
            Rejected(guest),
            LobbyLeft(guest, "rejected"),
        ]
        return events + self._refuse([guest], REJECTED)

    def _waiting_guest(self, participant_id: str) -> Participant:
        person = self._people.get(participant_id)
        if person is None or not person.is_waiting:
            raise RoomError(errors.NOT_FOUND, "that guest is not waiting in the lobby")
        return person

    # --- host controls -----------------------------------------------------------------

    def remove(self, actor_id: str, participant_id: str) -> list[Event]:
        host = self.require_host(actor_id)
        person = self._people.get(participant_id)
        if person is None or not person.is_joined:
            raise RoomError(errors.NOT_FOUND, "that participant is not in the room")
        if person is host:
            raise RoomError(errors.BAD_REQUEST, "use leave to leave the room yourself")
        events = self._drop(person, "removed", actor=host.audit_id, action="remove")
        return events + self._refuse([person], REMOVED)

    def remove_all(self, actor_id: str) -> list[Event]:
        host = self.require_host(actor_id)
        guests = [p for p in self.joined if not p.is_host]
        events: list[Event] = []
        for guest in guests:
            events.extend(self._drop(guest, "removed", host.audit_id, "remove_all"))
        if not guests:
            events.append(Audited("remove_all", OK, host.audit_id, None, {"count": 0}))
        return events + self._refuse(guests, REMOVED)

    def _refuse(self, people: list[Participant], reason: str) -> list[Event]:
        """Keep rejected/removed guests' identities from knocking again in this visit."""
        now = self._clock()
        refused = [p for p in people if p.identity and not p.is_host and not self.allow_reknock]
        for person in refused:
            assert person.identity is not None
            self.refusals.add(Refusal(person.identity, person.id, person.name, reason, now))
        return [RefusalsChanged()] if refused else []

    def allow_knock(
        self, actor_id: str, participant_id: str | None = None, identity: str | None = None
    ) -> list[Event]:
        """A host lets a refused identity (named by it, or by its old participant id) knock."""
        host = self.require_host(actor_id)
        refusal = self.refusals.find(identity, participant_id)
        if refusal is None:
            raise RoomError(errors.NOT_FOUND, "nobody by that id or identity is refused")
        self.refusals.discard(refusal.identity)
        return [
            Audited("allow_knock", OK, host.audit_id, refusal.identity),
            RefusalsChanged(),
        ]

    def end(self, actor_id: str) -> list[Event]:
        """A host ends the meeting for all."""
        return self.end_session(self.require_host(actor_id).audit_id)

    def end_session(self, actor: str | None) -> list[Event]:
        """End the meeting for all on behalf of `actor` (an admin identity, or None when the
        join window closed); no host needs to be present."""
        everyone = self.joined + self.waiting
        events: list[Event] = [
            Audited("end", OK, actor, None, {"count": len(everyone), "session": self.session})
        ]
        for person in everyone:
            self._remove(person)
            events.append(Left(person, "ended", was_joined=person.joined_at is not None))
        self.session += 1
        self.breakouts = BreakoutState(serial=self.breakouts.serial)
        self.refusals.clear()
        events.append(SessionEnded(self.session))
        return events

    # --- leaving and connections -------------------------------------------------------

    def leave(self, participant_id: str) -> list[Event]:
        person = self.get(participant_id)
        return self._drop(person, "left", actor=person.audit_id, action="leave")

    def disconnect(self, participant_id: str) -> None:
        """The socket dropped; the place is kept for the resume window."""
        person = self.get(participant_id)
        person.connected = False
        person.disconnected_at = self._clock()

    def reconnect(self, participant_id: str) -> Participant:
        person = self.get(participant_id)
        person.connected = True
        person.disconnected_at = None
        person.interrupted = False
        return person

    def drop_all(self, at: float) -> None:
        """Everyone's socket is gone as of `at` (the room moved to another node): each may
        resume within the window from then; who does not leaves as `disconnected`."""
        for person in self._people.values():
            person.connected = False
            person.disconnected_at = at

    def interrupt(self, stopped_at: float) -> None:
        """The server stopped at `stopped_at` with everyone here: as `drop_all`, but who
        does not come back leaves as `interrupted`."""
        self.drop_all(stopped_at)
        for person in self._people.values():
            person.interrupted = True

    def expire(self, resume_window_s: float) -> list[Event]:
        """Drop those disconnected past the window; end the session once the window closes."""
        now = self._clock()
        events: list[Event] = []
        for person in list(self._people.values()):
            gone_at = person.disconnected_at
            if gone_at is not None and now - gone_at >= resume_window_s:
                events.extend(self._drop(person, "disconnected", person.audit_id, "leave"))
        if self.schedule is not None and self._people and now > self.schedule.closes_at:
            return events + self.end_session(None)
        if self.breakouts.is_open:
            events.extend(self.tick_breakouts())
        return events

    def _drop(self, person: Participant, reason: str, actor: str, action: str) -> list[Event]:
        was_joined = person.is_joined
        self._remove(person)
        outcome = OK
        if reason == "disconnected":
            outcome = "interrupted" if person.interrupted else "disconnected"
        events: list[Event] = [Audited(action, outcome, actor, person.audit_id)]
        if not was_joined:
            events.append(LobbyLeft(person, "left"))
        events.append(Left(person, reason, was_joined))
        if was_joined and self.breakouts.is_open:
            events.append(BreakoutsChanged())
        return events

    def _remove(self, person: Participant) -> None:
        person.set_status(Status.GONE)
        del self._people[person.id]

    # --- persistence -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "schedule": None
            if self.schedule is None
            else [self.schedule.starts_at, self.schedule.ends_at],
            "max_participants": self.max_participants,
            "max_waiting": self.max_waiting,
            "allow_reknock": self.allow_reknock,
            "refusals": self.refusals.to_list(),
            "session": self.session,
            "participants": [p.to_dict() for p in self._people.values()],
            "breakouts": self.breakouts.to_dict(),
            "visit": self.visit.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], clock: Clock) -> Room:
        schedule = data["schedule"]
        room = cls(
            data["id"],
            clock,
            Schedule(*schedule) if schedule else None,
            data["max_participants"],
            data.get("max_waiting"),
            data.get("allow_reknock", False),
        )
        room.refusals = Refusals.from_list(data.get("refusals", []))
        room.session = data["session"]
        room._people = {p["id"]: Participant.from_dict(p) for p in data["participants"]}
        if data.get("breakouts"):
            room.breakouts = BreakoutState.from_dict(data["breakouts"])
        room.visit = Visit.from_dict(data.get("visit"))
        return room


def ids(people: Iterable[Participant]) -> list[str]:
    return [p.id for p in people]
