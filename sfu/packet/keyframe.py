"""Key-frame detection from the first bytes of an RTP payload, without decoding.

The SFU needs to know when a key frame arrives: after a switch it keeps a
slot's old source (or nothing) until the new source sends one, and it stops
repeating its PLI/FIR once it has.  Only the payload descriptor / NAL headers
are read.  Garbage never raises: it is simply not a key frame.

References: RFC 7741 (VP8), RFC 6184 (H.264), the VP9 RTP payload format
(RFC 9628; best effort).
"""

from __future__ import annotations

from collections.abc import Callable

from sfu.packet.vp8 import is_vp8_keyframe

__all__ = ["is_keyframe"]

_Payload = bytes | bytearray | memoryview

_H264_IDR = 5
_H264_SPS = 7
_H264_STAP_A = 24
_H264_FU_A = 28
_H264_FU_B = 29


def is_keyframe(codec: str, payload: _Payload) -> bool:
    """True if `payload` starts a key frame; `codec` is "vp8", "h264" or "vp9".

    Codec names are case-insensitive and may carry a "video/" prefix; an
    unknown codec is never a key frame.
    """
    check = _CHECKS.get(codec)
    if check is None:
        check = _CHECKS.get(codec.lower().removeprefix("video/"))
        if check is None:
            return False
    return check(payload)


def _h264(p: _Payload) -> bool:
    n = len(p)
    if n == 0 or p[0] & 0x80:  # forbidden_zero_bit set: not a valid NAL unit
        return False
    nal_type = p[0] & 0x1F
    if nal_type in (_H264_IDR, _H264_SPS):
        return True
    if nal_type == _H264_STAP_A:
        return _stap_a_has_keyframe(p, n)
    if nal_type in (_H264_FU_A, _H264_FU_B):
        # The FU header follows the indicator: S bit and the original type.
        return n >= 2 and bool(p[1] & 0x80) and p[1] & 0x1F == _H264_IDR
    return False


def _stap_a_has_keyframe(p: _Payload, n: int) -> bool:
    i = 1
    while i + 2 < n:
        size = (p[i] << 8) | p[i + 1]
        i += 2
        if size == 0 or i + size > n:
            return False
        nal_type = p[i] & 0x1F
        if nal_type in (_H264_IDR, _H264_SPS):
            return True
        i += size
    return False


def _vp9(p: _Payload) -> bool:
    n = len(p)
    if n == 0:
        return False
    b = p[0]
    # P=0: no inter-picture prediction; B=1: the first packet of the frame.
    if b & 0x40 or not b & 0x08:
        return False
    i = 1
    if b & 0x80:  # I: PictureID, 7 or 15 bits
        if i >= n:
            return False
        i += 2 if p[i] & 0x80 else 1
    if b & 0x20:  # L: layer indices; only the base spatial layer starts a key frame
        if i >= n:
            return False
        return (p[i] >> 1) & 0x07 == 0
    return True


_CHECKS: dict[str, Callable[[_Payload], bool]] = {
    "vp8": is_vp8_keyframe,
    "h264": _h264,
    "vp9": _vp9,
}
