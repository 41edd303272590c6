"""sfu.native._fanout.SendBatch against its pure-Python twin, sfu.transport.mmsg.SendBatch.

The same operations on both (random packets, headers, transport-wide sequence
offsets, hostile sizes and values, refused destinations) must put the same
bytes on the wire, return the same values, raise on the same inputs and leave
the same counters.  The two SRTP sessions share a key, so their output is
comparable byte for byte.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pylibsrtp import Policy

from sfu import native
from sfu.packet.counters import Counters
from sfu.transport import mmsg, srtp

KEY = bytes(range(44))
GCM = Policy.SRTP_PROFILE_AEAD_AES_256_GCM


@dataclass
class Side:
    batch: mmsg.Batch
    srtp: srtp.OutboundSrtp
    good: mmsg.Destination
    bad: mmsg.Destination
    counters: Counters
    receiver: socket.socket


def udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return sock


def drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out


@pytest.fixture(scope="module")
def sides() -> Iterator[tuple[Side, Side]]:
    binding, lib = mmsg.load(), srtp.load()
    compiled = native.load("_fanout")
    assert binding is not None and lib is not None
    assert compiled is not None, "run `python -m sfu.native.build` first"
    made: list[Side] = []
    sockets = []
    for kind in ("python", "compiled"):
        sender, receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), udp()
        sender.setblocking(False)
        sockets += [sender, receiver]
        batch: mmsg.Batch
        if kind == "python":
            batch = mmsg.SendBatch(binding, sender.fileno(), 8)
        else:
            batch = compiled.SendBatch(sender.fileno(), 8)
        made.append(
            Side(
                batch,
                lib.outbound(KEY, GCM),
                mmsg.Destination(binding, socket.AF_INET, receiver.getsockname()),
                mmsg.Destination(binding, socket.AF_INET, ("127.0.0.1", 0)),  # EINVAL
                Counters(),
                receiver,
            )
        )
    yield made[0], made[1]
    for sock in sockets:
        sock.close()


def rtp_like() -> st.SearchStrategy[bytes]:
    """Mostly RTP version 2 headers with random fields, sometimes anything at all."""
    header = st.binary(min_size=11, max_size=11).map(lambda b: bytes([0x80 | (b[0] & 0x3F)]) + b)
    body = st.binary(max_size=1600)
    return st.one_of(st.builds(bytes.__add__, header, body), st.binary(max_size=40))


field = st.one_of(st.integers(0, 0xFFFFFFFF), st.integers(-(1 << 70), 1 << 70))
offset = st.one_of(st.integers(-3, 1600), st.integers(-(1 << 70), 1 << 70))
operation = st.tuples(
    st.sampled_from(["add", "add_srtp", "add_rewritten"]),
    rtp_like(),
    st.tuples(
        st.one_of(st.integers(0, 127), field),
        st.one_of(st.integers(0, 0xFFFF), field),
        field,
        field,
    ),
    offset,
    st.integers(-(1 << 70), 1 << 70),
    st.booleans(),  # the refused destination
)


def apply(side: Side, op: tuple[Any, ...]) -> object:
    kind, packet, header, twcc_at, twcc_seq, refused = op
    to = side.bad if refused else side.good
    batch = side.batch
    try:
        if kind == "add":
            return batch.add(packet, to, side.counters)
        if kind == "add_srtp":
            return batch.add_srtp(packet, side.srtp, to, side.counters, twcc_at, twcc_seq)
        return batch.add_rewritten(packet, header, side.srtp, to, side.counters, twcc_at, twcc_seq)
    except Exception:  # struct.error in Python, ValueError in C: an error either way
        return "error"


def state(side: Side) -> tuple[object, ...]:
    b = side.batch
    return (b.count, b.calls, b.sent, b.dropped, side.counters.as_dict())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, max_size=24))
def test_both_batches_put_the_same_bytes_on_the_wire(
    sides: tuple[Side, Side], ops: list[tuple[Any, ...]]
) -> None:
    python, compiled = sides
    for op in ops:
        assert apply(python, op) == apply(compiled, op), op
        if python.batch.count >= python.batch.capacity:
            assert python.batch.flush() == compiled.batch.flush()
        assert state(python) == state(compiled)
    assert python.batch.flush() == compiled.batch.flush()
    assert state(python) == state(compiled)
    assert drain(python.receiver) == drain(compiled.receiver)


@pytest.mark.parametrize("kind", ["python", "compiled"])
def test_a_full_batch_refuses_more_and_queues_nothing(sides: tuple[Side, Side], kind: str) -> None:
    side = sides[kind == "compiled"]
    side.batch.flush()
    drain(side.receiver)
    batch = side.batch
    while batch.count < batch.capacity:
        batch.add(b"x", side.good, side.counters)
    with pytest.raises(IndexError):
        batch.add(b"y", side.good, side.counters)
    with pytest.raises(IndexError):
        batch.add_rewritten(bytes(100), (96, 1, 2, 3), side.srtp, side.good, side.counters)
    assert batch.count == batch.capacity
    batch.flush()
    assert drain(side.receiver) == [b"x"] * batch.capacity


@pytest.mark.parametrize("kind", ["python", "compiled"])
def test_a_transport_wide_offset_past_the_packet_writes_nothing(
    sides: tuple[Side, Side], kind: str
) -> None:
    side = sides[kind == "compiled"]
    side.batch.flush()
    drain(side.receiver)
    packet = bytes([0x80, 96]) + bytes(10) + bytes(50)
    for at in (len(packet) - 1, len(packet), 1400, 1 << 40):
        header = (96, 1, 2, 3)
        sent = side.batch.add_rewritten(
            packet, header, side.srtp, side.good, side.counters, at, 0xFFFF
        )
        assert sent > 0
    side.batch.flush()
    got = drain(side.receiver)
    assert len(got) == 4 and len(set(got)) == 1, "the same packet each time: nothing written"


def test_the_compiled_batch_checks_what_it_is_given() -> None:
    compiled = native.load("_fanout")
    assert compiled is not None
    with pytest.raises(ValueError):
        compiled.SendBatch(0, 0)
    with pytest.raises(ValueError):
        compiled.SendBatch(0, 100_000)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        batch = compiled.SendBatch(sock.fileno(), 4)

        class Odd:
            raw = bytes(29)  # longer than any sockaddr we send to

        with pytest.raises(ValueError):
            batch.add(b"x", Odd(), Counters())
        with pytest.raises(TypeError):
            batch.add(b"x", Odd())
        assert batch.count == 0


def udp6() -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("::1", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return sock


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.binary(max_size=64), st.integers(0, 3000)),
        max_size=40,  # what the receive buffers hold: nothing dropped by the kernel
    )
)
def test_both_receive_batches_read_the_same_datagrams_and_sources(
    datagrams: list[tuple[int, bytes, int]],
) -> None:
    binding, compiled = mmsg.load(), native.load("_fanout")
    assert binding is not None and compiled is not None
    made = [udp(), udp(), udp6(), udp6()]  # a v4 and a v6 receiver per twin
    sources = [udp(), udp(), udp6()]
    try:
        readers: list[list[mmsg.Reader]] = [
            [
                mmsg.RecvBatch(binding, made[0].fileno(), 16),
                compiled.RecvBatch(made[1].fileno(), 16),
            ],
            [
                mmsg.RecvBatch(binding, made[2].fileno(), 16),
                compiled.RecvBatch(made[3].fileno(), 16),
            ],
        ]
        for source, head, size in datagrams:
            data = head + bytes(size)  # past 2,048 bytes: truncated by both
            targets = made[2:] if source == 2 else made[:2]
            for target in targets:
                sources[source].sendto(data, target.getsockname()[:2])
        for python, c in readers:
            while True:
                got = python.read()
                theirs = c.read()
                assert [(d, a) for d, a, _ in got] == [(d, a) for d, a, _ in theirs]
                if not got:
                    break
            assert python.calls == c.calls
    finally:
        for sock in made + sources:
            sock.close()
