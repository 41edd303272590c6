"""Keep CPython's full collections short: freeze what survived one.

A full (generation 2) collection walks every container object of the
process.  With a few hundred transports (aiortc, aioice, SRTP, consumers,
their dicts and tasks) that is 90-140 ms on one core, measured at 1x400
(docs/benchmarks.md, "Event-loop stalls at 400 subscribers"): the event
loop stops for that long and every packet arriving meanwhile waits, which
is what a p99 of 88-109 ms at 0 % loss looked like.  Generations 0 and 1
take 1-8 ms and stay as they are.

`GcFreezer` moves the survivors of each full collection to the permanent
generation (`gc.freeze()`, CPython 3.7+): the next full collection only
walks what was promoted since, so its cost follows the recent churn, not
the size of the server.  It also freezes once when started (what the
imports and the start-up built).

The price: a reference cycle among frozen objects is not collected until
they are unfrozen.  A participant's objects that were frozen while it was
in a call become such garbage when it leaves.  So the freezer counts the
participants who left since the last thaw, and once they reach half of the
most participants since then (a large room ended, or a steady-size server
turned half of its people over: a clinic's day of short visits), everything
is unfrozen and collected at once, on a server that is now lighter or no
heavier.  The most participants, not those at the last freeze: a run of
visits that came and went between two full collections left its cycles
unfrozen but in the old generation, which CPython collects only once it
grew by a quarter of what it held at its last full collection, a count from
before the start's freeze (measured: three runs of 51 participants, +20 MB
of RSS each, and no full collection; docs/benchmarks.md, "What a departed
participant left behind").  Memory held this way is bounded by the objects of about half the
largest population since the last thaw, whatever the server's uptime.

The freeze happens in the gc callback at the end of the full collection
itself: then the young generations are empty and the old one holds only
what survived, so no garbage is frozen (`gc.freeze()` only moves lists;
the collector does not run again from its own callback).  `tick` (on the
SFU's clock) decides the thaws.
Freezing is process-wide, so there is one `FREEZER` per process; each
`LocalMedia` that starts with `MediaSettings.gc_freeze` uses it (`start`),
and the last one to stop removes the callback and unfreezes.  A process runs
one `LocalMedia` in production; tests may run several, which then share it.
"""

from __future__ import annotations

import gc
from typing import Any

__all__ = ["FREEZER", "GcFreezer"]


class GcFreezer:
    """See module doc.  The first `start` installs the gc callback, the last `stop` removes it."""

    def __init__(self) -> None:
        self.full_collections = 0  # seen since start
        self.freezes = 0
        self.thaws = 0
        self.frozen_for = 0  # the most participants since the last thaw
        self.participants = 0  # as of the last tick
        self.departed = 0  # participants who left since the last thaw
        self.users = 0

    def start(self) -> None:
        self.users += 1
        if self.users == 1:
            gc.callbacks.append(self._collected)
            self._freeze(0)

    def stop(self) -> None:
        """The last user gone: remove the callback and unfreeze (nothing stays frozen)."""
        if self.users == 0:
            return
        self.users -= 1
        if self.users == 0:
            if self._collected in gc.callbacks:
                gc.callbacks.remove(self._collected)
            gc.unfreeze()
            self.frozen_for = 0
            self.departed = 0

    def _collected(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info.get("generation") == 2:
            self.full_collections += 1
            self._freeze(self.participants)

    def left(self) -> None:
        """A participant left (its frozen objects may now be garbage)."""
        self.departed += 1

    def tick(self, participants: int) -> None:
        """On the clock: thaw once the departures since the last thaw reach half of the
        most participants since then (at a freeze or at a tick)."""
        self.participants = participants
        if not self.users:
            return
        # Not only at a freeze: a run of visits that started and ended between two full
        # collections left its cycles (transports, their send histories) in the old
        # generation, where CPython's own trigger reaches them late: its count of
        # long-lived objects dates from before the start's freeze.
        self.frozen_for = max(self.frozen_for, participants)
        if not self.frozen_for:
            return
        if self.departed >= max(1, (self.frozen_for + 1) // 2):
            gc.unfreeze()
            self.thaws += 1
            self.frozen_for = participants
            self.departed = 0
            # Collect now, while the load is down, rather than at the next full
            # collection, which would walk everything (the leftovers included) at
            # whatever load there is then; what survives is frozen again at its end.
            gc.collect()

    def _freeze(self, participants: int) -> None:
        gc.freeze()
        self.freezes += 1
        self.frozen_for = max(self.frozen_for, participants)


FREEZER = GcFreezer()
