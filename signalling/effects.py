"""Turn room events into effects: messages, socket closes, media calls, audit rows.

Pure: given the room after a command and the events it returned, say what
must happen.  Fan-out is O(changes x interested), never a full snapshot to
everyone: a batch of newcomers shares one roster message (encoded once by
the hub), and those already in the room get one `participant_joined` each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sfu.control import MAIN_GROUP
from signalling import outbound
from waiting_room.events import (
    Admitted,
    Audited,
    BreakoutsChanged,
    Broadcast,
    Event,
    HelpRequested,
    Joined,
    Knocked,
    Left,
    LobbyLeft,
    LobbyStatusChanged,
    Moved,
    RefusalsChanged,
    Rejected,
    SessionEnded,
)
from waiting_room.participant import Participant
from waiting_room.room import Room


@dataclass(frozen=True)
class Send:
    to: tuple[str, ...]
    message: dict[str, Any]


@dataclass(frozen=True)
class CloseSocket:
    participant_id: str


@dataclass(frozen=True)
class MediaOpen:
    room_id: str
    group: str
    participant_id: str


@dataclass(frozen=True)
class MediaClose:
    participant_id: str


@dataclass(frozen=True)
class MediaCloseRoom:
    room_id: str


@dataclass(frozen=True)
class MediaMove:
    participant_id: str
    group: str


Effect = Send | CloseSocket | MediaOpen | MediaClose | MediaCloseRoom | MediaMove | Audited


def group_of(person: Participant) -> str:
    return person.breakout or MAIN_GROUP


def _ids(people: Iterable[Participant]) -> tuple[str, ...]:
    return tuple(p.id for p in people)


def _same_group(room: Room, group: str) -> list[Participant]:
    return [p for p in room.joined if group_of(p) == group]


def plan(room: Room, events: Iterable[Event]) -> list[Effect]:
    effects: list[Effect] = []
    for event in events:
        effects.extend(_plan_one(room, event))
    return effects


def _plan_one(room: Room, event: Event) -> list[Effect]:
    match event:
        case Knocked(person):
            return [Send(_ids(room.hosts), outbound.knock(person))]
        case LobbyStatusChanged(person):
            return _lobby_status(room, person)
        case LobbyLeft(person, reason):
            return [Send(_ids(room.hosts), outbound.lobby_left(person, reason))]
        case Admitted(people):
            return [Send(_ids(people), outbound.admitted())] if people else []
        case Joined(people):
            return _joined(room, people)
        case Rejected(person):
            return [Send((person.id,), outbound.rejected()), CloseSocket(person.id)]
        case Left(person, reason, was_joined):
            return _left(room, person, reason, was_joined)
        case SessionEnded():
            return [MediaCloseRoom(room.id)]
        case BreakoutsChanged():
            return [Send(_ids(room.hosts), outbound.breakouts(room))]
        case RefusalsChanged():
            return [Send(_ids(room.hosts), outbound.refusals(room))]
        case Moved(person, source, target):
            return _moved(room, person, source, target)
        case Broadcast(text, recipients):
            return [Send(recipients, outbound.broadcast(text))]
        case HelpRequested(person, breakout_id):
            return [Send(_ids(room.hosts), outbound.help_requested(person, breakout_id))]
        case Audited():
            return [event]
    raise AssertionError(f"unplanned event {event!r}")


def _lobby_status(room: Room, person: Participant) -> list[Effect]:
    effects: list[Effect] = [Send((person.id,), outbound.lobby_status(person))]
    if person.hold_message is not None:
        # Other hosts' People panels must show the hold too.
        effects.append(Send(_ids(room.hosts), outbound.lobby(room.waiting)))
    return effects


def _joined(room: Room, people: tuple[Participant, ...]) -> list[Effect]:
    newcomers = set(_ids(people))
    effects: list[Effect] = []
    by_group: dict[str, list[Participant]] = {}
    for person in people:
        by_group.setdefault(group_of(person), []).append(person)
    for group, batch in by_group.items():
        members = _same_group(room, group)
        effects.append(Send(_ids(batch), outbound.roster(members)))
        earlier = tuple(p.id for p in members if p.id not in newcomers)
        effects.extend(Send(earlier, outbound.participant_joined(p)) for p in batch)
    new_hosts = tuple(p.id for p in people if p.is_host)
    if new_hosts:
        effects.append(Send(new_hosts, outbound.lobby(room.waiting)))
        if room.refusals.entries:
            effects.append(Send(new_hosts, outbound.refusals(room)))
        if room.breakouts.is_open:
            effects.append(Send(new_hosts, outbound.breakouts(room)))
    effects.extend(MediaOpen(room.id, group_of(p), p.id) for p in people)
    return effects


def _left(room: Room, person: Participant, reason: str, was_joined: bool) -> list[Effect]:
    effects: list[Effect] = []
    if reason != "disconnected":
        effects.append(Send((person.id,), outbound.left(reason)))
        effects.append(CloseSocket(person.id))
    if was_joined:
        others = _ids(_same_group(room, group_of(person)))
        effects.append(Send(others, outbound.participant_left(person, reason)))
        effects.append(MediaClose(person.id))
    return effects


def _moved(room: Room, person: Participant, source: str | None, target: str | None) -> list[Effect]:
    """A move changes whose roster and media a participant shares; no new knock."""
    effects: list[Effect] = [Send((person.id,), outbound.breakout(room, target))]
    if source == target:  # only the deadline changed
        return effects
    old = tuple(p.id for p in room.members(source) if p is not person)
    new = room.members(target)
    effects.append(Send((person.id,), outbound.roster(new)))
    effects.append(Send(old, outbound.participant_left(person, "left")))
    effects.append(
        Send(tuple(p.id for p in new if p is not person), outbound.participant_joined(person))
    )
    effects.append(MediaMove(person.id, group_of(person)))
    return effects
