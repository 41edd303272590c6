"""REST routes the provider dashboard needs (added to PROTOCOL.md's REST; admin tokens only).

- `GET /v1/rooms?from=&to=`: scheduled visits overlapping a time range.
- `POST /v1/rooms/{room_id}/host-token`: a short-lived host token for the
  calling admin's identity, so the dashboard can open the host page.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from signalling.app import ROOMS_FILE
from signalling.audit import AuditEntry, iso
from signalling.auth import mint
from signalling.keys import AUDIT, CONFIG, ROOMS, SERVICE
from signalling.rest import admin_claims, api_error, parse_time, room_json
from waiting_room.errors import BAD_REQUEST, NOT_FOUND

HOST_TOKEN_TTL_S = 10 * 60
DEFAULT_RANGE_S = 31 * 24 * 3600
MAX_RANGE_S = 366 * 24 * 3600
MAX_ROOMS = 500


def _room_ids_between(path: Path, start: float, end: float, limit: int) -> list[str]:
    """Room ids whose appointment overlaps [start, end], read-only from the rooms database."""
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT room_id FROM rooms WHERE ends_at >= ? AND starts_at <= ?"
            " ORDER BY starts_at, room_id LIMIT ?",
            (start, end, limit),
        ).fetchall()
    finally:
        db.close()
    return [str(row[0]) for row in rows]


def _range(request: web.Request, now: float) -> tuple[float, float]:
    query = request.query
    start = parse_time({"from": query["from"]}, "from") if "from" in query else now - 86400
    end = parse_time({"to": query["to"]}, "to") if "to" in query else start + DEFAULT_RANGE_S
    if end < start or end - start > MAX_RANGE_S:
        raise api_error(
            web.HTTPBadRequest, BAD_REQUEST, "`to` must follow `from` by at most 366 days"
        )
    return start, end


async def list_rooms(request: web.Request) -> web.Response:
    claims = admin_claims(request)
    service = request.app[SERVICE]
    start, end = _range(request, service.clock())
    path = request.app[CONFIG].data_dir / ROOMS_FILE
    ids = await asyncio.to_thread(_room_ids_between, path, start, end, MAX_ROOMS)
    store = request.app[ROOMS]
    rooms: list[dict[str, Any]] = []
    for room_id in ids:
        record = store.record(room_id)
        if record is None or not claims.valid_for(room_id):
            continue
        live = store.live(room_id)
        rooms.append(
            {
                **room_json(request, record),
                "status": record.schedule.status(service.clock()).value,
                "waiting": len(live.waiting) if live else 0,
                "joined": live.joined_count if live else 0,
            }
        )
    return web.json_response({"rooms": rooms, "from": iso(start), "to": iso(end)})


async def host_token(request: web.Request) -> web.Response:
    room_id = request.match_info["room_id"]
    claims = admin_claims(request, room_id)
    store = request.app[ROOMS]
    if store.record(room_id) is None and store.live(room_id) is None:
        raise api_error(web.HTTPNotFound, NOT_FOUND, "no such room")
    key, secret = next(iter(request.app[CONFIG].api_keys.items()))
    now = time.time()
    token = mint(
        key,
        secret,
        room=room_id,
        identity=claims.identity,
        name=claims.name,
        role="host",
        ttl_s=HOST_TOKEN_TTL_S,
        now=now,
    )
    request.app[AUDIT].record(AuditEntry("host_token", "ok", room_id, claims.identity, None))
    body = {"room_id": room_id, "token": token, "expires_at": iso(now + HOST_TOKEN_TTL_S)}
    response = web.json_response(body, status=201)
    response.headers["Cache-Control"] = "no-store"
    return response


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/v1/rooms", list_rooms)
    app.router.add_post("/v1/rooms/{room_id}/host-token", host_token)
