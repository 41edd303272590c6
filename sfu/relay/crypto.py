"""SRTP for the relay between workers of different machines.

Between machines a relay datagram travels as one SRTP packet, so that the
whole of it, header included, is authenticated and its payload encrypted,
and replays are refused (libsrtp's replay window)::

    0x57 | SRTP( RTP header: PT = relay kind, sequence = per-pair counter,
                 SSRC = sender origin id | stream id (4) | body )

Keying goes through the control plane without any key crossing the
network: every worker gets the cluster's shared secret from its own pool at
start, the pool tells it which peers are on other machines (the ``peers``
message) and their origin ids, and each direction of each pair derives its
own AES-128-CM / HMAC-SHA1-80 master key and salt as
``HMAC-SHA256(relay key, "sender>receiver")``.  Origin ids are random per
worker incarnation, so a restarted worker gets fresh keys.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import pylibsrtp

from cluster.kdf import derive

SECURE_MAGIC = 0x57
_OUTER = struct.Struct("!BBHII")  # V=2, PT=kind, sequence, timestamp 0, SSRC=sender
_STREAM = struct.Struct("!I")
_PROFILE = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
KEY_BYTES = 30  # 16-byte master key + 14-byte master salt


def pair_key(secret: str, sender: int, receiver: int) -> bytes:
    relay_key = derive(secret, "relay")
    return hmac.new(relay_key, f"{sender}>{receiver}".encode(), hashlib.sha256).digest()[:KEY_BYTES]


def sender_of(datagram: bytes) -> int | None:
    """The sender origin of a sealed datagram (in the clear), None if it is not one."""
    if len(datagram) < 1 + _OUTER.size + _STREAM.size or datagram[0] != SECURE_MAGIC:
        return None
    return int.from_bytes(datagram[9:13], "big")


class SecurePair:
    """SRTP both ways between this worker (`me`) and one peer on another machine."""

    def __init__(self, secret: str, me: int, peer: int) -> None:
        self.me = me
        self.peer = peer
        self._tx = pylibsrtp.Session(
            pylibsrtp.Policy(
                key=pair_key(secret, me, peer),
                ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                srtp_profile=_PROFILE,
            )
        )
        self._rx = pylibsrtp.Session(
            pylibsrtp.Policy(
                key=pair_key(secret, peer, me),
                ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                srtp_profile=_PROFILE,
            )
        )
        self._sequence = 0

    def seal(self, kind: int, stream: int, body: bytes) -> bytes:
        self._sequence = (self._sequence + 1) & 0xFFFF
        outer = _OUTER.pack(0x80, kind, self._sequence, 0, self.me) + _STREAM.pack(stream) + body
        return bytes([SECURE_MAGIC]) + self._tx.protect(outer)

    def open(self, datagram: bytes) -> tuple[int, int, bytes] | None:
        """(kind, stream, body) of a sealed datagram from the peer; None if it fails."""
        try:
            outer = self._rx.unprotect(datagram[1:])
        except (pylibsrtp.Error, ValueError):
            return None
        if len(outer) < _OUTER.size + _STREAM.size:
            return None
        kind = outer[1] & 0x7F
        (stream,) = _STREAM.unpack_from(outer, _OUTER.size)
        return kind, stream, outer[_OUTER.size + _STREAM.size :]
