"""REST API (docs/protocol.md, REST): rooms and their audit trail, for admin tokens."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import aiohttp
import msgpack
from aiohttp import web

from cluster.bus import BusUnavailable
from cluster.coordinator import pack_record
from cluster.hop import HOP_HEADER, sign, verify
from common.api import api_error, grant, json_body, refuse
from common.audit import AuditEntry, iso
from common.keys import AUDIT, CLIENT_ADDRESS
from common.scopes import MAX_PRACTICE, ROOMS_ADMIN, Grant
from signalling import openapi, outbound
from signalling.keys import (
    CLUSTER,
    CONFIG,
    HOP_KEY,
    HTTP,
    PATIENTS,
    ROOMS,
    SERVICE,
    WINDOW_LOOKUP_LIMIT,
)
from signalling.patients import valid_patient_id
from signalling.rooms import RoomRecord, new_room_id, valid_room_id
from waiting_room.errors import BAD_REQUEST, RoomError
from waiting_room.room import Room, lobby_cap
from waiting_room.schedule import Schedule


def check_room(request: web.Request, who: Grant, room_id: str, record: RoomRecord | None) -> None:
    """A practice's token uses only its own practice's rooms (403, audited)."""
    practice = record.practice if record is not None else None
    if not who.may_use_room(room_id, record is not None, practice):
        refuse(request, who, room_id, "api", "this room belongs to another practice")


def parse_time(body: dict[str, Any], name: str) -> float:
    value = body.get(name)
    if not isinstance(value, str):
        raise api_error(web.HTTPBadRequest, BAD_REQUEST, f"`{name}` must be an ISO-8601 time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise api_error(
            web.HTTPBadRequest, BAD_REQUEST, f"`{name}` must be an ISO-8601 time"
        ) from None
    if parsed.tzinfo is None:
        raise api_error(web.HTTPBadRequest, BAD_REQUEST, f"`{name}` needs a UTC offset")
    return parsed.astimezone(UTC).timestamp()


def room_json(request: web.Request, record: RoomRecord) -> dict[str, Any]:
    return {
        "room_id": record.room_id,
        "starts_at": iso(record.starts_at),
        "ends_at": iso(record.ends_at),
        "max_participants": record.max_participants,
        "join_url": f"{request.app[CONFIG].base_url}/r/{record.room_id}",
        "practice": record.practice,
        "max_waiting": _lobby_cap(request, record),
        "allow_reknock": record.allow_reknock,
        "patient_id": record.patient_id,
    }


async def create_room(request: web.Request) -> web.Response:
    body = await json_body(request)
    room_id = body.get("room_id") or new_room_id()
    if not isinstance(room_id, str) or not valid_room_id(room_id):
        raise api_error(web.HTTPBadRequest, BAD_REQUEST, "`room_id`: 1-64 of A-Z a-z 0-9 _ . -")
    who = grant(request, ROOMS_ADMIN, room_id=room_id)
    practice = _practice_for(request, who, room_id, body.get("practice"))
    patient_id = await _patient_for(request, practice, body.get("patient_id"))
    starts, ends = parse_time(body, "starts_at"), parse_time(body, "ends_at")
    try:
        Schedule(starts, ends)
    except ValueError as exc:
        raise api_error(web.HTTPBadRequest, BAD_REQUEST, str(exc)) from None
    record = RoomRecord(
        room_id,
        starts,
        ends,
        _capacity(request, body.get("max_participants")),
        request.app[SERVICE].clock(),
        who.identity,
        practice,
        max_waiting=_max_waiting(request, body.get("max_waiting")),
        allow_reknock=_flag(body, "allow_reknock"),
        patient_id=patient_id,
    )
    try:
        await request.app[ROOMS].create(record)
    except RoomError as exc:
        raise api_error(web.HTTPConflict, exc.code, exc.message) from None
    await request.app[CLUSTER].share_record(room_id, pack_record(asdict(record)))
    request.app[AUDIT].record(AuditEntry("room_create", "ok", room_id, who.identity, patient_id))
    return web.json_response(room_json(request, record), status=201)


NO_SUCH_PATIENT = "`patient_id`: no such patient in this room's practice"


async def _patient_for(request: web.Request, practice: str | None, asked: Any) -> str | None:
    """The patient the visit is for: an id of the portal's, of the room's practice.

    A patient of another practice is refused like an unknown one (no existence leak); an
    operator's room (no practice) may name any patient the portal has.
    """
    if asked is None:
        return None
    if not valid_patient_id(asked):
        raise api_error(web.HTTPBadRequest, BAD_REQUEST, "`patient_id`: pt_ and 16 of 0-9 a-f")
    patients = request.app.get(PATIENTS)
    if patients is not None:
        found = await patients.practice_of(asked)
        if found is None or (practice is not None and found != practice):
            raise api_error(web.HTTPBadRequest, BAD_REQUEST, NO_SUCH_PATIENT)
    return str(asked)


def _practice_for(request: web.Request, who: Grant, room_id: str, asked: Any) -> str | None:
    """A new room's practice: the token's own; an operator token may name one."""
    if asked is not None and (not isinstance(asked, str) or not 1 <= len(asked) <= MAX_PRACTICE):
        raise api_error(web.HTTPBadRequest, BAD_REQUEST, "`practice`: 1-64 characters")
    if who.practice is None:
        return asked
    if asked is not None and asked != who.practice:
        refuse(request, who, room_id, "api", "a practice's token schedules only its own rooms")
    return who.practice


def _capacity(request: web.Request, value: Any) -> int:
    config = request.app[CONFIG]
    if value is None:
        return min(config.default_max_participants, config.max_participants_cap)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise api_error(web.HTTPBadRequest, BAD_REQUEST, "`max_participants` must be >= 1")
    return min(value, config.max_participants_cap)


def _max_waiting(request: web.Request, value: Any) -> int | None:
    """A room's own lobby cap, lowered to the server's largest (factor x the capacity cap)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise api_error(web.HTTPBadRequest, BAD_REQUEST, "`max_waiting` must be >= 1")
    config = request.app[CONFIG]
    return min(value, lobby_cap(config.max_participants_cap, config.lobby_cap_factor))


def _lobby_cap(request: web.Request, record: RoomRecord) -> int:
    factor = request.app[CONFIG].lobby_cap_factor
    return record.max_waiting or lobby_cap(record.max_participants, factor)


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise api_error(web.HTTPBadRequest, BAD_REQUEST, f"`{name}` must be true or false")
    return value


async def _record_or_404(
    request: web.Request, room_id: str
) -> tuple[RoomRecord | None, Room | None]:
    """The room's schedule and its live state, here or (cluster) on its owner node."""
    rooms = request.app[ROOMS]
    record = rooms.record(room_id) or await _shared_record(request, room_id)
    live = rooms.live(room_id) or await request.app[CLUSTER].peek(room_id)
    if record is None and live is None:
        raise api_error(web.HTTPNotFound, "not_found", "no such room")
    return record, live


async def owned_room(
    request: web.Request, who: Grant, room_id: str
) -> tuple[RoomRecord | None, Room | None]:
    """The room (404 if unknown), if it is the caller's to use (403 otherwise)."""
    record, live = await _record_or_404(request, room_id)
    check_room(request, who, room_id, record)
    return record, live


async def _shared_record(request: web.Request, room_id: str) -> RoomRecord | None:
    try:
        packed = await request.app[CLUSTER].record(room_id)
    except BusUnavailable:
        return None
    if packed is None:
        return None
    record = RoomRecord(**msgpack.unpackb(packed))
    request.app[ROOMS].add_record(record)
    return record


async def get_room(request: web.Request) -> web.Response:
    room_id = request.match_info["room_id"]
    who = grant(request, ROOMS_ADMIN, room_id=room_id)
    record, live = await owned_room(request, who, room_id)
    status = "open"
    if record is not None:
        status = record.schedule.status(request.app[SERVICE].clock()).value
    out: dict[str, Any] = {
        "room_id": room_id,
        "starts_at": iso(record.starts_at) if record else None,
        "ends_at": iso(record.ends_at) if record else None,
        "max_participants": record.max_participants if record else live and live.max_participants,
        "status": status,
        "waiting": len(live.waiting) if live else 0,
        "joined": live.joined_count if live else 0,
        "breakouts": outbound.breakouts(live)["rooms"] if live else [],
        "patient_id": record.patient_id if record else None,
    }
    return web.json_response(out)


WINDOW_LOOKUPS_PER_MINUTE = 60  # a visit page asks once per load


async def join_window(request: web.Request) -> web.Response:
    """Public: when a visit can be joined, so its page can say "opens at" before anything else.

    Only the window's times and status: no names, counts or other details. At most
    WINDOW_LOOKUPS_PER_MINUTE lookups per client address, known rooms or not (429 past
    it, for every room alike), so room ids cannot be probed quickly.
    """
    if not request.app[WINDOW_LOOKUP_LIMIT].allow(request.app[CLIENT_ADDRESS](request)):
        raise api_error(web.HTTPTooManyRequests, "rate_limited", "too many lookups; wait a minute")
    room_id = request.match_info["room_id"]
    if not valid_room_id(room_id):
        raise api_error(web.HTTPNotFound, "not_found", "no such room")
    record, _ = await _record_or_404(request, room_id)
    body: dict[str, Any] = {
        "room_id": room_id,
        "status": "open",
        "opens_at": None,
        "closes_at": None,
        "limits": dict(outbound.LIMITS),  # e.g. the longest display name, before `hello`
    }
    if record is not None:
        schedule = record.schedule
        body["status"] = schedule.status(request.app[SERVICE].clock()).value
        body["opens_at"], body["closes_at"] = iso(schedule.opens_at), iso(schedule.closes_at)
    response = web.json_response(body)
    response.headers["Cache-Control"] = "no-store"
    return response


async def end_room(request: web.Request) -> web.Response:
    room_id = request.match_info["room_id"]
    who = grant(request, ROOMS_ADMIN, room_id=room_id)
    await owned_room(request, who, room_id)
    service = request.app[SERVICE]
    live = request.app[ROOMS].live(room_id)
    if live is not None:
        count = await service.end_session(live, who.identity)
        return web.json_response({"room_id": room_id, "ended": True, "count": count})
    cluster = request.app[CLUSTER]
    if await _owned_elsewhere(request, room_id):
        await cluster.notify("end_room", room_id=room_id, actor=who.identity)
        return web.json_response({"room_id": room_id, "ended": True, "count": None}, status=202)
    request.app[AUDIT].record(AuditEntry("end", "ok", room_id, who.identity, None, {"count": 0}))
    return web.json_response({"room_id": room_id, "ended": True, "count": 0})


async def _owned_elsewhere(request: web.Request, room_id: str) -> bool:
    try:
        return await request.app[CLUSTER].owner_elsewhere(room_id)
    except BusUnavailable:
        raise api_error(web.HTTPServiceUnavailable, "unavailable", "try again shortly") from None


async def room_audit(request: web.Request) -> web.Response:
    room_id = request.match_info["room_id"]
    who = grant(request, ROOMS_ADMIN, room_id=room_id)
    record = request.app[ROOMS].record(room_id) or await _shared_record(request, room_id)
    check_room(request, who, room_id, record)
    try:
        after = int(request.query.get("after", "0"))
        limit = min(max(int(request.query.get("limit", "1000")), 1), 5000)
    except ValueError:
        raise api_error(web.HTTPBadRequest, BAD_REQUEST, "after and limit are integers") from None
    entries = await request.app[AUDIT].query(room_id, after, limit)
    if request.app[CLUSTER].multi_node:
        entries = await cluster_audit(request, room_id, entries, limit)
    return web.json_response({"entries": entries})


async def cluster_audit(
    request: web.Request, room_id: str, own: list[dict[str, Any]], limit: int
) -> list[dict[str, Any]]:
    """A room's trail is spread over the nodes that owned it: ask every live node."""
    cluster = request.app[CLUSTER]
    entries = list(own)
    try:
        nodes = await cluster.nodes()
    except BusUnavailable:
        nodes = []
    for node in nodes:
        if node.node_id == cluster.node_id:
            continue
        path = f"/internal/audit/{room_id}"
        headers = hop_headers_for(request, path)
        try:
            async with request.app[HTTP].get(
                node.url + path, params={"limit": str(limit)}, headers=headers
            ) as response:
                if response.status == 200:
                    entries.extend((await response.json())["entries"])
        except (aiohttp.ClientError, OSError):
            continue  # a node that is down keeps its rows; they show again when it is back
    return sorted(entries, key=lambda e: (e["at"], e["node"], e["seq"]))[:limit]


def hop_headers_for(request: web.Request, path: str) -> dict[str, str]:
    return {HOP_HEADER: sign(request.app[HOP_KEY], request.app[CLUSTER].node_id, path, "")}


async def internal_audit(request: web.Request) -> web.Response:
    """Another node asking for this node's rows of a room (cluster audit)."""
    if not verify(request.app[HOP_KEY], request.headers.get(HOP_HEADER, ""), request.path, ""):
        room_id = request.match_info["room_id"]
        request.app[AUDIT].record(AuditEntry("hop", "unauthorized", room_id))
        raise api_error(web.HTTPUnauthorized, "unauthorized", "cluster nodes only")
    limit = min(max(int(request.query.get("limit", "1000")), 1), 5000)
    entries = await request.app[AUDIT].query(request.match_info["room_id"], 0, limit)
    return web.json_response({"entries": entries})


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/internal/audit/{room_id}", internal_audit)
    app.router.add_post("/v1/rooms", create_room)
    app.router.add_get("/v1/rooms/{room_id}", get_room)
    app.router.add_delete("/v1/rooms/{room_id}", end_room)
    app.router.add_get("/v1/rooms/{room_id}/audit", room_audit)
    app.router.add_get("/v1/rooms/{room_id}/window", join_window)
    openapi.setup(app)
