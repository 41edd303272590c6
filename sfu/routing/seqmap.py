"""Sequence numbers of one receive slot across sources and dropped packets (pure).

A receive slot sends one stream whose sequence numbers must look like one
sender's while its packets come from several sources in turn (simulcast
layers, other publishers) and some of them are dropped on purpose (temporal
layers above the limit, padding).  `SeqMap` maps each source's sequence
numbers to the slot's:

- `begin(source)`: the next packet starts a *segment* of `source`; its first
  packet gets the number after the last one sent (no gap at a switch);
- `forward(seq)`: the out number of a packet to send; a gap in the input
  (real loss) stays a gap so the subscriber NACKs it, a late packet gets the
  number its slot was given, the same every time (retransmissions too);
- `drop(seq)`: a packet not sent; the numbers after it close up, so it
  leaves no gap.  A late packet dropped into a slot kept for it (a gap that
  was still unfilled) leaves a hole; a late copy of a packet already sent
  changes nothing;
- `absorb_gap=True` (on `forward`/`drop`): the caller knows the input gap
  before this packet only held dropped packets (parts of dropped frames,
  padding): it closes up too;
- `lookup(out)`: the (source, sequence number) an out number was given, for
  NACKs; None for dropped or unknown numbers.

The fast path (the newest packet, no gap) is a subtraction and an addition.
Drops are kept as runs (a few per dropped frame), so memory stays small;
the last `max_runs` runs per segment and the last `max_segments` segments
are remembered (about a second or more of a thinned 30 fps stream).
"""

from __future__ import annotations

import random
from collections import deque
from typing import Generic, TypeVar

__all__ = ["SeqMap"]

MAX_KEPT = 64

S = TypeVar("S")


class _Segment(Generic[S]):
    __slots__ = (
        "first_in",
        "first_out",
        "floor",
        "floor_off",
        "holes",
        "kept",
        "runs",
        "source",
    )

    def __init__(self, source: S, first_in: int, first_out: int) -> None:
        self.source = source
        self.first_in = first_in
        self.first_out = first_out
        # Offsets (out - in) are known from `floor` on: `floor_off` up to the
        # first run, then each run's offset after it.
        self.floor = first_in
        self.floor_off = first_out - first_in
        self.runs: deque[tuple[int, int, int]] = deque()  # (first in, last in, offset after)
        self.holes: deque[int] = deque(maxlen=64)  # out numbers kept, then dropped late
        # Inputs whose slots a gap kept and nothing filled yet (the last MAX_KEPT).
        self.kept: dict[int, None] = {}


class SeqMap(Generic[S]):
    """One receive slot's sequence numbers (see module doc)."""

    __slots__ = (
        "_fresh",
        "_in_max",
        "_max_dropped",
        "_max_runs",
        "_off",
        "_out_max",
        "_seg",
        "_segments",
        "_source",
    )

    def __init__(
        self, *, first: int | None = None, max_segments: int = 4, max_runs: int = 64
    ) -> None:
        start = random.getrandbits(15) if first is None else first
        self._out_max = start - 1  # unwrapped
        self._in_max = 0  # unwrapped, in the current segment's space
        self._off = 0  # out - in for the newest packet
        self._max_dropped = False
        self._max_runs = max_runs
        self._fresh = True
        self._source: S | None = None
        self._seg: _Segment[S] | None = None
        self._segments: deque[_Segment[S]] = deque(maxlen=max_segments)

    @property
    def last(self) -> int:
        """The highest sequence number given so far (16 bits)."""
        return self._out_max & 0xFFFF

    @property
    def started(self) -> bool:
        """A segment is open (its first packet was forwarded)."""
        return not self._fresh

    def begin(self, source: S) -> None:
        """The next forwarded packet starts a segment of `source`."""
        self._source = source
        self._fresh = True

    def forward(self, seq: int, absorb_gap: bool = False) -> int | None:
        """The out sequence number for input `seq`; None: do not send it."""
        if self._fresh:
            return self._start(seq)
        d = (seq - self._in_max) & 0xFFFF
        if 0 < d < 0x8000:
            if d > 1:
                if absorb_gap:
                    self._close_up(self._in_max + 1, self._in_max + d - 1)
                else:
                    self._keep(self._in_max + 1, self._in_max + d - 1)
            self._in_max += d
            out = self._in_max + self._off
            self._out_max = out
            self._max_dropped = False
            return out & 0xFFFF
        if d == 0:
            return None if self._max_dropped else self._out_max & 0xFFFF
        ext = self._in_max - 0x10000 + d
        late = self._late_out(ext)
        if late is not None and self._seg is not None:
            self._seg.kept.pop(ext, None)  # its slot is filled now
        return None if late is None else late & 0xFFFF

    def drop(self, seq: int, absorb_gap: bool = False) -> None:
        """Input `seq` is not sent: it leaves no gap (see module doc)."""
        if self._fresh:
            return
        d = (seq - self._in_max) & 0xFFFF
        if 0 < d < 0x8000:
            hi = self._in_max + d
            if absorb_gap:
                self._close_up(self._in_max + 1, hi)
            else:
                if d > 1:  # slots kept for the missing packets
                    self._out_max = hi - 1 + self._off
                    self._keep(self._in_max + 1, hi - 1)
                self._close_up(hi, hi)
            self._in_max = hi
            self._max_dropped = True
            return
        if d == 0:
            return
        ext = self._in_max - 0x10000 + d
        seg = self._seg
        if seg is not None and ext in seg.kept:  # a kept slot that will stay empty
            del seg.kept[ext]
            out = self._late_out(ext)
            if out is not None:
                seg.holes.append(out)

    def lookup(self, out: int) -> tuple[S, int] | None:
        """(source, input sequence number) sent as `out`, or None."""
        back = (self._out_max - out) & 0xFFFF
        if back >= 0x8000:
            return None  # never sent
        ext = self._out_max - back
        for seg in reversed(self._segments):
            if ext >= seg.first_out:
                break
        else:
            return None
        if ext in seg.holes:
            return None
        for _first, last, off in reversed(seg.runs):
            if ext >= last + 1 + off:
                return seg.source, (ext - off) & 0xFFFF
        if ext < seg.floor + seg.floor_off:
            return None  # older than what is remembered
        return seg.source, (ext - seg.floor_off) & 0xFFFF

    def _start(self, seq: int) -> int:
        first_out = self._out_max + 1
        source = self._source
        if source is None:
            raise RuntimeError("SeqMap.begin(source) must come before the first packet")
        seg = _Segment(source, seq, first_out)
        self._segments.append(seg)
        self._seg = seg
        self._in_max = seq
        self._off = first_out - seq
        self._out_max = first_out
        self._max_dropped = False
        self._fresh = False
        return first_out & 0xFFFF

    def _keep(self, first: int, last: int) -> None:
        """Inputs `first`..`last` are missing: their slots stay open for them."""
        seg = self._seg
        assert seg is not None
        kept = seg.kept
        for ext in range(max(first, last - MAX_KEPT + 1), last + 1):
            kept[ext] = None
        while len(kept) > MAX_KEPT:
            del kept[next(iter(kept))]

    def _close_up(self, first: int, last: int) -> None:
        self._off -= last - first + 1
        seg = self._seg
        assert seg is not None
        runs = seg.runs
        if runs and runs[-1][1] == first - 1:
            runs[-1] = (runs[-1][0], last, self._off)
            return
        if len(runs) >= self._max_runs:
            _old_first, old_last, old_off = runs.popleft()
            seg.floor = old_last + 1
            seg.floor_off = old_off
        runs.append((first, last, self._off))

    def _late_out(self, ext: int) -> int | None:
        """The out number kept for an older input, None if dropped or unknown."""
        seg = self._seg
        if seg is None or ext < seg.floor:
            return None
        for first, last, off in reversed(seg.runs):
            if last < ext:
                return ext + off
            if first <= ext:
                return None
        return ext + seg.floor_off
