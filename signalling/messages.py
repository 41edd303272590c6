"""Inbound messages: the envelope, who may send what, and field validation.

Unknown fields are ignored (a client may be newer than the server), so a
`role` or `participant_id` smuggled into a body can never change who the
sender is: identity comes from the session alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sfu.control import MAX_MID_LENGTH, MAX_SDP_BYTES, MAX_VIDEO_DIMENSION, MAX_VIDEO_SIZES
from waiting_room.breakouts import MAX_BREAKOUT_NAME, MAX_BREAKOUTS, MAX_BROADCAST
from waiting_room.errors import BAD_REQUEST, RoomError
from waiting_room.room import MAX_HOLD_MESSAGE

MAX_ID_LENGTH = 128
MAX_IDS = 500

RequestId = str | int | None

HOST_COMMANDS = frozenset(
    {
        "admit",
        "hold",
        "reject",
        "remove",
        "remove_all",
        "end",
        "lobby",
        "breakout_open",
        "breakout_move",
        "breakout_broadcast",
        "breakout_close",
        "allow_knock",
    }
)
WAITING_ALLOWED = frozenset({"leave", "ping"})


@dataclass(frozen=True)
class Request:
    type: str
    id: RequestId
    body: dict[str, Any]


def _bad(message: str) -> RoomError:
    return RoomError(BAD_REQUEST, message)


def request_id(message: dict[str, Any]) -> RequestId:
    """The client's `id`, if it is usable to correlate an answer."""
    rid = message.get("id")
    if isinstance(rid, bool) or not isinstance(rid, str | int):
        return None
    if isinstance(rid, str) and len(rid) > MAX_ID_LENGTH:
        return None
    return rid


def message_type(message: dict[str, Any]) -> str:
    kind = message.get("type")
    if not isinstance(kind, str):
        raise _bad("every message needs a string `type`")
    if kind not in VALIDATORS:
        raise _bad(f"unknown message type {kind[:40]!r}")
    return kind


def check_id_field(message: dict[str, Any]) -> None:
    if "id" in message and request_id(message) is None:
        raise _bad(f"`id` must be a string of at most {MAX_ID_LENGTH} characters or an integer")


def _text(body: dict[str, Any], name: str, *, limit: int, optional: bool = False) -> Any:
    if name not in body:
        if optional:
            return None
        raise _bad(f"`{name}` is required")
    value = body[name]
    if optional and value is None:
        return None
    if not isinstance(value, str):
        raise _bad(f"`{name}` must be a string")
    if len(value) > limit:
        raise _bad(f"`{name}` is longer than {limit} characters")
    return value


def _pid(body: dict[str, Any], name: str = "participant_id", *, nullable: bool = False) -> Any:
    if name not in body:
        raise _bad(f"`{name}` is required")
    value = body[name]
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise _bad(f"`{name}` must be a participant id")
    return value


def _int(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"`{name}` must be an integer from {low} to {high}")
    return value


def _hello(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "token": _text(m, "token", optional=True, limit=8192),
        "name": _text(m, "name", optional=True, limit=200),
        "resume": _text(m, "resume", optional=True, limit=200),
    }


def _admit(m: dict[str, Any]) -> dict[str, Any]:
    ids = m.get("participant_ids")
    if m.get("all") is True and ids is None:
        return {"participant_ids": None}
    if "all" in m and m["all"] is not False:
        raise _bad("`all` must be true (or give `participant_ids`)")
    if not isinstance(ids, list) or not ids or len(ids) > MAX_IDS:
        raise _bad(f"give `participant_ids` (1 to {MAX_IDS} ids) or `all: true`")
    for pid in ids:
        if not isinstance(pid, str) or not pid or len(pid) > MAX_ID_LENGTH:
            raise _bad("`participant_ids` must hold participant ids")
    return {"participant_ids": ids}


def _hold(m: dict[str, Any]) -> dict[str, Any]:
    message = _text(m, "message", limit=MAX_HOLD_MESSAGE)
    if not message.strip():
        raise _bad("`message` must not be empty")
    return {"participant_id": _pid(m), "message": message}


def _one_pid(m: dict[str, Any]) -> dict[str, Any]:
    return {"participant_id": _pid(m)}


def _allow_knock(m: dict[str, Any]) -> dict[str, Any]:
    """Exactly one of `participant_id` (the id the person had) or `identity` (a token `sub`)."""
    if ("participant_id" in m) == ("identity" in m):
        raise _bad("give `participant_id` or `identity`")
    if "identity" in m:
        value = _text(m, "identity", limit=256)
        if not value:
            raise _bad("`identity` must not be empty")
        return {"participant_id": None, "identity": value}
    return {"participant_id": _pid(m), "identity": None}


def _none(m: dict[str, Any]) -> dict[str, Any]:
    return {}


def _offer(m: dict[str, Any]) -> dict[str, Any]:
    sdp = _text(m, "sdp", limit=MAX_SDP_BYTES)
    if not sdp.strip():
        raise _bad("`sdp` must not be empty")
    return {"sdp": sdp}


def _candidate(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "candidate": _text(m, "candidate", limit=1024),
        "sdpMid": _text(m, "sdpMid", optional=True, limit=64),
        "sdpMLineIndex": _int(m, "sdpMLineIndex", 0, 63),
    }


def _pin(m: dict[str, Any]) -> dict[str, Any]:
    return {"participant_id": _pid(m, nullable=True)}


def _video_sizes(m: dict[str, Any]) -> dict[str, Any]:
    """`slots`: {mid: {"width": W, "height": H}}, integers from 0 to MAX_VIDEO_DIMENSION."""
    slots = m.get("slots")
    if not isinstance(slots, dict) or len(slots) > MAX_VIDEO_SIZES:
        raise _bad(f"`slots` must be an object of at most {MAX_VIDEO_SIZES} slots")
    sizes: dict[str, list[int]] = {}
    for mid, size in slots.items():
        if not isinstance(mid, str) or not 0 < len(mid) <= MAX_MID_LENGTH:
            raise _bad(f"each slot must be named by its mid (1 to {MAX_MID_LENGTH} characters)")
        if not isinstance(size, dict):
            raise _bad("each slot's size must be an object with `width` and `height`")
        dims = [_int(size, name, 0, MAX_VIDEO_DIMENSION) for name in ("width", "height")]
        if dims[0] is None or dims[1] is None:
            raise _bad("each slot's size needs integer `width` and `height`")
        sizes[mid] = [dims[0], dims[1]]
    return {"slots": sizes}


def _breakout_open(m: dict[str, Any]) -> dict[str, Any]:
    rooms = m.get("rooms")
    if not isinstance(rooms, list) or not 1 <= len(rooms) <= MAX_BREAKOUTS:
        raise _bad(f"`rooms` must be a list of 1 to {MAX_BREAKOUTS} breakouts")
    parsed = []
    for room in rooms:
        if not isinstance(room, dict):
            raise _bad("each breakout must be an object with a `name`")
        name = _text(room, "name", limit=MAX_BREAKOUT_NAME)
        ids = room.get("participant_ids", [])
        if not isinstance(ids, list) or not all(
            isinstance(pid, str) and 0 < len(pid) <= MAX_ID_LENGTH for pid in ids
        ):
            raise _bad("`participant_ids` must hold participant ids")
        parsed.append({"name": name, "participant_ids": ids})
    auto = m.get("auto", False)
    if not isinstance(auto, bool):
        raise _bad("`auto` must be a boolean")
    return {"rooms": parsed, "auto": auto, "duration_s": _int(m, "duration_s", 10, 24 * 3600)}


def _breakout_move(m: dict[str, Any]) -> dict[str, Any]:
    return {"participant_id": _pid(m), "to": _pid(m, "to", nullable=True)}


def _breakout_broadcast(m: dict[str, Any]) -> dict[str, Any]:
    text = _text(m, "text", limit=MAX_BROADCAST)
    if not text.strip():
        raise _bad("`text` must not be empty")
    return {"text": text}


def _breakout_close(m: dict[str, Any]) -> dict[str, Any]:
    return {"countdown_s": _int(m, "countdown_s", 0, 600)}


VALIDATORS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "hello": _hello,
    "admit": _admit,
    "hold": _hold,
    "reject": _one_pid,
    "remove": _one_pid,
    "remove_all": _none,
    "end": _none,
    "leave": _none,
    "lobby": _none,
    "offer": _offer,
    "candidate": _candidate,
    "pin": _pin,
    "video_sizes": _video_sizes,
    "breakout_open": _breakout_open,
    "breakout_move": _breakout_move,
    "breakout_broadcast": _breakout_broadcast,
    "breakout_close": _breakout_close,
    "help_request": _none,
    "allow_knock": _allow_knock,
    "ping": _none,
}


def validate(kind: str, message: dict[str, Any]) -> Request:
    """Check the fields of a message whose type and sender were already accepted."""
    check_id_field(message)
    return Request(kind, request_id(message), VALIDATORS[kind](message))
