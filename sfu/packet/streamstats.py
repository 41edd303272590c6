"""What the SFU learns from a publisher's packets: loss, jitter, missing packets.

`ReceiveStats` keeps the RFC 3550 (appendix A.3 and A.8) receiver
statistics of one incoming stream for its receiver reports.
`NackGenerator` notices sequence gaps as packets arrive and says which
sequence numbers to NACK now and which to ask again, like libwebrtc's
NackModule: a missing packet is asked for at once, again every retry
interval, at most `max_tries` times, and forgotten after `max_age`.

Both are pure and cheap in the common case (the next packet in order).
"""

from __future__ import annotations

from dataclasses import dataclass

from sfu import native

MAX_GAP = 512  # a larger jump is a restart of the stream, not loss
MAX_MISSING = 256


@dataclass(frozen=True)
class ReceptionReport:
    """One report block's worth of statistics (RFC 3550 6.4.1)."""

    fraction_lost: int  # 0..255
    cumulative_lost: int
    highest_sequence: int  # extended
    jitter: int  # in timestamp units
    lsr: int
    dlsr: int  # 1/65536 s


class ReceiveCorePython:
    """What every packet of a stream updates (sequence numbers already unwrapped).

    `ReceiveStats` adds the reports; its base is this, or the compiled twin
    `sfu.native._stats.ReceiveCore` when built (the same values, jitter included).
    """

    __slots__ = ("_base", "_clock_rate", "_jitter", "_transit", "bytes", "max_seq", "received")

    def __init__(self, clock_rate: int) -> None:
        self._clock_rate = clock_rate
        self._base = -1
        self.max_seq = -1
        self.received = 0
        self.bytes = 0
        self._jitter = 0.0
        self._transit: float | None = None

    def add(self, ext_seq: int, timestamp: int, size: int, now: float) -> None:
        if self._base < 0:
            self._base = ext_seq
            self.max_seq = ext_seq
        elif ext_seq > self.max_seq:
            self.max_seq = ext_seq
        self.received += 1
        self.bytes += size
        transit = now * self._clock_rate - timestamp
        last = self._transit
        self._transit = transit
        if last is not None:
            d = abs(transit - last)
            # A timestamp wrap or a new stream would look like a huge jitter.
            if d < self._clock_rate * 10:
                self._jitter += (d - self._jitter) / 16.0


class StatsReports:
    """The report side of `ReceiveStats` (RFC 3550 6.4.1), on either base."""

    # The base's (ReceiveCorePython or its compiled twin):
    _clock_rate: int
    _base: int
    _jitter: float
    max_seq: int
    received: int
    bytes: int
    # Its own:
    _expected_prior: int
    _received_prior: int
    _lsr: int
    _lsr_time: float

    def _start_reports(self) -> None:
        self._expected_prior = 0
        self._received_prior = 0
        self._lsr = 0
        self._lsr_time = 0.0

    def sender_report(self, ntp_middle: int, now: float) -> None:
        """A sender report arrived; its NTP middle 32 bits feed LSR/DLSR."""
        self._lsr = ntp_middle
        self._lsr_time = now

    @property
    def jitter_s(self) -> float:
        return self._jitter / self._clock_rate

    @property
    def expected(self) -> int:
        return 0 if self._base < 0 else self.max_seq - self._base + 1

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)

    def report(self, now: float) -> ReceptionReport:
        """Statistics for a report block; resets the fraction-lost interval."""
        expected = self.expected
        interval_expected = expected - self._expected_prior
        interval_received = self.received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.received
        interval_lost = interval_expected - interval_received
        fraction = 0
        if interval_expected > 0 and interval_lost > 0:
            fraction = min(255, (interval_lost << 8) // interval_expected)
        dlsr = int((now - self._lsr_time) * 65536) if self._lsr else 0
        return ReceptionReport(
            fraction_lost=fraction,
            cumulative_lost=min(self.lost, 0x7FFFFF),
            highest_sequence=max(self.max_seq, 0) & 0xFFFFFFFF,
            jitter=int(self._jitter),
            lsr=self._lsr,
            dlsr=dlsr & 0xFFFFFFFF,
        )


_native = native.load("_stats")
_Core: type[ReceiveCorePython] = ReceiveCorePython if _native is None else _native.ReceiveCore


class ReceiveStatsPython(StatsReports, ReceiveCorePython):
    """`ReceiveStats` on the pure-Python base (for comparing the twins)."""

    def __init__(self, clock_rate: int) -> None:
        super().__init__(clock_rate)
        self._start_reports()


class ReceiveStats(StatsReports, _Core):  # type: ignore[valid-type,misc]
    """Receiver statistics of one RTP stream (sequence numbers already unwrapped)."""

    def __init__(self, clock_rate: int) -> None:
        super().__init__(clock_rate)
        self._start_reports()


class NackGenerator:
    """Tracks missing sequence numbers of one stream (extended numbers)."""

    __slots__ = ("_missing", "_newest", "max_age", "max_tries", "retry_interval")

    def __init__(self, *, retry_interval: float = 0.1, max_tries: int = 3, max_age: float = 1.0):
        self._newest = -1
        # ext seq -> [first noticed, last asked, times asked]
        self._missing: dict[int, list[float]] = {}
        self.retry_interval = retry_interval
        self.max_tries = max_tries
        self.max_age = max_age

    @property
    def missing(self) -> list[int]:
        return sorted(self._missing)

    def add(self, ext_seq: int, now: float) -> list[int]:
        """Record an arrival; returns the sequence numbers to NACK right away."""
        newest = self._newest
        if newest < 0 or ext_seq == newest + 1:
            self._newest = ext_seq
            return []
        if ext_seq <= newest:
            self._missing.pop(ext_seq, None)  # a retransmission or a late packet
            return []
        self._newest = ext_seq
        if ext_seq - newest > MAX_GAP:
            self._missing.clear()  # the stream restarted; nothing to recover
            return []
        lost = list(range(newest + 1, ext_seq))
        for seq in lost:
            self._missing[seq] = [now, now, 1.0]
        self._trim()
        return lost

    def due(self, now: float) -> list[int]:
        """Sequence numbers to ask for again now; forgets the hopeless ones."""
        again = []
        for seq, entry in list(self._missing.items()):
            first, last, tries = entry
            if now - first > self.max_age or tries >= self.max_tries:
                del self._missing[seq]
            elif now - last >= self.retry_interval:
                entry[1] = now
                entry[2] = tries + 1
                again.append(seq)
        return again

    def _trim(self) -> None:
        excess = len(self._missing) - MAX_MISSING
        if excess > 0:
            for seq in sorted(self._missing)[:excess]:
                del self._missing[seq]
