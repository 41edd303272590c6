"""Retransmissions: a bounded cache of sent packets and RFC 4588 RTX packets.

The SFU answers a subscriber's NACK from its own cache instead of asking the
publisher, so a loss on one downlink costs nobody else anything.  Each cache
is a fixed ring of `size` slots indexed by ``seq % size``: storing is O(1)
and memory never grows past ``size`` packets, whatever the peer does.  A
slot remembers which sequence number it holds and when, so a request for a
packet that has been overwritten or is too old to be useful gets None.
"""

from __future__ import annotations

import struct

from sfu.packet.rtp import BytesLike, RtpError, RtpHeader

__all__ = ["RetransmissionCache", "build_rtx", "parse_rtx"]

_FIXED = struct.Struct("!BBHII")
_OSN = struct.Struct("!H")


class RetransmissionCache:
    """The last `size` packets of one stream, each retrievable for `max_age_s` seconds.

    Store the packet exactly as it was sent (after the header rewrite), keyed
    by the sequence number the subscriber sees; 16-bit or extended numbers
    both work, but use one kind consistently.  A power-of-two `size` keeps
    16-bit numbers in order across the wrap.
    """

    __slots__ = ("_max_age", "_packets", "_seqs", "_size", "_times")

    def __init__(self, size: int = 1024, max_age_s: float = 1.0) -> None:
        if size <= 0:
            raise ValueError("cache size must be positive")
        if max_age_s <= 0:
            raise ValueError("max_age_s must be positive")
        self._size = size
        self._max_age = max_age_s
        # Parallel lists instead of a tuple per slot: no allocation per store.
        self._seqs = [-1] * size
        self._packets: list[bytes | None] = [None] * size
        self._times = [0.0] * size

    @property
    def size(self) -> int:
        return self._size

    def store(self, seq: int, packet: bytes, now: float) -> None:
        i = seq % self._size
        self._seqs[i] = seq
        self._packets[i] = packet
        self._times[i] = now

    def get(self, seq: int, now: float) -> bytes | None:
        """The packet sent as `seq`, or None if never stored, overwritten or too old."""
        i = seq % self._size
        if self._seqs[i] != seq:
            return None
        if now - self._times[i] > self._max_age:
            # Free it now rather than when the slot is reused.
            self._seqs[i] = -1
            self._packets[i] = None
            return None
        return self._packets[i]

    def clear(self) -> None:
        """Forget everything (e.g. when the stream's source changes)."""
        for i in range(self._size):
            self._seqs[i] = -1
            self._packets[i] = None


def build_rtx(
    packet: BytesLike,
    h: RtpHeader,
    *,
    rtx_ssrc: int,
    rtx_payload_type: int,
    rtx_sequence: int,
) -> bytes:
    """Wrap `packet` for the RTX stream: the original sequence number (OSN) goes
    in front of the payload; marker, timestamp, CSRCs and extensions stay.

    The original padding is dropped (and the P bit cleared): it was only
    there to pad the original.  The result is 2 bytes longer than the
    original without its padding.
    """
    po = h.payload_offset
    fixed = _FIXED.pack(
        packet[0] & 0xDF,
        (packet[1] & 0x80) | (rtx_payload_type & 0x7F),
        rtx_sequence & 0xFFFF,
        h.timestamp,
        rtx_ssrc & 0xFFFFFFFF,
    )
    return b"".join(
        (fixed, packet[12:po], _OSN.pack(h.sequence), packet[po : po + h.payload_length])
    )


def parse_rtx(
    data: BytesLike,
    h: RtpHeader,
    *,
    ssrc: int | None = None,
    payload_type: int | None = None,
) -> tuple[int, bytes]:
    """Unwrap an RTX packet: (original sequence number, rebuilt original packet).

    The rebuilt packet has the OSN as its sequence number and, when given,
    the original `ssrc` and `payload_type` (the RTX packet itself only knows
    its own; the caller knows the mapping from SDP ``apt=``/``ssrc-group``).
    A payload under 2 bytes raises `RtpError`; check ``h.payload_length == 0``
    first if padding-only probes on the RTX stream are to be told apart.
    """
    if h.payload_length < 2:
        raise RtpError(f"RTX payload of {h.payload_length} bytes has no original sequence number")
    po = h.payload_offset
    if po + h.payload_length > len(data):
        raise RtpError("header does not match the packet")
    osn = (data[po] << 8) | data[po + 1]
    fixed = _FIXED.pack(
        data[0] & 0xDF,
        (data[1] & 0x80) | (h.payload_type if payload_type is None else payload_type & 0x7F),
        osn,
        h.timestamp,
        h.ssrc if ssrc is None else ssrc & 0xFFFFFFFF,
    )
    return osn, b"".join((fixed, data[12:po], data[po + 2 : po + h.payload_length]))
