"""sfu.transport.stunwire: the consent messages, byte for byte what aioice builds."""

from __future__ import annotations

import hmac
import ipaddress

import pytest
from aioice import stun
from hypothesis import assume, given
from hypothesis import strategies as st

from sfu.transport.stunwire import Signer, binding_request, binding_response, signed_by

transaction_ids = st.binary(min_size=12, max_size=12)
keys = st.binary(min_size=1, max_size=100)
ports = st.integers(0, 65535)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
ufrags = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=40)


def aioice_response(tid: bytes, addr: tuple[str, int], key: bytes) -> bytes:
    """What aioice's `Connection.request_received` sends."""
    response = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, transaction_id=tid)
    response.attributes["XOR-MAPPED-ADDRESS"] = addr
    response.add_message_integrity(key)
    return bytes(response)


def aioice_request(
    tid: bytes, username: str, priority: int, tie_breaker: int, controlling: bool, key: bytes
) -> bytes:
    """What aioice's `build_request(pair, nominate=False)` + `add_message_integrity` send."""
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, transaction_id=tid)
    request.attributes["USERNAME"] = username
    request.attributes["PRIORITY"] = priority
    role = "ICE-CONTROLLING" if controlling else "ICE-CONTROLLED"
    request.attributes[role] = tie_breaker
    request.add_message_integrity(key)
    return bytes(request)


@given(transaction_ids, st.one_of(ipv4, ipv6), ports, keys)
def test_the_answer_to_a_check_is_aioices(tid: bytes, host: str, port: int, key: bytes) -> None:
    assert binding_response(tid, (host, port), Signer(key)) == aioice_response(
        tid, (host, port), key
    )


@given(
    transaction_ids,
    ufrags,
    ufrags,
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**64 - 1),
    st.booleans(),
    keys,
)
def test_a_consent_check_is_aioices(
    tid: bytes,
    remote: str,
    local: str,
    priority: int,
    tie_breaker: int,
    controlling: bool,
    key: bytes,
) -> None:
    username = f"{remote}:{local}"
    ours = binding_request(tid, username, priority, tie_breaker, controlling, Signer(key))
    assert ours == aioice_request(tid, username, priority, tie_breaker, controlling, key)


def test_aioice_parses_and_authenticates_both() -> None:
    key, tid = b"0123456789abcdefghijkl", bytes(range(12))
    answer = stun.parse_message(binding_response(tid, ("192.0.2.7", 50000), Signer(key)))
    assert answer.message_class == stun.Class.RESPONSE
    assert answer.attributes["XOR-MAPPED-ADDRESS"] == ("192.0.2.7", 50000)
    assert answer.check_message_integrity(key)
    assert not answer.check_message_integrity(b"another password")
    check = stun.parse_message(binding_request(tid, "abcd:efgh", 1, 2, False, Signer(key)))
    assert check.attributes["USERNAME"] == "abcd:efgh"
    assert check.attributes["ICE-CONTROLLED"] == 2
    assert check.check_message_integrity(key)


@given(
    transaction_ids,
    ufrags,
    keys,
    keys,
    st.booleans(),
    st.booleans(),
    st.integers(0, 10_000),
    st.integers(1, 255),
)
def test_a_received_messages_signature_is_checked_as_aioice_does(
    tid: bytes,
    username: str,
    key: bytes,
    other: bytes,
    answer: bool,
    same_key: bool,
    at: int,
    flip: int,
) -> None:
    signer = Signer(key)
    data = bytearray(
        binding_response(tid, ("192.0.2.7", 50000), signer)
        if answer
        else binding_request(tid, f"{username}:x", 1, 2, True, signer)
    )
    if at < len(data):  # one byte damaged (else intact)
        data[at] ^= flip
    try:
        message = stun.parse_message(bytes(data))
    except Exception:  # aioice raises several kinds
        assume(False)
        raise
    check = key if same_key else other
    ours = signed_by(
        message._integrity_data, message.attributes.get("MESSAGE-INTEGRITY"), Signer(check)
    )
    assert ours == message.check_message_integrity(check)


def test_a_message_without_integrity_or_with_a_bad_one_is_not_signed() -> None:
    key = b"0123456789abcdefghijkl"
    bare = stun.parse_message(bytes(stun.Message(stun.Method.BINDING, stun.Class.REQUEST)))
    assert not signed_by(bare._integrity_data, None, Signer(key))
    good = stun.parse_message(binding_request(bytes(12), "a:b", 1, 2, True, Signer(key)))
    mac = good.attributes["MESSAGE-INTEGRITY"]
    assert signed_by(good._integrity_data, mac, Signer(key))
    assert not signed_by(good._integrity_data, mac, Signer(b"another password"))
    assert not signed_by(good._integrity_data, bytes(20), Signer(key))
    assert not signed_by(good._integrity_data, "not bytes", Signer(key))


def test_a_scoped_ipv6_address_is_packed_without_its_scope() -> None:
    tid, key = bytes(12), b"k"
    packed = binding_response(tid, ("fe80::1%eth0", 9), Signer(key))
    assert packed == aioice_response(tid, ("fe80::1%eth0", 9), key)
    assert ipaddress.ip_address("fe80::1%eth0").packed == ipaddress.ip_address("fe80::1").packed


@given(st.binary(max_size=200), st.binary(max_size=300))
def test_the_signer_is_hmac_sha1(key: bytes, data: bytes) -> None:
    assert Signer(key).digest(data) == hmac.digest(key, data, "sha1")


@pytest.mark.parametrize("host", ["", "example.org", "1.2.3", "::g"])
def test_what_is_no_ip_address_is_refused(host: str) -> None:
    with pytest.raises(ValueError):
        binding_response(bytes(12), (host, 1), Signer(b"k"))


def test_a_transaction_id_is_twelve_bytes() -> None:
    with pytest.raises(ValueError):
        binding_response(bytes(11), ("127.0.0.1", 1), Signer(b"k"))
