"""May this verified token join this room? Its scopes and its practice decide (see scopes.py)."""

from __future__ import annotations

import logging

import msgpack

from cluster.bus import BusUnavailable
from cluster.coordinator import Coordinator
from common.scopes import Grant, ScopeError
from common.tokens import Claims
from signalling.rooms import RoomRecord, RoomStore
from waiting_room.errors import FORBIDDEN, UNAUTHORIZED, RoomError

log = logging.getLogger(__name__)


class Refused(RoomError):
    """A refused `hello` whose token was valid: audited with the token's identity."""

    def __init__(self, code: str, message: str, actor: str, reason: str) -> None:
        super().__init__(code, message)
        self.actor = actor
        self.reason = reason


async def check_join(claims: Claims, room_id: str, rooms: RoomStore, cluster: Coordinator) -> None:
    """Raise Refused unless the token's scopes let it join as its role, in its practice."""
    try:
        grant = Grant.of(claims)
    except ScopeError as exc:
        log.info("refused a token: %s", exc)
        raise Refused(UNAUTHORIZED, "invalid or expired token", claims.identity, "claim") from None
    missing = grant.join_role_scope()
    if missing is not None:
        message = f"this token may not join a room as {claims.role} (it lacks `{missing}`)"
        raise Refused(FORBIDDEN, message, claims.identity, "scope")
    if grant.practice is None:
        return  # the operator's token: every room
    record = rooms.record(room_id) or await _shared_record(cluster, room_id)
    practice = record.practice if record is not None else None
    if not grant.may_use_room(room_id, record is not None, practice):
        raise Refused(
            FORBIDDEN, "this room belongs to another practice", claims.identity, "practice"
        )


async def _shared_record(cluster: Coordinator, room_id: str) -> RoomRecord | None:
    """A room scheduled through another node of the cluster."""
    try:
        packed = await cluster.record(room_id)
    except BusUnavailable:
        return None
    return RoomRecord(**msgpack.unpackb(packed)) if packed is not None else None
