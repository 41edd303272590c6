"""The pre-call test socket: hello, then offer; the SFU echoes the client's media back
and the server sends `precall_stats` about once a second (docs/protocol.md, Pre-call test)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import Any

from aiohttp import web

from sfu.control import MediaControl, MediaError
from signalling import outbound
from signalling.guard import GUARD
from signalling.hub import CLOSE_POLICY, Connection
from signalling.iceservers import ice_servers_for
from signalling.keys import CONFIG, HUB, PRECALL_LIMIT, SERVICE
from signalling.messages import message_type, validate
from signalling.ws import Flood, decode, first_frame, frames, open_socket
from waiting_room.errors import BAD_REQUEST, UNAVAILABLE, RoomError

MAX_TEST_S = 60.0


async def precall_socket(request: web.Request) -> web.StreamResponse:
    limiter = request.app[PRECALL_LIMIT]
    if not limiter.allow(request.app[GUARD].client_address(request)):
        raise web.HTTPTooManyRequests(text="too many pre-call tests from your address")
    ws, conn = await open_socket(request)
    pid = "pc_" + secrets.token_urlsafe(12)
    hub = request.app[HUB]
    media = request.app[SERVICE].media
    try:
        async with asyncio.timeout(MAX_TEST_S):
            await _serve(request, ws, conn, pid, media)
    except TimeoutError:
        conn.send({"type": "precall_ended", "reason": "time_limit"})
    finally:
        hub.detach(conn)
        if media is not None:
            await media.close(pid)
        conn.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(conn.closed(), 2.0)
        await conn.abort()
    return ws


async def _serve(
    request: web.Request,
    ws: web.WebSocketResponse,
    conn: Connection,
    pid: str,
    media: MediaControl | None,
) -> None:
    frame = await first_frame(ws, request.app[CONFIG].hello_timeout_s)
    hello = decode(conn, frame) if frame is not None else None
    if hello is None or hello.get("type") != "hello":
        conn.send(outbound.error("unauthorized", "say hello first"))
        conn.close(CLOSE_POLICY)
        return
    if media is None:
        conn.send(outbound.error(UNAVAILABLE, "media is not available on this server"))
        conn.close()
        return
    request.app[HUB].attach(pid, conn)
    conn.send(
        {
            "type": "welcome",
            "participant_id": pid,
            "role": "guest",
            "status": "precall",
            "room": None,
            "resume_token": "",
            "ice_servers": ice_servers_for(request.app[CONFIG], pid, time.time()),
        }
    )
    await media.open_precall(pid)
    flood = Flood()
    async for frame in frames(ws):
        message = decode(conn, frame) if flood.check(conn) else None
        if message is not None and not await _handle(conn, pid, media, message):
            return


async def _handle(conn: Connection, pid: str, media: MediaControl, raw: dict[str, Any]) -> bool:
    rid = raw.get("id") if isinstance(raw.get("id"), str | int) else None
    try:
        request = validate(message_type(raw), raw)
        if request.type == "offer":
            sdp = await media.offer(pid, request.body["sdp"])
            conn.send(outbound.answer(sdp, request.id))
        elif request.type == "candidate":
            body = request.body
            await media.candidate(pid, body["candidate"], body["sdpMid"], body["sdpMLineIndex"])
        elif request.type == "leave":
            conn.send(outbound.left("left"))
            return False
        else:
            raise RoomError(BAD_REQUEST, "the pre-call test takes offer, candidate and leave")
    except (RoomError, MediaError) as exc:
        conn.send(outbound.error(exc.code, exc.message, rid))
    return True
