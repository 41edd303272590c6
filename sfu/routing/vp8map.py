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

How a consumer uses it with `SeqMap`, per packet of the source it forwards
(`d` parsed once per packet, e.g. by the producer: `read_vp8` of
`memoryview(data)[h.payload_offset : h.payload_offset + h.payload_length]`):

    if d is None:                       # padding only, or not VP8
        seqmap.drop(h.sequence); return
    verdict = vmap.packet(d, h.timestamp, h.marker)
    if verdict == DROP:
        seqmap.drop(h.sequence, vmap.gap_dropped); return
    seq = seqmap.forward(h.sequence, vmap.gap_dropped)
    if seq is None: return              # older than the switch, or dropped
    if verdict == REWRITE: copy, vmap.write(copy, h.payload_offset, d), send
    else: send as today (header rewrite only)

At a switch, before the new source's key frame: `vmap.begin()` and
`seqmap.begin(segment)`.  For a NACK: `seqmap.lookup(seq)` -> (segment,
input sequence number) -> the producer's cached packet -> if it is of the
current segment, `vmap.resend(d, timestamp)` (DROP: do not resend) and
`vmap.write` on REWRITE.
"""

from __future__ import annotations

from sfu.packet.vp8 import Buffer, Vp8Descriptor

__all__ = ["DROP", "KEEP", "REWRITE", "Vp8Map"]

DROP = 0
KEEP = 1
REWRITE = 2

_DROPPED = -2  # frame cache value of a dropped frame
_NO_PID = -1  # frame cache value of a forwarded frame without picture id
MAX_FRAMES = 64  # frames remembered, at least (2 s at 30 fps; at most twice that)
MAX_MISSING = 32  # missing picture ids remembered per jump


class Vp8Map:
    """One receive slot's VP8 rewriting state (see module doc)."""

    __slots__ = (
        "_frames",
        "_hot",
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
        "_prev_ts",
        "_prev_verdict",
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
        self._prev_dropped = False
        self._prev_marker = False
        self._prev_verdict = DROP
        self._hot = False  # the output values are those of the newest frame

    def set_max_temporal(self, tid: int) -> None:
        """The highest TID to forward from now on (applied at the next frame)."""
        self.max_temporal = tid

    def begin(self) -> None:
        """The next packet is a new source's key frame: continue the numbering after it."""
        self._new_segment = True
        self._hot = False

    def packet(self, d: Vp8Descriptor, timestamp: int, marker: bool) -> int:
        """DROP, KEEP or REWRITE this packet (see module doc)."""
        if timestamp == self._prev_ts and self._hot:
            # Another packet of the newest frame: same verdict, same values.
            if marker:
                self._prev_marker = True
            self.gap_dropped = self._prev_dropped
            return self._prev_verdict
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
                self._hot = False  # the values below are another frame's
                got = self._frames.get(timestamp)
                self.gap_dropped = False
                return self._verdict(d, self._late_frame(d, timestamp) if got is None else got)
        verdict = self._verdict(d, out)
        self._prev_verdict = verdict
        self._hot = True
        return verdict

    def resend(self, d: Vp8Descriptor, timestamp: int) -> int:
        """DROP, KEEP or REWRITE for a packet sent again (a NACK); changes no state.

        Only frames of the current source that were already judged are sent
        again: an unknown frame is DROP.
        """
        out = self._frames.get(timestamp, _DROPPED)
        if self._new_segment:
            return DROP
        self._hot = False
        return self._verdict(d, out)

    def write(self, buf: Buffer, offset: int, d: Vp8Descriptor) -> None:
        """Write the values of the last REWRITE into the payload at `buf[offset:]`.

        Only the fields `d` (this packet's descriptor) has are written.
        """
        pid = self.picture_id
        at = d.picture_id_offset
        if pid >= 0 and at >= 0:
            at += offset
            if d.picture_id_bits == 15:
                buf[at] = 0x80 | (pid >> 8)
                buf[at + 1] = pid & 0xFF
            else:
                buf[at] = pid & 0x7F
        if self.tl0picidx >= 0 and d.tl0picidx_offset >= 0:
            buf[offset + d.tl0picidx_offset] = self.tl0picidx
        if self.keyidx >= 0 and d.keyidx >= 0:
            at = offset + d.tk_offset
            buf[at] = (buf[at] & 0xE0) | self.keyidx

    # internals

    def _verdict(self, d: Vp8Descriptor, out: int) -> int:
        if out == _DROPPED:
            return DROP
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
        # In force for frames missing before this one: a key frame's reset to
        # the limit (below) applies from the key frame on, not to frames before it.
        layer = min(self.temporal, limit)
        if d.keyframe or self.temporal > limit:
            self.temporal = limit
        tid = d.tid
        forward = True
        frame_start = d.start and d.partition == 0
        if tid > layer:
            if tid <= limit and d.sync and frame_start:
                self.temporal = tid
            else:
                forward = False
        in_pid = d.picture_id
        pid = -1
        gap_unknown = in_pid < 0  # cannot tell whether frames are missing
        pid_max = self._pid_max
        if in_pid >= 0 and pid_max >= 0:
            mod = 0x8000 if d.picture_id_bits == 15 else 0x80
            jump = (in_pid - pid_max) & (mod - 1)
            if jump >= mod >> 1:
                jump -= mod
            pid = pid_max + jump
            if jump > 1:
                gap_unknown = True  # wholly missing frames
                for missing in range(max(pid_max + 1, pid - MAX_MISSING), pid):
                    self._missing[missing] = (self._pid_off, layer)
            if jump > 0:
                self._pid_max = pid
        # The input gap before this packet: the previous frame's tail,
        # missing frames, this frame's head.
        self.gap_dropped = (
            not gap_unknown
            and (self._prev_marker or self._prev_dropped)
            and (not forward or frame_start)
        )
        if forward:
            if pid >= 0:
                out = self._last_pid = pid - self._pid_off
            else:
                out = _NO_PID
            if d.tl0picidx >= 0:
                self._last_tl0 = (d.tl0picidx + self._tl0_delta) & 0xFF
            if d.keyidx >= 0:
                self._last_key = (d.keyidx + self._key_delta) & 0x1F
        else:
            out = _DROPPED
            if pid >= 0:
                self._pid_off += 1
        frames = self._frames
        frames[timestamp] = out
        if len(frames) > 2 * MAX_FRAMES:
            self._remember(timestamp, out)
        self._prev_ts = timestamp
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
        if len(frames) > 2 * MAX_FRAMES:  # keep the newest, amortised O(1)
            self._frames = dict(list(frames.items())[-MAX_FRAMES:])
        if len(self._missing) > 2 * MAX_MISSING:
            self._missing = dict(list(self._missing.items())[-MAX_MISSING:])
