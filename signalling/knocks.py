"""Knock limits: who may knock how often on a room's door."""

from __future__ import annotations

from common.clock import Clock
from common.config import RateLimit
from common.ratelimit import WindowLimiter

CEILING_FACTOR = 10  # the default per-address ceiling: this many times the anonymous limit


class KnockLimits:
    """Knocks per room: anonymous ones per address; token holders per identity, so a
    flood from behind a shared address (a clinic's NAT) never locks out a patient
    with a token; and a per-address ceiling over both, much larger than either."""

    def __init__(
        self,
        anonymous: RateLimit,
        identity: RateLimit,
        ceiling: RateLimit | None,
        clock: Clock,
    ) -> None:
        ceiling_count = anonymous.count * CEILING_FACTOR if ceiling is None else ceiling.count
        ceiling_s = anonymous.seconds if ceiling is None else ceiling.seconds
        self._anonymous = WindowLimiter(anonymous.count, anonymous.seconds, clock)
        self._identity = WindowLimiter(identity.count, identity.seconds, clock)
        self._ceiling = WindowLimiter(ceiling_count, ceiling_s, clock)

    def allow(self, address: str, identity: str | None, room_id: str) -> bool:
        """The narrower limit first, so knocks it refuses never use up the shared ceiling."""
        if identity is None:
            narrow = self._anonymous.allow((address, room_id))
        else:
            narrow = self._identity.allow((identity, room_id))
        return narrow and self._ceiling.allow((address, room_id))
