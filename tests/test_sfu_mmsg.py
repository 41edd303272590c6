"""sendmmsg/recvmmsg through cffi (sfu.transport.mmsg) and the send batch on real sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from sfu.packet.counters import Counters
from sfu.transport import mmsg
from sfu.transport.udpmux import Egress


@pytest.fixture
def binding() -> mmsg.Mmsg:
    loaded = mmsg.load()
    assert loaded is not None, "this Linux/glibc machine must have the binding"
    return loaded


def udp(bind: bool = True) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    if bind:
        sock.bind(("127.0.0.1", 0))
    return sock


def drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(2048))
        except BlockingIOError:
            return out


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    made: list[socket.socket] = []
    yield made
    for sock in made:
        sock.close()


def test_a_batch_goes_out_in_one_call_in_order(
    native_path: str, binding: mmsg.Mmsg, sockets: list[socket.socket]
) -> None:
    sender, receiver = udp(bind=False), udp()
    sockets += [sender, receiver]
    batch = mmsg.new_batch(binding, sender.fileno(), 64)
    to = mmsg.Destination(binding, socket.AF_INET, receiver.getsockname())
    counters = Counters()
    for i in range(50):
        assert not batch.add(i.to_bytes(2, "big") * 100, to, counters)
    assert batch.flush() == 50 and batch.calls == 1
    assert [int.from_bytes(d[:2], "big") for d in drain(receiver)] == list(range(50))
    assert batch.flush() == 0 and batch.calls == 1, "nothing queued: no system call"


def test_a_refused_datagram_is_counted_and_the_rest_still_go(
    native_path: str, binding: mmsg.Mmsg, sockets: list[socket.socket]
) -> None:
    sender, receiver = udp(bind=False), udp()
    sockets += [sender, receiver]
    batch = mmsg.new_batch(binding, sender.fileno(), 8)
    good = mmsg.Destination(binding, socket.AF_INET, receiver.getsockname())
    bad = mmsg.Destination(binding, socket.AF_INET, ("127.0.0.1", 0))  # EINVAL
    ours, theirs = Counters(), Counters()
    batch.add(b"a", good, ours)
    batch.add(b"b", bad, theirs)
    batch.add(b"c", good, ours)
    assert batch.flush() == 2
    # sendmmsg stops at the refused one (a partial send), the next call skips it.
    assert batch.calls == 3
    assert drain(receiver) == [b"a", b"c"]
    assert (ours.send_errors, theirs.send_errors, batch.dropped) == (0, 1, 1)


def test_a_full_buffer_drops_the_rest_of_the_batch_without_spinning(
    native_path: str, binding: mmsg.Mmsg, sockets: list[socket.socket]
) -> None:
    # A datagram socketpair whose reader does not read: EAGAIN after a few.
    writer, reader = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    sockets += [writer, reader]
    writer.setblocking(False)
    writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    batch = mmsg.new_batch(binding, writer.fileno(), 256)
    connected = mmsg.Destination(binding, socket.AF_UNIX, None)
    counters = Counters()
    for _ in range(200):
        batch.add(bytes(1000), connected, counters)
    sent = batch.flush()
    assert 0 < sent < 200, "a partial send"
    assert counters.send_errors == batch.dropped == 200 - sent
    assert batch.calls == 2, "one call that sent some, one that met EAGAIN: then it stops"
    reader.setblocking(False)
    assert len(drain(reader)) == sent
    batch.add(b"after", connected, counters)
    assert batch.flush() == 1 and reader.recv(100) == b"after", "usable again once drained"


def test_oversize_datagrams_are_refused_at_the_door(
    native_path: str, binding: mmsg.Mmsg, sockets: list[socket.socket]
) -> None:
    sender = udp(bind=False)
    sockets.append(sender)
    batch = mmsg.new_batch(binding, sender.fileno(), 4)
    counters = Counters()
    assert not batch.add(
        bytes(mmsg.SLOT + 1), mmsg.Destination(binding, socket.AF_INET, ("127.0.0.1", 9)), counters
    )
    assert batch.count == 0 and counters.oversize == 1


def test_recvmmsg_reads_what_is_waiting_with_its_sources(
    native_path: str, binding: mmsg.Mmsg, sockets: list[socket.socket]
) -> None:
    a, b, receiver = udp(), udp(), udp()
    sockets += [a, b, receiver]
    reader = mmsg.new_reader(binding, receiver.fileno(), 4)
    for i in range(6):
        (a if i % 2 else b).sendto(bytes([i]) * 10, receiver.getsockname())
    first, second = reader.read(), reader.read()
    assert [d[0] for d, _, _ in first + second] == list(range(6))
    assert len(first) == 4 and reader.read() == []
    sources = {addr for _, addr, _ in first}
    assert sources == {a.getsockname(), b.getsockname()}


def test_sockaddr_round_trips_for_both_families() -> None:
    for family, addr in ((socket.AF_INET, ("10.1.2.3", 40000)), (socket.AF_INET6, ("::1", 9))):
        raw = mmsg.sockaddr(family, addr)
        assert mmsg.address(raw) == addr
        assert len(raw) == (16 if family == socket.AF_INET else 28)


async def test_packets_of_one_turn_are_flushed_before_the_loop_waits_in_order(
    native_path: str, binding: mmsg.Mmsg, sockets: list[socket.socket]
) -> None:
    sender, one, two = udp(bind=False), udp(), udp()
    sockets += [sender, one, two]
    for receiver in (one, two):
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    egress = Egress(sender, binding)
    assert egress.batch is not None
    to_one, to_two = egress.destination(one.getsockname()), egress.destination(two.getsockname())
    counters = Counters()
    # Two consumers' packets interleaved, more than a batch holds (a flush when full).
    for i in range(300):
        egress.queue(i.to_bytes(2, "big"), to_one if i % 2 else to_two, counters)
    assert egress.batch.count == 300 - egress.batch.capacity
    await asyncio.sleep(0)  # the call_soon flush runs in this turn of the loop
    assert egress.batch.count == 0
    got_one = [int.from_bytes(d[:2], "big") for d in drain(one)]
    got_two = [int.from_bytes(d[:2], "big") for d in drain(two)]
    assert got_one == list(range(1, 300, 2)) and got_two == list(range(0, 300, 2))
    assert egress.calls == 2 and counters.send_errors == 0


async def test_without_the_binding_each_datagram_is_sent_at_once(
    sockets: list[socket.socket],
) -> None:
    sender, receiver = udp(bind=False), udp()
    sockets += [sender, receiver]
    egress = Egress(sender, None)
    assert egress.batch is None
    to = egress.destination(receiver.getsockname())
    counters = Counters()
    for i in range(5):
        egress.queue(bytes([i]), to, counters)
        assert receiver.recv(10) == bytes([i]), "sent before queue() returns"
    assert egress.calls == 5
    egress.queue(b"x", egress.destination(("127.0.0.1", 0)), counters)
    assert counters.send_errors == 1


def test_a_closed_batch_drops_instead_of_writing_to_a_reused_descriptor(
    native_path: str, binding: mmsg.Mmsg, sockets: list[socket.socket]
) -> None:
    sender, receiver = udp(bind=False), udp()
    sockets += [sender, receiver]
    batch = mmsg.new_batch(binding, sender.fileno(), 4)
    to = mmsg.Destination(binding, socket.AF_INET, receiver.getsockname())
    counters = Counters()
    batch.add(b"before", to, counters)
    batch.close()
    assert batch.count == 0 and counters.send_errors == 1, "queued, never sent"
    batch.add(b"after", to, counters)
    assert batch.flush() == 0 and batch.calls == 0 and counters.send_errors == 2
    assert drain(receiver) == []
