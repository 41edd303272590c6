"""REST routes the provider dashboard needs (added to docs/protocol.md's REST; admin tokens only).

- `GET /v1/rooms?from=&to=` (`rooms:admin`): scheduled visits overlapping a
  time range, of the caller's practice only when its token names one.
- `POST /v1/rooms/{room_id}/host-token` (`rooms:admin` and `rooms:host`): a
  short-lived `rooms:host` token for the calling admin's identity, so the
  dashboard can open the host page. A signed-in staff session (cookie and
  X-CSRF-Token) works as well as a token; the token then carries the user's
  display name.
- `GET /v1/rooms/{room_id}/host-offer` (public): `{"host": true, "name": ...}`
  when this browser's staff session is a provider of the visit's practice, so
  the guest and host pages offer "Join as host"; `{"host": false}` for anyone
  else, whatever the room (it tells a stranger nothing).
"""

from __future__ import annotations

import time
from typing import Any

import msgpack
from aiohttp import web

from cluster.bus import BusUnavailable
from common.api import api_error, grant
from common.audit import AuditEntry, iso
from common.keys import AUDIT
from common.scopes import ROOMS_ADMIN, ROOMS_HOST, render
from common.session import signed_in
from common.tokens import mint
from signalling.keys import CLUSTER, CONFIG, ROOMS, SERVICE
from signalling.rest import owned_room, parse_time, room_json
from signalling.rooms import RoomRecord, valid_room_id
from waiting_room.errors import BAD_REQUEST

HOST_TOKEN_TTL_S = 10 * 60
DEFAULT_RANGE_S = 31 * 24 * 3600
MAX_RANGE_S = 366 * 24 * 3600
MAX_ROOMS = 500
MINTED = frozenset({ROOMS_HOST})  # the scopes of a minted host token


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
    who = grant(request, ROOMS_ADMIN)
    service = request.app[SERVICE]
    start, end = _range(request, service.clock())
    store = request.app[ROOMS]
    await _learn_shared_records(request)
    rooms: list[dict[str, Any]] = []
    for record in store.records_between(start, end, MAX_ROOMS):
        if not who.may_use_room(record.room_id, True, record.practice):
            continue
        live = store.live(record.room_id)
        rooms.append(
            {
                **room_json(request, record),
                # The join window, so the dashboard never copies the rule.
                "opens_at": iso(record.schedule.opens_at),
                "closes_at": iso(record.schedule.closes_at),
                "status": record.schedule.status(service.clock()).value,
                "waiting": len(live.waiting) if live else 0,
                "joined": live.joined_count if live else 0,
            }
        )
    return web.json_response(
        {
            "rooms": rooms,
            "from": iso(start),
            "to": iso(end),
            "practice": who.practice,
            "scopes": sorted(who.scopes),
        }
    )


async def _learn_shared_records(request: web.Request) -> None:
    """In a cluster, rooms scheduled through other nodes are listed too."""
    try:
        packed = await request.app[CLUSTER].shared_records()
    except BusUnavailable:
        return
    for value in packed:
        request.app[ROOMS].add_record(RoomRecord(**msgpack.unpackb(value)))


async def host_token(request: web.Request) -> web.Response:
    room_id = request.match_info["room_id"]
    # A minted token never has more than its minter: the minter must hold all of it.
    who = grant(request, ROOMS_ADMIN, *MINTED, room_id=room_id)
    await owned_room(request, who, room_id)
    claims = who.claims
    config = request.app[CONFIG]
    key, secret = next(iter(config.api_keys.items()))  # the first key signs
    ttl_s = min(HOST_TOKEN_TTL_S, config.token_max_lifetime_s)
    now = time.time()
    token = mint(
        key,
        secret,
        room=room_id,
        identity=claims.identity,
        name=claims.name,
        role="host",
        ttl_s=ttl_s,
        practice=claims.practice,
        scope=render(MINTED),
        now=now,
    )
    request.app[AUDIT].record(AuditEntry("host_token", "ok", room_id, claims.identity, None))
    body = {"room_id": room_id, "token": token, "expires_at": iso(now + ttl_s)}
    response = web.json_response(body, status=201)
    response.headers["Cache-Control"] = "no-store"
    return response


async def host_offer(request: web.Request) -> web.Response:
    room_id = request.match_info["room_id"]
    offer: dict[str, Any] = {"host": False, "name": None}
    who = signed_in(request)
    if who is not None and who.role == "provider" and valid_room_id(room_id):
        record = request.app[ROOMS].record(room_id)
        grant = who.grant
        practice = record.practice if record is not None else None
        if record is not None and grant.may_use_room(room_id, True, practice):
            offer = {"host": grant.has(ROOMS_HOST), "name": grant.claims.name}
    response = web.json_response(offer)
    response.headers["Cache-Control"] = "no-store"
    return response


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/v1/rooms/{room_id}/host-offer", host_offer)
    app.router.add_get("/v1/rooms", list_rooms)
    app.router.add_post("/v1/rooms/{room_id}/host-token", host_token)
