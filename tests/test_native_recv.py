"""sfu.native._fanout.RecvBatch against mmsg.RecvBatch: the same answers on the same traffic.

Two receiving sockets get the very same datagrams (sizes from empty to
larger than a slot, from several sources, IPv4 and IPv6); one is read by
each twin, and what they return must be equal, call for call (the kernel's
receive times within the moments the two copies were sent).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu import native
from sfu.native import _fanout
from sfu.transport import mmsg, rxtime

Reader = mmsg.Reader
# Two sendto calls apart, on a loaded machine (sfu.transport.rxtime's tests hold the stamps tight).
STAMP_SLACK_S = 0.05


def untimed(
    batch: list[tuple[bytes, tuple[str, int], float]],
) -> list[tuple[bytes, tuple[str, int]]]:
    return [(data, addr) for data, addr, _ in batch]


@pytest.fixture(scope="module")
def compiled() -> ModuleType:
    """The compiled module itself, whatever VISITROOM_NATIVE says (the twins are compared)."""
    return _fanout


@pytest.fixture(scope="module")
def binding() -> mmsg.Mmsg:
    loaded = mmsg.load()
    assert loaded is not None
    return loaded


class Rig:
    """Sources sending each datagram to two receivers, one read by each twin."""

    def __init__(self, family: int, host: str, binding: mmsg.Mmsg, compiled: ModuleType) -> None:
        self.sockets: list[socket.socket] = []
        self.receivers = [self.udp(family, host) for _ in range(2)]
        for receiver in self.receivers:
            receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            assert rxtime.enable(receiver)
        self.sources = [self.udp(family, host) for _ in range(3)]
        self.python: Reader = mmsg.RecvBatch(binding, self.receivers[0].fileno(), 4)
        self.compiled: Reader = compiled.RecvBatch(self.receivers[1].fileno(), 4)

    def udp(self, family: int, host: str) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        sock.setblocking(False)
        self.sockets.append(sock)
        return sock

    def send(self, source: int, data: bytes) -> None:
        for receiver in self.receivers:
            self.sources[source].sendto(data, receiver.getsockname()[:2])

    def read_both(self) -> None:
        """Read until both are empty; each call must answer the same."""
        while True:
            ours, theirs = self.compiled.read(), self.python.read()
            assert untimed(ours) == untimed(theirs)
            # Each receiver's kernel stamped its copy as it was sent (one after the other).
            for (_, _, a), (_, _, b) in zip(ours, theirs, strict=True):
                assert abs(a - b) < STAMP_SLACK_S
            assert self.compiled.calls == self.python.calls
            if not ours:
                return

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


@pytest.fixture(params=[(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")], ids=["v4", "v6"])
def rig(request: pytest.FixtureRequest, binding: mmsg.Mmsg, compiled: ModuleType) -> Iterator[Rig]:
    family, host = request.param
    made = Rig(family, host, binding, compiled)
    yield made
    made.close()


def test_datagrams_of_every_size_from_several_sources_read_alike(rig: Rig) -> None:
    for n, size in enumerate((0, 1, 12, 1500, 2047, 2048, 2049, 4000, 100)):
        rig.send(n % 3, bytes([n]) * size)
    ours = rig.compiled.read()
    rig.python.read()  # the same four, compared below through the rest
    assert [len(d) for d, _, _ in ours] == [0, 1, 12, 1500]
    assert {addr for _, addr, _ in ours} == {s.getsockname()[:2] for s in rig.sources}
    rig.read_both()


def test_one_source_gives_one_address_object(rig: Rig) -> None:
    for n in range(4):
        rig.send(0, bytes([n]))
    got = rig.compiled.read()
    assert len({id(addr) for _, addr, _ in got}) == 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2200)), max_size=20))
def test_any_traffic_reads_alike(
    binding: mmsg.Mmsg, compiled: ModuleType, traffic: list[tuple[int, int]]
) -> None:
    rig = Rig(socket.AF_INET, "127.0.0.1", binding, compiled)
    try:
        for n, (source, size) in enumerate(traffic):
            rig.send(source, bytes([n & 0xFF]) * size)
        rig.read_both()
    finally:
        rig.close()


def test_a_closed_socket_is_an_oserror_and_bad_capacities_are_refused(
    binding: mmsg.Mmsg, compiled: ModuleType
) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fd = sock.fileno()
    sock.close()
    for reader in (compiled.RecvBatch(fd, 4), mmsg.RecvBatch(binding, fd, 4)):
        with pytest.raises(OSError) as raised:
            reader.read()
        assert raised.value.errno == errno.EBADF
    for capacity in (0, -1, 5000):
        with pytest.raises(ValueError, match="capacity"):
            compiled.RecvBatch(fd, capacity)


def test_the_shared_socket_reads_with_the_compiled_twin_unless_turned_off(
    binding: mmsg.Mmsg, compiled: ModuleType
) -> None:
    reader = mmsg.new_reader(binding, 0, 8)
    kind = compiled.RecvBatch if native.enabled() else mmsg.RecvBatch
    assert type(reader) is kind
