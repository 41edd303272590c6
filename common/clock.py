"""The clock every shared part takes injected, so tests can move time by hand.

waiting_room keeps its own identical Protocol (the domain imports nothing of
ours); both are structural, so one function or fake satisfies both.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def __call__(self) -> float:
        """Seconds since the epoch."""
        ...


def wall_clock() -> float:
    return time.time()
