"""A participant of a room and its lobby/room state machine."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Role(enum.Enum):
    HOST = "host"
    GUEST = "guest"


class Status(enum.Enum):
    WAITING = "waiting"
    ON_HOLD = "on_hold"
    JOINED = "joined"
    GONE = "gone"


_ALLOWED: dict[Status, frozenset[Status]] = {
    Status.WAITING: frozenset({Status.ON_HOLD, Status.JOINED, Status.GONE}),
    Status.ON_HOLD: frozenset({Status.ON_HOLD, Status.JOINED, Status.GONE}),
    Status.JOINED: frozenset({Status.GONE}),
    Status.GONE: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A bug: the room allowed a command that the participant's state forbids."""


@dataclass(eq=False)
class Participant:
    id: str
    name: str
    role: Role
    identity: str | None = None  # the token's `sub`; None for an anonymous guest
    status: Status = Status.WAITING
    hold_message: str | None = None
    knocked_at: float = 0.0
    joined_at: float | None = None
    admitted_by: str | None = None
    connected: bool = True
    disconnected_at: float | None = None
    breakout: str | None = None  # None: the main room
    interrupted: bool = False  # in the room when the server stopped; not resumed since
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def audit_id(self) -> str:
        """How the audit trail names this person: the token identity, else the participant id."""
        return self.identity or self.id

    @property
    def is_host(self) -> bool:
        return self.role is Role.HOST

    @property
    def is_waiting(self) -> bool:
        return self.status in (Status.WAITING, Status.ON_HOLD)

    @property
    def is_joined(self) -> bool:
        return self.status is Status.JOINED

    def set_status(self, new: Status) -> None:
        if new not in _ALLOWED[self.status]:
            raise IllegalTransition(f"participant {self.id}: {self.status.value} -> {new.value}")
        self.status = new

    def public(self) -> dict[str, str]:
        """The participant as other clients see it (docs/protocol.md `participant`)."""
        return {"id": self.id, "name": self.name, "role": self.role.value}

    def lobby_entry(self) -> dict[str, object]:
        entry: dict[str, object] = {
            "id": self.id,
            "name": self.name,
            "status": self.status.value,
            "knocked_at": self.knocked_at,
        }
        if self.hold_message is not None:
            entry["message"] = self.hold_message
        return entry

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "identity": self.identity,
            "status": self.status.value,
            "hold_message": self.hold_message,
            "knocked_at": self.knocked_at,
            "joined_at": self.joined_at,
            "admitted_by": self.admitted_by,
            "connected": self.connected,
            "disconnected_at": self.disconnected_at,
            "breakout": self.breakout,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Participant:
        return cls(
            id=data["id"],
            name=data["name"],
            role=Role(data["role"]),
            identity=data["identity"],
            status=Status(data["status"]),
            hold_message=data["hold_message"],
            knocked_at=data["knocked_at"],
            joined_at=data["joined_at"],
            admitted_by=data["admitted_by"],
            connected=data["connected"],
            disconnected_at=data["disconnected_at"],
            breakout=data.get("breakout"),
        )
