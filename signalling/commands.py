"""One handler per message type: a single domain (or media) call, its ack, its events.

Who may send what was checked before a handler runs (service.RoomService);
the events a handler returns are carried out by the service.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sfu.control import MediaControl, MediaError
from signalling import outbound
from signalling.hub import Hub
from signalling.messages import Request
from waiting_room import errors
from waiting_room.breakouts import BreakoutSpec
from waiting_room.events import Admitted, Event, Left
from waiting_room.participant import Participant
from waiting_room.room import Room

Handler = Callable[[Room, Participant, Request], Awaitable[list[Event]]]
Ack = tuple[str, dict[str, Any]]  # (to whom, the ack message)

# Acks held back while a command runs: an ack says the change is done, so it
# goes out only once the change is stored (service._carry_out), like its events.
_held_acks: ContextVar[list[Ack] | None] = ContextVar("held_acks", default=None)


@contextmanager
def holding_acks() -> Iterator[list[Ack]]:
    """Collect the acks of the commands run inside, for the caller to send."""
    held: list[Ack] = []
    token = _held_acks.set(held)
    try:
        yield held
    finally:
        _held_acks.reset(token)


class Commands:
    def __init__(self, hub: Hub, media: Callable[[], MediaControl | None]) -> None:
        self._hub = hub
        self._media = media
        self.table: dict[str, Handler] = {
            "admit": self._admit,
            "hold": self._hold,
            "reject": self._reject,
            "remove": self._remove,
            "remove_all": self._remove_all,
            "end": self._end,
            "leave": self._leave,
            "lobby": self._lobby,
            "offer": self._offer,
            "candidate": self._candidate,
            "pin": self._pin,
            "breakout_open": self._breakout_open,
            "breakout_move": self._breakout_move,
            "breakout_broadcast": self._breakout_broadcast,
            "breakout_close": self._breakout_close,
            "help_request": self._help_request,
            "allow_knock": self._allow_knock,
        }

    def _ack(self, person: Participant, request: Request, **fields: Any) -> None:
        if request.id is None:
            return
        message = outbound.ack(request.id, **fields)
        held = _held_acks.get()
        if held is None:
            self._hub.deliver([person.id], message)
        else:
            held.append((person.id, message))

    async def _admit(self, room: Room, person: Participant, request: Request) -> list[Event]:
        events = room.admit(person.id, request.body["participant_ids"])
        result = next(e for e in events if isinstance(e, Admitted))
        fields: dict[str, Any] = {"admitted": [p.id for p in result.participants]}
        if result.room_full:
            fields["room_full"] = True
        if result.unknown:
            fields["not_found"] = list(result.unknown)
        self._ack(person, request, **fields)
        return events

    async def _hold(self, room: Room, person: Participant, request: Request) -> list[Event]:
        body = request.body
        events = room.hold(person.id, body["participant_id"], body["message"])
        self._ack(person, request)
        return events

    async def _reject(self, room: Room, person: Participant, request: Request) -> list[Event]:
        events = room.reject(person.id, request.body["participant_id"])
        self._ack(person, request)
        return events

    async def _remove(self, room: Room, person: Participant, request: Request) -> list[Event]:
        events = room.remove(person.id, request.body["participant_id"])
        self._ack(person, request)
        return events

    async def _remove_all(self, room: Room, person: Participant, request: Request) -> list[Event]:
        events = room.remove_all(person.id)
        removed = [e.participant.id for e in events if isinstance(e, Left)]
        self._ack(person, request, removed=removed)
        return events

    async def _end(self, room: Room, person: Participant, request: Request) -> list[Event]:
        self._ack(person, request)
        return room.end(person.id)

    async def _leave(self, room: Room, person: Participant, request: Request) -> list[Event]:
        self._ack(person, request)
        return room.leave(person.id)

    async def _lobby(self, room: Room, person: Participant, request: Request) -> list[Event]:
        self._hub.deliver([person.id], outbound.lobby(room.waiting))
        self._ack(person, request)
        return []

    async def _offer(self, room: Room, person: Participant, request: Request) -> list[Event]:
        sdp = await self._require_media().offer(person.id, request.body["sdp"])
        self._hub.deliver([person.id], outbound.answer(sdp, request.id))
        return []

    async def _candidate(self, room: Room, person: Participant, request: Request) -> list[Event]:
        body = request.body
        await self._require_media().candidate(
            person.id, body["candidate"], body["sdpMid"], body["sdpMLineIndex"]
        )
        self._ack(person, request)
        return []

    async def _pin(self, room: Room, person: Participant, request: Request) -> list[Event]:
        target = request.body["participant_id"]
        if target is not None:
            room.require_joined(target)
        await self._require_media().pin(person.id, target)
        self._ack(person, request)
        return []

    async def _breakout_open(
        self, room: Room, person: Participant, request: Request
    ) -> list[Event]:
        body = request.body
        specs = [BreakoutSpec(r["name"], tuple(r["participant_ids"])) for r in body["rooms"]]
        events = room.open_breakouts(person.id, specs, body["auto"], body["duration_s"])
        self._ack(person, request, rooms=outbound.breakouts(room)["rooms"])
        return events

    async def _breakout_move(
        self, room: Room, person: Participant, request: Request
    ) -> list[Event]:
        body = request.body
        events = room.move_to_breakout(person.id, body["participant_id"], body["to"])
        self._ack(person, request)
        return events

    async def _breakout_broadcast(
        self, room: Room, person: Participant, request: Request
    ) -> list[Event]:
        events = room.broadcast(person.id, request.body["text"])
        self._ack(person, request)
        return events

    async def _breakout_close(
        self, room: Room, person: Participant, request: Request
    ) -> list[Event]:
        events = room.close_breakouts(person.id, request.body["countdown_s"])
        self._ack(person, request)
        return events

    async def _help_request(self, room: Room, person: Participant, request: Request) -> list[Event]:
        events = room.request_help(person.id)
        self._ack(person, request)
        return events

    async def _allow_knock(self, room: Room, person: Participant, request: Request) -> list[Event]:
        body = request.body
        events = room.allow_knock(person.id, body["participant_id"], body["identity"])
        self._ack(person, request)
        return events

    def _require_media(self) -> MediaControl:
        media = self._media()
        if media is None:
            raise MediaError(errors.UNAVAILABLE, "media is not available on this server")
        return media
