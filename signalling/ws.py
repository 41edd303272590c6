"""WebSocket endpoints: the room socket and the pre-call test socket."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSMsgType, web

from cluster.coordinator import RouteKind
from cluster.hop import FORWARDED_HEADER, HOP_HEADER, verify
from common.audit import AuditEntry
from common.codec import SUBPROTOCOLS, DecodeError, codec_for
from common.keys import AUDIT
from common.ratelimit import TokenBucket
from signalling import outbound
from signalling.guard import GUARD
from signalling.hub import CLOSE_POLICY, CLOSE_SERVICE_RESTART, Connection
from signalling.keys import CLUSTER, CONFIG, HOP_KEY, ORIGINS, SERVICE
from signalling.origins import MAX_SHOWN
from signalling.proxy import HopRefused, connect_owner, proxy_socket
from signalling.rooms import valid_room_id
from waiting_room.errors import BAD_REQUEST, RATE_LIMITED, UNAUTHORIZED, UNAVAILABLE

log = logging.getLogger(__name__)

MESSAGE_RATE = 30.0  # per second, sustained
MESSAGE_BURST = 60.0
FLOOD_CLOSE_AFTER = 300  # dropped messages before the socket is closed


def hop_client(request: web.Request) -> str | None:
    """The client address vouched for by another node of the cluster, if any."""
    header = request.headers.get(HOP_HEADER)
    client = request.headers.get(FORWARDED_HEADER, "")
    if header is None:
        return None
    return client if verify(request.app[HOP_KEY], header, request.path, client) else None


def upgrade_refusal(request: web.Request) -> str | None:
    """Why this upgrade is refused ("hop", "host", "origin"), or None."""
    if HOP_HEADER in request.headers:
        return None if hop_client(request) is not None else "hop"  # the edge node checked
    return request.app[ORIGINS].refusal(request.headers.get("Origin"), request.host)


def refuse_upgrade(request: web.Request, reason: str) -> web.HTTPForbidden:
    """Audit a refused upgrade (before any room state exists) and answer 403."""
    details = {
        "reason": reason,
        "origin": request.headers.get("Origin", "")[:MAX_SHOWN],
        "host": request.headers.get("Host", "")[:MAX_SHOWN],
        "address": request.remote or "",
    }
    room_id = request.match_info.get("room_id")
    action = "ws_upgrade" if room_id is not None else "precall_upgrade"
    request.app[AUDIT].record(AuditEntry(action, "forbidden", room_id, None, None, details))
    log.warning("refused a WebSocket upgrade (%s) from %s", reason, request.remote)
    return web.HTTPForbidden(text=f"{reason} not allowed")


async def open_socket(request: web.Request) -> tuple[web.WebSocketResponse, Connection]:
    config = request.app[CONFIG]
    reason = upgrade_refusal(request)
    if reason is not None:
        raise refuse_upgrade(request, reason)
    ws = web.WebSocketResponse(
        protocols=SUBPROTOCOLS,
        max_msg_size=config.max_frame_bytes,
        heartbeat=15.0,
    )
    await ws.prepare(request)
    codec = codec_for(ws.ws_protocol, config.max_frame_bytes)
    conn = Connection(
        ws, codec, config.send_queue_limit, config.send_queue_bytes, request.transport
    )
    return ws, conn


async def frames(ws: web.WebSocketResponse) -> AsyncIterator[str | bytes]:
    """Text and binary frames until the socket ends (oversized frames end it with 1009)."""
    async for msg in ws:
        if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            yield msg.data
        elif msg.type == WSMsgType.ERROR:
            return


async def first_frame(ws: web.WebSocketResponse, within_s: float) -> str | bytes | None:
    try:
        async with asyncio.timeout(within_s):
            msg = await ws.receive()
    except TimeoutError:
        return None
    if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
        data: str | bytes = msg.data
        return data
    return None


class Flood:
    """Per-connection message budget: refuse politely, then hang up on abuse."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self._bucket = TokenBucket(MESSAGE_RATE, MESSAGE_BURST, loop.time)
        self._dropped = 0
        self._told_at = -1.0
        self._time = loop.time

    def check(self, conn: Connection) -> bool:
        if self._bucket.take():
            return True
        self._dropped += 1
        if self._dropped >= FLOOD_CLOSE_AFTER:
            conn.close(CLOSE_POLICY)
        elif self._time() - self._told_at >= 1.0:
            self._told_at = self._time()
            conn.send(outbound.error(RATE_LIMITED, "slow down: too many messages"))
        return False


def decode(conn: Connection, frame: str | bytes) -> dict[str, Any] | None:
    try:
        return conn.codec.decode(frame)
    except DecodeError as exc:
        conn.send(outbound.error(BAD_REQUEST, str(exc)))
        return None


async def room_socket(request: web.Request) -> web.StreamResponse:
    room_id = request.match_info["room_id"]
    if not valid_room_id(room_id):
        raise web.HTTPNotFound(text="no such room")
    service = request.app[SERVICE]
    ws, conn = await open_socket(request)
    conn.room_id = room_id
    try:
        await _route(request, ws, conn, room_id)
    finally:
        service.disconnected(conn)
        conn.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(conn.closed(), 2.0)
        await conn.abort()
    return ws


async def _route(
    request: web.Request, ws: web.WebSocketResponse, conn: Connection, room_id: str
) -> None:
    """Serve the room here if this node owns it; otherwise carry the socket to its owner."""
    forwarded = hop_client(request)
    address = forwarded if forwarded is not None else request.app[GUARD].client_address(request)
    cluster = request.app[CLUSTER]
    while True:
        route = await cluster.route(room_id)
        if route.kind is RouteKind.LOCAL:
            await _serve_room(request, ws, conn, address)
            return
        if route.kind is not RouteKind.REMOTE or route.node is None or forwarded is not None:
            break
        try:
            upstream = await connect_owner(request, ws, route.node, address)
        except HopRefused:
            break
        if upstream is None:
            cluster.suspect(route.node.node_id)  # treat as dead: its lease will run out
            continue
        await conn.abort()  # the proxy writes to this socket from now on
        await proxy_socket(ws, upstream)
        return
    conn.send(outbound.error(UNAVAILABLE, "this room is moving between servers; retry"))
    conn.close(CLOSE_SERVICE_RESTART)


async def _serve_room(
    request: web.Request, ws: web.WebSocketResponse, conn: Connection, address: str
) -> None:
    service = request.app[SERVICE]
    config = request.app[CONFIG]
    frame = await first_frame(ws, config.hello_timeout_s)
    if frame is None:
        conn.send(outbound.error(UNAUTHORIZED, "say hello first (within 10 s)"))
        conn.close(CLOSE_POLICY)
        return
    hello = decode(conn, frame)
    if hello is None:
        conn.close(CLOSE_POLICY)
        return
    if not await service.hello(conn, hello, address):
        return
    if hello.get("token") or hello.get("resume"):  # verified: off its address's cap
        request.app[GUARD].trust(request)
    flood = Flood()
    async for frame in frames(ws):
        if conn.closing:
            break
        message = decode(conn, frame) if flood.check(conn) else None
        if message is not None:
            await service.handle(conn, message)
