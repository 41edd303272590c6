"""The room service: the parts that serve live rooms, composed, and the dispatcher.

`Arrivals` (arrival.py) lets connections in; `handle` runs one command
(commands.py: no I/O, returns an `Outcome`); the `Executor` (executor.py)
stores its change, then answers the sender, then carries out the events;
the `MediaBridge` (media_bridge.py) carries media calls. Everything runs on
the event loop and never blocks; room rules live in waiting_room.
"""

from __future__ import annotations

import logging
from typing import Any

from cluster.coordinator import Coordinator
from common.audit import AuditEntry, AuditLog
from sfu.control import MediaControl, MediaError
from signalling import outbound
from signalling.arrival import Arrivals
from signalling.commands import ROOM_COMMANDS, MediaCommands, Outcome
from signalling.config import Config
from signalling.executor import Executor
from signalling.hub import CLOSE_GOING_AWAY, CLOSE_SERVICE_RESTART, Connection, Hub
from signalling.media_bridge import MediaBridge
from signalling.messages import HOST_COMMANDS, WAITING_ALLOWED, Request, message_type, validate
from signalling.rooms import RoomStore
from waiting_room import errors
from waiting_room.clock import Clock
from waiting_room.errors import RoomError
from waiting_room.events import Left
from waiting_room.participant import Participant
from waiting_room.room import Room

log = logging.getLogger(__name__)

AUDITED_REFUSALS = frozenset({errors.FORBIDDEN, errors.NOT_ADMITTED, errors.ROOM_FULL})


class RoomService:
    """Signalling for live rooms: hello, commands, disconnects, time and draining."""

    def __init__(
        self,
        config: Config,
        rooms: RoomStore,
        hub: Hub,
        cluster: Coordinator,
        arrivals: Arrivals,
        executor: Executor,
        media: MediaBridge,
        audit: AuditLog,
        clock: Clock,
    ) -> None:
        self.config = config
        self.clock = clock
        self.messages_received = 0
        self._rooms = rooms
        self._hub = hub
        self._cluster = cluster
        self._arrivals = arrivals
        self._executor = executor
        self._bridge = media
        self._media_commands = MediaCommands(media.media).table
        self._audit = audit

    @property
    def media(self) -> MediaControl | None:
        return self._bridge.media

    async def hello(self, conn: Connection, raw: dict[str, Any], remote: str) -> bool:
        """Admit a connection into its room (joined or waiting). False: refused and closing."""
        return await self._arrivals.hello(conn, raw, remote)

    # --- commands ----------------------------------------------------------------------

    async def handle(self, conn: Connection, raw: dict[str, Any]) -> None:
        self.messages_received += 1
        pid = conn.participant_id
        room = self._rooms.live(conn.room_id or "")
        person = room.find(pid) if room is not None and pid is not None else None
        if room is None or person is None:
            conn.close()
            return
        rid = raw.get("id") if isinstance(raw.get("id"), str | int) else None
        kind = raw.get("type")
        try:
            kind = message_type(raw)
            self._check_sender(person, kind)
            request = validate(kind, raw)
            rid = request.id
            outcome = await self._dispatch(room, person, request)
        except RoomError as exc:
            self._refuse(room, person, conn, str(kind), rid, exc, raw)
            return
        except MediaError as exc:
            conn.send(outbound.error(exc.code, exc.message, rid))
            return
        replies = outcome.messages(request.id)

        def answer() -> None:
            for message in replies:
                self._hub.deliver([person.id], message)

        if outcome.events:  # the sender hears once the change is stored, before its effects
            await self._executor.carry_out(room, outcome.events, prelude=answer)
        else:
            answer()

    def _check_sender(self, person: Participant, kind: str) -> None:
        if kind == "hello":
            raise RoomError(errors.BAD_REQUEST, "hello was already accepted")
        if kind in HOST_COMMANDS and not person.is_host:
            raise RoomError(errors.FORBIDDEN, "only a host may do this")
        if person.is_waiting and kind not in WAITING_ALLOWED:
            raise RoomError(errors.NOT_ADMITTED, "you are waiting to be let in")

    async def _dispatch(self, room: Room, person: Participant, request: Request) -> Outcome:
        handler = ROOM_COMMANDS.get(request.type)
        if handler is not None:
            return handler(room, person, request)
        media_handler = self._media_commands.get(request.type)
        if media_handler is not None:
            return await media_handler(room, person, request)
        raise RoomError(errors.BAD_REQUEST, f"{request.type} is not available on this server")

    def _refuse(
        self,
        room: Room,
        person: Participant,
        conn: Connection,
        kind: str,
        rid: object,
        exc: RoomError,
        raw: dict[str, Any],
    ) -> None:
        reply_to = rid if isinstance(rid, str | int) else None
        conn.send(outbound.error(exc.code, exc.message, reply_to))
        if exc.code in AUDITED_REFUSALS:
            subject = raw.get("participant_id")
            self._audit.record(
                AuditEntry(
                    kind,
                    exc.code,
                    room_id=room.id,
                    actor=person.audit_id,
                    subject=self._audit_subject(room, subject),
                )
            )

    def _audit_subject(self, room: Room, pid: object) -> str | None:
        if not isinstance(pid, str):
            return None
        target = room.find(pid)
        return target.audit_id if target is not None else None

    # --- connections and time ----------------------------------------------------------

    def disconnected(self, conn: Connection) -> None:
        """A socket ended; a participant still in the room keeps its place to resume."""
        if not self._hub.detach(conn):
            return
        room = self._rooms.live(conn.room_id or "")
        pid = conn.participant_id
        if room is not None and pid is not None and room.find(pid) is not None:
            room.disconnect(pid)

    async def sweep(self) -> None:
        """Drop participants past the resume window; end sessions past the join window."""
        for room in self._rooms.live_rooms():
            events = room.expire(self.config.resume_window_s)
            if events:
                await self._executor.carry_out(room, events)

    async def drain_media_calls(self) -> None:
        await self._bridge.drain()

    async def end_session(self, room: Room, actor: str | None) -> int:
        events = room.end_session(actor)
        await self._executor.carry_out(room, events)
        return sum(1 for e in events if isinstance(e, Left))

    async def on_notice(self, notice: dict[str, Any]) -> None:
        """A notice from another node; `end_room`: a REST call there ends a room we own."""
        if notice.get("kind") != "end_room":
            return
        room = self._rooms.live(str(notice.get("room_id")))
        if room is not None and self._cluster.owns(room.id):
            actor = notice.get("actor")
            await self.end_session(room, actor if isinstance(actor, str) else None)

    async def drain(self) -> None:
        """Stop taking people; hand every room to the cluster (or say goodbye when alone)."""
        await self._cluster.start_draining()
        for room in self._rooms.live_rooms():
            handed = await self._cluster.hand_over(room)
            code = CLOSE_SERVICE_RESTART if handed else CLOSE_GOING_AWAY
            for person in room.participants:
                self._hub.close(person.id, code)
