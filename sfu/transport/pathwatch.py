"""When to ask a client at once whether its path still works (pure, no I/O).

A client that was sending media (audio ~50 packets/s, video ~30-100, or the
transport-cc feedback of a receiver) and goes silent has probably lost its
path (a network change): a consent check now, with a timeout of a few round
trips, tells within about half a second. A client that sends fewer than
`MIN_WATCHED_PPS` packets/s (a receiver that sends only RTCP reports, about
one a second, or nothing at all) cannot be judged by its silence: its gaps
are its normal traffic, so it is checked only at the RFC 7675 pace (every
4-6 s, `IceConnection.consent_interval`); a receive-only client notices a
dead path itself (its browser's own consent checks go unanswered: the SDK
restarts ICE).
The rate is measured over the time since the counter last moved, so a
report a second reads as one packet a second. A check that is answered
during a silence (a muted camera and microphone, a paused sender) doubles
the silence needed before the next one, so a quiet but healthy client is
not checked on every poll. `sfu.transport.ice.IceConnection.query_consent`
polls this every `POLL_S` with the transport's traffic counter (through
`sfu.transport.consentclock`: one timer for all transports).
"""

from __future__ import annotations

# How often the consent loop reads the traffic counter.
POLL_S = 0.1
# A silence of this many packet gaps (at the client's recent rate) is suspect...
GAPS = 10
# ... but never less than this (a video encoder skipping frames, a short stall of
# the browser) nor more than this (a client that sends only RTCP).
MIN_SILENCE_S = 0.3
MAX_SILENCE_S = 1.0
# Below this rate a client's silence says nothing (RTCP reports only, or nothing):
# checked at the RFC 7675 pace only.
MIN_WATCHED_PPS = 5.0
# A check answered during a silence: wait up to this long before the next one.
MAX_QUIET_BACKOFF_S = 4.0
# How long a check may stay unanswered: a few round trips, within these bounds
# (a loaded browser can take a couple hundred milliseconds to answer).
MIN_TIMEOUT_S = 0.25
MAX_TIMEOUT_S = 1.0
# Smoothing of the packet rate and the round trip (the weight of a new sample).
WEIGHT = 0.3


class PathWatch:
    """The traffic of one client, polled: whether its silence calls for a check."""

    def __init__(self, now: float) -> None:
        self.rate = 0.0  # packets/s while the client sends (0: not known yet)
        self.rtt = 0.0  # s, of answered checks (0: none yet)
        self.heard = now  # when the counter last moved (or a check was answered)
        self.wait = MAX_SILENCE_S  # the silence that calls for a check now
        self._seen = -1
        self._moved = now  # when the counter last moved

    def poll(self, now: float, seen: int) -> bool:
        """The traffic counter at `now`; True when the client was silent long enough."""
        if seen != self._seen:
            if self._seen >= 0 and now > self._moved:
                sample = (seen - self._seen) / (now - self._moved)
                self.rate = sample if self.rate == 0 else self.rate + WEIGHT * (sample - self.rate)
            self._seen, self.heard, self._moved = seen, now, now
            self.wait = self.expected_silence()
        return self.watched() and now - self.heard >= self.wait

    def watched(self) -> bool:
        """Whether the client sends enough for its silence to call for a check."""
        return self.rate >= MIN_WATCHED_PPS

    def expected_silence(self) -> float:
        """The silence that is suspect at the client's recent packet rate."""
        if self.rate <= 0:
            return MAX_SILENCE_S
        return min(MAX_SILENCE_S, max(MIN_SILENCE_S, GAPS / self.rate))

    def answered(self, now: float, rtt: float) -> None:
        """A check was answered `rtt` s after it was sent: the path works."""
        self.rtt = rtt if self.rtt == 0 else self.rtt + WEIGHT * (rtt - self.rtt)
        if now - self.heard >= self.wait:  # quiet but healthy: check less often
            self.heard = now
            self.wait = min(MAX_QUIET_BACKOFF_S, self.wait * 2)

    def timeout(self) -> float:
        """How long to wait for the answer to a check."""
        return min(MAX_TIMEOUT_S, max(MIN_TIMEOUT_S, 4 * self.rtt))
