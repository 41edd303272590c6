"""The dispatcher: one domain call per message type, then carry out the effects.

Everything here runs on the event loop and never blocks; room rules live in
waiting_room, message shapes in outbound, fan-out planning in effects.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

from cluster.coordinator import Coordinator
from common.audit import AuditEntry, AuditLog, iso
from common.tokens import Claims, TokenError, TokenVerifier
from sfu.control import MediaControl, MediaError, PrecallStats, Slot
from signalling import effects as fx
from signalling import outbound
from signalling.commands import Ack, Commands, holding_acks
from signalling.config import Config
from signalling.hub import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_SERVICE_RESTART,
    Connection,
    Hub,
)
from signalling.joining import Refused, check_join
from signalling.knocks import KnockLimits
from signalling.messages import HOST_COMMANDS, WAITING_ALLOWED, Request, message_type, validate
from signalling.rooms import RoomStore
from waiting_room import errors
from waiting_room.clock import Clock
from waiting_room.errors import RoomError
from waiting_room.events import Audited, Event, Left, Rejected
from waiting_room.participant import Participant, Role
from waiting_room.room import Room

log = logging.getLogger(__name__)

AUDITED_REFUSALS = frozenset({errors.FORBIDDEN, errors.NOT_ADMITTED, errors.ROOM_FULL})


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_participant_id() -> str:
    return "p_" + secrets.token_urlsafe(12)


class RoomService:
    """Signalling for live rooms: hello, commands, disconnects and media events."""

    def __init__(
        self,
        config: Config,
        rooms: RoomStore,
        hub: Hub,
        audit: AuditLog,
        verifier: TokenVerifier,
        clock: Clock,
        cluster: Coordinator,
    ) -> None:
        self.config = config
        self.cluster = cluster
        self.rooms = rooms
        self.hub = hub
        self.audit = audit
        self.verifier = verifier
        self.clock = clock
        self.media: MediaControl | None = None
        self.messages_received = 0
        self._knocks = KnockLimits(
            config.knock_rate_limit,
            config.knock_identity_rate_limit,
            config.knock_address_rate_limit,
            clock,
        )
        self._resume: dict[str, tuple[str, str]] = {}  # digest -> (room_id, participant_id)
        self._resume_of: dict[str, str] = {}  # participant_id -> digest
        self._media_opened: set[str] = set()  # participants with a session on this node
        self._tasks: set[asyncio.Task[None]] = set()
        self._commands = Commands(hub, lambda: self.media)

    # --- hello -------------------------------------------------------------------------

    async def hello(self, conn: Connection, raw: dict[str, Any], remote: str) -> bool:
        """Admit a connection into its room (joined or waiting). False: refused and closing."""
        room_id = conn.room_id or ""
        claims: Claims | None = None
        try:
            if raw.get("type") != "hello":
                raise RoomError(errors.UNAUTHORIZED, "the first message must be hello")
            body = validate("hello", raw).body
            if not self.cluster.accepting:
                raise RoomError(errors.UNAVAILABLE, "the service is busy; try again shortly")
            if body["resume"] is not None:
                return await self._resume_session(conn, room_id, body["resume"])
            claims = self._claims(body["token"], room_id)
            if claims is not None:
                await check_join(claims, room_id, self.rooms, self.cluster)
            return await self._enter(conn, room_id, claims, body["name"], remote)
        except RoomError as exc:
            self._refuse_hello(conn, room_id, exc, claims.identity if claims else None)
            return False

    def _claims(self, token: str | None, room_id: str) -> Claims | None:
        if token is None:
            return None
        try:
            return self.verifier.verify_for_room(token, room_id)
        except TokenError as exc:
            log.info("refused a token: %s", exc)
            raise RoomError(errors.UNAUTHORIZED, "invalid or expired token") from None

    async def _enter(
        self, conn: Connection, room_id: str, claims: Claims | None, name: str | None, remote: str
    ) -> bool:
        role = Role.HOST if claims is not None and claims.is_host else Role.GUEST
        if claims is None and name is None:
            raise RoomError(errors.UNAUTHORIZED, "send a token, or a name to knock as a guest")
        identity = claims.identity if claims is not None else None
        if role is Role.GUEST and not self._knocks.allow(remote, identity, room_id):
            raise RoomError(errors.RATE_LIMITED, "too many knocks; wait a bit")
        room = self.rooms.open(room_id, create_ad_hoc=claims is not None)
        taken = room.take_over(claims.identity, role) if claims is not None else None
        if taken is not None:  # stored and audited before the new socket hears of it
            await self._carry_out(room, taken[1])
            await self._take_place(conn, room, taken[0])
            return True
        display = claims.name if claims is not None else name
        pid = new_participant_id()
        events = room.enter(pid, display or "", role, claims.identity if claims else None)
        self.hub.attach(pid, conn)
        welcome = await self._welcome(room, room.get(pid))
        await self._carry_out(room, events, prelude=lambda: conn.send(welcome))
        return True

    async def _welcome(self, room: Room, person: Participant) -> dict[str, Any]:
        token = secrets.token_urlsafe(32)
        old = self._resume_of.pop(person.id, None)
        if old is not None:
            self._resume.pop(old, None)
            await self.cluster.forget_resume(room.id, old)
        digest = _digest(token)
        self._resume[digest] = (room.id, person.id)
        self._resume_of[person.id] = digest
        await self.cluster.remember_resume(room.id, digest, person.id)
        window = self.config.resume_window_s
        return outbound.welcome(person, room.id, token, self.config.ice_servers, window)

    async def _resume_session(self, conn: Connection, room_id: str, token: str) -> bool:
        digest = _digest(token)
        found = self._resume.get(digest)
        pid = found[1] if found is not None and found[0] == room_id else None
        if pid is None:  # a room taken over from another node, or restored after a restart
            pid = await self.cluster.find_resume(room_id, digest)
            if pid is not None:  # the new welcome forgets this token
                self._resume_of.setdefault(pid, digest)
        room = self.rooms.live(room_id)
        person = room.find(pid) if room is not None and pid is not None else None
        if room is None or person is None:
            raise RoomError(errors.UNAUTHORIZED, "this session cannot be resumed")
        room.reconnect(person.id)
        await self._take_place(conn, room, person)
        return True

    async def _take_place(self, conn: Connection, room: Room, person: Participant) -> None:
        """A newer connection takes a participant's place at once (a reload, a second
        window): same id and place; the old socket, if still open, is told and closed."""
        old = self.hub.attach(person.id, conn)
        if old is not None:
            old.send(outbound.replaced())
            old.close(CLOSE_POLICY, "replaced")
        conn.send(await self._welcome(room, person))
        self._send_state(room, person)
        if person.is_joined and person.id not in self._media_opened:
            # Its media session was on another node (or a lost worker): offer again.
            self._open_media(room.id, fx.group_of(person), person.id)
            self.hub.deliver([person.id], {"type": "media_closed", "reason": "moved"})

    def _send_state(self, room: Room, person: Participant) -> None:
        """What a resumed client needs to redraw: its lobby status or the room."""
        if person.is_waiting:
            self.hub.deliver([person.id], outbound.lobby_status(person))
            return
        group = fx.group_of(person)
        members = [p for p in room.joined if fx.group_of(p) == group]
        self.hub.deliver([person.id], outbound.roster(members))
        if person.breakout is not None:
            self.hub.deliver([person.id], outbound.breakout(room, person.breakout))
        if person.is_host:
            self.hub.deliver([person.id], outbound.lobby(room.waiting))
            if room.refusals.entries:
                self.hub.deliver([person.id], outbound.refusals(room))
            if room.breakouts.is_open:
                self.hub.deliver([person.id], outbound.breakouts(room))

    def _refuse_hello(
        self, conn: Connection, room_id: str, exc: RoomError, actor: str | None
    ) -> None:
        details = {
            k: iso(v) if k.endswith("_at") and isinstance(v, float) else v
            for k, v in exc.details.items()
        }
        conn.send(outbound.error(exc.code, exc.message, details=details))
        conn.close(CLOSE_POLICY)
        if exc.code != errors.BAD_REQUEST:
            refused = exc if isinstance(exc, Refused) else None  # a valid token: who and why
            actor = refused.actor if refused else actor
            why = {"reason": refused.reason} if refused else {}
            self.audit.record(AuditEntry("hello", exc.code, room_id or None, actor, None, why))

    # --- commands ----------------------------------------------------------------------

    async def handle(self, conn: Connection, raw: dict[str, Any]) -> None:
        self.messages_received += 1
        pid = conn.participant_id
        room = self.rooms.live(conn.room_id or "")
        person = room.find(pid) if room is not None and pid is not None else None
        if room is None or person is None:
            conn.close()
            return
        rid = raw.get("id") if isinstance(raw.get("id"), str | int) else None
        kind = raw.get("type")
        with holding_acks() as acks:
            try:
                kind = message_type(raw)
                self._check_sender(person, kind)
                request = validate(kind, raw)
                rid = request.id
                events = await self._dispatch(room, person, request)
            except RoomError as exc:
                self._refuse(room, person, conn, str(kind), rid, exc, raw)
                return
            except MediaError as exc:
                conn.send(outbound.error(exc.code, exc.message, rid))
                return
        if events:  # the acks go out once the change is stored, before its effects
            await self._carry_out(room, events, prelude=lambda: self._send_acks(acks))
        else:
            self._send_acks(acks)

    def _send_acks(self, acks: list[Ack]) -> None:
        for to, message in acks:
            self.hub.deliver([to], message)

    def _check_sender(self, person: Participant, kind: str) -> None:
        if kind == "hello":
            raise RoomError(errors.BAD_REQUEST, "hello was already accepted")
        if kind in HOST_COMMANDS and not person.is_host:
            raise RoomError(errors.FORBIDDEN, "only a host may do this")
        if person.is_waiting and kind not in WAITING_ALLOWED:
            raise RoomError(errors.NOT_ADMITTED, "you are waiting to be let in")

    async def _dispatch(self, room: Room, person: Participant, request: Request) -> list[Event]:
        handler = self._commands.table.get(request.type)
        if handler is None:
            raise RoomError(errors.BAD_REQUEST, f"{request.type} is not available on this server")
        return await handler(room, person, request)

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
            self.audit.record(
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

    # --- carrying out ------------------------------------------------------------------

    async def _carry_out(
        self, room: Room, events: list[Event], prelude: Callable[[], None] | None = None
    ) -> None:
        """Plan now (the room may change while we wait), persist, then announce."""
        effects = fx.plan(room, events)
        change = self.cluster.prepare(room, events)
        gone = [e.participant.id for e in events if isinstance(e, Left | Rejected)]

        def announce() -> None:
            if prelude is not None:
                prelude()
            for effect in effects:
                self._apply(room, effect)

        await self.cluster.commit(change, announce)
        digests = [d for d in (self._forget(pid) for pid in gone) if d is not None]
        await self.cluster.forget_resume(room.id, *digests)
        if room.is_empty and self.rooms.live(room.id) is room:
            self.rooms.unload_if_idle(room.id)
            await self.cluster.forget_room(room.id)

    def _apply(self, room: Room, effect: fx.Effect) -> None:
        match effect:
            case fx.Send(to, message):
                self.hub.deliver(to, message)
            case fx.CloseSocket(pid):
                self.hub.close(pid)
            case fx.MediaOpen(room_id, group, pid):
                self._open_media(room_id, group, pid)
            case fx.MediaClose(pid):
                self._media_opened.discard(pid)
                self._media(lambda m: m.close(pid))
            case fx.MediaCloseRoom(room_id):
                self._media_opened.difference_update(p.id for p in room.participants)
                self._media(lambda m: m.close_room(room_id))
            case fx.MediaMove(pid, group):
                self._media(lambda m: m.move(pid, group))
            case Audited(action, outcome, actor, subject, details):
                self.audit.record(
                    AuditEntry(action, outcome, room.id, actor, subject, details, self.clock())
                )

    def _open_media(self, room_id: str, group: str, pid: str) -> None:
        self._media_opened.add(pid)
        self._media(lambda m: m.open(room_id, group, pid))

    def _media(self, call: Callable[[MediaControl], Coroutine[Any, Any, None]]) -> None:
        """Start a media call now (its effect is ordered at call time) and watch it."""
        if self.media is None:
            return
        task = asyncio.ensure_future(call(self.media))
        self._tasks.add(task)
        task.add_done_callback(self._media_done)

    def _media_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("media call failed", exc_info=task.exception())

    def _forget(self, pid: str) -> str | None:
        digest = self._resume_of.pop(pid, None)
        if digest is not None:
            self._resume.pop(digest, None)
        self._media_opened.discard(pid)
        return digest

    # --- connections and time ----------------------------------------------------------

    def disconnected(self, conn: Connection) -> None:
        """A socket ended; a participant still in the room keeps its place to resume."""
        if not self.hub.detach(conn):
            return
        room = self.rooms.live(conn.room_id or "")
        pid = conn.participant_id
        if room is not None and pid is not None and room.find(pid) is not None:
            room.disconnect(pid)

    async def sweep(self) -> None:
        """Drop participants past the resume window; end sessions past the join window."""
        for room in self.rooms.live_rooms():
            events = room.expire(self.config.resume_window_s)
            if events:
                await self._carry_out(room, events)

    async def drain_media_calls(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def end_session(self, room: Room, actor: str | None) -> int:
        events = room.end_session(actor)
        await self._carry_out(room, events)
        return sum(1 for e in events if isinstance(e, Left))

    async def end_room_notice(self, notice: dict[str, Any]) -> None:
        """Another node was asked (REST) to end a room this node owns."""
        room = self.rooms.live(str(notice.get("room_id")))
        if room is not None and room.id in self.cluster.leases.owned:
            actor = notice.get("actor")
            await self.end_session(room, actor if isinstance(actor, str) else None)

    def resume_digests(self, room_id: str) -> dict[str, str]:
        """The live resume tokens (as digests) of a room, for writing back to the bus."""
        return {d: pid for d, (room, pid) in self._resume.items() if room == room_id}

    def room_lost(self, room_id: str) -> None:
        """Another node owns this room now: send its clients there (they resume)."""
        room = self.rooms.live(room_id)
        if room is None:
            return
        for person in room.participants:
            self._media_opened.discard(person.id)
            self.hub.close(person.id, CLOSE_SERVICE_RESTART)
        self.rooms.drop(room_id)

    async def drain(self) -> None:
        """Stop taking people; hand every room to the cluster (or say goodbye when alone)."""
        await self.cluster.start_draining()
        for room in self.rooms.live_rooms():
            code = CLOSE_GOING_AWAY
            if self.cluster.multi_node:
                await self.cluster.hand_over(room)
                code = CLOSE_SERVICE_RESTART
            for person in room.participants:
                self.hub.close(person.id, code)

    # --- MediaEvents -------------------------------------------------------------------

    def slots_changed(self, participant_id: str, slots: list[Slot]) -> None:
        self.hub.deliver([participant_id], outbound.slots(slots))

    def active_speaker(self, room_id: str, group: str, participant_id: str) -> None:
        room = self.rooms.live(room_id)
        if room is None:
            return
        members = [p.id for p in room.joined if fx.group_of(p) == group]
        self.hub.deliver(members, outbound.active_speaker(participant_id))

    def media_closed(self, participant_id: str, reason: str) -> None:
        self.hub.deliver([participant_id], {"type": "media_closed", "reason": reason})

    def precall_stats(self, participant_id: str, stats: PrecallStats) -> None:
        self.hub.deliver([participant_id], {"type": "precall_stats", **stats})
