"""libsrtp bound with cffi in ABI mode (sfu.transport.srtp), protecting inside the send batch."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from pylibsrtp import Policy, Session

from sfu.packet.counters import Counters
from sfu.packet.rtp import build_rtp, rewritten
from sfu.transport import mmsg, srtp

GCM = Policy.SRTP_PROFILE_AEAD_AES_256_GCM
KEY = bytes(range(7, 7 + 44))


@pytest.fixture
def lib() -> srtp.LibSrtp:
    loaded = srtp.load()
    assert loaded is not None, "pylibsrtp ships libsrtp 2.x: the binding must load"
    return loaded


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2)
    yield sender, receiver
    sender.close()
    receiver.close()


def receiver_session() -> Session:
    return Session(Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=GCM))


def test_our_structure_layout_is_the_shipped_librarys(lib: srtp.LibSrtp) -> None:
    # pylibsrtp's compiled (API mode) module knows the real offsets.
    from pylibsrtp._binding import ffi as compiled  # type: ignore[import-not-found]

    for field in ("ssrc", "rtp", "rtcp", "key", "window_size", "allow_repeat_tx"):
        assert lib.ffi.offsetof("srtp_policy_t", field) == compiled.offsetof(
            "srtp_policy_t", field
        ), field
    assert lib.ffi.sizeof("srtp_policy_t") == compiled.sizeof("srtp_policy_t")
    assert lib.ffi.sizeof("srtp_crypto_policy_t") == compiled.sizeof("srtp_crypto_policy_t")
    assert srtp.self_check(lib)


def test_packets_rewritten_and_protected_in_the_batch_decrypt_as_sent(
    native_path: str, lib: srtp.LibSrtp, pair: tuple[socket.socket, socket.socket]
) -> None:
    binding = mmsg.load()
    assert binding is not None
    sender, receiver = pair
    batch = mmsg.new_batch(binding, sender.fileno(), 8)
    to = mmsg.Destination(binding, socket.AF_INET, receiver.getsockname())
    ours, counters = lib.outbound(KEY, GCM), Counters()
    originals = [
        build_rtp(
            payload_type=100,
            sequence=7 + i,
            timestamp=90 * i,
            ssrc=1,
            payload=bytes([i]) * 900,
            marker=i == 2,
        )
        for i in range(3)
    ]
    expected = []
    for i, packet in enumerate(originals):
        header = (96, 500 + i, 3000 + i, 0xABCD)
        if i == 1:  # the generic path: a plain packet as it is
            plain = rewritten(packet, payload_type=96, sequence=501, timestamp=3001, ssrc=0xABCD)
            assert batch.add_srtp(plain, ours, to, counters) == len(plain) + 16
        else:
            assert batch.add_rewritten(packet, header, ours, to, counters) == len(packet) + 16
        expected.append(
            rewritten(packet, payload_type=96, sequence=500 + i, timestamp=3000 + i, ssrc=0xABCD)
        )
    assert batch.flush() == 3
    rx = receiver_session()
    got = [rx.unprotect(receiver.recv(2048)) for _ in range(3)]
    assert got == expected, "marker kept, header rewritten, payload untouched"
    assert counters.send_errors == 0


def test_a_packet_too_large_for_a_slot_is_refused(native_path: str, lib: srtp.LibSrtp) -> None:
    binding = mmsg.load()
    assert binding is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        batch = mmsg.new_batch(binding, sender.fileno(), 2)
        to = mmsg.Destination(binding, socket.AF_INET, ("127.0.0.1", 9))
        counters = Counters()
        big = bytes(mmsg.SLOT - mmsg.SRTP_TRAILER + 1)
        assert batch.add_srtp(big, lib.outbound(KEY, GCM), to, counters) == -1
        assert batch.count == 0 and counters.oversize == 1


def test_an_unknown_profile_is_an_error_not_a_session(lib: srtp.LibSrtp) -> None:
    with pytest.raises(srtp.SrtpError):
        lib.outbound(KEY, 999)
