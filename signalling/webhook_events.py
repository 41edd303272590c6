"""The one place that says which webhook events a room change makes, and what they hold.

Pure: given the events a command returned and what the visit noted of them
(waiting_room/visit.py), `room_events` lists the webhook events, in order.
Events name people by participant id, token identity and role only: never a
display name, a hold or broadcast text, an email or a token (as the audit
trail). docs/operations.md, "Webhooks", lists every event and its data.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from common.audit import iso
from waiting_room.events import (
    Admitted,
    Audited,
    Event,
    Joined,
    Knocked,
    Left,
    LobbyStatusChanged,
    Rejected,
)
from waiting_room.participant import Participant, Status
from waiting_room.visit import VisitChange, VisitEnded, VisitStarted

ROOM_EVENTS = (
    "room_started",
    "participant_knocked",
    "participant_admitted",
    "participant_held",
    "participant_rejected",
    "participant_joined",
    "participant_left",
    "breakouts_opened",
    "breakouts_closed",
    "room_ended",
)
PORTAL_EVENTS = ("portal_invitation_sent", "portal_account_activated", "portal_opted_out")
PORTAL_ORDER = "portal"  # portal events are delivered in order among themselves


@dataclass(frozen=True)
class Hook:
    """One webhook event before it has an id and a time (`body` gives it both)."""

    event: str
    room_id: str | None
    person: Participant | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def order_key(self) -> str:
        """Events with the same key are delivered in the order they happened."""
        return self.room_id if self.room_id is not None else PORTAL_ORDER


class HookSink(Protocol):
    """Where stored changes' webhook events go (signalling/webhooks.py); never waits."""

    def emit(self, hooks: Iterable[Hook]) -> None: ...


def room_events(room_id: str, events: Iterable[Event], visit: Iterable[VisitChange]) -> list[Hook]:
    """The webhook events of one stored change of room `room_id`: a visit that started
    first, then what happened to whom, then a visit that ended."""
    changes = list(visit)
    hooks = [Hook("room_started", room_id, c.host) for c in changes if isinstance(c, VisitStarted)]
    for event in events:
        hooks.extend(_hooks(room_id, event))
    for change in changes:
        if isinstance(change, VisitEnded):
            data = {"reason": change.reason, "duration_s": change.duration_s, **change.counts}
            hooks.append(Hook("room_ended", room_id, None, data))
    return hooks


def _hooks(room_id: str, event: Event) -> list[Hook]:
    match event:
        case Knocked(person):
            return [Hook("participant_knocked", room_id, person)]
        case LobbyStatusChanged(person) if person.status is Status.ON_HOLD:
            return [Hook("participant_held", room_id, person)]
        case Admitted(people):
            return [Hook("participant_admitted", room_id, p, _admitted(p)) for p in people]
        case Joined(people):
            return [Hook("participant_joined", room_id, p) for p in people]
        case Rejected(person):
            return [Hook("participant_rejected", room_id, person)]
        case Left(person, reason, was_joined):
            data = {"reason": reason, "was_joined": was_joined}
            return [Hook("participant_left", room_id, person, data)]
        case Audited(action, _, actor, None, details):
            return _breakouts(room_id, action, actor, details)
    return []


def _admitted(person: Participant) -> dict[str, Any]:
    # The admitting host is set when the guest joins, in the same command.
    return {"by": person.admitted_by}


def _breakouts(
    room_id: str, action: str, actor: str | None, details: Mapping[str, Any]
) -> list[Hook]:
    """Breakouts open with `breakout_open`; they close with a `breakout_close` that
    closes at once (no countdown) or with the timer's."""
    if action == "breakout_open":
        data = {"by": actor, "breakouts": details.get("rooms"), "assigned": details.get("assigned")}
        return [Hook("breakouts_opened", room_id, None, data)]
    if action == "breakout_close" and (details.get("timer") or not details.get("countdown_s")):
        return [Hook("breakouts_closed", room_id, None, {"by": actor})]
    return []


def portal_event(kind: str, patient_id: str) -> Hook:
    if kind not in PORTAL_EVENTS:
        raise ValueError(f"not a portal webhook event: {kind!r}")
    return Hook(kind, None, None, {"patient_id": patient_id})


def new_id() -> str:
    return "evt_" + secrets.token_hex(12)


def body(hook: Hook, event_id: str, created_at: float) -> dict[str, Any]:
    """The JSON of one event, as docs/operations.md describes it."""
    out: dict[str, Any] = {
        "id": event_id,
        "event": hook.event,
        "created_at": iso(created_at),
        "room_id": hook.room_id,
    }
    if hook.person is not None:
        out["participant_id"] = hook.person.id
        out["identity"] = hook.person.identity
        out["role"] = hook.person.role.value
    out["data"] = dict(hook.data)
    return out


def encode(event: Mapping[str, Any]) -> bytes:
    """The exact bytes sent (and signed): compact JSON, the same on every retry."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
