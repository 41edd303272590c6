"""Is a worker still alive? Judged so that a late judge is not taken for a dead worker.

The pool's heartbeat runs on the signalling process's event loop.  When that
loop stalls (thousands of connections to accept, a long collection, a slow
disk), its clock keeps running while it cannot send pings or read the
answers: judged by that clock alone, every healthy worker looks dead once
the stall passes the timeout, and every call's media is closed for nothing.

`Silence` counts only the time the judge itself was on time.  Each beat adds
the time since the previous beat (or since the last answer, if later), but
never more than `LATE_BEAT` beats' worth: a stall of any length counts as
one late beat, and the lateness beyond that is kept apart (`judge_late_s`).
A worker that is really gone (killed, stopped, hung) stays silent beat after
beat while the judge is on time, and is lost after `timeout_s` of counted
silence.  Pure: the caller passes the clock's readings.
"""

from __future__ import annotations

LATE_BEAT = 1.5  # the most one beat may count, in beats


class Silence:
    """How long a worker has been silent, in time the judge was on time (see module doc)."""

    def __init__(self, beat_s: float, timeout_s: float, now: float) -> None:
        if beat_s <= 0 or timeout_s <= beat_s * LATE_BEAT:
            raise ValueError(
                f"the heartbeat timeout ({timeout_s} s) must exceed {LATE_BEAT} beats ({beat_s} s)"
            )
        self.beat_s = beat_s
        self.timeout_s = timeout_s
        self.silent_s = 0.0
        self.judge_late_s = 0.0  # stall time not held against the worker, in all
        self.last_late_s = 0.0  # of it, at the last beat
        self._since = now
        self._last_beat = now

    def heard(self, now: float) -> None:
        """The worker answered (or sent anything): it was alive just now."""
        self.silent_s = 0.0
        self._since = max(self._since, now)

    def beat(self, now: float) -> bool:
        """One heartbeat of the judge; True when the worker is to be declared lost."""
        most = self.beat_s * LATE_BEAT
        self.last_late_s = max(0.0, now - self._last_beat - most)
        self.judge_late_s += self.last_late_s
        self.silent_s += min(max(0.0, now - self._since), most)
        self._since = self._last_beat = now
        return self.silent_s > self.timeout_s
