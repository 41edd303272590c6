"""What room commands return: facts for the shell to deliver and to audit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from waiting_room.participant import Participant


@dataclass(frozen=True)
class Knocked:
    """A guest is now waiting in the lobby."""

    participant: Participant


@dataclass(frozen=True)
class LobbyStatusChanged:
    """A waiting guest's own status (waiting / on hold with a message) changed."""

    participant: Participant


@dataclass(frozen=True)
class LobbyLeft:
    """A guest left the lobby: `admitted`, `rejected` or `left`."""

    participant: Participant
    reason: str


@dataclass(frozen=True)
class Admitted:
    """The outcome of one `admit`: who was let in, whether capacity stopped it,
    and the requested ids that were not waiting."""

    participants: tuple[Participant, ...]
    room_full: bool = False
    unknown: tuple[str, ...] = ()


@dataclass(frozen=True)
class Joined:
    """Participants who are now in the room, in one batch (hosts join at once)."""

    participants: tuple[Participant, ...]


@dataclass(frozen=True)
class Rejected:
    participant: Participant


@dataclass(frozen=True)
class Left:
    """A joined or waiting participant is out: `left`, `removed`, `ended`, `disconnected`."""

    participant: Participant
    reason: str
    was_joined: bool


@dataclass(frozen=True)
class SessionEnded:
    """The host ended the meeting for all; the room takes a new session."""

    session: int


@dataclass(frozen=True)
class BreakoutsChanged:
    """The set of breakouts, their members or their deadline changed (hosts are told)."""


@dataclass(frozen=True)
class RefusalsChanged:
    """The identities refused a new knock changed (hosts are told)."""


@dataclass(frozen=True)
class Moved:
    """A joined participant moved between the main room (None) and a breakout."""

    participant: Participant
    source: str | None
    target: str | None


@dataclass(frozen=True)
class Broadcast:
    text: str
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class HelpRequested:
    participant: Participant
    breakout_id: str


@dataclass(frozen=True)
class Audited:
    action: str
    outcome: str
    actor: str | None
    subject: str | None
    details: Mapping[str, str | int | float | bool | None] = field(default_factory=dict)


Event = (
    Knocked
    | LobbyStatusChanged
    | LobbyLeft
    | Admitted
    | Joined
    | Rejected
    | Left
    | SessionEnded
    | BreakoutsChanged
    | RefusalsChanged
    | Moved
    | Broadcast
    | HelpRequested
    | Audited
)
