"""sfu.native._rtp against its Python twins: the same results, the same errors, on the same inputs.

Hostile packets (truncated, lying lengths, bad extensions, random bytes) are
fed to both; each must give the same header (or descriptor, or offset) or
raise the same exception with the same message, and never crash.
"""

from __future__ import annotations

import gc
import sys
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu import native
from sfu.native import _rtp
from sfu.packet import rtp, twcc, vp8
from sfu.packet.rtp import (
    ONE_BYTE_PROFILE,
    RtpError,
    RtpHeader,
    SeqUnwrapper,
    SeqUnwrapperPython,
    build_rtp,
    find_element_python,
    parse_rtp_python,
)
from sfu.packet.twcc import element_value_python
from sfu.packet.vp8 import Vp8Descriptor, Vp8Error, parse_vp8_python, read_vp8_at_python


@pytest.fixture(scope="module")
def compiled() -> ModuleType:
    """The compiled module itself, whatever VISITROOM_NATIVE says (the twins are compared)."""
    _rtp.bind_rtp(RtpHeader, RtpError)  # what sfu.packet.rtp/vp8 do on import when it is on
    _rtp.bind_vp8(Vp8Descriptor, Vp8Error)
    return _rtp


def outcome(call: object, *args: object, **kwargs: object) -> tuple[str, object]:
    """What a call gives: ("ok", result) or (exception class name, message)."""
    assert callable(call)
    try:
        return "ok", call(*args, **kwargs)
    except (RtpError, Vp8Error, ValueError, TypeError, OverflowError) as exc:
        return type(exc).__name__, str(exc)


def rtp_packets() -> st.SearchStrategy[bytes]:
    """Well-formed packets, some of them then cut or with a byte changed."""
    elements = st.dictionaries(
        st.integers(1, 14), st.binary(min_size=1, max_size=16), max_size=5
    ) | st.dictionaries(st.integers(1, 255), st.binary(max_size=20), max_size=4)
    built = st.builds(
        lambda pt, seq, ts, ssrc, payload, marker, csrcs, exts, two, padding: build_rtp(
            payload_type=pt,
            sequence=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=payload,
            marker=marker,
            csrcs=tuple(csrcs),
            extensions=exts or None,
            two_byte=two,
            padding=padding,
        ),
        st.integers(0, 127),
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFFFFFF),
        st.integers(0, 0xFFFFFFFF),
        st.binary(max_size=60),
        st.booleans(),
        st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
        elements,
        st.booleans(),
        st.integers(0, 255),
    )
    damaged = st.tuples(built, st.integers(0, 200), st.integers(0, 255), st.integers(0, 300)).map(
        lambda t: _damage(*t)
    )
    return built | damaged | st.binary(max_size=80)


def _damage(packet: bytes, at: int, value: int, cut: int) -> bytes:
    out = bytearray(packet[: max(0, len(packet) - cut % (len(packet) + 1))])
    if out:
        out[at % len(out)] = value
    return bytes(out)


def same_header(a: RtpHeader, b: RtpHeader) -> None:
    assert a == b
    assert repr(a) == repr(b)
    assert hash(a) == hash(b)
    for name in RtpHeader.__dataclass_fields__:
        assert type(getattr(a, name)) is type(getattr(b, name)), name


@settings(max_examples=1500, deadline=None)
@given(rtp_packets(), st.sampled_from([1500, 20, 12, 2000]))
def test_parse_rtp_gives_what_the_python_twin_gives(
    compiled: ModuleType, data: bytes, limit: int
) -> None:
    for kind in (bytes, bytearray, memoryview):
        ours = outcome(compiled.parse_rtp, kind(data), limit)
        theirs = outcome(parse_rtp_python, kind(data), limit)
        assert ours[0] == theirs[0] and (ours[0] == "ok" or ours == theirs), (ours, theirs)
        if ours[0] == "ok":
            assert isinstance(ours[1], RtpHeader) and isinstance(theirs[1], RtpHeader)
            same_header(ours[1], theirs[1])


def test_the_compiled_header_is_frozen_and_is_the_python_class(compiled: ModuleType) -> None:
    data = build_rtp(payload_type=96, sequence=1, timestamp=2, ssrc=3, payload=b"x")
    h = compiled.parse_rtp(data, max_size=1500)
    assert type(h) is RtpHeader and h == parse_rtp_python(data)
    with pytest.raises(AttributeError):
        h.sequence = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        compiled.parse_rtp(data, 1500, max_size=1500)
    with pytest.raises(TypeError):
        compiled.parse_rtp(data, size=1500)


def test_many_headers_are_made_and_freed_without_a_leak(compiled: ModuleType) -> None:
    data = build_rtp(
        payload_type=96, sequence=1, timestamp=0xFFFFFFFF, ssrc=0xFFFFFFFE, extensions={3: b"ab"}
    )
    for _ in range(2000):
        compiled.parse_rtp(data)
    gc.collect()
    before = sys.getrefcount(RtpHeader)
    headers = [compiled.parse_rtp(data) for _ in range(1000)]
    assert sys.getrefcount(RtpHeader) == before + 1000
    del headers
    gc.collect()
    assert sys.getrefcount(RtpHeader) == before


def test_a_class_that_is_not_the_expected_layout_is_refused(compiled: ModuleType) -> None:
    class Other:
        pass

    with pytest.raises(TypeError, match="not a slot"):
        compiled.bind_rtp(Other, RtpError)
    with pytest.raises(TypeError, match="tuple subclass"):
        compiled.bind_vp8(Other, Vp8Error)
    assert rtp.parse_rtp(build_rtp(payload_type=1, sequence=1, timestamp=1, ssrc=1)).ssrc == 1


@settings(max_examples=1500, deadline=None)
@given(rtp_packets(), st.integers(0, 16))
def test_find_extension_gives_what_the_python_twin_gives(
    compiled: ModuleType, data: bytes, ext_id: int
) -> None:
    try:
        h = parse_rtp_python(data, 2000)
    except RtpError:
        return
    if h.ext_profile is None:
        return
    args = (data, h.ext_profile, h.ext_offset, h.ext_length, ext_id)
    assert outcome(compiled.find_extension, *args) == outcome(find_element_python, *args)


@settings(max_examples=1000, deadline=None)
@given(
    st.binary(max_size=40),
    st.sampled_from([ONE_BYTE_PROFILE, 0x1000, 0x100F, 0x1234]),
    st.integers(-3, 45),
    st.integers(-3, 45),
    st.integers(0, 16),
)
def test_hostile_extension_ranges_get_the_same_answer(
    compiled: ModuleType, data: bytes, profile: int, start: int, length: int, ext_id: int
) -> None:
    if start >= 0:
        args = (data, profile, start, start + length, ext_id)
        assert compiled.element_value(*args) == element_value_python(*args)
    args = (data, profile, start, length, ext_id)
    assert outcome(compiled.find_extension, *args) == outcome(find_element_python, *args)


@settings(max_examples=1500, deadline=None)
@given(rtp_packets(), st.integers(1, 255))
def test_transport_seq_offsets_are_what_the_python_twin_finds(
    compiled: ModuleType, data: bytes, ext_id: int
) -> None:
    try:
        h = parse_rtp_python(data, 2000)
    except RtpError:
        return
    if h.ext_profile is None:
        return
    args = (data, h.ext_profile, h.ext_offset, h.ext_offset + h.ext_length, ext_id)
    assert compiled.element_value(*args) == element_value_python(*args)
    assert twcc.transport_seq_offset(data, h, ext_id) == element_value_python(*args)


def vp8_payloads() -> st.SearchStrategy[bytes]:
    """Descriptors of every shape (and random bytes), with a frame tag or not."""
    shaped = st.builds(
        lambda b, x, m, rest: bytes([b | 0x80, x, m]) + rest,
        st.integers(0, 255),
        st.integers(0, 255),
        st.integers(0, 255),
        st.binary(max_size=8),
    )
    return shaped | st.binary(max_size=12)


@settings(max_examples=2000, deadline=None)
@given(vp8_payloads())
def test_parse_vp8_gives_what_the_python_twin_gives(compiled: ModuleType, payload: bytes) -> None:
    for kind in (bytes, bytearray, memoryview):
        ours = outcome(compiled.parse_vp8, kind(payload))
        theirs = outcome(parse_vp8_python, kind(payload))
        assert ours == theirs
        if ours[0] == "ok":
            assert type(ours[1]) is Vp8Descriptor
            assert [type(v) for v in ours[1]] == [type(v) for v in theirs[1]]  # type: ignore[attr-defined]


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=30), st.integers(-2, 32), st.integers(-2, 32))
def test_read_vp8_at_gives_what_the_python_twin_gives(
    compiled: ModuleType, data: bytes, offset: int, length: int
) -> None:
    assert outcome(compiled.read_vp8_at, data, offset, length) == outcome(
        read_vp8_at_python, data, offset, length
    )


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.integers(0, 0xFFFF) | st.integers(-3, 3) | st.integers(0, 1 << 40), max_size=80))
def test_unwrapped_sequence_numbers_are_the_python_twins(
    compiled: ModuleType, sequence: list[int]
) -> None:
    ours, theirs = compiled.SeqUnwrapper(), SeqUnwrapperPython()
    for seq in sequence:
        assert ours.unwrap(seq) == theirs.unwrap(seq)
        assert (ours._last, ours._ext) == (theirs._last, theirs._ext)


def test_a_stream_wrapping_many_times_unwraps_alike(compiled: ModuleType) -> None:
    ours, theirs = compiled.SeqUnwrapper(), SeqUnwrapperPython()
    seq = 65000
    for n in range(300_000):
        seq = (seq + (1 if n % 97 else -40) + (n % 1009 == 0) * 3000) & 0xFFFF
        assert ours.unwrap(seq) == theirs.unwrap(seq)
    assert ours.unwrap(seq) > 4 * 65536


def test_the_modules_use_the_compiled_twins_unless_turned_off(compiled: ModuleType) -> None:
    if native.enabled():
        assert SeqUnwrapper is compiled.SeqUnwrapper
        assert rtp.parse_rtp is compiled.parse_rtp
        assert vp8.parse_vp8 is compiled.parse_vp8 and vp8.read_vp8_at is compiled.read_vp8_at
    else:  # VISITROOM_NATIVE=0
        assert SeqUnwrapper is SeqUnwrapperPython and rtp.parse_rtp is parse_rtp_python
        assert vp8.parse_vp8 is parse_vp8_python and vp8.read_vp8_at is read_vp8_at_python
