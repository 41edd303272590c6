"""libsrtp's `srtp_protect` on our own buffers, bound with cffi in ABI mode.

pylibsrtp's `Session.protect` takes `bytes` and returns new `bytes`: per
packet it checks the type, allocates an `int *`, copies the packet into its
buffer and copies the result out.  On the send batch (`sfu.transport.mmsg`)
the packet is already in C memory, its header rewritten in place, so
`OutboundSrtp.protect_at` encrypts it there: no copy, no allocation.

The library is the libsrtp 2.x that pylibsrtp ships (its extension module
exports libsrtp's symbols, and it is the copy pylibsrtp already
initialised), else the system's `libsrtp2`.  ABI mode means the structure
below must match the library's: `load()` only accepts a library whose
`srtp_get_version_string()` says 2.x (the layout of `srtp_policy_t` is the
same from 2.1 to 2.7; 3.0 changed it) and then checks itself once: a packet
it protects must be what pylibsrtp's own session makes of it, byte for
byte; otherwise the binding is refused and the transports use pylibsrtp's
public API.  Only RTP goes through these sessions (all of a transport's
RTP, so the rollover counter stays consistent); RTCP keeps pylibsrtp.
"""

from __future__ import annotations

import ctypes.util
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from sfu import native

CDEF = """
typedef struct {
    int cipher_type; int cipher_key_len; int auth_type; int auth_key_len;
    int auth_tag_len; int sec_serv;
} srtp_crypto_policy_t;
typedef struct { int type; unsigned int value; } srtp_ssrc_t;
typedef struct srtp_policy_t {
    srtp_ssrc_t ssrc;
    srtp_crypto_policy_t rtp;
    srtp_crypto_policy_t rtcp;
    unsigned char *key;
    void **keys;
    unsigned long num_master_keys;
    void *deprecated_ekt;
    unsigned long window_size;
    int allow_repeat_tx;
    int *enc_xtn_hdr;
    int enc_xtn_hdr_count;
    struct srtp_policy_t *next;
} srtp_policy_t;
typedef void *srtp_t;
int srtp_init(void);
int srtp_create(srtp_t *session, const srtp_policy_t *policy);
int srtp_dealloc(srtp_t session);
int srtp_protect(srtp_t ctx, void *rtp_hdr, int *len_ptr);
int srtp_unprotect(srtp_t ctx, void *srtp_hdr, int *len_ptr);
int srtp_crypto_policy_set_from_profile_for_rtp(srtp_crypto_policy_t *policy, int profile);
int srtp_crypto_policy_set_from_profile_for_rtcp(srtp_crypto_policy_t *policy, int profile);
const char *srtp_get_version_string(void);
"""

SSRC_ANY_INBOUND = 2
SSRC_ANY_OUTBOUND = 3
# The largest datagram an InboundSrtp takes (sfu.transport.webrtc.MAX_DATAGRAM).
MAX_INBOUND = 1500
# Room a protected packet needs past its plain length (GCM tag 16; HMAC-SHA1-80 tag 10).
MAX_TRAILER = 16


class SrtpError(Exception):
    """libsrtp refused to create a session."""


class LibSrtp:
    """The dlopened library: `ffi`, `lib`, `protect` and `unprotect` (srtp_(un)protect)."""

    def __init__(self, path: str) -> None:
        from cffi import FFI  # type: ignore[import-untyped]

        self.ffi = FFI()
        self.ffi.cdef(CDEF)
        self.lib: Any = self.ffi.dlopen(path)
        self.path = path
        self.protect = self.lib.srtp_protect
        # For compiled callers (sfu.native._fanout): srtp_protect of this very library.
        self.protect_address = int(self.ffi.cast("uintptr_t", self.protect))
        version = self.ffi.string(self.lib.srtp_get_version_string()).decode("ascii", "replace")
        self.version = version
        if not version.startswith("libsrtp2 2."):
            raise OSError(f"{path}: {version} is not libsrtp 2.x")
        # pylibsrtp's copy is initialised already and answers with an error
        # here; an uninitialised library fails the self-check instead.
        self.lib.srtp_init()
        self.unprotect = self.lib.srtp_unprotect  # for InboundSrtp

    def outbound(self, key: bytes, profile: int) -> OutboundSrtp:
        return OutboundSrtp(self, key, profile)

    def inbound(self, key: bytes, profile: int) -> InboundSrtp:
        return InboundSrtp(self, key, profile)


def _session(srtp: LibSrtp, key: bytes, profile: int, ssrc_type: int) -> tuple[Any, Any, Any]:
    """(key buffer, policy, srtp_t) of a new session, as aiortc's: any SSRC of the
    direction, replay window 1024, repeats allowed (a retransmission is the same
    packet again).  The key and the policy must live as long as the session."""
    ffi, lib = srtp.ffi, srtp.lib
    policy = ffi.new("srtp_policy_t *")
    if lib.srtp_crypto_policy_set_from_profile_for_rtp(ffi.addressof(policy.rtp), profile):
        raise SrtpError(f"unknown SRTP profile {profile}")
    lib.srtp_crypto_policy_set_from_profile_for_rtcp(ffi.addressof(policy.rtcp), profile)
    buffer = ffi.new("unsigned char[]", key)
    policy.key = buffer
    policy.ssrc.type = ssrc_type
    policy.window_size = 1024
    policy.allow_repeat_tx = 1
    session = ffi.new("srtp_t *")
    if lib.srtp_create(session, policy) != 0:
        raise SrtpError("srtp_create failed")
    return buffer, policy, ffi.gc(session[0], lib.srtp_dealloc)


class OutboundSrtp:
    """One sending SRTP session (any outbound SSRC), freed when collected."""

    __slots__ = ("_key", "_policy", "ctx", "ctx_address", "length", "protect", "protect_address")

    def __init__(self, srtp: LibSrtp, key: bytes, profile: int) -> None:
        ffi = srtp.ffi
        self._key, self._policy, self.ctx = _session(srtp, key, profile, SSRC_ANY_OUTBOUND)
        self.protect = srtp.protect
        # The same session and function as addresses, for sfu.native._fanout (valid
        # while this object lives: `ctx` is freed when it is collected).
        self.ctx_address = int(ffi.cast("uintptr_t", self.ctx))
        self.protect_address = srtp.protect_address
        self.length = ffi.new("int *")  # in: plain length; out: protected length


class InboundSrtp:
    """One receiving SRTP session (any inbound SSRC), as aiortc's: replay window
    1024, repeats allowed; freed when collected.  Only RTP goes through it
    (RTCP keeps pylibsrtp's session).

    `unprotect(data)` gives the plain packet, or None when libsrtp refuses it
    (authentication, replay, a datagram too short or too long).  With
    sfu/native/_rtp built it is one C call: the datagram copied into a new
    bytes object, decrypted there and cut to its plain length; otherwise
    (`unprotect_python`) through cffi with a buffer of our own, without
    pylibsrtp's per-packet allocation and checks.
    """

    __slots__ = (
        "_buffer",
        "_key",
        "_policy",
        "_unprotect",
        "_view",
        "ctx",
        "ctx_address",
        "length",
        "unprotect",
        "unprotect_address",
    )

    def __init__(self, srtp: LibSrtp, key: bytes, profile: int) -> None:
        ffi = srtp.ffi
        self._key, self._policy, self.ctx = _session(srtp, key, profile, SSRC_ANY_INBOUND)
        self.length = ffi.new("int *")
        self._buffer = ffi.new("char[]", MAX_INBOUND)
        self._view = ffi.buffer(self._buffer)
        self._unprotect = srtp.unprotect
        # The function and the session as addresses, for compiled callers
        # (sfu.native._rtp.unprotect, sfu.native._ingress.Inlet): valid while
        # `ctx` lives (its collection frees the session).
        self.unprotect_address = function = int(ffi.cast("uintptr_t", srtp.unprotect))
        self.ctx_address = context = int(ffi.cast("uintptr_t", self.ctx))
        compiled = native.load("_rtp")
        if compiled is None:
            self.unprotect: Callable[[bytes], bytes | None] = self.unprotect_python
        else:
            # The partial holds `ctx`, so the session lives as long as it.
            self.unprotect = partial(compiled.unprotect, self.ctx, function, context, MAX_INBOUND)

    def unprotect_python(self, data: bytes) -> bytes | None:
        size = len(data)
        if size < 12 or size > MAX_INBOUND:
            return None
        buffer, length = self._buffer, self.length
        self._view[0:size] = data
        length[0] = size
        if self._unprotect(self.ctx, buffer, length):
            return None
        plain: bytes = self._view[0 : length[0]]
        return plain


_LOADED: list[LibSrtp | None] = []


def load() -> LibSrtp | None:
    """The binding if a trustworthy libsrtp 2.x is found and passes the self-check, else None."""
    if not _LOADED:
        _LOADED.append(_load())
    return _LOADED[0]


def candidates() -> list[str]:
    paths = []
    try:
        import pylibsrtp

        shipped = sorted(Path(pylibsrtp.__file__).parent.glob("_binding*.so"))
        paths += [str(p) for p in shipped]
    except ImportError:
        pass
    system = ctypes.util.find_library("srtp2")
    if system:
        paths.append(system)
    return paths


def _load() -> LibSrtp | None:
    for path in candidates():
        try:
            srtp = LibSrtp(path)
            if self_check(srtp):
                return srtp
        except (ImportError, OSError, AttributeError, SrtpError):
            continue
    return None


def self_check(srtp: LibSrtp) -> bool:
    """Does our session protect like pylibsrtp's (same key, profile, packet)?"""
    from pylibsrtp import Policy, Session

    for profile, key_length in (
        (Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30),
        (Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 44),
    ):
        key = bytes(range(1, key_length + 1))
        packet = bytes([0x80, 0x60, 0x12, 0x34, 0, 0, 0x10, 0, 0xDE, 0xAD, 0xBE, 0xEF]) + bytes(
            range(200)
        )
        theirs = Session(
            Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
        ).protect(packet)
        ours = srtp.outbound(key, profile)
        buffer = srtp.ffi.new("char[]", len(packet) + MAX_TRAILER)
        buffer[0 : len(packet)] = packet
        ours.length[0] = len(packet)
        if ours.protect(ours.ctx, buffer, ours.length) != 0:
            return False
        if srtp.ffi.buffer(buffer, ours.length[0])[:] != theirs:
            return False
        if srtp.inbound(key, profile).unprotect_python(theirs) != packet:
            return False
        if srtp.inbound(key, profile).unprotect(theirs) != packet:
            return False
    return True
