"""Joins paced per SFU process: a bounded number of new transports connecting at once.

A new transport (a participant's first offer, or a new DTLS association)
costs the SFU a burst of work on the event loop and the socket that carry
everyone's media: the client's ICE checks (one every 20-50 ms per candidate
pair until one is nominated, each parsed, authenticated and answered), our
own triggered checks, then a DTLS handshake.  When a storm of joins meets a
saturated core, all of them progress at once and each slowly: round trips
take seconds, STUN and DTLS retransmissions add to the queue, many time out
together, and the media of those already in waits behind them.

Paced, at most `window` transports are connecting at once; the other offers
wait for their answer in arrival order (the client has nothing to send
before it has our answer, so a waiting join costs nothing).  The window
adapts, as a congestion window does: a join's time is mostly round trips,
not our CPU, so a fixed small window would make joins slow on a server with
time to spare, and a large one would not protect a saturated one.  While
joins are in progress the shell says every `TICK_S` whether this process is
behind (its media socket holds datagrams it has not read for a while, or
its event loop is late): behind, the window halves (not below `FLOOR`, at
most once every `SHRINK_EVERY_S`);
not behind, with joins waiting (the window is full), it grows by one if a
join finished since the last tick (the load of the joins admitted last shows
only once their clients have our answer: growth waits for evidence), up to
`limit`.  But a join must not starve: once the first queued join has
waited `STARVING_S`, the window grows by one every tick whatever the
load (protecting the calls in progress must not turn into refusing
joins).  Each slot is freed when its transport connects, fails or closes, or when it has been
held `hold_s` (a client that never connects must not block the others for
the whole connect timeout).  Joins then finish one after another, the work
in flight stays bounded, and ICE restarts, consent checks and media of
established transports never wait here.

Pure and synchronous, with an injected clock: `JoinPace` says who may go;
`sfu.transport.joingate` makes offers wait for it.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

# The window of a fresh process, its lower bound, how often it is adjusted, and
# how often at most it halves (once per round of joins, as TCP once per RTT).
START = 8
FLOOR = 4
TICK_S = 0.1
SHRINK_EVERY_S = 0.5
# Joins must not starve behind a server that stays behind (it may be busy
# with media alone): once the first queued join has waited this long, the
# window grows by one every tick whatever the load, so a join waits seconds,
# not until it is refused (web SDK: an answer within 15 s).  By one, not
# faster: a server that is truly overloaded would otherwise get the whole
# queue at once and time every join out (measured: 219 of 300).
STARVING_S = 4.0


class JoinState(enum.Enum):
    QUEUED = "queued"  # waiting for a slot, in arrival order
    CONNECTING = "connecting"  # holds a slot: its transport is being set up


@dataclass
class JoinStats:
    """What /metrics shows of the pacing (totals since the start)."""

    admitted: int = 0  # joins that got a slot
    queued: int = 0  # of those, joins that had to wait for it
    expired: int = 0  # slots freed because they were held `hold_s`
    abandoned: int = 0  # joins that left while queued
    wait_s: float = 0.0  # total time joins waited for a slot
    wait_max_s: float = 0.0
    shrunk: int = 0  # ticks that halved the window (the process was behind)
    starving: int = 0  # ticks that grew it because a join had waited STARVING_S


class JoinPace:
    """At most `window` joins connecting at once, the others queued (see module doc).

    `limit` is the most the window may grow to; 0 means no pacing: every
    join goes at once.
    """

    def __init__(self, limit: int, hold_s: float, start: int = START, floor: int = FLOOR) -> None:
        if limit < 0 or hold_s <= 0 or not 1 <= floor <= start:
            raise ValueError("limit >= 0, hold_s > 0 and 1 <= floor <= start, please")
        self.limit = limit
        self.hold_s = hold_s
        self.floor = min(floor, limit) if limit else floor
        self.window = min(start, limit) if limit else start
        self.stats = JoinStats()
        self._connecting: OrderedDict[Hashable, float] = OrderedDict()  # key -> since
        self._queue: OrderedDict[Hashable, float] = OrderedDict()  # key -> queued at
        self._finished = False  # a join released its slot since the last tick
        self._shrunk_at = float("-inf")

    @property
    def connecting(self) -> int:
        return len(self._connecting)

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def state(self, key: Hashable) -> JoinState | None:
        if key in self._connecting:
            return JoinState.CONNECTING
        if key in self._queue:
            return JoinState.QUEUED
        return None

    def position(self, key: Hashable) -> int:
        """1 for the next join to go, 0 when `key` is not queued."""
        for index, queued in enumerate(self._queue, start=1):
            if queued == key:
                return index
        return 0

    def request(self, key: Hashable, now: float) -> JoinState:
        """A join asks to connect: CONNECTING (go now) or QUEUED (wait for `released`).

        A key already known keeps its state (the same join asking twice).
        """
        known = self.state(key)
        if known is not None:
            return known
        if not self._queue and self._free():
            self._admit(key, now, now)
            return JoinState.CONNECTING
        self._queue[key] = now
        return JoinState.QUEUED

    def release(self, key: Hashable, now: float) -> list[Hashable]:
        """`key`'s transport connected, failed or closed, or it left the queue:
        the joins admitted in its place, in arrival order."""
        if self._connecting.pop(key, None) is not None:
            self._finished = True
        elif self._queue.pop(key, None) is not None:
            self.stats.abandoned += 1
        return self._fill(now)

    def expire(self, now: float) -> list[Hashable]:
        """Free the slots held `hold_s` or more; the joins admitted in their place."""
        for key, since in list(self._connecting.items()):
            if now - since >= self.hold_s:
                del self._connecting[key]
                self.stats.expired += 1
        return self._fill(now)

    @property
    def active(self) -> bool:
        """Whether joins are connecting or waiting (then the shell calls `adjust`)."""
        return bool(self._connecting or self._queue)

    def adjust(self, behind: bool, now: float) -> list[Hashable]:
        """One tick's verdict on this process: halve the window when `behind`,
        grow it when joins wait behind a full window; the joins admitted."""
        finished, self._finished = self._finished, False
        if self.limit == 0:
            return []
        if self._queue and now - next(iter(self._queue.values())) >= STARVING_S:
            self.window = min(self.limit, self.window + 1)
            self.stats.starving += 1
            return self._fill(now)
        if behind:
            if self.window > self.floor and now - self._shrunk_at >= SHRINK_EVERY_S:
                self.window = max(self.floor, self.window // 2)
                self._shrunk_at = now
                self.stats.shrunk += 1
            return []
        if finished and self._queue:  # joins wait, so the window is full
            self.window = min(self.limit, self.window + 1)
        return self._fill(now)

    def next_expiry(self) -> float | None:
        """When the oldest slot is freed by `expire` (None: no slot is held)."""
        for since in self._connecting.values():
            return since + self.hold_s
        return None

    def _free(self) -> bool:
        return self.limit == 0 or len(self._connecting) < self.window

    def _fill(self, now: float) -> list[Hashable]:
        admitted: list[Hashable] = []
        while self._queue and self._free():
            key, queued_at = self._queue.popitem(last=False)
            self._admit(key, queued_at, now)
            admitted.append(key)
        return admitted

    def _admit(self, key: Hashable, queued_at: float, now: float) -> None:
        self._connecting[key] = now
        stats = self.stats
        stats.admitted += 1
        waited = now - queued_at
        if waited > 0:
            stats.queued += 1
            stats.wait_s += waited
            stats.wait_max_s = max(stats.wait_max_s, waited)
