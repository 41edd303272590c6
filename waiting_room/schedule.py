"""The appointment and its join window: 30 min before the start to 2 h after the end."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from waiting_room.errors import OUTSIDE_JOIN_WINDOW, RoomError

OPENS_BEFORE_S = 30 * 60
CLOSES_AFTER_S = 2 * 60 * 60


class RoomStatus(enum.Enum):
    SCHEDULED = "scheduled"
    OPEN = "open"
    ENDED = "ended"


@dataclass(frozen=True)
class Schedule:
    starts_at: float
    ends_at: float

    def __post_init__(self) -> None:
        if self.ends_at <= self.starts_at:
            raise ValueError("an appointment must end after it starts")

    @property
    def opens_at(self) -> float:
        return self.starts_at - OPENS_BEFORE_S

    @property
    def closes_at(self) -> float:
        return self.ends_at + CLOSES_AFTER_S

    def status(self, now: float) -> RoomStatus:
        if now < self.opens_at:
            return RoomStatus.SCHEDULED
        if now > self.closes_at:
            return RoomStatus.ENDED
        return RoomStatus.OPEN

    def check(self, now: float) -> None:
        if self.status(now) is not RoomStatus.OPEN:
            word = "opens" if now < self.opens_at else "closed"
            raise RoomError(
                OUTSIDE_JOIN_WINDOW,
                f"this visit {word} outside its join window",
                {"opens_at": self.opens_at, "closes_at": self.closes_at},
            )
