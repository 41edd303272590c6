"""Delay-based overuse detection of the bandwidth estimator (GCC, send side).

Two steps, as in libwebrtc's goog_cc (inter_arrival_delta.cc,
trendline_estimator.cc), done by `DelayDetector` in one pass over a
feedback's received packets:

- grouping: packets are grouped into send-time bursts (a group is every
  packet sent within 5 ms of its first one) and, when a group is complete,
  we take how much later it arrived than the previous group compared with
  how much later it was sent (the inter-group delay variation).  Packets
  that were sent earlier than the current group (reordered) are skipped;
  groups that arrive in the wrong order three times running, a jump of the
  receiver's clock by 3 s or more, or a send time 3 s before the current
  group (our clock was reset or wrapped) restart the grouping.
- trendline: those variations accumulate into a queuing-delay curve,
  smoothed (0.9); a line is fitted through the last 20 points and its slope
  (scaled by the number of samples and a gain of 4) is compared with an
  adaptive threshold: a growing queue is "overusing", a draining one
  "underusing".  The threshold follows the signal (slowly up, faster down,
  between 6 and 600) so that the detector neither starves against a
  loss-based flow nor reacts to noise.

Cost: this runs for every packet the SFU sends to a transport-cc
subscriber (each is reported once), so the loop keeps its state in locals
and does the trendline work only once per completed group (a handful of
arithmetic operations, no calls, no objects); the fitted line's sums are
updated in O(1) per group.  `new_detector` gives the C twin
(sfu/native/_gcc.c DelayDetector, the same states and thresholds) when
sfu.native's `_gcc` is compiled.

Times are seconds at the interface; the trendline works in milliseconds
internally because its constants (threshold, gains) are in those units.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Protocol, cast

__all__ = ["NORMAL", "OVERUSING", "UNDERUSING", "DelayDetector", "Detector", "new_detector"]

NORMAL = "normal"
OVERUSING = "overusing"
UNDERUSING = "underusing"

GROUP_S = 0.005  # packets sent within 5 ms of a group's first packet belong to it
BURST_S = 0.005  # ... as do packets arriving within 5 ms in a burst (even if sent later)
MAX_BURST_S = 0.1
ARRIVAL_JUMP_S = 3.0  # receiver clock jump that restarts the grouping
REORDERED_RESET = 3

WINDOW = 20
SMOOTHING = 0.9
NEW_WEIGHT = 1 - SMOOTHING
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
FLAT_X = 1e-9  # the fitted line's x spread below which the slope keeps its last value

NO_GROUP = math.inf  # first send time of "no current group" (see add_all)


class Detector(Protocol):
    """A delay detector: `DelayDetector` or its C twin (`sfu.native._gcc.DelayDetector`)."""

    @property
    def state(self) -> str: ...

    @property
    def threshold(self) -> float: ...

    def reset(self) -> None: ...

    def add_all(
        self, send_times: Sequence[float], arrivals: Sequence[float], now: float
    ) -> None: ...


def new_detector(native: ModuleType | None) -> Detector:
    """A fresh detector: the compiled one of `native` (sfu.native.load("_gcc")), else
    (None) the Python one; both give exactly the same states and thresholds."""
    return DelayDetector() if native is None else cast("Detector", native.DelayDetector())


class DelayDetector:
    """Send-time groups, their delay variation, trendline and overuse detector."""

    def __init__(self) -> None:
        # the trendline and detector (reset() keeps them; a new detector starts afresh)
        self.state = NORMAL
        self.threshold = INITIAL_THRESHOLD_MS
        self._deltas = 0
        self._first_arrival_ms: float | None = None
        self._accumulated = 0.0
        self._smoothed = 0.0
        self._trend = 0.0
        self._overuse_ms = -1.0
        self._overuse_count = 0
        self._last_threshold_update_ms: float | None = None
        # least-squares line through the last WINDOW (x, y) points: running sums
        # relative to an origin near the points (moved now and then) so that they
        # stay exact enough however long the stream runs
        self._points: deque[tuple[float, float]] = deque()
        self._origin = 0.0
        self._sx = self._sy = self._sxx = self._sxy = 0.0
        self.reset()

    def reset(self) -> None:
        """Forget the send-time groups (the trendline goes on)."""
        self._first_send = NO_GROUP  # the current (incomplete) group ...
        self._last_send = self._first_arrival = self._last_arrival = self._last_now = 0.0
        self._previous: tuple[float, float, float] | None = None  # (last send, arrival, now)
        self._reordered = 0

    def add_all(self, send_times: Iterable[float], arrivals: Iterable[float], now: float) -> None:
        """Add a feedback's received packets (finite times), in arrival order."""
        # the grouping
        first_send = self._first_send
        group_end = first_send + GROUP_S
        last_send = self._last_send
        first_arrival = self._first_arrival
        last_arrival = self._last_arrival
        last_now = self._last_now
        previous = self._previous  # the last complete group: (last send, arrival, now)
        has_previous = previous is not None
        previous_send, previous_arrival, previous_now = previous or (0.0, 0.0, 0.0)
        reordered = self._reordered
        # the trendline and detector
        state = self.state
        threshold = self.threshold
        deltas = self._deltas
        first_ms = self._first_arrival_ms
        accumulated = self._accumulated
        smoothed = self._smoothed
        last_trend = self._trend
        overuse_ms = self._overuse_ms
        overuse_count = self._overuse_count
        last_update_ms = self._last_threshold_update_ms
        points = self._points
        origin = self._origin
        sx, sy, sxx, sxy = self._sx, self._sy, self._sxx, self._sxy
        for send, arrival in zip(send_times, arrivals):  # noqa: B905 (same length)
            if first_send <= send <= group_end:
                # the common case: the current group goes on
                if send > last_send:
                    last_send = send
                last_arrival = arrival
                last_now = now
                continue
            if send < first_send - ARRIVAL_JUMP_S:
                # no group yet, or our send clock went back (a restart, a wrap): start afresh
                has_previous = False
                reordered = 0
                first_send = last_send = send
                group_end = first_send + GROUP_S
                first_arrival = last_arrival = arrival
                last_now = now
                continue
            if send < first_send:
                continue  # sent before the current group: out of order, ignored
            send_delta = send - last_send
            if send_delta == 0:
                same = True
            else:
                arrival_delta = arrival - last_arrival
                same = (
                    arrival_delta - send_delta < 0
                    and arrival_delta <= BURST_S
                    and arrival - first_arrival < MAX_BURST_S
                ) or not send - first_send > GROUP_S
            if same:  # sent later but arrived in the same burst
                if send > last_send:
                    last_send = send
                last_arrival = arrival
                last_now = now
                continue
            if has_previous:  # the current group is complete
                send_delta = last_send - previous_send
                arrival_delta = last_arrival - previous_arrival
                if abs(arrival_delta - (last_now - previous_now)) >= ARRIVAL_JUMP_S:
                    has_previous = False  # the receiver's clock jumped (or hostile feedback)
                    reordered = 0
                    first_send = group_end = NO_GROUP
                    continue
                if arrival_delta < 0:
                    reordered += 1
                    if reordered >= REORDERED_RESET:
                        has_previous = False
                        reordered = 0
                        first_send = group_end = NO_GROUP
                    continue
                reordered = 0
                # its delay variation (ms) accumulates, smoothed, into the trendline
                arrival_ms = arrival * 1000.0
                send_delta_ms = send_delta * 1000.0
                if deltas < MAX_DELTAS:
                    deltas += 1
                if first_ms is None:
                    first_ms = arrival_ms
                accumulated += arrival_delta * 1000.0 - send_delta_ms
                smoothed = SMOOTHING * smoothed + NEW_WEIGHT * accumulated
                # the fitted line: add (x, smoothed), drop the oldest point beyond WINDOW
                x = arrival_ms - first_ms
                points.append((x, smoothed))
                count = len(points)
                if count > WINDOW:
                    old_x, old_y = points.popleft()
                    count = WINDOW
                else:
                    old_x, old_y = origin, 0.0  # adds nothing to the sums below
                if count == 1 or abs(x - origin) > REBASE_MS:
                    origin = points[0][0]
                    sx, sy, sxx, sxy = _sums(points, origin)
                else:
                    dx = x - origin
                    old_dx = old_x - origin
                    sx += dx - old_dx
                    sy += smoothed - old_y
                    sxx += dx * dx - old_dx * old_dx
                    sxy += dx * smoothed - old_dx * old_y
                trend = last_trend
                if count == WINDOW:
                    denominator = sxx - sx * sx / WINDOW
                    if not denominator <= FLAT_X:
                        trend = (sxy - sx * sy / WINDOW) / denominator
                # the detector: the slope, scaled, against the adaptive threshold
                if deltas < 2:
                    state = NORMAL
                else:
                    modified = (deltas if deltas < MIN_DELTAS else MIN_DELTAS) * trend * GAIN
                    if modified > threshold:
                        if overuse_ms < 0:
                            overuse_ms = send_delta_ms / 2  # assume half the interval was overuse
                        else:
                            overuse_ms += send_delta_ms
                        overuse_count += 1
                        if (
                            overuse_ms > OVERUSE_TIME_MS
                            and overuse_count > 1
                            and trend >= last_trend
                        ):
                            overuse_ms = 0.0
                            overuse_count = 0
                            state = OVERUSING
                    elif modified < -threshold:
                        overuse_ms = -1.0
                        overuse_count = 0
                        state = UNDERUSING
                    else:
                        overuse_ms = -1.0
                        overuse_count = 0
                        state = NORMAL
                    last_trend = trend
                    # adapt the threshold; a spike (e.g. a route change) must not move it
                    size = abs(modified)
                    if last_update_ms is not None and not size > threshold + MAX_ADAPT_OFFSET_MS:
                        k = K_DOWN if size < threshold else K_UP
                        step_ms = arrival_ms - last_update_ms  # min(max(step, 0), MAX_ADAPT_STEP)
                        if step_ms < 0.0:
                            step_ms = 0.0
                        if step_ms > MAX_ADAPT_STEP_MS:
                            step_ms = MAX_ADAPT_STEP_MS
                        threshold += k * (size - threshold) * step_ms
                        if threshold < MIN_THRESHOLD_MS:
                            threshold = MIN_THRESHOLD_MS
                        if threshold > MAX_THRESHOLD_MS:
                            threshold = MAX_THRESHOLD_MS
                    last_update_ms = arrival_ms
            has_previous = True
            previous_send, previous_arrival, previous_now = last_send, last_arrival, last_now
            first_send = last_send = send
            group_end = first_send + GROUP_S
            first_arrival = last_arrival = arrival
            last_now = now
        self._first_send = first_send
        self._last_send = last_send
        self._first_arrival = first_arrival
        self._last_arrival = last_arrival
        self._last_now = last_now
        self._previous = (previous_send, previous_arrival, previous_now) if has_previous else None
        self._reordered = reordered
        self.state = state
        self.threshold = threshold
        self._deltas = deltas
        self._first_arrival_ms = first_ms
        self._accumulated = accumulated
        self._smoothed = smoothed
        self._trend = last_trend
        self._overuse_ms = overuse_ms
        self._overuse_count = overuse_count
        self._last_threshold_update_ms = last_update_ms
        self._origin = origin
        self._sx, self._sy, self._sxx, self._sxy = sx, sy, sxx, sxy


def _sums(
    points: Iterable[tuple[float, float]], origin: float
) -> tuple[float, float, float, float]:
    """The fitted line's running sums over `points`, x relative to `origin`."""
    sx = sy = sxx = sxy = 0.0
    for x, y in points:
        dx = x - origin
        sx += dx
        sy += y
        sxx += dx * dx
        sxy += dx * y
    return sx, sy, sxx, sxy
