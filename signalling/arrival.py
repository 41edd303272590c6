"""A connection's first message: hello with a token, a name (a guest knocks) or a resume token.

`Arrivals` admits the connection into its room (joined or waiting), lets a
newer connection take a participant's place (a reload, a second window, a
host's take-over), and refuses, with an audit row, what may not come in.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from cluster.coordinator import Coordinator
from common.audit import AuditEntry, AuditLog, iso
from common.tokens import Claims, TokenError, TokenVerifier
from signalling import effects as fx
from signalling import outbound
from signalling.config import Config
from signalling.executor import Executor
from signalling.hub import CLOSE_POLICY, Connection, Hub
from signalling.iceservers import ice_servers_for
from signalling.joining import Refused, check_join
from signalling.knocks import KnockLimits
from signalling.media_bridge import MediaBridge
from signalling.messages import validate
from signalling.resume import ResumeTokens, digest_of
from signalling.rooms import RoomStore
from waiting_room import errors
from waiting_room.clock import Clock
from waiting_room.errors import RoomError
from waiting_room.participant import Participant, Role
from waiting_room.room import Room

log = logging.getLogger(__name__)


def new_participant_id() -> str:
    return "p_" + secrets.token_urlsafe(12)


class Arrivals:
    def __init__(
        self,
        config: Config,
        rooms: RoomStore,
        hub: Hub,
        cluster: Coordinator,
        executor: Executor,
        media: MediaBridge,
        tokens: ResumeTokens,
        verifier: TokenVerifier,
        audit: AuditLog,
        clock: Clock,
    ) -> None:
        self._config = config
        self._rooms = rooms
        self._hub = hub
        self._cluster = cluster
        self._executor = executor
        self._media = media
        self._tokens = tokens
        self._verifier = verifier
        self._audit = audit
        self._clock = clock
        self._knocks = KnockLimits(
            config.knock_rate_limit,
            config.knock_identity_rate_limit,
            config.knock_address_rate_limit,
            clock,
        )

    async def hello(self, conn: Connection, raw: dict[str, Any], remote: str) -> bool:
        """Admit a connection into its room (joined or waiting). False: refused and closing."""
        room_id = conn.room_id or ""
        claims: Claims | None = None
        try:
            if raw.get("type") != "hello":
                raise RoomError(errors.UNAUTHORIZED, "the first message must be hello")
            body = validate("hello", raw).body
            if not self._cluster.accepting:
                raise RoomError(errors.UNAVAILABLE, "the service is busy; try again shortly")
            if body["resume"] is not None:
                return await self._resume_session(conn, room_id, body["resume"])
            claims = self._claims(body["token"], room_id)
            if claims is not None:
                await check_join(claims, room_id, self._rooms, self._cluster)
            return await self._enter(conn, room_id, claims, body["name"], remote)
        except RoomError as exc:
            self._refuse_hello(conn, room_id, exc, claims.identity if claims else None)
            return False

    def _claims(self, token: str | None, room_id: str) -> Claims | None:
        if token is None:
            return None
        try:
            return self._verifier.verify_for_room(token, room_id)
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
        room = self._rooms.open(room_id, create_ad_hoc=claims is not None)
        taken = room.take_over(claims.identity, role) if claims is not None else None
        if taken is not None:  # stored and audited before the new socket hears of it
            await self._executor.carry_out(room, taken[1])
            await self._take_place(conn, room, taken[0])
            return True
        display = claims.name if claims is not None else name
        pid = new_participant_id()
        events = room.enter(pid, display or "", role, claims.identity if claims else None)
        self._hub.attach(pid, conn)
        welcome = await self._welcome(room, room.get(pid))
        await self._executor.carry_out(room, events, prelude=lambda: conn.send(welcome))
        return True

    async def _welcome(self, room: Room, person: Participant) -> dict[str, Any]:
        token, digest, old = self._tokens.issue(room.id, person.id)
        if old is not None:
            await self._cluster.forget_resume(room.id, old)
        await self._cluster.remember_resume(room.id, digest, person.id)
        window = self._config.resume_window_s
        user = person.identity or person.id
        servers = ice_servers_for(self._config, user, self._clock())
        return outbound.welcome(person, room.id, token, servers, window)

    async def _resume_session(self, conn: Connection, room_id: str, token: str) -> bool:
        digest = digest_of(token)
        pid = self._tokens.find(room_id, digest)
        if pid is None:  # a room taken over from another node, or restored after a restart
            pid = await self._cluster.find_resume(room_id, digest)
            if pid is not None:  # the new welcome forgets this token
                self._tokens.adopt(pid, digest)
        room = self._rooms.live(room_id)
        person = room.find(pid) if room is not None and pid is not None else None
        if room is None or person is None:
            raise RoomError(errors.UNAUTHORIZED, "this session cannot be resumed")
        room.reconnect(person.id)
        await self._take_place(conn, room, person)
        return True

    async def _take_place(self, conn: Connection, room: Room, person: Participant) -> None:
        """A newer connection takes a participant's place at once (a reload, a second
        window): same id and place; the old socket, if still open, is told and closed."""
        old = self._hub.attach(person.id, conn)
        if old is not None:
            old.send(outbound.replaced())
            old.close(CLOSE_POLICY, "replaced")
        conn.send(await self._welcome(room, person))
        self._send_state(room, person)
        if person.is_joined and not self._media.has_session(person.id):
            # Its media session was on another node (or a lost worker): offer again.
            self._media.open(room.id, fx.group_of(person), person.id)
            self._hub.deliver([person.id], {"type": "media_closed", "reason": "moved"})

    def _send_state(self, room: Room, person: Participant) -> None:
        """What a resumed client needs to redraw: its lobby status or the room."""
        if person.is_waiting:
            self._hub.deliver([person.id], outbound.lobby_status(person))
            return
        group = fx.group_of(person)
        members = [p for p in room.joined if fx.group_of(p) == group]
        self._hub.deliver([person.id], outbound.roster(members))
        if person.breakout is not None:
            self._hub.deliver([person.id], outbound.breakout(room, person.breakout))
        if person.is_host:
            self._hub.deliver([person.id], outbound.lobby(room.waiting))
            if room.refusals.entries:
                self._hub.deliver([person.id], outbound.refusals(room))
            if room.breakouts.is_open:
                self._hub.deliver([person.id], outbound.breakouts(room))

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
            self._audit.record(AuditEntry("hello", exc.code, room_id or None, actor, None, why))
