"""When to tell a client the SFU's estimate of its downlink (`downlink` message).

Only when the estimate moved by at least `min_change` (10 %) since the last
report, and at most once per `min_interval_s` (1 s): a client shows it (the
reference client's "weak connection"), the network lab records it, and
neither wants a message per feedback packet. Pure: the caller passes the clock.
"""

from __future__ import annotations

__all__ = ["DownlinkReports"]


class DownlinkReports:
    """One subscriber's reports: `update` returns the kbit/s to send now, or None."""

    def __init__(self, min_change: float = 0.10, min_interval_s: float = 1.0) -> None:
        self.min_change = min_change
        self.min_interval_s = min_interval_s
        self.reported_kbps: int | None = None
        self._at = float("-inf")

    def update(self, estimate_bps: int, now: float) -> int | None:
        kbps = max(0, round(estimate_bps / 1000))
        if now - self._at < self.min_interval_s:
            return None
        last = self.reported_kbps
        if last is not None and abs(kbps - last) < self.min_change * max(last, 1):
            return None
        self.reported_kbps = kbps
        self._at = now
        return kbps
