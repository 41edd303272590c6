"""Breakout sessions: split the joined participants into groups and bring them back.

Each breakout is a room of its own for roster and media; the lobby, capacity
and host controls stay room-wide.  Pure and synchronous like the room: the
deadlines (a duration, then a close countdown) are fired by `tick(now)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from waiting_room import errors
from waiting_room.errors import RoomError
from waiting_room.events import Audited, BreakoutsChanged, Broadcast, Event, HelpRequested, Moved
from waiting_room.participant import Participant

MAX_BREAKOUTS = 50
MAX_BROADCAST = 1000
MAX_BREAKOUT_NAME = 80
AUTO_CLOSE_COUNTDOWN_S = 60.0
OK = "ok"


@dataclass(frozen=True)
class BreakoutSpec:
    """What a host asks for: a name and, optionally, who goes there."""

    name: str
    participant_ids: tuple[str, ...] = ()


@dataclass
class BreakoutState:
    rooms: dict[str, str] = field(default_factory=dict)  # id -> name, in opening order
    ends_at: float | None = None  # the duration runs out: a close countdown starts
    closing_at: float | None = None  # the countdown runs out: everyone returns
    serial: int = 0

    @property
    def is_open(self) -> bool:
        return bool(self.rooms)

    @property
    def deadline(self) -> float | None:
        """What participants see as 'time left'."""
        return self.closing_at if self.closing_at is not None else self.ends_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "rooms": dict(self.rooms),
            "ends_at": self.ends_at,
            "closing_at": self.closing_at,
            "serial": self.serial,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BreakoutState:
        return cls(dict(data["rooms"]), data["ends_at"], data["closing_at"], data["serial"])


class BreakoutRoom(Protocol):
    """What the breakout rules read of their room: its people and its breakout state."""

    breakouts: BreakoutState

    @property
    def joined(self) -> list[Participant]: ...

    def find(self, participant_id: str) -> Participant | None: ...

    def require_host(self, participant_id: str) -> Participant: ...


class BreakoutRules:
    """The breakout commands of one room, composed into it (`Room.breakout_rules`)."""

    def __init__(self, room: BreakoutRoom, now: Callable[[], float]) -> None:
        self._room = room
        self._now = now

    @property
    def breakouts(self) -> BreakoutState:
        return self._room.breakouts  # replaced when a session ends: read it each time

    @property
    def joined(self) -> list[Participant]:
        return self._room.joined

    def find(self, participant_id: str) -> Participant | None:
        return self._room.find(participant_id)

    def require_host(self, participant_id: str) -> Participant:
        return self._room.require_host(participant_id)

    def members(self, breakout_id: str | None) -> list[Participant]:
        return [p for p in self.joined if p.breakout == breakout_id]

    def open_breakouts(
        self,
        actor_id: str,
        specs: Sequence[BreakoutSpec],
        auto: bool = False,
        duration_s: float | None = None,
    ) -> list[Event]:
        host = self.require_host(actor_id)
        if self.breakouts.is_open:
            raise RoomError(errors.CONFLICT, "breakouts are already open; close them first")
        plan = self._plan(specs, auto)
        state = self.breakouts
        for index, spec in enumerate(specs, start=state.serial + 1):
            state.rooms[f"b{index}"] = spec.name
        state.serial += len(specs)
        state.ends_at = self._now() + duration_s if duration_s else None
        events: list[Event] = [
            Audited(
                "breakout_open",
                OK,
                host.audit_id,
                None,
                {"rooms": len(specs), "assigned": len(plan)},
            )
        ]
        for person, target in plan:
            events.extend(self._move(person, target, host, "breakout_open"))
        events.append(BreakoutsChanged())
        return events

    def _plan(self, specs: Sequence[BreakoutSpec], auto: bool) -> list[tuple[Participant, str]]:
        """Who goes where: the listed ones first, then (auto) everyone else evenly."""
        if not 1 <= len(specs) <= MAX_BREAKOUTS:
            raise RoomError(errors.BAD_REQUEST, f"open 1 to {MAX_BREAKOUTS} breakouts")
        if any(len(spec.name) > MAX_BREAKOUT_NAME for spec in specs):
            raise RoomError(
                errors.BAD_REQUEST, f"a breakout name has at most {MAX_BREAKOUT_NAME} characters"
            )
        first = self.breakouts.serial + 1
        ids = [f"b{i}" for i in range(first, first + len(specs))]
        plan: dict[str, tuple[Participant, str]] = {}
        for breakout_id, spec in zip(ids, specs, strict=True):
            for pid in spec.participant_ids:
                person = self.find(pid)
                if person is None or not person.is_joined:
                    raise RoomError(errors.NOT_FOUND, "a listed participant is not in the room")
                if pid in plan:
                    raise RoomError(errors.BAD_REQUEST, "a participant is listed twice")
                plan[pid] = (person, breakout_id)
        if auto:
            sizes = {b: sum(1 for _, t in plan.values() if t == b) for b in ids}
            for person in self.joined:
                if person.id in plan or person.is_host:
                    continue
                target = min(ids, key=lambda b: (sizes[b], ids.index(b)))
                sizes[target] += 1
                plan[person.id] = (person, target)
        return list(plan.values())

    def move_to_breakout(
        self, actor_id: str, participant_id: str, target: str | None
    ) -> list[Event]:
        host = self.require_host(actor_id)
        person = self.find(participant_id)
        if person is None or not person.is_joined:
            raise RoomError(errors.NOT_FOUND, "that participant is not in the room")
        if target is not None and target not in self.breakouts.rooms:
            raise RoomError(errors.NOT_FOUND, "no such breakout")
        if person.breakout == target:
            return []
        return [*self._move(person, target, host, "breakout_move"), BreakoutsChanged()]

    def _move(
        self, person: Participant, target: str | None, host: Participant | None, action: str
    ) -> list[Event]:
        source = person.breakout
        person.breakout = target
        actor = host.audit_id if host is not None else None
        return [
            Audited(action, OK, actor, person.audit_id, {"from": source, "to": target}),
            Moved(person, source, target),
        ]

    def broadcast(self, actor_id: str, text: str) -> list[Event]:
        host = self.require_host(actor_id)
        if not self.breakouts.is_open:
            raise RoomError(errors.BAD_REQUEST, "no breakouts are open")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_BROADCAST:
            raise RoomError(errors.BAD_REQUEST, f"a broadcast is 1 to {MAX_BROADCAST} characters")
        recipients = tuple(p.id for p in self.joined if p.breakout is not None or p.is_host)
        count = len(recipients)
        return [
            Audited("breakout_broadcast", OK, host.audit_id, None, {"recipients": count}),
            Broadcast(text.strip(), recipients),
        ]

    def close_breakouts(self, actor_id: str | None, countdown_s: float | None) -> list[Event]:
        """Everyone back to the main room, now or after a countdown (`actor_id` None: timer)."""
        host = self.require_host(actor_id) if actor_id is not None else None
        if not self.breakouts.is_open:
            raise RoomError(errors.BAD_REQUEST, "no breakouts are open")
        actor = host.audit_id if host is not None else None
        details = {"countdown_s": countdown_s or 0}
        audit = Audited("breakout_close", OK, actor, None, details)
        if countdown_s:
            self.breakouts.closing_at = self._now() + countdown_s
            return [audit, BreakoutsChanged(), *self._deadline_moves()]
        return [audit, *self._close_now(host)]

    def _deadline_moves(self) -> list[Event]:
        """Tell everyone in a breakout the new deadline (re-sent `breakout` message)."""
        return [Moved(p, p.breakout, p.breakout) for p in self.joined if p.breakout is not None]

    def _close_now(self, host: Participant | None) -> list[Event]:
        events: list[Event] = []
        for person in self.joined:
            if person.breakout is not None:
                events.extend(self._move(person, None, host, "breakout_close"))
        self.breakouts.rooms.clear()
        self.breakouts.ends_at = self.breakouts.closing_at = None
        events.append(BreakoutsChanged())
        return events

    def request_help(self, participant_id: str) -> list[Event]:
        person = self.find(participant_id)
        if person is None or not person.is_joined:
            raise RoomError(errors.NOT_ADMITTED, "you are not in the room")
        if person.breakout is None:
            raise RoomError(errors.BAD_REQUEST, "help requests come from a breakout")
        details = {"breakout": person.breakout}
        return [
            Audited("help_request", OK, person.audit_id, None, details),
            HelpRequested(person, person.breakout),
        ]

    def tick_breakouts(self) -> list[Event]:
        """Start the close countdown when the duration ends; close when it runs out."""
        state, now = self.breakouts, self._now()
        if state.closing_at is not None and now >= state.closing_at:
            audit = Audited("breakout_close", OK, None, None, {"timer": True})
            return [audit, *self._close_now(None)]
        if state.closing_at is None and state.ends_at is not None and now >= state.ends_at:
            return self.close_breakouts(None, AUTO_CLOSE_COUNTDOWN_S)
        return []
