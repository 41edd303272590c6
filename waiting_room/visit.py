"""One visit of a room, as integrators see it: from the first host's join to its end.

Kept with the room (and stored with it, so a restart or a takeover keeps the
start time and counts), and noted from the events each command returns:
`note` says when a visit starts (the first host joins) and ends (the host
ends it for all, the join window closes, or the last person leaves).
Pure: no I/O, times come from the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace

from waiting_room.events import Admitted, Event, Joined, Knocked, Left, Rejected, SessionEnded
from waiting_room.participant import Participant

ENDED = "ended"  # a host (or an admin, or the join window) ended it for all
EMPTY = "empty"  # the last participant left


@dataclass
class Visit:
    started_at: float | None = None
    knocks: int = 0
    admitted: int = 0
    rejected: int = 0
    removed: int = 0
    joined: int = 0  # joins of hosts and guests alike
    peak: int = 0  # most participants in the room at once

    def counts(self) -> dict[str, int]:
        data = asdict(self)
        del data["started_at"]
        return data

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, float | int | None] | None) -> Visit:
        return cls(**data) if data else cls()  # type: ignore[arg-type]


@dataclass(frozen=True)
class VisitStarted:
    host: Participant  # the host whose join started it
    at: float


@dataclass(frozen=True)
class VisitEnded:
    started_at: float
    at: float
    reason: str  # ENDED or EMPTY
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return round(self.at - self.started_at, 3)


VisitChange = VisitStarted | VisitEnded


def note(
    visit: Visit, events: Iterable[Event], now: float, joined_now: Callable[[], int], empty: bool
) -> tuple[Visit, list[VisitChange]]:
    """The visit after `events` (the room then has `joined_now()` in it, asked only when
    someone joined; or nobody at all when `empty`), and whether it started or ended."""
    current = replace(visit)
    changes: list[VisitChange] = []
    for event in events:
        match event:
            case Knocked():
                current.knocks += 1
            case Admitted(people):
                current.admitted += len(people)
            case Rejected():
                current.rejected += 1
            case Left(_, "removed", _):
                current.removed += 1
            case Joined(people):
                current.joined += len(people)
                current.peak = max(current.peak, joined_now())
                host = next((p for p in people if p.is_host), None)
                if current.started_at is None and host is not None:
                    current.started_at = now
                    changes.append(VisitStarted(host, now))
            case SessionEnded():
                current, ended = _end(current, now, ENDED)
                changes.extend(ended)
    if empty and current.started_at is not None:
        current, ended = _end(current, now, EMPTY)
        changes.extend(ended)
    return current, changes


def _end(visit: Visit, now: float, reason: str) -> tuple[Visit, list[VisitChange]]:
    if visit.started_at is None:
        return Visit(), []
    return Visit(), [VisitEnded(visit.started_at, now, reason, visit.counts())]
