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

Every STUN datagram that arrives is parsed (`parse_message`): aioice's
parser builds two enum members per message, unpacks each attribute through
a table of functions, and turns an XOR-MAPPED-ADDRESS into a string through
a byte-by-byte XOR loop and an `ipaddress` object.  The messages consent
brings (binding requests with USERNAME, PRIORITY, the role, USE-CANDIDATE,
MESSAGE-INTEGRITY, FINGERPRINT, and their IPv4 answers) are parsed here
inline to the very `stun.Message` aioice returns; anything else (another
method or class, another attribute aioice knows, an IPv6 address, a value
of an unexpected size, a bad FINGERPRINT, bytes that are not UTF-8, a
length that does not add up) goes to aioice's `parse_message`, so what it
rejects is rejected the same way (`tests/test_sfu_stunwire.py` compares
both on random and mutated messages, hypothesis).

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
import socket
import struct
import zlib
from typing import Any

from aioice import stun

__all__ = ["Signer", "binding_request", "binding_response", "parse_message"]

COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_RESPONSE = 0x0101
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
XOR_MAPPED_ADDRESS = 0x0020
PRIORITY = 0x0024
USE_CANDIDATE = 0x0025
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


# Message types parsed here (the rest go to aioice): binding request, success and error.
_KINDS: dict[int, tuple[stun.Method, stun.Class]] = {
    stun.Method.BINDING | kind: (stun.Method.BINDING, kind)
    for kind in (stun.Class.REQUEST, stun.Class.RESPONSE, stun.Class.ERROR)
}
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_PORT_AND_V4 = struct.Struct("!xBH4s")
# The attributes parsed here; any other one aioice knows sends the message to aioice.
_FAST = frozenset(
    (
        USERNAME,
        MESSAGE_INTEGRITY,
        PRIORITY,
        USE_CANDIDATE,
        FINGERPRINT,
        ICE_CONTROLLED,
        ICE_CONTROLLING,
    )
)
_XOR_PORT = COOKIE >> 16


class _Aioice(Exception):
    """Not a message of the fast path: aioice parses it (and raises if it must)."""


def parse_message(data: bytes) -> stun.Message:
    """`aioice.stun.parse_message(data)`, the same `Message` or the same exception
    (module doc); MESSAGE-INTEGRITY is not checked here either."""
    try:
        return _parse(data)
    except _Aioice:
        return stun.parse_message(data)


def _parse(data: bytes) -> stun.Message:
    size = len(data)
    if size < 20:
        raise _Aioice
    message_type, length, _, transaction_id = _HEADER.unpack_from(data)
    kind = _KINDS.get(message_type)
    if kind is None or size != 20 + length:
        raise _Aioice
    attributes: dict[str, Any] = {}
    integrity_data = None
    pos = 20
    while pos <= size - 4:
        attr_type, attr_len = _ATTRIBUTE.unpack_from(data, pos)
        start = pos + 4
        end = start + attr_len
        if end > size:
            raise _Aioice
        if integrity_data is not None and attr_type != FINGERPRINT:
            pass  # not authenticated: aioice ignores it (known or not)
        elif attr_type == XOR_MAPPED_ADDRESS:
            attributes["XOR-MAPPED-ADDRESS"] = _xor_v4(data, start, attr_len)
        elif attr_type in _FAST:
            _attribute_value(attributes, data, attr_type, start, end, pos)
            if attr_type == MESSAGE_INTEGRITY:
                integrity_data = data[:pos]
        elif attr_type in stun.ATTRIBUTES_BY_TYPE:
            raise _Aioice
        pos = end + (-attr_len % 4)
    message = stun.Message(kind[0], kind[1], transaction_id, attributes)
    message._integrity_data = integrity_data
    return message


def _attribute_value(
    attributes: dict[str, Any], data: bytes, attr_type: int, start: int, end: int, pos: int
) -> None:
    size = end - start
    if attr_type == USERNAME:
        try:
            attributes["USERNAME"] = data[start:end].decode("utf8")
        except UnicodeDecodeError:
            raise _Aioice from None
    elif attr_type == MESSAGE_INTEGRITY:
        attributes["MESSAGE-INTEGRITY"] = data[start:end]
    elif attr_type == USE_CANDIDATE:
        attributes["USE-CANDIDATE"] = None
    elif attr_type == PRIORITY:
        attributes["PRIORITY"] = _unsigned(_U32, data, start, size)
    elif attr_type == FINGERPRINT:
        value = attributes["FINGERPRINT"] = _unsigned(_U32, data, start, size)
        signed = data[:2] + struct.pack("!H", pos - 20 + FINGERPRINT_SIZE) + data[4:pos]
        if value != zlib.crc32(signed) ^ FINGERPRINT_XOR:
            raise _Aioice
    else:  # ICE-CONTROLLED, ICE-CONTROLLING
        name = "ICE-CONTROLLED" if attr_type == ICE_CONTROLLED else "ICE-CONTROLLING"
        attributes[name] = _unsigned(_U64, data, start, size)


def _unsigned(form: struct.Struct, data: bytes, start: int, size: int) -> int:
    if size != form.size:
        raise _Aioice
    value: int = form.unpack_from(data, start)[0]
    return value


def _xor_v4(data: bytes, start: int, size: int) -> tuple[str, int]:
    """An IPv4 XOR-MAPPED-ADDRESS (aioice's `unpack_xor_address`); else aioice's parse."""
    if size != 8:
        raise _Aioice
    family, port, packed = _PORT_AND_V4.unpack_from(data, start)
    if family != 1:
        raise _Aioice
    host = int.from_bytes(packed, "big") ^ COOKIE
    return socket.inet_ntop(socket.AF_INET, host.to_bytes(4, "big")), port ^ _XOR_PORT
