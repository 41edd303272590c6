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
updated in O(1) per group.

Times are seconds at the interface; the trendline works in milliseconds
internally because its constants (threshold, gains) are in those units.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

from sfu.policy.gcc_rates import Received

__all__ = ["NORMAL", "OVERUSING", "UNDERUSING", "DelayDetector"]

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

    def add_all(self, packets: Iterable[Received], now: float) -> None:
        """Add a feedback's received packets (finite times), in arrival order."""
        first_send = self._first_send
        last_send = self._last_send
        first_arrival = self._first_arrival
        last_arrival = self._last_arrival
        last_now = self._last_now
        previous = self._previous
        for packet in packets:
            send = packet[1]
            arrival = packet[3]
            if first_send <= send <= first_send + GROUP_S:
                # the common case: the current group goes on
                if send > last_send:
                    last_send = send
                last_arrival = arrival
                last_now = now
                continue
            if send < first_send - ARRIVAL_JUMP_S:
                # no group yet, or our send clock went back (a restart, a wrap): start afresh
                previous = None
                self._reordered = 0
                first_send = last_send = send
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
            if previous is not None:  # the current group is complete
                send_delta = last_send - previous[0]
                arrival_delta = last_arrival - previous[1]
                if abs(arrival_delta - (last_now - previous[2])) >= ARRIVAL_JUMP_S:
                    previous = None  # the receiver's clock jumped (or hostile feedback)
                    self._reordered = 0
                    first_send = NO_GROUP
                    continue
                if arrival_delta < 0:
                    self._reordered += 1
                    if self._reordered >= REORDERED_RESET:
                        previous = None
                        self._reordered = 0
                        first_send = NO_GROUP
                    continue
                self._reordered = 0
                self._update(send_delta, arrival_delta, arrival)
            previous = (last_send, last_arrival, last_now)
            first_send = last_send = send
            first_arrival = last_arrival = arrival
            last_now = now
        self._first_send = first_send
        self._last_send = last_send
        self._first_arrival = first_arrival
        self._last_arrival = last_arrival
        self._last_now = last_now
        self._previous = previous

    def _update(self, send_delta: float, arrival_delta: float, arrival: float) -> None:
        """One completed group: its deltas (s) and the arrival (s) of the packet after it."""
        arrival_ms = arrival * 1000.0
        send_delta_ms = send_delta * 1000.0
        delay_ms = arrival_delta * 1000.0 - send_delta_ms
        if self._deltas < MAX_DELTAS:
            self._deltas += 1
        first_ms = self._first_arrival_ms
        if first_ms is None:
            first_ms = self._first_arrival_ms = arrival_ms
        self._accumulated += delay_ms
        smoothed = self._smoothed = SMOOTHING * self._smoothed + NEW_WEIGHT * self._accumulated
        # the fitted line: add (x, smoothed), drop the oldest point beyond WINDOW
        x = arrival_ms - first_ms
        points = self._points
        points.append((x, smoothed))
        origin = self._origin
        if len(points) > WINDOW:
            old_x, old_y = points.popleft()
        else:
            old_x, old_y = origin, 0.0  # adds nothing to the sums below
        if len(points) == 1 or abs(x - origin) > REBASE_MS:
            self._rebase(points[0][0])
        else:
            dx = x - origin
            old_dx = old_x - origin
            self._sx += dx - old_dx
            self._sy += smoothed - old_y
            self._sxx += dx * dx - old_dx * old_dx
            self._sxy += dx * smoothed - old_dx * old_y
        trend = self._trend
        if len(points) == WINDOW:
            sx = self._sx
            denominator = self._sxx - sx * sx / WINDOW
            if not denominator <= FLAT_X:
                trend = (self._sxy - sx * self._sy / WINDOW) / denominator
        self._detect(trend, send_delta_ms, arrival_ms)

    def _rebase(self, origin: float) -> None:
        self._origin = origin
        sx = sy = sxx = sxy = 0.0
        for x, y in self._points:
            dx = x - origin
            sx += dx
            sy += y
            sxx += dx * dx
            sxy += dx * y
        self._sx, self._sy, self._sxx, self._sxy = sx, sy, sxx, sxy

    def _detect(self, trend: float, send_delta_ms: float, now_ms: float) -> None:
        deltas = self._deltas
        if deltas < 2:
            self.state = NORMAL
            return
        modified = (deltas if deltas < MIN_DELTAS else MIN_DELTAS) * trend * GAIN
        threshold = self.threshold
        if modified > threshold:
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
        elif modified < -threshold:
            self._overuse_ms = -1.0
            self._overuse_count = 0
            self.state = UNDERUSING
        else:
            self._overuse_ms = -1.0
            self._overuse_count = 0
            self.state = NORMAL
        self._trend = trend
        # adapt the threshold; a spike (e.g. a route change) must not move it
        last = self._last_threshold_update_ms
        self._last_threshold_update_ms = now_ms
        size = abs(modified)
        if last is None or size > threshold + MAX_ADAPT_OFFSET_MS:
            return
        k = K_DOWN if size < threshold else K_UP
        step_ms = min(max(now_ms - last, 0.0), MAX_ADAPT_STEP_MS)
        threshold += k * (size - threshold) * step_ms
        self.threshold = min(max(threshold, MIN_THRESHOLD_MS), MAX_THRESHOLD_MS)
