"""VP8 picture ids, TL0PICIDX and KEYIDX of one receive slot; temporal layer thinning (pure).

A receive slot forwards one VP8 stream at a time (a simulcast layer, or
another publisher after a switch) and may drop its higher temporal layers.
The subscriber must see one stream: picture ids that go up by one per frame
it receives, TL0PICIDX up by one per base-layer frame, KEYIDX changing only
at a new source's key frame.  The rules, as mediasoup's Codecs/VP8 and
LiveKit's VP8 munger apply them:

- a frame is judged on the first packet of it that arrives; every other
  packet of it (later, reordered, retransmitted) gets the same verdict and
  the same values;
- a new frame whose TID is above the limit (`max_temporal`) is dropped;
- the forwarded temporal layer goes up only at a frame start with the layer
  sync bit Y (or at a key frame, which resets it to the limit) and down
  (to a lower limit) at the next new frame, so a frame is never cut;
- a dropped frame leaves no gap in the picture ids: the next frames' ids
  close up; a frame that was wholly missing when a newer one arrived keeps
  its id (real loss stays visible); if it arrives later and is dropped its
  id stays a gap;
- `begin()` (a new source, whose first packet is a key frame): its picture
  ids continue at last + 1, TL0PICIDX at last + 1, KEYIDX at last + 1;
  packets of frames older than that key frame are dropped.

`packet()` returns DROP, KEEP (send as it is) or REWRITE (write
`picture_id`, `tl0picidx`, `keyidx` with `write()`), and sets `gap_dropped`:
whether the input packets missing right before this one (if any) can only
belong to dropped frames or be padding, for `SeqMap` (`absorb_gap`).
Frames are told apart by RTP timestamp; streams without picture ids or
temporal layers work too (nothing to renumber or to thin).
"""

from __future__ import annotations

from sfu.packet.vp8 import Buffer, Vp8Descriptor, rewrite_vp8

__all__ = ["DROP", "KEEP", "REWRITE", "Vp8Map"]

DROP = 0
KEEP = 1
REWRITE = 2

_DROPPED = -2  # frame cache value of a dropped frame
_NO_PID = -1  # frame cache value of a forwarded frame without picture id
MAX_FRAMES = 96  # frames remembered (about 3 s at 30 fps)
MAX_MISSING = 32  # missing picture ids remembered per jump


class Vp8Map:
    """One receive slot's VP8 rewriting state (see module doc)."""

    __slots__ = (
        "_frames",
        "_key_delta",
        "_last_key",
        "_last_pid",
        "_last_tl0",
        "_missing",
        "_new_segment",
        "_pid_max",
        "_pid_off",
        "_prev_dropped",
        "_prev_marker",
        "_prev_pid",
        "_prev_ts",
        "_tl0_delta",
        "gap_dropped",
        "keyidx",
        "max_temporal",
        "picture_id",
        "temporal",
        "tl0picidx",
    )

    def __init__(self, max_temporal: int = 3) -> None:
        self.max_temporal = max_temporal  # highest TID to forward; set at any time
        self.temporal = max_temporal  # highest TID forwarded now
        self.picture_id = -1  # values to write for the last packet (REWRITE)
        self.tl0picidx = -1
        self.keyidx = -1
        self.gap_dropped = False
        self._last_pid = -1  # last out values (unwrapped picture id), -1: none yet
        self._last_tl0 = -1
        self._last_key = -1
        self._new_segment = True
        self._frames: dict[int, int] = {}  # timestamp -> out picture id / _DROPPED / _NO_PID
        # in picture id (unwrapped) of a missing frame -> (offset, temporal layer) then
        self._missing: dict[int, tuple[int, int]] = {}
        self._pid_off = 0  # in (unwrapped) - out
        self._pid_max = -1  # newest in picture id (unwrapped)
        self._tl0_delta = 0
        self._key_delta = 0
        self._prev_ts = 0  # newest frame
        self._prev_pid = -1
        self._prev_dropped = False
        self._prev_marker = False

    def set_max_temporal(self, tid: int) -> None:
        """The highest TID to forward from now on (applied at the next frame)."""
        self.max_temporal = tid

    def begin(self) -> None:
        """The next packet is a new source's key frame: continue the numbering after it."""
        self._new_segment = True

    def packet(self, d: Vp8Descriptor, timestamp: int, marker: bool) -> int:
        """DROP, KEEP or REWRITE this packet (see module doc)."""
        if self._new_segment:
            self._start(d, timestamp)
        if timestamp == self._prev_ts:
            out = self._frames[timestamp]
            if marker:
                self._prev_marker = True
            self.gap_dropped = out == _DROPPED
        else:
            dts = (timestamp - self._prev_ts) & 0xFFFFFFFF
            if dts < 0x80000000:
                out = self._new_frame(d, timestamp, marker)
            else:
                got = self._frames.get(timestamp)
                out = self._late_frame(d, timestamp) if got is None else got
        if out == _DROPPED:
            return DROP
        return self._values(d, out)

    def resend(self, d: Vp8Descriptor, timestamp: int) -> int:
        """DROP, KEEP or REWRITE for a packet sent again (a NACK); changes no state.

        Only frames of the current source that were already judged are sent
        again: an unknown frame is DROP.
        """
        out = self._frames.get(timestamp, _DROPPED)
        if out == _DROPPED or self._new_segment:
            return DROP
        return self._values(d, out)

    def write(self, buf: Buffer, offset: int, d: Vp8Descriptor) -> None:
        """Write the values of the last REWRITE into the payload at `buf[offset:]`."""
        rewrite_vp8(
            buf, offset, d, picture_id=self.picture_id, tl0picidx=self.tl0picidx, keyidx=self.keyidx
        )

    # internals

    def _values(self, d: Vp8Descriptor, out: int) -> int:
        changed = False
        if d.picture_id >= 0 and out >= 0:
            pid = out & (0x7FFF if d.picture_id_bits == 15 else 0x7F)
            self.picture_id = pid
            changed = pid != d.picture_id
        else:
            self.picture_id = -1
        if d.tl0picidx >= 0:
            self.tl0picidx = tl0 = (d.tl0picidx + self._tl0_delta) & 0xFF
            changed = changed or tl0 != d.tl0picidx
        else:
            self.tl0picidx = -1
        if d.keyidx >= 0:
            self.keyidx = key = (d.keyidx + self._key_delta) & 0x1F
            changed = changed or key != d.keyidx
        else:
            self.keyidx = -1
        return REWRITE if changed else KEEP

    def _start(self, d: Vp8Descriptor, timestamp: int) -> None:
        self._new_segment = False
        self._frames.clear()
        self._missing.clear()
        self.temporal = self.max_temporal
        if d.picture_id >= 0:
            self._pid_max = d.picture_id
            self._pid_off = d.picture_id - (self._last_pid + 1) if self._last_pid >= 0 else 0
        else:
            self._pid_max = -1
        self._tl0_delta = (self._last_tl0 + 1 - d.tl0picidx) & 0xFF if self._last_tl0 >= 0 else 0
        self._key_delta = (self._last_key + 1 - d.keyidx) & 0x1F if self._last_key >= 0 else 0
        # The frame before: anything older than this key frame is dropped.
        self._prev_ts = (timestamp - 1) & 0xFFFFFFFF
        self._frames[self._prev_ts] = _DROPPED
        self._prev_pid = -1
        self._prev_dropped = True
        self._prev_marker = True

    def _unwrap(self, d: Vp8Descriptor) -> int:
        mod = 0x8000 if d.picture_id_bits == 15 else 0x80
        delta = (d.picture_id - self._pid_max) & (mod - 1)
        if delta >= mod >> 1:
            delta -= mod
        return self._pid_max + delta

    def _new_frame(self, d: Vp8Descriptor, timestamp: int, marker: bool) -> int:
        limit = self.max_temporal
        if d.keyframe or self.temporal > limit:
            self.temporal = limit
        layer = self.temporal  # in force for frames missing before this one
        tid = d.tid
        forward = True
        if tid > self.temporal:
            if tid <= limit and d.sync and d.start and d.partition == 0:
                self.temporal = tid
            else:
                forward = False
        pid = -1
        gap_unknown = False
        if d.picture_id >= 0 and self._pid_max >= 0:
            pid = self._unwrap(d)
            jump = pid - self._pid_max
            if jump > 1:
                gap_unknown = True  # wholly missing frames
                for missing in range(max(self._pid_max + 1, pid - MAX_MISSING), pid):
                    self._missing[missing] = (self._pid_off, layer)
            if jump > 0:
                self._pid_max = pid
        elif d.picture_id < 0:
            gap_unknown = True  # cannot tell whether frames are missing
        # The input gap before this packet: the previous frame's tail,
        # missing frames, this frame's head.
        self.gap_dropped = (
            not gap_unknown
            and (self._prev_marker or self._prev_dropped)
            and (not forward or (d.start and d.partition == 0))
        )
        if pid >= 0:
            out = pid - self._pid_off
            if not forward:
                self._pid_off += 1
                out = _DROPPED
            else:
                self._last_pid = out
        else:
            out = _NO_PID if forward else _DROPPED
        if forward:
            self._note_last(d)
        self._remember(timestamp, out)
        self._prev_ts = timestamp
        self._prev_pid = pid
        self._prev_dropped = not forward
        self._prev_marker = marker
        return out

    def _note_last(self, d: Vp8Descriptor) -> None:
        if d.tl0picidx >= 0:
            self._last_tl0 = (d.tl0picidx + self._tl0_delta) & 0xFF
        if d.keyidx >= 0:
            self._last_key = (d.keyidx + self._key_delta) & 0x1F

    def _late_frame(self, d: Vp8Descriptor, timestamp: int) -> int:
        """A frame first seen after a newer one: keep its place if it fits."""
        self.gap_dropped = False
        out = _DROPPED
        if d.picture_id < 0 or self._pid_max < 0:
            if d.tid <= self.temporal:
                out = _NO_PID
        else:
            pid = self._unwrap(d)
            missing = self._missing.pop(pid, None)
            if missing is not None and d.tid <= missing[1]:
                out = pid - missing[0]
                if out > self._last_pid:  # newer than every frame forwarded
                    self._last_pid = out
                    self._note_last(d)
        self._remember(timestamp, out)
        return out

    def _remember(self, timestamp: int, out: int) -> None:
        frames = self._frames
        frames[timestamp] = out
        if len(frames) > MAX_FRAMES:
            del frames[next(iter(frames))]
        if len(self._missing) > MAX_MISSING:
            del self._missing[next(iter(self._missing))]
