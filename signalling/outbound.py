"""Builders for every server -> client message (docs/protocol.md, Server -> client)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from common.audit import iso
from waiting_room.breakouts import MAX_BREAKOUT_NAME, MAX_BREAKOUTS, MAX_BROADCAST
from waiting_room.participant import Participant
from waiting_room.room import MAX_HOLD_MESSAGE, MAX_NAME, Room

# The domain's text and count limits, told to clients (in `welcome` and the room's
# `/window`) so that no client copies them.
LIMITS = {
    "name": MAX_NAME,
    "hold_message": MAX_HOLD_MESSAGE,
    "broadcast": MAX_BROADCAST,
    "breakouts": MAX_BREAKOUTS,
    "breakout_name": MAX_BREAKOUT_NAME,
}

REJECTED_TEXT = (
    "The host did not grant you access. If you were invited to this room, "
    "please contact the person who invited you."
)
LEFT_TEXT = "You've left the room"
REPLACED_TEXT = "This visit was opened in another window."

Message = dict[str, Any]


def welcome(
    person: Participant,
    room_id: str,
    resume_token: str,
    ice_servers: Sequence[Mapping[str, object]] = (),
    resume_window_s: float | None = None,
) -> Message:
    status = "joined" if person.is_joined else "waiting"
    window = {} if resume_window_s is None else {"resume_window_s": resume_window_s}
    return {
        "type": "welcome",
        "participant_id": person.id,
        "role": person.role.value,
        "status": status,
        "room": room_id,
        "resume_token": resume_token,
        "ice_servers": [dict(server) for server in ice_servers],
        **window,
        "limits": dict(LIMITS),
    }


def lobby_status(person: Participant) -> Message:
    message: Message = {
        "type": "lobby_status",
        "status": "on_hold" if person.hold_message is not None else "waiting",
    }
    if person.hold_message is not None:
        message["message"] = person.hold_message
    return message


def knock(person: Participant) -> Message:
    return {"type": "knock", "participant": {"id": person.id, "name": person.name}}


def lobby(waiting: Iterable[Participant]) -> Message:
    return {"type": "lobby", "waiting": [p.lobby_entry() for p in waiting]}


def refusals(room: Room) -> Message:
    """Hosts: who may not knock again in this visit (`allow_knock` lets them)."""
    return {"type": "refusals", "participants": [r.public() for r in room.refusals.entries]}


def lobby_left(person: Participant, reason: str) -> Message:
    return {"type": "lobby_left", "participant_id": person.id, "reason": reason}


def admitted() -> Message:
    return {"type": "admitted"}


def rejected() -> Message:
    return {"type": "rejected", "message": REJECTED_TEXT}


def roster(people: Iterable[Participant]) -> Message:
    return {"type": "roster", "participants": [p.public() for p in people]}


def participant_joined(person: Participant) -> Message:
    return {"type": "participant_joined", "participant": person.public()}


def participant_left(person: Participant, reason: str) -> Message:
    return {"type": "participant_left", "participant_id": person.id, "reason": reason}


def left(reason: str) -> Message:
    return {"type": "left", "reason": reason, "message": LEFT_TEXT}


def replaced() -> Message:
    """To the old socket of a participant whose place a newer connection took."""
    return {"type": "replaced", "message": REPLACED_TEXT}


def ack(rid: str | int, **fields: Any) -> Message:
    return {"type": "ack", "re": rid, **fields}


def error(
    code: str,
    message: str,
    rid: str | int | None = None,
    details: Mapping[str, object] | None = None,
) -> Message:
    out: Message = {"type": "error", "code": code, "message": message, **(details or {})}
    if rid is not None:
        out["re"] = rid
    return out


def answer(sdp: str, rid: str | int | None) -> Message:
    return {"type": "answer", "sdp": sdp, "re": rid}


def slots(
    slots: Sequence[Mapping[str, Any]], publishers: Mapping[str, Sequence[str]] | None = None
) -> Message:
    message: Message = {"type": "slots", "slots": [dict(slot) for slot in slots]}
    if publishers is not None:
        message["publishers"] = {pid: list(sources) for pid, sources in publishers.items()}
    return message


def publish_layers(mid: str, active: Sequence[str]) -> Message:
    """Which simulcast encodings (rids) of the publisher's track `mid` somebody needs."""
    return {"type": "publish_layers", "mid": mid, "active": list(active)}


def downlink(estimate_kbps: int) -> Message:
    """The SFU's estimate of the client's downlink."""
    return {"type": "downlink", "estimate_kbps": estimate_kbps}


def active_speaker(participant_id: str) -> Message:
    return {"type": "active_speaker", "participant_id": participant_id}


def _deadline(at: float | None) -> dict[str, Any]:
    return {"ends_at": iso(at)} if at is not None else {}


def breakouts(room: Room) -> Message:
    """The hosts' view: every breakout with its members, and who is in the main room."""
    state = room.breakouts
    return {
        "type": "breakouts",
        "rooms": [
            {"id": bid, "name": name, "participant_ids": [p.id for p in room.members(bid)]}
            for bid, name in state.rooms.items()
        ],
        "main_participant_ids": [p.id for p in room.members(None)],
        **_deadline(state.deadline),
    }


def breakout(room: Room, breakout_id: str | None) -> Message:
    """A participant's own view: which breakout it is in (None: the main room)."""
    if breakout_id is None:
        return {"type": "breakout", "room": None}
    name = room.breakouts.rooms.get(breakout_id, "")
    return {
        "type": "breakout",
        "room": {"id": breakout_id, "name": name},
        **_deadline(room.breakouts.deadline),
    }


def broadcast(text: str) -> Message:
    return {"type": "broadcast", "text": text}


def help_requested(person: Participant, breakout_id: str) -> Message:
    return {"type": "help_requested", "participant_id": person.id, "breakout_id": breakout_id}
