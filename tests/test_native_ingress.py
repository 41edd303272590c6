"""sfu.native._ingress against the Python it replaces: the same datagrams, the same effects.

Two publishers, each a real `Participant` with a real `WebRtcTransport`
(keyed through its own `_on_keys`, its ICE agent's pair selected on a real
`UdpMux`), get the very same datagrams in the same read batches: one side
was built with VISITROOM_NATIVE=0 (the mux's Python loop and `datagram`, the
transport's `_on_srtp`, `Participant.on_rtp`, the producers' Python path),
the other compiled (`sfu.native._ingress.dispatch` and `Inlet`).  After each
batch everything the datagrams may change must be equal: both counters
(transport and mux), the SSRCs admitted and learned, each producer's
statistics and cache, the transport-cc arrival log, audio levels heard, and
what every consumer was handed.  Hypothesis sends hostile traffic: truncated,
bit-flipped, replayed and oversized datagrams, garbage after an SRTP first
byte, RTCP, unknown and unannounced SSRCs (learned by MID or not), RTX,
padding-only packets, strange header extensions, foreign source addresses.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiortc.rtcdtlstransport import RTCCertificate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pylibsrtp import Policy, Session

from sfu import native
from sfu.packet.counters import FIELDS
from sfu.packet.rtp import build_rtp, parse_rtp
from sfu.packet.rtx import build_rtx
from sfu.packet.twcc import ReceiveLog
from sfu.routing.consumer import Consumer
from sfu.routing.group import Group
from sfu.routing.participant import Participant
from sfu.routing.producer import Producer
from sfu.sdp.negotiate import AUDIO_LEVEL_URI, MID_URI, TWCC_URI, CodecChoice, MediaPlan
from sfu.settings import MediaSettings
from sfu.transport import mmsg, rxtime, srtp
from sfu.transport.ice import PortAllocator
from sfu.transport.udpmux import SharedEndpoint, UdpMux
from sfu.transport.webrtc import TransportState, WebRtcTransport
from tests.sfu_fakes import Capture
from tests.sfu_live import Pump, eventually, join, running_media
from tests.synthetic_peer import SyntheticPeer

GCM = Policy.SRTP_PROFILE_AEAD_AES_256_GCM
FEEDBACK = ("nack", "nack pli", "goog-remb", "transport-cc")
VP8 = CodecChoice("vp8", 96, 90000, None, "", FEEDBACK, 97)
OPUS = CodecChoice("opus", 111, 48000, 2, "minptime=10", ("transport-cc",), None)
LEVEL_ID, MID_ID, TWCC_ID = 1, 3, 5
EXTENSIONS = ((LEVEL_ID, AUDIO_LEVEL_URI), (MID_ID, MID_URI), (TWCC_ID, TWCC_URI))
AUDIO, VIDEO = 1111, 2222  # announced; VIDEO + 1 its RTX
UNANNOUNCED = 3333  # a video SSRC learned from its sdes:mid
SELECTED = ("127.0.0.1", 40000)
FOREIGN = ("127.0.0.1", 40001)
_CERTIFICATE: list[RTCCertificate] = []


def certificate() -> RTCCertificate:
    if not _CERTIFICATE:
        _CERTIFICATE.append(RTCCertificate.generateCertificate())
    return _CERTIFICATE[0]


def plans() -> tuple[MediaPlan, ...]:
    def plan(index: int, mid: str, kind: str, codec: CodecChoice, ssrc: int | None) -> MediaPlan:
        return MediaPlan(
            index=index,
            mid=mid,
            kind=kind,
            accepted=True,
            publish=True,
            receive=False,
            codecs=(codec,),
            extensions=EXTENSIONS,
            ssrc=ssrc,
            rtx_ssrc=ssrc + 1 if kind == "video" and ssrc else None,
        )

    return (
        plan(0, "a", "audio", OPUS, AUDIO),
        plan(1, "v", "video", VP8, VIDEO),
        plan(2, "w", "video", VP8, None),
    )


def relative(output: Capture) -> list[tuple[int, int, int, int]]:
    """A consumer's copies with its (random) first sequence number and timestamp taken off."""
    headers = output.headers()
    if not headers:
        return []
    seq0, ts0 = headers[0].sequence, headers[0].timestamp
    return [
        (h.ssrc, (h.sequence - seq0) & 0xFFFF, (h.timestamp - ts0) & 0xFFFFFFFF, len(packet))
        for h, packet in zip(headers, output.rtp, strict=True)
    ]


def new_participant() -> Participant:
    return Participant(
        "pub",
        "room",
        Group("room", "main"),
        precall=False,
        settings=MediaSettings(),
        on_transport_lost=lambda participant, reason: None,
    )


def transport_on(mux: UdpMux, participant: Participant) -> WebRtcTransport:
    """A participant's transport on a shared mux, with the compiled SRTP binding."""
    return WebRtcTransport(
        addresses=["127.0.0.1"],
        ports=PortAllocator(None),
        announced_ip=None,
        buffer_bytes=1 << 20,
        certificate=certificate(),
        sink=participant,
        muxes=[mux],
        srtp=srtp.load(),
    )


class Side:
    """One publisher on its own UdpMux, built with or without the compiled twins."""

    def __init__(self, key: bytes) -> None:
        self.mux = UdpMux("127.0.0.1", 0, buffer_bytes=1 << 20, binding=mmsg.load())
        self.mux.open()
        self.levels: list[tuple[str, int, bool]] = []
        self.participant = new_participant()
        self.participant.opened_at = 1000.0  # (the two sides were opened at other times)
        self.participant.apply(plans())
        self.transport = transport_on(self.mux, self.participant)
        self.participant.transport = self.transport
        self.participant._bind_outputs()
        self.transport.inbound_ssrcs.update({AUDIO, VIDEO, VIDEO + 1})
        self.outputs: list[Capture] = []
        for producer in self.participant.all_producers():
            producer.level_sink = self._level
            output = Capture()
            consumer = Consumer(
                owner="sub",
                mid=producer.mid,
                kind=producer.kind,
                ssrc=50_000 + len(self.outputs),
                rtx_ssrc=None,
                codecs=producer.codecs,
                ext_ids={TWCC_URI: TWCC_ID},
                output=output,
            )
            consumer.source = consumer.track = producer
            producer.attach(consumer)
            self.outputs.append(output)
        self._key(key)

    def _key(self, key: bytes) -> None:
        """Keyed as a finished DTLS handshake keys it (`_on_keys`)."""
        transport = self.transport
        transport._set_state(TransportState.CONNECTING)
        transport._dtls.rx_key = transport._dtls.tx_key = (key, GCM)
        policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=GCM)
        out = Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=GCM)
        transport._on_keys(Session(policy), Session(out))
        assert transport._rx_direct is not None

    async def select(self) -> None:
        ice = self.transport._ice
        await ice.gather_candidates()
        endpoint = ice._protocols[0]
        assert isinstance(endpoint, SharedEndpoint)
        self.mux.claim(endpoint, SELECTED, selected=True)
        ice.selected = (endpoint, SELECTED)

    def _level(self, owner: str, level: int, voice: bool, now: float) -> None:
        self.levels.append((owner, level, voice))

    def state(self) -> dict[str, Any]:
        participant = self.participant
        log = participant.receive_log
        assert log is not None
        producers = {}
        for producer in participant.all_producers():
            cache = producer._cache
            producers[producer.mid] = (
                producer.ssrc,
                producer.rtx_ssrc,
                producer.stats.received,
                producer.stats.max_seq,
                producer.stats.bytes,
                producer.newest,
                producer.twcc_at,
                None if cache is None else list(cache._seqs),
                None if producer.nack is None else producer.nack._newest,
            )
        return {
            "transport": {f: getattr(self.transport.counters, f) for f in FIELDS},
            "mux": {f: getattr(self.mux.counters, f) for f in FIELDS},
            "inbound": sorted(self.transport.inbound_ssrcs),
            "by_ssrc": sorted((s, p.mid) for s, p in participant.by_ssrc.items()),
            "by_rtx": sorted((s, p.mid) for s, p in participant.by_rtx_ssrc.items()),
            "producers": producers,
            "log": (dict(log._arrivals), log._highest, log._start),
            "levels": list(self.levels),
            "forwarded": [relative(o) for o in self.outputs],
        }

    def close(self) -> None:
        self.transport.close()
        self.mux.close()


async def new_sides(monkeypatch: pytest.MonkeyPatch) -> tuple[Side, Side]:
    """(python, compiled): the same publisher twice, keyed with the same key."""
    key = os.urandom(44)
    monkeypatch.setenv("VISITROOM_NATIVE", "0")
    python = Side(key)
    monkeypatch.setenv("VISITROOM_NATIVE", "1")
    compiled = Side(key)
    assert python.transport.inlet is None and python.mux._dispatch is None
    assert compiled.transport.inlet is not None, "run `python -m sfu.native.build` first"
    assert compiled.mux._dispatch is not None
    for side in (python, compiled):
        await side.select()
    return python, compiled


async def close(sides: tuple[Side, Side]) -> None:
    for side in sides:
        side.close()
    await asyncio.gather(*(side.transport.wait_closed() for side in sides))


@pytest.fixture
async def sides(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Side, Side]]:
    assert native.enabled(), "VISITROOM_NATIVE=0 turns the compiled twin off"
    pair = await new_sides(monkeypatch)
    yield pair
    await close(pair)


class Publisher:
    """The sending end: plain packets, protected once for both sides."""

    def __init__(self, key: bytes) -> None:
        policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=GCM)
        self.tx = Session(policy)
        self.seq: dict[int, int] = {}
        self.twcc = 0

    def plain(self, ssrc: int, *, mid: bytes | None = None, padding_only: bool = False) -> bytes:
        seq = self.seq[ssrc] = self.seq.get(ssrc, 100) + 1
        self.twcc += 1
        exts = {TWCC_ID: (self.twcc % 0x10000).to_bytes(2, "big")}
        if mid is not None:
            exts[MID_ID] = mid
        if ssrc == AUDIO:
            exts[LEVEL_ID] = bytes([0x80 | seq % 100])
            pt, payload = 111, b"\xfc" + bytes(30)
        else:
            pt, payload = 96, bytes([0x10, 0x00, 0, 0]) + bytes(60)
        return build_rtp(
            payload_type=pt,
            sequence=seq & 0xFFFF,
            timestamp=seq * 3000 & 0xFFFFFFFF,
            ssrc=ssrc,
            payload=b"" if padding_only else payload,
            padding=4 if padding_only else 0,
            extensions=exts,
        )

    def protect(self, plain: bytes) -> bytes:
        data: bytes = self.tx.protect(plain)
        return data


def rtx(plain: bytes, sequence: int) -> bytes:
    return build_rtx(
        plain, parse_rtp(plain), rtx_ssrc=VIDEO + 1, rtx_payload_type=97, rtx_sequence=sequence
    )


def feed(sides: tuple[Side, Side], batch: list[tuple[bytes, tuple[str, int], float]]) -> None:
    python, compiled = sides
    python.mux.dispatch(batch)
    compiled.mux.dispatch(batch)
    rxtime.ARRIVAL.at = 0.0
    assert compiled.state() == python.state()


def key_of(side: Side) -> bytes:
    rx = side.transport._dtls.rx_key
    assert rx is not None
    return rx[0]


async def test_media_takes_the_compiled_path_with_the_same_effects(sides: Any) -> None:
    compiled = sides[1]
    publisher = Publisher(key_of(compiled))
    batch = []
    for n in range(40):
        ssrc = (AUDIO, VIDEO)[n % 2]
        batch.append((publisher.protect(publisher.plain(ssrc)), SELECTED, 2000.0 + n / 100))
    feed(sides, batch)
    state = compiled.state()
    assert state["transport"]["rtp_in"] == 40
    assert all(len(got) == 20 for got in state["forwarded"][:2])
    assert len(state["log"][0]) == 40
    assert compiled.transport.inlet.delivered == 40
    assert compiled.transport.inlet.fallbacks == 0


async def test_the_arrival_log_takes_the_kernel_stamp_or_now(sides: Any) -> None:
    python, compiled = sides
    publisher = Publisher(key_of(compiled))
    stamped = publisher.protect(publisher.plain(VIDEO))
    feed(sides, [(stamped, SELECTED, 1000.25)])
    log = compiled.participant.receive_log
    assert log is not None and list(log._arrivals.values()) == [250_000]
    # Without a stamp (0.0): the time it was handled, on the monotonic clock.
    compiled.participant.opened_at = python.participant.opened_at = time.monotonic()
    unstamped = publisher.protect(publisher.plain(VIDEO))
    for side in sides:
        side.mux.dispatch([(unstamped, SELECTED, 0.0)])
    arrivals = [sorted(side.participant.receive_log._arrivals.values()) for side in sides]
    for got in arrivals:
        assert 0 <= got[0] < 5_000_000  # (5 s: a loaded machine)


async def test_unusual_datagrams_go_to_python_and_count_the_same(sides: Any) -> None:
    compiled = sides[1]
    publisher = Publisher(key_of(compiled))
    good = publisher.protect(publisher.plain(VIDEO))
    learned = publisher.protect(publisher.plain(UNANNOUNCED, mid=b"w"))
    stranger = publisher.protect(publisher.plain(4444))
    rtx_plain = rtx(publisher.plain(VIDEO), 7)
    batch = [
        (good, SELECTED, 1.0),
        (good, SELECTED, 1.0),  # a replay: libsrtp refuses it
        (good[:-1], SELECTED, 1.0),  # a bad tag
        (good[:11], SELECTED, 1.0),  # shorter than a header
        (good + bytes(1500), SELECTED, 1.0),  # oversize
        (good, FOREIGN, 1.0),  # nobody's address
        (b"", SELECTED, 1.0),
        (b"\x00\x01\x00\x00", SELECTED, 1.0),  # a bad STUN message
        (bytes([0x80, 200]) + bytes(30), SELECTED, 1.0),  # RTCP, not a valid one
        (learned, SELECTED, 1.0),
        (publisher.protect(publisher.plain(UNANNOUNCED, mid=b"w")), SELECTED, 1.0),
        (stranger, SELECTED, 1.0),
        (publisher.protect(publisher.plain(4444)), SELECTED, 1.0),
        (publisher.protect(rtx_plain), SELECTED, 1.0),
        (publisher.protect(publisher.plain(VIDEO, padding_only=True)), SELECTED, 1.0),
    ]
    feed(sides, batch)
    counters = compiled.transport.counters
    # a replay, a bad tag, the RTCP one (its SSRC admitted, then refused by libsrtp)
    assert counters.srtp_errors == 3 and counters.bad_rtp == 1 and counters.oversize == 1
    assert compiled.mux.counters.foreign_source == 1
    assert compiled.participant.by_ssrc[UNANNOUNCED].mid == "w"
    assert counters.unknown_ssrc == 2  # 4444: admitted into SRTP, no producer
    assert compiled.transport.inlet.delivered >= 5


async def test_an_exception_on_the_path_is_counted_not_raised(sides: Any) -> None:
    def broken(producer: Producer, data: bytes, h: object, now: float) -> bool:
        raise ValueError("broken on purpose")

    for side in sides:
        for producer in side.participant.all_producers():
            producer._receive = broken
    publisher = Publisher(key_of(sides[1]))
    datagram = publisher.protect(publisher.plain(AUDIO))
    feed(sides, [(datagram, SELECTED, 1.0), (datagram, SELECTED, 1.0)])
    counters = sides[1].transport.counters
    assert counters.errors == 1 and counters.srtp_errors == 1 and counters.rtp_in == 1


async def test_a_transport_that_changes_on_srtp_gets_no_inlet() -> None:
    class Recorded(WebRtcTransport):
        def _on_srtp(self, data: bytes) -> None:
            super()._on_srtp(data)

    participant = new_participant()
    kwargs: dict[str, Any] = {
        "addresses": ["127.0.0.1"],
        "ports": PortAllocator(None),
        "announced_ip": None,
        "buffer_bytes": 1 << 16,
        "certificate": certificate(),
        "sink": participant,
    }
    assert Recorded(**kwargs).inlet is None
    plain = WebRtcTransport(**kwargs)
    assert plain.inlet is not None and plain._ice.on_srtp is plain.inlet


async def test_a_closed_transport_counts_what_still_comes_as_python_does(sides: Any) -> None:
    publisher = Publisher(key_of(sides[1]))
    datagram = publisher.protect(publisher.plain(VIDEO))
    for side in sides:
        side.transport.close()
        assert side.transport._ice.on_srtp == (side.transport.inlet or side.transport._on_srtp)
        side.transport._ice.on_srtp(datagram)
    assert sides[0].transport.counters.not_keyed == sides[1].transport.counters.not_keyed == 1


async def test_the_socket_path_gives_both_the_same(sides: Any) -> None:
    """Through loopback: each side's socket gets the same datagrams, read by `_readable`."""
    publisher = Publisher(key_of(sides[1]))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    try:
        addr = client.getsockname()
        for side in sides:
            ice = side.transport._ice
            endpoint = ice._protocols[0]
            assert isinstance(endpoint, SharedEndpoint)
            side.mux.claim(endpoint, addr, selected=True)
            ice.selected = (endpoint, addr)
            side.mux._loop.remove_reader(side.mux._sock.fileno())  # read here, not by the loop
        datagrams = [publisher.protect(publisher.plain((AUDIO, VIDEO)[n % 2])) for n in range(30)]
        for side in sides:
            for data in datagrams:
                client.sendto(data, ("127.0.0.1", side.mux.port))
        for side in sides:
            deadline = time.monotonic() + 5
            while side.transport.counters.rtp_in < 30 and time.monotonic() < deadline:
                side.mux._readable()
        states = [side.state() for side in sides]
        assert states[0]["transport"]["rtp_in"] == 30
        # The kernel's stamps differ between the two sockets: compare all but the times.
        for state in states:
            state["log"] = sorted(state["log"][0])
        assert states[1] == states[0]
        assert sides[1].transport.inlet.delivered == 30
    finally:
        client.close()


def datagrams() -> st.SearchStrategy[list[tuple[str, int, int]]]:
    """(what, argument, source) steps of a hostile stream (see `build`)."""
    step = st.tuples(
        st.sampled_from(
            [
                "audio",
                "video",
                "learn",
                "stranger",
                "rtx",
                "padding",
                "flip",
                "cut",
                "replay",
                "garbage",
                "rtcp",
                "weird",
                "stun",
                "dtls",
            ]
        ),
        st.integers(0, 2000),
        st.sampled_from([0, 0, 0, 1]),
    )
    return st.lists(step, min_size=1, max_size=40)


def build(
    publisher: Publisher, steps: list[tuple[str, int, int]]
) -> Iterator[tuple[bytes, tuple[str, int], float]]:
    last = b""
    for n, (what, arg, source) in enumerate(steps):
        addr = (SELECTED, FOREIGN)[source]
        at = 5000.0 + n * 0.01 + arg * 1e-6
        if what in ("audio", "video", "padding"):
            ssrc = AUDIO if what == "audio" else VIDEO
            data = publisher.protect(publisher.plain(ssrc, padding_only=what == "padding"))
        elif what == "learn":
            data = publisher.protect(publisher.plain(UNANNOUNCED, mid=b"w" if arg % 2 else b"x"))
        elif what == "stranger":
            data = publisher.protect(publisher.plain(10_000 + arg % 40))
        elif what == "rtx":
            try:
                data = publisher.protect(rtx(publisher.plain(VIDEO), arg))
            except Exception:  # the same RTX sequence number again: libsrtp refuses it
                continue
        elif what == "flip" and last:
            flipped = bytearray(last)
            flipped[arg % len(flipped)] ^= 1 << (arg % 8)
            data = bytes(flipped)
        elif what == "cut" and last:
            data = last[: arg % (len(last) + 1)]
        elif what == "replay" and last:
            data = last
        elif what == "garbage":
            data = bytes([0x80 | arg % 64]) + bytes((arg * k) & 0xFF for k in range(arg % 1600))
        elif what == "rtcp":
            data = bytes([0x80, 192 + arg % 32]) + arg.to_bytes(4, "big") + bytes(arg % 60)
        elif what == "weird":  # a header extension block that lies about its length
            plain = bytearray(publisher.plain(VIDEO))
            plain[14 + 2 * (arg % 2) : 16 + 2 * (arg % 2)] = (arg % 300).to_bytes(2, "big")
            try:
                data = publisher.protect(bytes(plain))
            except Exception:  # libsrtp refused to protect it
                continue
        elif what == "jump":  # transport-wide numbers skip ahead, wrap, or go back
            publisher.twcc += arg * 41 - 20_000
            data = publisher.protect(publisher.plain(VIDEO))
        elif what == "stun":
            data = bytes([arg % 4]) + bytes(arg % 40)
        elif what == "dtls":
            data = bytes([20 + arg % 44]) + bytes(arg % 40)
        else:
            continue
        last = data
        yield data, addr, at


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=datagrams(), split=st.integers(1, 8), window=st.sampled_from([4096, 6, 2]))
async def test_hostile_traffic_has_the_same_effects_on_both(
    monkeypatch: pytest.MonkeyPatch, steps: list[tuple[str, int, int]], split: int, window: int
) -> None:
    """(A small arrival-log window makes it forget and start over within a few packets.)"""
    sides = await new_sides(monkeypatch)
    for side in sides:
        side.participant.receive_log = ReceiveLog(window)
    try:
        publisher = Publisher(key_of(sides[1]))
        batch = list(build(publisher, steps))
        for start in range(0, len(batch), split):
            feed(sides, batch[start : start + split])
    finally:
        await close(sides)


async def test_a_running_sfu_takes_the_compiled_path() -> None:
    """A real publisher (aiortc peer, DTLS-SRTP) through LocalMedia's shared socket."""
    assert native.enabled()
    async with running_media() as (media, _events):
        alice = await join(media, "alice", SyntheticPeer(audio=True, video=True))
        bob = await join(media, "bob", SyntheticPeer(audio_slots=1, video_slots=1))
        pump = Pump(alice).start()
        try:
            await eventually(lambda: bob.transport.received > 30, 10, "alice at bob")
        finally:
            await pump.stop()
        transport = media.participants["alice"].transport
        assert transport is not None and transport.inlet is not None
        inlet: Any = transport.inlet
        assert inlet.delivered >= 30
        assert inlet.fallbacks <= transport.counters.rtcp_in + 4  # RTCP, admissions
        assert transport._ice.on_srtp is inlet
