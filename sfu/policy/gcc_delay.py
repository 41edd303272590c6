"""Delay-based overuse detection of the bandwidth estimator (GCC, send side).

Two steps, as in libwebrtc's goog_cc (inter_arrival_delta.cc,
trendline_estimator.cc):

- `InterArrival` groups packets into send-time bursts (a group is every
  packet sent within 5 ms of its first one) and, when a group is complete,
  returns how much later it arrived than the previous group compared with
  how much later it was sent (the inter-group delay variation).  Packets
  that were sent earlier than the current group (reordered) are skipped;
  groups that arrive in the wrong order three times running, a jump of the
  receiver's clock by 3 s or more, or a send time 3 s before the current
  group (our clock was reset or wrapped) reset it.
- `TrendlineDetector` accumulates those variations into a queuing-delay
  curve, smooths it (0.9), fits a line through the last 20 points and
  compares the slope (scaled by the number of samples and a gain of 4) with
  an adaptive threshold: a growing queue is "overusing", a draining one
  "underusing".  The threshold follows the signal (slowly up, faster down,
  between 6 and 600) so that the detector neither starves against a
  loss-based flow nor reacts to noise.

Times are seconds at the interface; the detector works in milliseconds
internally because its constants (threshold, gains) are in those units.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["NORMAL", "OVERUSING", "UNDERUSING", "Deltas", "InterArrival", "TrendlineDetector"]

NORMAL = "normal"
OVERUSING = "overusing"
UNDERUSING = "underusing"

GROUP_S = 0.005  # packets sent within 5 ms of a group's first packet belong to it
BURST_S = 0.005  # ... as do packets arriving within 5 ms in a burst (even if sent later)
MAX_BURST_S = 0.1
ARRIVAL_JUMP_S = 3.0  # receiver clock jump that resets the grouping
REORDERED_RESET = 3


class Deltas(NamedTuple):
    send: float  # seconds between the last send times of two consecutive groups
    arrival: float  # seconds between their last arrivals
    size: int  # bytes of the newer group minus bytes of the older one


class _Group:
    __slots__ = ("first_arrival", "first_send", "last_arrival", "last_now", "last_send", "size")

    def __init__(self, send: float, arrival: float, now: float) -> None:
        self.first_send = send
        self.last_send = send
        self.first_arrival = arrival
        self.last_arrival = arrival
        self.last_now = now
        self.size = 0


class InterArrival:
    """Send-time groups and the delay variation between consecutive groups."""

    def __init__(self) -> None:
        self._current: _Group | None = None
        self._previous: _Group | None = None
        self._reordered = 0

    def reset(self) -> None:
        self._current = None
        self._previous = None
        self._reordered = 0

    def add_all(
        self, packets: Iterable[tuple[float, float, int]], now: float
    ) -> list[tuple[Deltas, float]]:
        """Add (send, arrival, size) in arrival order; the deltas of each completed group
        with the arrival time of the packet that completed it."""
        completed = []
        for send, arrival, size in packets:
            current = self._current
            if current is not None and current.first_send <= send <= current.first_send + GROUP_S:
                # the common case, same group (what `add` would do, without the calls)
                if send > current.last_send:
                    current.last_send = send
                current.last_arrival = arrival
                current.last_now = now
                current.size += size
                continue
            deltas = self.add(send, arrival, size, now)
            if deltas is not None:
                completed.append((deltas, arrival))
        return completed

    def add(self, send: float, arrival: float, size: int, now: float) -> Deltas | None:
        """Add one received packet; returns the deltas when it completes a group."""
        current = self._current
        if current is None:
            self._start(send, arrival, size, now)
            return None
        if send < current.first_send - ARRIVAL_JUMP_S:
            self.reset()  # our send clock went back (a restart, a wrap): start afresh
            self._start(send, arrival, size, now)
            return None
        if send < current.first_send:
            return None  # sent before the current group: out of order, ignored
        deltas = None
        if self._starts_new_group(current, send, arrival):
            previous = self._previous
            if previous is not None:
                deltas = Deltas(
                    current.last_send - previous.last_send,
                    current.last_arrival - previous.last_arrival,
                    current.size - previous.size,
                )
                if abs(deltas.arrival - (current.last_now - previous.last_now)) >= ARRIVAL_JUMP_S:
                    self.reset()  # the receiver's clock jumped (or hostile feedback)
                    return None
                if deltas.arrival < 0:
                    self._reordered += 1
                    if self._reordered >= REORDERED_RESET:
                        self.reset()
                    return None
                self._reordered = 0
            self._previous = current
            self._start(send, arrival, size, now)
            return deltas
        current.last_send = max(current.last_send, send)
        current.last_arrival = arrival
        current.last_now = now
        current.size += size
        return None

    def _start(self, send: float, arrival: float, size: int, now: float) -> None:
        group = _Group(send, arrival, now)
        group.size = size
        self._current = group

    @staticmethod
    def _starts_new_group(current: _Group, send: float, arrival: float) -> bool:
        if _in_burst(current, send, arrival):
            return False
        return send - current.first_send > GROUP_S


def _in_burst(current: _Group, send: float, arrival: float) -> bool:
    send_delta = send - current.last_send
    if send_delta == 0:
        return True
    arrival_delta = arrival - current.last_arrival
    return (
        arrival_delta - send_delta < 0
        and arrival_delta <= BURST_S
        and arrival - current.first_arrival < MAX_BURST_S
    )


WINDOW = 20
SMOOTHING = 0.9
GAIN = 4.0
MIN_DELTAS = 60
MAX_DELTAS = 1000
OVERUSE_TIME_MS = 10.0
INITIAL_THRESHOLD_MS = 12.5
MIN_THRESHOLD_MS = 6.0
MAX_THRESHOLD_MS = 600.0
K_UP = 0.0087
K_DOWN = 0.039
MAX_ADAPT_OFFSET_MS = 15.0
MAX_ADAPT_STEP_MS = 100.0
REBASE_MS = 100_000.0


class TrendlineDetector:
    """Trendline filter + adaptive-threshold overuse detector (libwebrtc's TrendlineEstimator)."""

    def __init__(self) -> None:
        self.state = NORMAL
        self.threshold = INITIAL_THRESHOLD_MS
        self._deltas = 0
        self._first_arrival_ms: float | None = None
        self._accumulated = 0.0
        self._smoothed = 0.0
        self._history = _LineFit(WINDOW)
        self._trend = 0.0
        self._overuse_ms = -1.0
        self._overuse_count = 0
        self._last_threshold_update_ms: float | None = None

    def update(self, deltas: Deltas, arrival: float) -> str:
        """Feed one group's deltas (arrival = that group's last arrival, s); returns the state."""
        arrival_ms = arrival * 1000.0
        send_delta_ms = deltas.send * 1000.0
        delay_ms = deltas.arrival * 1000.0 - send_delta_ms
        self._deltas = min(self._deltas + 1, MAX_DELTAS)
        if self._first_arrival_ms is None:
            self._first_arrival_ms = arrival_ms
        self._accumulated += delay_ms
        self._smoothed = SMOOTHING * self._smoothed + (1 - SMOOTHING) * self._accumulated
        self._history.add(arrival_ms - self._first_arrival_ms, self._smoothed)
        trend = self._trend
        if len(self._history) == WINDOW:
            trend = self._history.slope(trend)
        self._detect(trend, send_delta_ms, arrival_ms)
        return self.state

    def _detect(self, trend: float, send_delta_ms: float, now_ms: float) -> None:
        if self._deltas < 2:
            self.state = NORMAL
            return
        modified = min(self._deltas, MIN_DELTAS) * trend * GAIN
        if modified > self.threshold:
            if self._overuse_ms < 0:
                self._overuse_ms = send_delta_ms / 2  # assume half the interval was overuse
            else:
                self._overuse_ms += send_delta_ms
            self._overuse_count += 1
            if (
                self._overuse_ms > OVERUSE_TIME_MS
                and self._overuse_count > 1
                and trend >= self._trend
            ):
                self._overuse_ms = 0.0
                self._overuse_count = 0
                self.state = OVERUSING
        elif modified < -self.threshold:
            self._overuse_ms = -1.0
            self._overuse_count = 0
            self.state = UNDERUSING
        else:
            self._overuse_ms = -1.0
            self._overuse_count = 0
            self.state = NORMAL
        self._trend = trend
        self._adapt_threshold(modified, now_ms)

    def _adapt_threshold(self, modified: float, now_ms: float) -> None:
        last = self._last_threshold_update_ms
        self._last_threshold_update_ms = now_ms
        if last is None or abs(modified) > self.threshold + MAX_ADAPT_OFFSET_MS:
            return  # a spike (e.g. a route change) must not move the threshold
        k = K_DOWN if abs(modified) < self.threshold else K_UP
        step_ms = min(max(now_ms - last, 0.0), MAX_ADAPT_STEP_MS)
        threshold = self.threshold + k * (abs(modified) - self.threshold) * step_ms
        self.threshold = min(max(threshold, MIN_THRESHOLD_MS), MAX_THRESHOLD_MS)


class _LineFit:
    """Least-squares line through the last `size` (x, y) points, in O(1) per point.

    Running sums are kept relative to an origin near the points (moved now and
    then) so that they stay exact enough however long the stream runs.
    """

    def __init__(self, size: int) -> None:
        self._points: deque[tuple[float, float]] = deque()
        self._size = size
        self._origin = 0.0
        self._sx = self._sy = self._sxx = self._sxy = 0.0

    def __len__(self) -> int:
        return len(self._points)

    def add(self, x: float, y: float) -> None:
        points = self._points
        points.append((x, y))
        if len(points) > self._size:
            old_x, old_y = points.popleft()
        else:
            old_x, old_y = self._origin, 0.0  # adds nothing to the sums below
        if len(points) == 1 or abs(x - self._origin) > REBASE_MS:
            self._rebase(points[0][0])
            return
        dx = x - self._origin
        old_dx = old_x - self._origin
        self._sx += dx - old_dx
        self._sy += y - old_y
        self._sxx += dx * dx - old_dx * old_dx
        self._sxy += dx * y - old_dx * old_y

    def _include(self, x: float, y: float, sign: float) -> None:
        dx = x - self._origin
        self._sx += sign * dx
        self._sy += sign * y
        self._sxx += sign * dx * dx
        self._sxy += sign * dx * y

    def _rebase(self, origin: float) -> None:
        self._origin = origin
        self._sx = self._sy = self._sxx = self._sxy = 0.0
        for x, y in self._points:
            self._include(x, y, 1.0)

    def slope(self, fallback: float) -> float:
        """The slope of the fitted line; `fallback` when x does not vary."""
        n = len(self._points)
        denominator = self._sxx - self._sx * self._sx / n
        if denominator <= 1e-9:
            return fallback
        return (self._sxy - self._sx * self._sy / n) / denominator
