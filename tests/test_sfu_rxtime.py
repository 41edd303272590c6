"""Kernel receive timestamps (sfu.transport.rxtime): arrivals as the kernel saw them.

The readers of the shared socket (the compiled recvmmsg, its cffi twin and
recvmsg without the binding) hand each datagram on with the kernel's receive
time on the monotonic clock; the transport-cc feedback to a publisher carries
it, so a busy event loop no longer looks like a queue to the publisher's
estimator.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu import native
from sfu.packet.rtcp import TransportCc, parse_rtcp
from sfu.packet.twcc import receive_times
from sfu.transport import mmsg, rxtime
from tests.sfu_live import eventually, join, running_media
from tests.synthetic_peer import TWCC_ID, SyntheticPeer, _find_extension, vp8_payload

READERS = ("compiled", "cffi", "recvmsg")
INT64 = st.integers(-(2**63), 2**63 - 1)
PACE_S = 0.01  # the publisher's pacing in the stalled-loop test


def compiled_fanout() -> ModuleType:
    with pytest.MonkeyPatch.context() as patch:  # the twin under test, even with VISITROOM_NATIVE=0
        patch.setenv("VISITROOM_NATIVE", "1")
        module = native.load("_fanout")
    assert module is not None, "run `python -m sfu.native.build` first"
    return module


def reader_of(kind: str, sock: socket.socket, capacity: int = 64) -> mmsg.Reader:
    if kind == "recvmsg":
        return mmsg.SocketReader(sock, capacity)
    binding = mmsg.load()
    assert binding is not None
    if kind == "compiled":
        reader: mmsg.Reader = compiled_fanout().RecvBatch(sock.fileno(), capacity)
        return reader
    return mmsg.RecvBatch(binding, sock.fileno(), capacity)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(receiver, sender) on loopback; the receiver non-blocking, unstamped."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    try:
        yield receiver, sender
    finally:
        receiver.close()
        sender.close()


def paced_sends(
    sender: socket.socket, to: tuple[str, int], count: int, gap_s: float
) -> list[tuple[float, float]]:
    """Send `count` datagrams `gap_s` apart (nobody reads meanwhile).

    Each send's (before, after): the kernel stamps it in between, however long a loaded
    machine keeps this thread from running around the call.
    """
    sent = []
    for n in range(count):
        if n:
            time.sleep(gap_s)  # the sender's pacing, not a wait for an event
        before = time.monotonic()
        sender.sendto(b"datagram %d" % n, to)
        sent.append((before, time.monotonic()))
    return sent


# --- the clock conversion, both twins ----------------------------------------


@given(INT64, INT64, st.integers(rxtime.MAX_AGE_NS, 2**63 - 1))
def test_both_twins_convert_any_stamp_the_same_way(stamp: int, offset: int, read: int) -> None:
    ours = rxtime.monotonic_of(stamp, offset, read)
    assert compiled_fanout().monotonic_of(stamp, offset, read) == ours
    assert (read - rxtime.MAX_AGE_NS) / 1e9 <= ours <= read / 1e9


def test_a_stamp_is_moved_by_the_offset_and_kept_between_the_read_and_max_age_before() -> None:
    read, offset = 50 * 10**9, 1_700_000_000 * 10**9
    of = rxtime.monotonic_of
    assert of(offset + read - 200_000_000, offset, read) == (read - 200_000_000) / 1e9
    assert of(offset + read + 5, offset, read) == read / 1e9, "never after its read"
    assert of(offset + read - 10 * 10**9, offset, read) == (read - rxtime.MAX_AGE_NS) / 1e9
    assert of(0, offset, read) == read / 1e9, "no stamp: the read's time"


def test_the_clock_offset_is_realtime_minus_monotonic() -> None:
    offset, read = rxtime.clock_offset()
    real, mono = time.clock_gettime_ns(time.CLOCK_REALTIME), time.monotonic_ns()
    assert abs((real - mono) - offset) < 5_000_000  # a preempted sample, on a loaded machine
    assert read <= mono


@given(st.binary(max_size=96))
def test_any_control_buffer_gives_a_stamp_or_zero_and_never_raises(control: bytes) -> None:
    stamp = rxtime.stamp_in_control(control, len(control))
    assert 0 <= stamp < 2**63


# --- the readers, on real sockets ---------------------------------------------


def stamping_begun(kind: str, receiver: socket.socket, sender: socket.socket) -> None:
    """Wait until the kernel stamps datagrams as they arrive.

    Linux switches receive timestamps on for the whole machine by deferred work once a
    first socket asks (`net_enable_timestamp`); a datagram that comes before then is given
    the time of its read. On a fresh machine, with no other socket asking, that is the
    first moments after `enable`.
    """
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        sender.sendto(b"probe", receiver.getsockname())
        time.sleep(0.02)  # the probe's age when read, not a wait for an event
        stamps = [at for _, _, at in reader_of(kind, receiver).read()]
        if stamps and max(stamps) < time.monotonic() - 0.01:
            return
    raise AssertionError("the kernel never stamped a datagram as it arrived")


@pytest.mark.parametrize("kind", READERS)
def test_each_reader_gives_the_time_the_kernel_received_each_datagram(
    kind: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    receiver, sender = pair
    assert rxtime.enable(receiver)
    stamping_begun(kind, receiver, sender)
    sent = paced_sends(sender, receiver.getsockname(), 5, 0.02)
    got = reader_of(kind, receiver).read()
    read_at = time.monotonic()
    assert [data for data, _, _ in got] == [b"datagram %d" % n for n in range(5)]
    arrivals = [at for _, _, at in got]
    # Loopback delivers in the sending call: the kernel's stamp is the send time.
    for at, (before, after) in zip(arrivals, sent, strict=True):
        assert before - 0.001 <= at <= after + 0.001
        assert at <= read_at
    for a, b in itertools.pairwise(arrivals):
        assert b - a >= 0.015, "the sender's 20 ms pacing, not the read's bunching"


@pytest.mark.parametrize("kind", READERS)
def test_without_the_option_each_datagram_gets_the_time_of_its_read(
    kind: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    receiver, sender = pair
    sent = paced_sends(sender, receiver.getsockname(), 3, 0.02)
    before = time.monotonic()
    got = reader_of(kind, receiver).read()
    arrivals = {at for _, _, at in got}
    assert len(got) == 3 and len(arrivals) == 1, "one read, one time"
    assert arrivals.pop() >= before > sent[-1][0]


def test_the_twins_stamp_the_same_datagrams_alike() -> None:
    """Each twin reads its own socket; both get the same datagrams at the same moments."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    receivers, sender = socks[:3], socks[3]
    try:
        sender.bind(("127.0.0.1", 0))
        for receiver in receivers:
            receiver.bind(("127.0.0.1", 0))
            receiver.setblocking(False)
            assert rxtime.enable(receiver)
        for n in range(6):
            if n:
                time.sleep(0.01)  # the sender's pacing
            for receiver in receivers:
                sender.sendto(b"%d" % n, receiver.getsockname())
        reads = [reader_of(k, r).read() for k, r in zip(READERS, receivers, strict=True)]
        assert reads[0] and [d for d, _, _ in reads[0]] == [d for d, _, _ in reads[1]]
        assert [d for d, _, _ in reads[1]] == [d for d, _, _ in reads[2]]
        for a, b, c in zip(*reads, strict=True):
            assert a[1] == b[1] == c[1] == sender.getsockname()
            assert abs(a[2] - b[2]) < 0.005 and abs(b[2] - c[2]) < 0.005
    finally:
        for sock in socks:
            sock.close()


# --- through the SFU: transport-cc feedback to a publisher ------------------


@pytest.fixture(params=READERS)
def reader_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    kind: str = request.param
    monkeypatch.setenv("VISITROOM_NATIVE", "1" if kind == "compiled" else "0")
    if kind == "compiled":
        compiled_fanout()
    return kind


def reported_arrivals(peer: SyntheticPeer) -> dict[int, int]:
    """Transport-wide sequence -> arrival (us) from the transport-cc feedback `peer` got."""
    out: dict[int, int] = {}
    for packet in peer.sink.rtcp:
        for fb in parse_rtcp(packet):
            if isinstance(fb, TransportCc):
                out.update((s, at) for s, at in receive_times(fb) if at is not None)
    return out


class PacedSender(threading.Thread):
    """Sends protected packets from the peer's own socket every PACE_S, off the event loop."""

    def __init__(self, peer: SyntheticPeer, packets: list[bytes]) -> None:
        super().__init__(daemon=True)
        selected = peer.transport._ice.selected
        assert selected is not None
        fd = selected[0].transport.get_extra_info("socket").fileno()
        self.sock = socket.socket(fileno=os.dup(fd))
        self.to = selected[1]
        self.packets = packets
        self.sent: list[float] = []
        self.started_sending = threading.Event()

    def run(self) -> None:
        try:
            start = time.monotonic()
            self.started_sending.set()
            for n, packet in enumerate(self.packets):
                delay = start + n * PACE_S - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # the publisher's pacing
                self.sent.append(time.monotonic())
                self.sock.sendto(packet, self.to)
        finally:
            self.sock.close()


async def test_a_stalled_event_loop_does_not_bunch_the_arrivals_a_publisher_is_told(
    reader_kind: str,
) -> None:
    # Stamped when Python read them, the packets that came during a 200 ms
    # stall were all reported as arriving at its end, 0 ms apart: a queue, to
    # the publisher's delay-based estimator.
    async with running_media(batched_io=reader_kind != "recvmsg") as (media, _):
        assert all(m.kernel_stamps for m in media.muxes)
        alice = await join(media, "alice", SyntheticPeer(video=True, transport_cc=True))
        transport = media.participants["alice"].transport
        await eventually(
            lambda: transport is not None and transport.connected,
            what="the SFU's side keyed (the peer may finish DTLS first)",
        )
        plain = [alice.rtp("video", vp8_payload(n, keyframe=n == 0)) for n in range(30)]
        numbers = [
            (p[at] << 8) | p[at + 1] for p in plain if (at := _find_extension(p, TWCC_ID, 2)) >= 0
        ]
        assert len(numbers) == 30
        sender = PacedSender(alice, [alice.transport.protect(p) for p in plain])
        sender.start()
        assert sender.started_sending.wait(5.0)
        time.sleep(0.2)  # the stall under test: the event loop is busy, packets queue
        await asyncio.to_thread(sender.join, 10.0)
        await eventually(
            lambda: set(numbers) <= reported_arrivals(alice).keys(),
            what="transport-cc feedback about all 30 packets",
        )
    arrivals = reported_arrivals(alice)
    reported = [arrivals[n] / 1e6 for n in numbers]
    for n in range(1, 30):
        told = reported[n] - reported[n - 1]
        paced = sender.sent[n] - sender.sent[n - 1]
        assert abs(told - paced) < 0.004, (n, told, paced)
