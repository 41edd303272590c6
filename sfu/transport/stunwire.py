"""The two STUN messages consent freshness sends, built straight to bytes (pure, no I/O).

Every connected client is sent a consent check every ~5 s (RFC 7675) and
sends its own (a browser every ~2.5 s); each is answered.  aioice builds
these as `stun.Message` objects: the answer's XOR-MAPPED-ADDRESS is XORed
byte by byte in a Python loop after an `ipaddress` parse, and the whole
message is serialised three times (for MESSAGE-INTEGRITY, for FINGERPRINT
and to send it), and `hmac.new` sets its key up again for every message.
At a light fan-out that was the largest part of a quiet subscriber's cost.
Here each message is packed once with `struct`, its HMAC-SHA1 computed
from the key's inner and outer SHA-1 states prepared once per password
(`Signer`, RFC 2104) and its CRC-32 over the packed bytes: the output is
byte-for-byte what aioice sends for the same inputs
(`tests/test_sfu_stunwire.py` compares the two, hypothesis included).

Layout (RFC 8489 / RFC 8445): a 20-byte header (type, body length, magic
cookie, transaction id), then the attributes, each type, length, value
padded to 4 bytes; MESSAGE-INTEGRITY (HMAC-SHA1 with the ICE password, over
the message up to it with the length field counting it) and FINGERPRINT
(CRC-32 of everything before it, XOR 0x5354554E, the length counting it)
come last.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import socket
import struct
import zlib

__all__ = ["Signer", "binding_request", "binding_response", "signed_by"]

COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_RESPONSE = 0x0101
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
XOR_MAPPED_ADDRESS = 0x0020
PRIORITY = 0x0024
FINGERPRINT = 0x8028
ICE_CONTROLLED = 0x8029
ICE_CONTROLLING = 0x802A
FINGERPRINT_XOR = 0x5354554E
# MESSAGE-INTEGRITY (4 + 20 bytes) and FINGERPRINT (4 + 4 bytes).
INTEGRITY_SIZE = 24
FINGERPRINT_SIZE = 8

_HEADER = struct.Struct("!HHI12s")
_ATTRIBUTE = struct.Struct("!HH")
_COOKIE_BYTES = COOKIE.to_bytes(4, "big")


class Signer:
    """HMAC-SHA1 with one key (RFC 2104), its pads hashed once: `hmac.new` per message
    costs several microseconds of key setup, a copy of two prepared states a fraction."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:  # SHA-1's block size
            key = hashlib.sha1(key).digest()
        block = key.ljust(64, b"\0")
        self._inner = hashlib.sha1(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha1(bytes(b ^ 0x5C for b in block))

    def digest(self, data: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def signed_by(integrity_data: bytes | None, mac: object, signer: Signer) -> bool:
    """Whether a received message's MESSAGE-INTEGRITY `mac` is `signer`'s HMAC of it, as
    aioice's `Message.check_message_integrity` tells (`integrity_data`: the message
    up to that attribute, aioice's `_integrity_data`; None: it had none), without
    `hmac.new`'s key setup for every message."""
    if integrity_data is None or not isinstance(mac, bytes):
        return False
    size = len(integrity_data) - _HEADER.size + INTEGRITY_SIZE
    signed = integrity_data[:2] + size.to_bytes(2, "big") + integrity_data[4:]
    return hmac.compare_digest(mac, signer.digest(signed))


def binding_response(transaction_id: bytes, addr: tuple[str, int], signer: Signer) -> bytes:
    """The success answer to a check from `addr` (XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY
    signed by `signer`, FINGERPRINT), as aioice's `request_received` sends it."""
    family, packed = _address(addr[0])
    pad = (_COOKIE_BYTES + transaction_id)[: len(packed)]
    xored = (int.from_bytes(packed, "big") ^ int.from_bytes(pad, "big")).to_bytes(
        len(packed), "big"
    )
    value = struct.pack("!BBH", 0, family, addr[1] ^ (COOKIE >> 16)) + xored
    return _finish(BINDING_RESPONSE, transaction_id, _attribute(XOR_MAPPED_ADDRESS, value), signer)


def binding_request(
    transaction_id: bytes,
    username: str,
    priority: int,
    tie_breaker: int,
    controlling: bool,
    signer: Signer,
) -> bytes:
    """A check without USE-CANDIDATE (a consent check), as aioice's `build_request`
    and `add_message_integrity` make it."""
    role = ICE_CONTROLLING if controlling else ICE_CONTROLLED
    body = (
        _attribute(USERNAME, username.encode("utf8"))
        + _attribute(PRIORITY, struct.pack("!I", priority))
        + _attribute(role, struct.pack("!Q", tie_breaker))
    )
    return _finish(BINDING_REQUEST, transaction_id, body, signer)


def _finish(kind: int, transaction_id: bytes, body: bytes, signer: Signer) -> bytes:
    """Header + `body` + MESSAGE-INTEGRITY + FINGERPRINT."""
    if len(transaction_id) != 12:
        raise ValueError("a STUN transaction id is 12 bytes")
    size = len(body)
    signed = _HEADER.pack(kind, size + INTEGRITY_SIZE, COOKIE, transaction_id) + body
    data = signed + _attribute(MESSAGE_INTEGRITY, signer.digest(signed))
    data = data[:2] + struct.pack("!H", size + INTEGRITY_SIZE + FINGERPRINT_SIZE) + data[4:]
    crc = zlib.crc32(data) ^ FINGERPRINT_XOR
    return data + _ATTRIBUTE.pack(FINGERPRINT, 4) + struct.pack("!I", crc)


def _attribute(kind: int, value: bytes) -> bytes:
    return _ATTRIBUTE.pack(kind, len(value)) + value + bytes(-len(value) % 4)


@functools.lru_cache(maxsize=4096)
def _address(host: str) -> tuple[int, bytes]:
    """(STUN address family, packed address) of an IPv4 or IPv6 literal."""
    try:
        return 1, socket.inet_pton(socket.AF_INET, host)
    except OSError:
        pass
    try:
        return 2, socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
    except OSError:
        raise ValueError(f"not an IP address: {host!r}") from None
