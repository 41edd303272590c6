"""The compiled fan-out (sfu.native._fanout: `fanout` + `Direct`) against the Python path.

Two worlds are built the same way, one with VISITROOM_NATIVE=0 and one with
the compiled modules: a publisher's Producer, consumers in mixed states (plain,
plain with transport-cc, fresh, thumbnail, extension remap, temporal thinning,
another source, a transport without the batch, transport-cc without the
packet's extension) on real `WebRtcTransport` send sides (keyed libsrtp, the
shared-socket send batch) to UDP sockets on loopback.  The same packets go
through `Producer.on_rtp` in both; the bytes each subscriber receives, the
consumers' state, the transports' counters and send histories must be the
same (send times aside: the clock moves).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pylibsrtp import Policy, Session

from sfu import native
from sfu.packet.counters import Counters
from sfu.packet.rtp import build_rtp, parse_rtp
from sfu.packet.twcc import transport_seq_offset
from sfu.packet.vp8 import Vp8Descriptor, parse_vp8
from sfu.routing.consumer import Consumer
from sfu.routing.producer import Producer
from sfu.sdp.negotiate import MID_URI, TWCC_URI
from sfu.transport import mmsg, srtp
from sfu.transport.sendhistory import SendHistory
from sfu.transport.udpmux import Egress, Route
from sfu.transport.webrtc import WebRtcTransport
from tests.sfu_fakes import VP8, Capture

GCM = Policy.SRTP_PROFILE_AEAD_AES_256_GCM
PUB_IDS = {TWCC_URI: 3, MID_URI: 4}
OTHER_IDS = {TWCC_URI: 5, MID_URI: 4}  # a remap: copies made whole, in Python
STATES = (
    "plain",
    "plain-twcc",
    "fresh",
    "thumbnail",
    "remap",
    "thinned",
    "other-source",
    "no-batch",
    "twcc-no-offset",
)
STATE_FIELDS = (
    "_seq",
    "_ts",
    "_time",
    "_fresh",
    "_seq_offset",
    "_ts_offset",
    "_first_in",
    "packets_sent",
    "octets_sent",
    "thumbnail_ts",
)


@contextlib.contextmanager
def natively(on: bool) -> Iterator[None]:
    before = os.environ.get("VISITROOM_NATIVE")
    os.environ["VISITROOM_NATIVE"] = "1" if on else "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ["VISITROOM_NATIVE"]
        else:
            os.environ["VISITROOM_NATIVE"] = before


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


class World:
    """One publisher, one consumer per state, each on its own subscriber transport."""

    def __init__(self, compiled: bool, twcc_ext: bool) -> None:
        binding, lib = mmsg.load(), srtp.load()
        assert binding is not None and lib is not None
        self.sockets: list[socket.socket] = []
        with natively(compiled):
            shared, unbatched = udp(), udp()
            self.sockets += [shared, unbatched]
            self.egress = Egress(shared, binding)
            self.plain_egress = Egress(unbatched, None)
            self.egress.hold()  # as inside a read batch: the test flushes
            self.publisher = self._producer("pub", 5000, twcc_ext)
            self.other = self._producer("other", 7000, twcc_ext)
            random.seed(1)  # the consumers' random first sequence numbers and timestamps
            self.consumers = [self._consumer(n, state) for n, state in enumerate(STATES)]
        self.compiled = compiled
        if compiled:
            assert self.publisher._fanout is not None
            assert self.consumers[0].output.fast is not None  # type: ignore[attr-defined]
        else:
            assert self.publisher._fanout is None

    @staticmethod
    def _producer(owner: str, ssrc: int, twcc_ext: bool) -> Producer:
        return Producer(
            owner=owner,
            mid="0",
            kind="video",
            source="camera",
            codecs=(VP8,),
            ssrc=ssrc,
            rtx_ssrc=ssrc + 1,
            ext_ids=PUB_IDS if twcc_ext else {MID_URI: 4},
            output=Capture(),
        )

    def _transport(self, n: int, batched: bool, twcc: int | None) -> WebRtcTransport:
        lib = srtp.load()
        assert lib is not None
        key = bytes([n]) * 44
        receiver = udp()
        self.sockets.append(receiver)
        t = WebRtcTransport.__new__(WebRtcTransport)
        t.counters = Counters()
        t.inbound_ssrcs = set()
        t.history = SendHistory()
        t._tx = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=GCM))
        egress = self.egress if batched else self.plain_egress
        destination = egress.destination(receiver.getsockname())
        t._route = Route(egress, destination)
        t._tx_direct = lib.outbound(key, GCM)
        t._update_direct()
        t.set_transport_cc(twcc)
        return t

    def _consumer(self, n: int, state: str) -> Consumer:
        twcc = 3 if state in ("plain-twcc", "twcc-no-offset", "remap") else None
        transport = self._transport(n, state != "no-batch", twcc)
        ids = OTHER_IDS if state == "remap" else PUB_IDS
        if state == "twcc-no-offset":
            ids = {TWCC_URI: 9, MID_URI: 4}
        c = Consumer(
            owner=f"s{n}",
            mid="1",
            kind="video",
            ssrc=1000 + n,
            rtx_ssrc=None,
            codecs=(VP8,),
            ext_ids=ids,
            output=transport,
        )
        c.switch(self.other if state == "other-source" else self.publisher)
        if c.pending is not None:  # a video switch waits for a key frame: skip it here
            c._promote()
        if state == "thumbnail":
            c.set_thumbnail(True)
        if state == "thinned":
            c.set_layers(0, 0)
        return c

    def feed(self, data: bytes, now: float) -> None:
        h = parse_rtp(data)
        self.publisher.twcc_at = transport_seq_offset(data, h, 3)
        self.publisher.on_rtp(data, h, now)
        self.egress.flush()  # what the end of a read batch does

    def state(self) -> list[Any]:
        out: list[Any] = []
        for c in self.consumers:
            out.append({f: getattr(c, f) for f in STATE_FIELDS})
            t = c.output
            assert isinstance(t, WebRtcTransport)
            entries = [(e[0], e[2], e[3]) for e in t.history.entries() if e is not None]
            out.append((t.counters.as_dict(), t.history.next, entries))
        return out

    def wire(self) -> list[list[bytes]]:
        return [drain(s) for s in self.sockets[2:]]

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def vp8_packet(seq: int, ts: int, kind: int, size: int, twcc_ext: bool, tseq: int) -> bytes:
    # kind: 0 a key frame start, 1 an inter frame start (TID 0), 2 a frame's middle,
    # 3 a start of TID 1 (what thinning drops)
    if kind == 0:
        payload = b"\x10\x00\x00\x00\x9d\x01\x2a\x40\x01\xf0\x00"
    elif kind == 3:
        payload = b"\x90\x20\x40\x01\x00\x00"  # X, T: TID 1
    elif kind == 1:
        payload = b"\x90\x20\x00\x01\x00\x00"  # X, T: TID 0
    else:
        payload = b"\x00"
    exts = {4: b"0"}
    if twcc_ext:
        exts[3] = (tseq & 0xFFFF).to_bytes(2, "big")
    return build_rtp(
        payload_type=96,
        sequence=seq & 0xFFFF,
        timestamp=ts & 0xFFFFFFFF,
        ssrc=5000,
        payload=payload + bytes(size),
        extensions=exts,
        marker=kind == 2,
    )


step = st.tuples(
    st.integers(-3, 4),  # sequence step: reordering, repeats, loss
    st.integers(0, 2),  # timestamp step in frames
    st.integers(0, 3),  # packet kind
    st.integers(0, 1300),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=40), st.booleans(), st.integers(0, 0xFFFF))
def test_the_same_packets_give_the_same_bytes_and_state_on_both_paths(
    steps: list[tuple[int, int, int, int]], twcc_ext: bool, first: int
) -> None:
    assert native.load("_fanout") is not None, "run `python -m sfu.native.build` first"
    worlds = [World(False, twcc_ext), World(True, twcc_ext)]
    try:
        seq, ts = first, first * 90
        for n, (dseq, dts, kind, size) in enumerate(steps):
            seq, ts = seq + dseq, ts + dts * 3000
            data = vp8_packet(seq, ts, kind if n else 0, size, twcc_ext, n)
            for world in worlds:
                world.feed(data, 100.0 + n / 30)
            assert worlds[0].state() == worlds[1].state(), n
        python, compiled = (w.wire() for w in worlds)
        assert python == compiled
        assert any(python), "something was sent"
    finally:
        for world in worlds:
            world.close()


def test_plain_consumers_are_served_in_c_and_the_rest_in_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = World(True, True)
    try:
        in_python: list[str] = []
        original = Consumer.forward

        def watched(self: Consumer, *args: Any) -> None:
            in_python.append(STATES[self.ssrc - 1000])
            original(self, *args)

        monkeypatch.setattr(Consumer, "forward", watched)
        world.feed(vp8_packet(1, 0, 0, 100, True, 1), 1.0)  # a key frame
        # every slot begins its segment in Python (fresh)
        assert len(in_python) == len(world.publisher.consumers) == len(STATES) - 1
        in_python.clear()
        world.feed(vp8_packet(2, 0, 2, 100, True, 2), 1.01)  # the middle of a frame
        assert sorted(in_python) == sorted(["thumbnail", "remap", "no-batch", "twcc-no-offset"])
        in_python.clear()
        world.feed(vp8_packet(3, 3000, 3, 100, True, 3), 1.02)  # a TID 1 frame starts
        assert "thinned" in in_python, "Python moves the thinned slot to the mapped path"
        assert "plain" not in in_python
        sent = {state: c.packets_sent for state, c in zip(STATES, world.consumers, strict=True)}
        assert sent["plain"] == sent["plain-twcc"] == sent["fresh"] == 3
        assert sent["other-source"] == 0

        class Watched(Consumer):
            __slots__ = ()

        in_python.clear()
        for c in world.consumers:
            c.__class__ = Watched
        world.feed(vp8_packet(4, 3000, 2, 100, True, 4), 1.03)
        assert len(in_python) == len(world.publisher.consumers), "another class: all in Python"
    finally:
        world.close()


async def test_a_compiled_send_outside_a_read_batch_is_flushed_in_the_same_turn() -> None:
    world = World(True, False)
    try:
        world.egress.release()  # idle: the first datagram schedules a flush
        t = world.consumers[0].output
        assert isinstance(t, WebRtcTransport) and t.fast is not None
        t.send_rewritten(
            vp8_packet(1, 0, 0, 100, False, 0), ssrc=1, sequence=2, timestamp=3, payload_type=96
        )
        assert world.egress.batch is not None and world.egress.batch.count == 1
        assert not world.egress.idle
        await asyncio.sleep(0)
        assert world.egress.batch.count == 0
        assert len(drain(world.sockets[2])) == 1
        assert t.counters.rtp_out == 1 and t.counters.bytes_out > 100
    finally:
        world.close()


def test_the_compiled_fanout_refuses_what_it_cannot_read() -> None:
    compiled = native.load("_fanout")
    assert compiled is not None
    world = World(True, False)
    try:
        data = vp8_packet(1, 0, 0, 100, False, 0)
        h = parse_rtp(data)
        with pytest.raises(TypeError):
            compiled.fanout(world.publisher, tuple(world.consumers), data, h, "vp8", 1.0, -1)
        with pytest.raises(AttributeError):
            compiled.fanout(world.publisher, [], data, object(), "vp8", 1.0, -1)
        with pytest.raises(AttributeError):
            compiled.configure("consumer", Capture)  # no such fields: the table stays

        class Plain:
            rtp_out = bytes_out = 0  # class attributes, not slots

        with pytest.raises(TypeError):
            compiled.configure("counters", Plain)

        class Loose:
            idle = True  # a class attribute, not Egress's slot

        with pytest.raises(TypeError):
            compiled.configure("egress", Loose)

        class Other(NamedTuple):
            start: bool

        with pytest.raises(TypeError):
            compiled.configure("descriptor", Plain)  # not a NamedTuple
        with pytest.raises(AttributeError):
            compiled.configure("descriptor", Other)  # no partition or tid: the class stays
        world.feed(data, 1.0)
        assert world.consumers[0].packets_sent == 1, "still configured as before"
    finally:
        world.close()


@pytest.mark.parametrize("start", [True, False])
@pytest.mark.parametrize("partition", [0, 1])
@pytest.mark.parametrize("tid", [0, 1, 2])
def test_the_compiled_fanout_reads_frame_start_from_the_descriptors_fields(
    monkeypatch: pytest.MonkeyPatch, start: bool, partition: int, tid: int
) -> None:
    """No Python property call per video packet: `start and partition == 0` in C,
    with the same answer as the property (a thinned slot moves on a frame start only)."""
    world = World(True, False)
    try:
        world.feed(vp8_packet(1, 0, 0, 100, False, 1), 1.0)  # a key frame: every slot started
        first = 0x80 | (0x10 if start else 0) | partition  # X, S, PID; then T; then the TID
        desc = parse_vp8(bytes([first, 0x20, tid << 6]) + bytes(10))
        assert (desc.start, desc.partition, desc.tid) == (start, partition, tid)
        expected = desc.frame_start

        def no_call(_: Vp8Descriptor) -> bool:
            raise AssertionError("the compiled fan-out called frame_start")

        thinned = world.consumers[STATES.index("thinned")]
        moved: list[bool] = []
        monkeypatch.setattr(Vp8Descriptor, "frame_start", property(no_call))
        monkeypatch.setattr(Consumer, "forward", lambda self, *args: moved.append(self is thinned))
        compiled = native.load("_fanout")
        assert compiled is not None
        world.publisher.desc = desc
        data = vp8_packet(2, 0, 2, 100, False, 2)
        compiled.fanout(world.publisher, [thinned], data, parse_rtp(data), "vp8", 1.01, -1)
        # a thinned slot whose target is below the packet's TID goes to Python on a frame start
        assert moved == ([True] if expected and tid > thinned._tid_target else [])
    finally:
        world.close()


def test_a_transport_routed_elsewhere_gets_the_next_copy_there() -> None:
    """A consumer's memo keeps its transport's `fast` (the Direct) while it is not
    retired; the transport's `fast` setter retires the one it replaces."""
    world = World(True, False)
    try:
        consumer = world.consumers[0]  # plain
        transport = consumer.output
        assert isinstance(transport, WebRtcTransport)
        world.feed(vp8_packet(1, 0, 0, 100, False, 0), 1.0)  # (the segment's first: Python)
        world.feed(vp8_packet(2, 0, 2, 100, False, 1), 1.0)  # the compiled copy, remembered
        assert len(world.wire()[0]) == 2
        old = transport.fast
        moved = udp()
        world.sockets.append(moved)
        transport._set_route(Route(world.egress, world.egress.destination(moved.getsockname())))
        assert transport.fast is not old and old.retired and not transport.fast.retired
        world.feed(vp8_packet(3, 0, 2, 100, False, 2), 1.01)
        wire = world.wire()
        assert wire[0] == [] and len(wire[-1]) == 1  # the new address, not the old one
        assert consumer.packets_sent == 3
        transport.fast = None  # (unrouted: the Python path, which drops it)
        assert transport._fast is None
    finally:
        world.close()


def test_a_compiled_copy_records_its_send_history_without_allocating() -> None:
    """A transport-cc copy writes its history slot in place: after the ring has been
    written once, thousands of copies leave Python's allocated memory where it was
    (measured once the publisher's retransmission cache is full)."""
    world = World(True, True)
    try:
        plain = world.consumers[STATES.index("plain-twcc")]
        history = plain.output.history  # type: ignore[attr-defined]
        ring = history.ring
        tracemalloc.start()  # from the start: what replaces a traced object is no growth
        try:
            for n in range(1, 3200):
                if n == 1200:
                    before = tracemalloc.get_traced_memory()[0]
                world.feed(vp8_packet(n, 0, 0 if n == 1 else 2, 100, True, n), 1.0 + n / 1000)
                if n % 100 == 0:
                    world.wire()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert history.ring is ring and history.next == 3199
        size = len(vp8_packet(3199, 0, 2, 100, True, 3199))
        assert history.entries()[3198] == (3198, pytest.approx(time.monotonic(), abs=60), size, -1)
        # 2,000 copies to this transport (and 2,000 to each of the two Python-served
        # transport-cc ones): as tuples that was 160 bytes each, 960 kB
        assert grown < 64_000, grown
    finally:
        world.close()
