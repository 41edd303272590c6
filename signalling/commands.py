"""One handler per message type: a single domain (or media) call, its reply and its events.

Who may send what was checked before a handler runs (service.RoomService).
Handlers do no I/O: each returns an `Outcome`, and the executor stores the
events, then answers the sender, then carries out the events. The media
handlers await the SFU, and return its answer the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sfu.control import MediaControl, MediaError
from signalling import outbound
from signalling.messages import Request
from waiting_room import errors
from waiting_room.breakouts import BreakoutSpec
from waiting_room.events import Admitted, Event, Left
from waiting_room.participant import Participant
from waiting_room.room import Room


@dataclass(frozen=True)
class Outcome:
    """What a command did: its events, and what its sender hears once they are stored."""

    events: list[Event] = field(default_factory=list)
    ack: dict[str, Any] | None = field(default_factory=dict)  # the ack's fields; None: no ack
    replies: tuple[dict[str, Any], ...] = ()  # other messages to the sender, before the ack

    def messages(self, request_id: str | int | None) -> list[dict[str, Any]]:
        """What the sender is sent: the replies, then the ack (if the request had an id)."""
        if self.ack is None or request_id is None:
            return list(self.replies)
        return [*self.replies, outbound.ack(request_id, **self.ack)]


Handler = Callable[[Room, Participant, Request], Outcome]
MediaHandler = Callable[[Room, Participant, Request], Awaitable[Outcome]]


def _admit(room: Room, person: Participant, request: Request) -> Outcome:
    events = room.admit(person.id, request.body["participant_ids"])
    result = next(e for e in events if isinstance(e, Admitted))
    fields: dict[str, Any] = {"admitted": [p.id for p in result.participants]}
    if result.room_full:
        fields["room_full"] = True
    if result.unknown:
        fields["not_found"] = list(result.unknown)
    return Outcome(events, fields)


def _hold(room: Room, person: Participant, request: Request) -> Outcome:
    body = request.body
    return Outcome(room.hold(person.id, body["participant_id"], body["message"]))


def _reject(room: Room, person: Participant, request: Request) -> Outcome:
    return Outcome(room.reject(person.id, request.body["participant_id"]))


def _remove(room: Room, person: Participant, request: Request) -> Outcome:
    return Outcome(room.remove(person.id, request.body["participant_id"]))


def _remove_all(room: Room, person: Participant, request: Request) -> Outcome:
    events = room.remove_all(person.id)
    removed = [e.participant.id for e in events if isinstance(e, Left)]
    return Outcome(events, {"removed": removed})


def _end(room: Room, person: Participant, request: Request) -> Outcome:
    return Outcome(room.end(person.id))


def _leave(room: Room, person: Participant, request: Request) -> Outcome:
    return Outcome(room.leave(person.id))


def _ping(room: Room, person: Participant, request: Request) -> Outcome:
    """Nothing changes: the `ack` tells the client its socket still carries messages."""
    return Outcome()


def _lobby(room: Room, person: Participant, request: Request) -> Outcome:
    return Outcome(replies=(outbound.lobby(room.waiting),))


def _breakout_open(room: Room, person: Participant, request: Request) -> Outcome:
    body = request.body
    specs = [BreakoutSpec(r["name"], tuple(r["participant_ids"])) for r in body["rooms"]]
    events = room.open_breakouts(person.id, specs, body["auto"], body["duration_s"])
    return Outcome(events, {"rooms": outbound.breakouts(room)["rooms"]})


def _breakout_move(room: Room, person: Participant, request: Request) -> Outcome:
    body = request.body
    return Outcome(room.move_to_breakout(person.id, body["participant_id"], body["to"]))


def _breakout_broadcast(room: Room, person: Participant, request: Request) -> Outcome:
    return Outcome(room.broadcast(person.id, request.body["text"]))


def _breakout_close(room: Room, person: Participant, request: Request) -> Outcome:
    return Outcome(room.close_breakouts(person.id, request.body["countdown_s"]))


def _help_request(room: Room, person: Participant, request: Request) -> Outcome:
    return Outcome(room.request_help(person.id))


def _allow_knock(room: Room, person: Participant, request: Request) -> Outcome:
    body = request.body
    return Outcome(room.allow_knock(person.id, body["participant_id"], body["identity"]))


ROOM_COMMANDS: dict[str, Handler] = {
    "admit": _admit,
    "hold": _hold,
    "reject": _reject,
    "remove": _remove,
    "remove_all": _remove_all,
    "end": _end,
    "leave": _leave,
    "lobby": _lobby,
    "breakout_open": _breakout_open,
    "breakout_move": _breakout_move,
    "breakout_broadcast": _breakout_broadcast,
    "breakout_close": _breakout_close,
    "help_request": _help_request,
    "allow_knock": _allow_knock,
    "ping": _ping,
}


class MediaCommands:
    """The commands that ask the media plane (offer, candidate, pin) and await its answer."""

    def __init__(self, media: MediaControl | None) -> None:
        self._media = media
        self.table: dict[str, MediaHandler] = {
            "offer": self._offer,
            "candidate": self._candidate,
            "pin": self._pin,
            "video_sizes": self._video_sizes,
        }

    async def _offer(self, room: Room, person: Participant, request: Request) -> Outcome:
        sdp = await self._require_media().offer(person.id, request.body["sdp"])
        return Outcome(ack=None, replies=(outbound.answer(sdp, request.id),))

    async def _candidate(self, room: Room, person: Participant, request: Request) -> Outcome:
        body = request.body
        await self._require_media().candidate(
            person.id, body["candidate"], body["sdpMid"], body["sdpMLineIndex"]
        )
        return Outcome()

    async def _pin(self, room: Room, person: Participant, request: Request) -> Outcome:
        target = request.body["participant_id"]
        if target is not None:
            room.require_joined(target)
        await self._require_media().pin(person.id, target)
        return Outcome()

    async def _video_sizes(self, room: Room, person: Participant, request: Request) -> Outcome:
        await self._require_media().video_sizes(person.id, request.body["slots"])
        return Outcome()

    def _require_media(self) -> MediaControl:
        if self._media is None:
            raise MediaError(errors.UNAVAILABLE, "media is not available on this server")
        return self._media
