"""What a transport sent, by transport-wide sequence number, for its TWCC feedback.

Every RTP packet a subscriber transport sends (forwarded media,
retransmissions, padding probes) gets the next transport-wide sequence
number (`take`), and `SendHistory` remembers when it left, how big it was
(RTP bytes: the estimator adds the SRTP and IP/UDP overhead itself) and
which probe cluster it belonged to: a ring of `size` slots whose entries
are also ignored past `max_age_s`, so memory and the work per feedback stay
bounded whatever the peer does.

The ring is one flat `array('d')` of `STRIDE` (4) doubles per slot:
sequence, send time, size, probe cluster (every one an integer or a time,
exact in a double); a free slot's sequence is NaN, which equals no sequence
number.  Each forwarded copy writes its slot in place (sfu.native._fanout
does it in C): no tuple, float or int is allocated per copy and none is freed
when the ring wraps, nothing for the garbage collector to count or walk, and a
slot is 32 bytes of one cache line instead of four objects (160 bytes) spread
over the heap: 256 kB per transport instead of 1.3 MB.

`columns` turns one transport-cc feedback into the parallel columns the
bandwidth estimator reads (`BandwidthEstimator.on_feedback_arrays`): every
packet of a feedback is one the subscriber was sent, so this runs for every
forwarded copy.  The usual feedback (every packet remembered, the ring not
wrapping inside it, only 1-byte receive deltas) is done without a Python
step per packet: the ring's columns are read as strided slices, the arrival times
are a running sum of the delta bytes (`itertools.accumulate`), the received
entries are cleared by one slice assignment.  Anything else takes the
per-packet path (`_columns_per_packet`), which says the same about the same
feedback (tests/test_sfu_sendhistory.py holds them to it).  When sfu.native's
`_gcc` is compiled, every feedback is read by its C twin of the per-packet
path (`_gcc.history_columns`: the same columns, the same ring afterwards).
`results` is the same as `PacketResult`s (tests, tools).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from itertools import accumulate, repeat
from operator import getitem, mul, truediv
from typing import Literal, NamedTuple

from sfu.native import load
from sfu.packet.rtcp import TransportCc
from sfu.packet.twcc import DELTA_US, TICKS_PER_REFERENCE, receive_times, unwrap_reference
from sfu.policy.gcc import PacketResult

__all__ = ["EMPTY", "STRIDE", "Columns", "SendHistory"]

_Entry = tuple[int, float, int, int]  # sequence, send time, size, probe cluster
STRIDE = 4  # doubles per ring slot: sequence, send time, size, probe cluster
EMPTY = math.nan  # a free slot's sequence: equal to none

_LARGE_DELTA = b"\x02"  # a status symbol: received, with a 2-byte (large or negative) delta
_LOST = b"\x00"


class Columns(NamedTuple):
    """One feedback's packets we remember, in sequence order, as parallel sequences
    (the fields of `PacketResult`, one entry per packet)."""

    sequences: Sequence[int]
    send_times: Sequence[float]
    sizes: Sequence[int]
    arrivals: Sequence[float | None]
    probes: Sequence[int]

    def results(self) -> list[PacketResult]:
        return [PacketResult(*row) for row in zip(*self, strict=True)]


class SendHistory:
    """The last `size` packets sent on one transport (see module doc)."""

    __slots__ = (
        "_native_columns",
        "_reference",
        "feedbacks",
        "mask",
        "max_age_s",
        "next",
        "ring",
        "unknown",
    )

    def __init__(self, size: int = 8192, max_age_s: float = 2.0) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError("the history size must be a power of two")
        self.max_age_s = max_age_s
        self.next = 0  # the next transport-wide sequence number, unwrapped
        self.feedbacks = 0
        self.unknown = 0  # reported packets we have no record of (too old, never sent)
        self._reference: int | None = None  # the receiver's reference time, unwrapped
        # Public for the per-copy send path, which stores entries inline.
        self.mask = size - 1
        self.ring = array("d", (EMPTY, 0.0, 0.0, 0.0)) * size  # STRIDE doubles a slot
        native = load("_gcc")  # `_columns_per_packet`'s loop in C, else None
        self._native_columns = None if native is None else native.history_columns

    def take(self) -> int:
        """The next sequence number (write its low 16 bits in the packet)."""
        seq = self.next
        self.next = seq + 1
        return seq

    def add(self, seq: int, now: float, size: int, probe: int = -1) -> None:
        at = (seq & self.mask) * STRIDE
        ring = self.ring
        ring[at] = seq
        ring[at + 1] = now
        ring[at + 2] = size
        ring[at + 3] = probe

    def entries(self) -> list[_Entry | None]:
        """Each slot as (sequence, send time, size, probe cluster), None when free."""
        ring = self.ring
        out: list[_Entry | None] = []
        for at in range(0, len(ring), STRIDE):
            seq = ring[at]
            free = math.isnan(seq)
            out.append(
                None if free else (int(seq), ring[at + 1], int(ring[at + 2]), int(ring[at + 3]))
            )
        return out

    def results(self, fb: TransportCc, now: float) -> list[PacketResult]:
        """`columns` as one `PacketResult` per packet."""
        columns = self.columns(fb, now)
        return [] if columns is None else columns.results()

    def columns(self, fb: TransportCc, now: float) -> Columns | None:
        """The reported packets we remember, in sequence order (None: not one).

        A packet reported received is answered once (a repeated report is
        skipped); one reported lost stays, as a later feedback may still
        report its late arrival.  A feedback about more packets than the
        history holds yields nothing (bounded work per datagram).
        """
        self.feedbacks += 1
        count = fb.status_count
        if count > self.mask + 1:
            # More than we remember (or any receiver reports in 100 ms): a
            # run-length claim costing 2 bytes per 8191 statuses, not worth expanding.
            self.unknown += count
            return None
        self._reference = reference = unwrap_reference(self._reference, fb.reference_time)
        if self._native_columns is not None:
            columns = self._columns_native(fb, reference, now)
            if columns is not False:
                return columns
        if _LARGE_DELTA not in fb.symbols:
            columns = self._columns_at_once(fb, reference, now)
            if columns is not None:
                return columns
        return self._columns_per_packet(fb, reference, now)

    def _columns_at_once(self, fb: TransportCc, reference: int, now: float) -> Columns | None:
        """`columns` without a Python step per packet, or None (the caller then takes the
        per-packet path) unless every reported packet is one we remember, the ring does
        not wrap inside the feedback and the receive deltas are all 1-byte."""
        newest = self.next - 1
        count = fb.status_count
        first = newest - ((newest - fb.base_seq) & 0xFFFF)
        start = first & self.mask
        end = start + count
        ring = self.ring
        if first < 0 or first + count - 1 > newest or end > self.mask + 1:
            return None
        block = ring[start * STRIDE : end * STRIDE]
        seqs = block[0::STRIDE]
        if seqs != array("d", range(first, first + count)):
            return None  # free, overwritten by newer packets, or never sent
        send_times = block[1::STRIDE].tolist()
        if min(send_times) < now - self.max_age_s:
            return None
        ticks = accumulate(fb.deltas, initial=reference * TICKS_PER_REFERENCE)
        next(ticks)  # the reference itself
        # the per-packet path's `(ticks * DELTA_US) / 1e6`, exactly
        times = list(map(truediv, map(mul, ticks, repeat(DELTA_US)), repeat(1e6)))
        symbols = fb.symbols
        arrivals: Sequence[float | None] = times
        if _LOST in symbols:
            got = iter(times)
            arrivals = [next(got) if s else None for s in symbols]
            # received (symbol 1) slots freed, lost (0) ones kept: (seq, EMPTY)[symbol]
            kept = map(getitem, zip(seqs, repeat(EMPTY)), symbols)
            ring[start * STRIDE : end * STRIDE : STRIDE] = array("d", kept)
        else:
            ring[start * STRIDE : end * STRIDE : STRIDE] = array("d", repeat(EMPTY, count))
        sizes = list(map(int, block[2::STRIDE]))
        probes = list(map(int, block[3::STRIDE]))
        return Columns(list(range(first, first + count)), send_times, sizes, arrivals, probes)

    def _columns_native(
        self, fb: TransportCc, reference: int, now: float
    ) -> Columns | Literal[False] | None:
        """`_columns_per_packet` in C (`_gcc.history_columns`, the same columns and ring);
        False when the reference time is beyond its range (the Python path then)."""
        assert self._native_columns is not None
        newest, oldest = self.next - 1, now - self.max_age_s
        out = self._native_columns(
            self.ring, self.mask, newest, oldest, fb.base_seq, fb.symbols, fb.deltas, reference
        )
        if out is None:
            return False
        sequences, send_times, sizes, arrivals, probes, unknown = out
        self.unknown += unknown
        if not sequences:
            return None
        return Columns(sequences, send_times, sizes, arrivals, probes)

    def _columns_per_packet(self, fb: TransportCc, reference: int, now: float) -> Columns | None:
        ring, mask = self.ring, self.mask
        newest = self.next - 1
        oldest = now - self.max_age_s
        sequences: list[int] = []
        send_times: list[float] = []
        sizes: list[int] = []
        arrivals: list[float | None] = []
        probes: list[int] = []
        unknown = 0
        for seq16, arrival_us in receive_times(fb, reference):
            seq = newest - ((newest - seq16) & 0xFFFF)
            at = (seq & mask) * STRIDE
            if ring[at] != seq or ring[at + 1] < oldest:  # a free slot's NaN equals none
                unknown += 1
                continue
            sequences.append(seq)
            send_times.append(ring[at + 1])
            sizes.append(int(ring[at + 2]))
            probes.append(int(ring[at + 3]))
            if arrival_us is None:
                arrivals.append(None)
            else:
                arrivals.append(arrival_us / 1e6)
                ring[at] = EMPTY
        self.unknown += unknown
        if not sequences:
            return None
        return Columns(sequences, send_times, sizes, arrivals, probes)
