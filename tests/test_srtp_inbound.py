"""Receiving SRTP with our own libsrtp binding (sfu.transport.srtp.InboundSrtp).

Both twins (the compiled `sfu.native._rtp.unprotect` and the cffi
`unprotect_python`) must give exactly what pylibsrtp's receiving session
gives, refuse what it refuses (tampered, replayed, truncated, oversized
datagrams) and then carry on with the next good packet.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial

import pylibsrtp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pylibsrtp import Policy, Session

from sfu.packet.rtp import build_rtp
from sfu.transport import srtp
from tests.sfu_live import Pump, eventually, join, running_media
from tests.synthetic_peer import SyntheticPeer

PROFILES = {
    "aes-256-gcm": (Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 44),
    "aes-128-gcm": (Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 28),
    "aes-128-cm-sha1-80": (Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30),
}
TWINS = ("python", "compiled")


@pytest.fixture
def lib() -> srtp.LibSrtp:
    loaded = srtp.load()
    assert loaded is not None, "pylibsrtp ships libsrtp 2.x: the binding must load"
    return loaded


def unprotector(
    lib: srtp.LibSrtp, key: bytes, profile: int, twin: str
) -> Callable[[bytes], bytes | None]:
    """A new session's unprotect, of the twin asked for, whatever VISITROOM_NATIVE says."""
    if twin == "python":
        return lib.inbound(key, profile).unprotect_python
    before = os.environ.get("VISITROOM_NATIVE")
    os.environ["VISITROOM_NATIVE"] = "1"  # the session picks its twin when made
    try:
        inbound = lib.inbound(key, profile)
    finally:
        if before is None:
            del os.environ["VISITROOM_NATIVE"]
        else:
            os.environ["VISITROOM_NATIVE"] = before
    assert isinstance(inbound.unprotect, partial), "run `python -m sfu.native.build` first"
    return inbound.unprotect


def sessions(profile: int, key_length: int) -> tuple[bytes, Session, Session]:
    key = bytes(range(3, 3 + key_length))
    outbound = Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
    outbound.allow_repeat_tx = True  # a sequence number sent again: a replay to the receiver
    outbound.window_size = 1024
    sender = Session(outbound)
    policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=profile)
    policy.allow_repeat_tx = True
    policy.window_size = 1024  # as aiortc's receiving session
    theirs = Session(policy)
    return key, sender, theirs


def pylibsrtp_says(session: Session, data: bytes) -> bytes | None:
    try:
        plain: bytes = session.unprotect(data)
        return plain
    except (pylibsrtp.Error, ValueError):
        return None


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("name", PROFILES)
def test_packets_decrypt_as_pylibsrtp_decrypts_them_and_bad_ones_are_refused(
    lib: srtp.LibSrtp, twin: str, name: str
) -> None:
    profile, key_length = PROFILES[name]
    key, sender, theirs = sessions(profile, key_length)
    ours = unprotector(lib, key, profile, twin)
    for seq in range(1, 40):
        plain = build_rtp(
            payload_type=96,
            sequence=seq,
            timestamp=seq * 3000,
            ssrc=0x1234 + seq % 3,
            payload=bytes([seq]) * (seq * 30),
            extensions={5: seq.to_bytes(2, "big")},
        )
        data = sender.protect(plain)
        tampered = bytearray(data)
        tampered[-1] ^= 1
        for bad in (bytes(tampered), data[:11], data[: len(data) - 3], data + bytes(1500)):
            assert ours(bad) is None
            assert pylibsrtp_says(theirs, bad) is None
        assert ours(data) == plain == pylibsrtp_says(theirs, data)
        assert ours(data) is None, "a replay is refused"
        assert pylibsrtp_says(theirs, data) is None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        # Sequence numbers within the sender's window: late, repeated and new ones.
        st.tuples(st.integers(0, 900), st.binary(max_size=300), st.integers(-1, 400)),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from(TWINS),
)
def test_any_stream_of_datagrams_gets_pylibsrtps_answers(
    stream: list[tuple[int, bytes, int]], twin: str
) -> None:
    lib = srtp.load()
    assert lib is not None
    profile, key_length = PROFILES["aes-256-gcm"]
    key, sender, theirs = sessions(profile, key_length)
    ours = unprotector(lib, key, profile, twin)
    for seq, payload, flip in stream:
        data = sender.protect(
            build_rtp(payload_type=111, sequence=seq, timestamp=seq, ssrc=9, payload=payload)
        )
        if 0 <= flip < len(data):
            changed = bytearray(data)
            changed[flip] ^= 0x40
            data = bytes(changed)
        assert ours(data) == pylibsrtp_says(theirs, data)


def test_the_self_check_covers_receiving(lib: srtp.LibSrtp) -> None:
    assert srtp.self_check(lib)
    with pytest.raises(srtp.SrtpError):
        lib.inbound(bytes(44), 9999)


async def test_a_live_publishers_rtp_goes_through_our_session_to_the_subscriber() -> None:
    """Real ICE + DTLS: the receiving key is derived as aiortc derives it."""
    async with running_media() as (media, _):
        alice = await join(media, "alice", SyntheticPeer(audio=True, video=True))
        bob = await join(media, "bob", SyntheticPeer(audio_slots=1, video_slots=1))
        pump = Pump(alice).start()
        try:
            await eventually(lambda: bob.transport.received > 30, what="media at bob")
            transport = media.participants["alice"].transport
            assert transport is not None and transport._rx_direct is not None
            assert transport.counters.rtp_in > 30 and transport.counters.srtp_errors == 0
        finally:
            await pump.stop()
