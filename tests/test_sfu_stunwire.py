"""sfu.transport.stunwire: the consent messages, byte for byte what aioice builds."""

from __future__ import annotations

import hmac
import ipaddress

import pytest
from aioice import stun
from hypothesis import given
from hypothesis import strategies as st

from sfu.transport import stunwire
from sfu.transport.stunwire import Signer, binding_request, binding_response, parse_message

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


# -- parse_message: aioice's parse, the consent messages inline ---------------


def parsed(parse: object, data: bytes) -> tuple[object, ...]:
    """What a parser makes of `data`: the message's every field, or the exception's type."""
    assert callable(parse)
    try:
        m = parse(data)
    except Exception as exc:
        return ("raised", type(exc))
    return (
        m.message_method,
        m.message_class,
        m.transaction_id,
        list(m.attributes.items()),
        m._integrity_data,
    )


def assert_parsed_as_aioice(data: bytes) -> None:
    assert parsed(parse_message, data) == parsed(stun.parse_message, data)


@st.composite
def stun_messages(draw: st.DrawFn) -> bytes:
    """A binding request, answer or error as aioice builds them, with any of the
    attributes consent and ICE checks carry (and a few others), signed or not."""
    kind = draw(st.sampled_from([stun.Class.REQUEST, stun.Class.RESPONSE, stun.Class.ERROR]))
    message = stun.Message(stun.Method.BINDING, kind, transaction_id=draw(transaction_ids))
    attrs = message.attributes
    if draw(st.booleans()):
        attrs["USERNAME"] = f"{draw(ufrags)}:{draw(ufrags)}"
    if draw(st.booleans()):
        attrs["PRIORITY"] = draw(st.integers(0, 2**32 - 1))
    role = draw(st.sampled_from(["", "ICE-CONTROLLING", "ICE-CONTROLLED"]))
    if role:
        attrs[role] = draw(st.integers(0, 2**64 - 1))
    if draw(st.booleans()):
        attrs["USE-CANDIDATE"] = None
    if draw(st.booleans()):
        attrs["XOR-MAPPED-ADDRESS"] = (draw(st.one_of(ipv4, ipv4, ipv6)), draw(ports))
    if draw(st.integers(0, 5)) == 0:
        attrs["SOFTWARE"] = draw(st.text(max_size=20))
    if kind == stun.Class.ERROR or draw(st.integers(0, 9)) == 0:
        attrs["ERROR-CODE"] = (draw(st.integers(300, 699)), draw(st.text(max_size=10)))
    signing = draw(st.sampled_from(["integrity", "fingerprint", "none"]))
    if signing == "integrity":
        message.add_message_integrity(draw(keys))
    elif signing == "fingerprint":
        message.add_fingerprint()
    return bytes(message)


@given(stun_messages())
def test_a_stun_message_is_parsed_as_aioice_parses_it(data: bytes) -> None:
    assert_parsed_as_aioice(data)


@given(stun_messages(), st.data())
def test_a_damaged_stun_message_is_parsed_or_refused_as_aioice_does(
    data: bytes, draw: st.DataObject
) -> None:
    damage = draw.draw(st.sampled_from(["byte", "cut", "grow", "length"]))
    buffer = bytearray(data)
    if damage == "byte":
        at = draw.draw(st.integers(0, len(buffer) - 1))
        buffer[at] = draw.draw(st.integers(0, 255))
    elif damage == "cut":
        del buffer[draw.draw(st.integers(0, len(buffer) - 1)) :]
    elif damage == "grow":
        buffer += draw.draw(st.binary(min_size=1, max_size=12))
    else:  # an attribute's length field (or the header's) changed
        at = draw.draw(st.sampled_from(range(2, len(buffer) - 1, 2)))
        buffer[at : at + 2] = draw.draw(st.integers(0, 65535)).to_bytes(2, "big")
    assert_parsed_as_aioice(bytes(buffer))


@given(st.binary(max_size=120))
def test_any_bytes_are_parsed_or_refused_as_aioice_does(data: bytes) -> None:
    assert_parsed_as_aioice(data)
    assert_parsed_as_aioice(b"\x00\x01" + len(data).to_bytes(2, "big") + data)


@given(transaction_ids, ufrags, ufrags, st.booleans(), ipv4, ports, keys)
def test_the_consent_messages_take_the_inline_path(
    tid: bytes, remote: str, local: str, controlling: bool, host: str, port: int, key: bytes
) -> None:
    # stunwire._parse raises for what it leaves to aioice: these it parses itself.
    check = binding_request(tid, f"{remote}:{local}", 7, 9, controlling, Signer(key))
    answer = binding_response(tid, (host, port), Signer(key))
    for data in (check, answer):
        assert parsed(stunwire._parse, data) == parsed(stun.parse_message, data)
    assert stunwire._parse(answer).attributes["XOR-MAPPED-ADDRESS"] == (host, port)
    assert stunwire._parse(check).check_message_integrity(key)


def test_what_the_inline_path_leaves_is_aioices() -> None:
    tid, key = bytes(range(12)), b"k"
    v6 = binding_response(tid, ("2001:db8::1", 9), Signer(key))
    bad_fingerprint = binding_response(tid, ("192.0.2.1", 9), Signer(key))[:-1] + b"\0"
    for data in (v6, bad_fingerprint, b"\x00\x03\x00\x00" + tid + bytes(8)):
        with pytest.raises(stunwire._Aioice):
            stunwire._parse(data)
        assert_parsed_as_aioice(data)
    with pytest.raises(ValueError):
        parse_message(bad_fingerprint)
