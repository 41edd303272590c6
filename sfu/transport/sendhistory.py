"""What a transport sent, by transport-wide sequence number, for its TWCC feedback.

Every RTP packet a subscriber transport sends (forwarded media,
retransmissions, padding probes) gets the next transport-wide sequence
number (`take`), and `SendHistory` remembers when it left, how big it was
(RTP bytes: the estimator adds the SRTP and IP/UDP overhead itself) and
which probe cluster it belonged to: a ring of `size` slots (one tuple per
packet, nothing else allocated) whose entries are also ignored past
`max_age_s`, so memory and the work per feedback stay bounded whatever the
peer does.  `results` turns one transport-cc feedback into the
`PacketResult`s the bandwidth estimator (sfu.policy.gcc) reads.
"""

from __future__ import annotations

from sfu.packet.rtcp import TransportCc
from sfu.packet.twcc import receive_times, unwrap_reference
from sfu.policy.gcc import PacketResult

__all__ = ["SendHistory"]

_Entry = tuple[int, float, int, int]  # sequence, send time, size, probe cluster


class SendHistory:
    """The last `size` packets sent on one transport (see module doc)."""

    __slots__ = ("_reference", "feedbacks", "mask", "max_age_s", "next", "ring", "unknown")

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
        self.ring: list[_Entry | None] = [None] * size

    def take(self) -> int:
        """The next sequence number (write its low 16 bits in the packet)."""
        seq = self.next
        self.next = seq + 1
        return seq

    def add(self, seq: int, now: float, size: int, probe: int = -1) -> None:
        self.ring[seq & self.mask] = (seq, now, size, probe)

    def results(self, fb: TransportCc, now: float) -> list[PacketResult]:
        """One `PacketResult` per reported packet we remember, in sequence order.

        A packet reported received is answered once (a repeated report is
        skipped); one reported lost stays, as a later feedback may still
        report its late arrival.  A feedback about more packets than the
        history holds yields nothing (bounded work per datagram).
        """
        self.feedbacks += 1
        ring, mask = self.ring, self.mask
        if fb.status_count > len(ring):
            # More than we remember (or any receiver reports in 100 ms): a
            # run-length claim costing 2 bytes per 8191 statuses, not worth expanding.
            self.unknown += fb.status_count
            return []
        newest = self.next - 1
        oldest = now - self.max_age_s
        self._reference = reference = unwrap_reference(self._reference, fb.reference_time)
        out: list[PacketResult] = []
        unknown = 0
        new = tuple.__new__  # PacketResult without its Python-level __new__: per packet
        for seq16, arrival_us in receive_times(fb, reference):
            seq = newest - ((newest - seq16) & 0xFFFF)
            entry = ring[seq & mask]
            if entry is None or entry[0] != seq or entry[1] < oldest:
                unknown += 1
            elif arrival_us is None:
                out.append(new(PacketResult, (seq, entry[1], entry[2], None, entry[3])))
            else:
                out.append(new(PacketResult, (seq, entry[1], entry[2], arrival_us / 1e6, entry[3])))
                ring[seq & mask] = None
        self.unknown += unknown
        return out
