"""sfu.native._recv.receive against Producer.on_rtp in Python: the same work on the same packets.

Two producers of each kind (VP8 video with NACK and the retransmission
cache, Opus audio with levels, RED audio) get the very same packets, one
through the compiled `receive` and one through Python (`_book` and the loop); after every
packet their answers and everything the packet may have changed must be
equal: statistics, NACK state and NACKs sent, the cache's slots, the rate
meter, the VP8 descriptor and frame size, RED blocks, levels heard, and what
was forwarded.  Hypothesis picks hostile sequences: wrapped and repeated
sequence numbers, huge gaps and jumps back, unknown payload types,
padding-only and truncated payloads, malformed extensions and RED blocks,
time going backwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu import native
from sfu.packet.counters import Counters
from sfu.packet.rtp import RtpHeader, build_rtp, parse_rtp
from sfu.policy.speaker import LOG_MAX, LevelLog
from sfu.routing.layers import RateMeter
from sfu.routing.producer import Producer, _compiled_receive
from sfu.sdp.negotiate import CodecChoice
from tests.sfu_fakes import OPUS, RED, VP8, Capture, producer, red_payload

Receive = Callable[[Producer, bytes, RtpHeader, float], "bool | None"]


@pytest.fixture(scope="module")
def receive() -> Receive:
    """The compiled twin itself (the install builds it; a silent Python run proves nothing)."""
    assert native.enabled(), "VISITROOM_NATIVE=0 turns the compiled twin off"
    compiled = _compiled_receive()
    assert compiled is not None, "run `python -m sfu.native.build` first"
    return compiled


class Relay:
    """Where forwarded packets also go (a RelayTap): records them."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def rtp(self, data: bytes) -> None:
        self.sent.append(data)

    def sender_report(self, ntp: int, rtp_timestamp: int) -> None:
        pass

    def wanted(self) -> bool:
        return True


class Recorder:
    """A subscriber's end of the fan-out (not a Consumer: its forward is called)."""

    def __init__(self) -> None:
        self.got: list[tuple[int, str, float]] = []

    def forward(
        self, producer: Producer, data: bytes, h: RtpHeader, codec: str, now: float
    ) -> None:
        self.got.append((h.sequence, codec, now))


class Twin:
    """One producer with what it told the world."""

    def __init__(
        self, kind: str, codecs: tuple[CodecChoice, ...], compiled: Receive | None
    ) -> None:
        self.out = Capture()
        self.p = producer(kind, ssrc=5000 if kind == "video" else 6000, output=self.out)
        self.p.update(codecs, self.p.ext_ids)
        self.p._receive = compiled
        self.p.last_media = -1.0  # (the constructor's clock reading differs between twins)
        self.p.meter = RateMeter(0.0)
        self.p.counters = Counters()
        self.relay = Relay()
        self.p.relay = self.relay
        self.levels: list[tuple[str, int, bool, float]] = []
        self.p.level_sink = lambda *args: self.levels.append(args)
        self.recorders = [Recorder(), Recorder()]
        for recorder in self.recorders:
            self.p.attach(recorder)  # type: ignore[arg-type]

    def state(self) -> dict[str, Any]:
        p, stats, meter = self.p, self.p.stats, self.p.meter
        cache = p._cache
        return {
            "newest": p.newest,
            "last_media": p.last_media,
            "desc": p.desc,
            "frame_size": p.frame_size,
            "red": p.red,
            "red_missing": p.red_missing,
            "stats": (stats._base, stats.max_seq, stats.received, stats.bytes, stats._jitter),
            "nack": None if p.nack is None else (p.nack._newest, dict(p.nack._missing)),
            "cache": None if cache is None else (cache._seqs, cache._packets, cache._times),
            "meter": (meter._current, meter._previous, meter._start, meter.top),
            "vad_seen": p._vad_seen,
            "bad_red": p.counters.bad_red if p.counters is not None else None,
            "rtcp": list(self.out.rtcp),
            "levels": list(self.levels),
            "forwarded": list(self.relay.sent),
            "consumers": [list(r.got) for r in self.recorders],
        }


KINDS: dict[str, tuple[str, tuple[CodecChoice, ...]]] = {
    "video": ("video", (VP8,)),
    "audio": ("audio", (OPUS,)),
    "red": ("audio", (RED, OPUS)),
}


def pair(name: str, compiled: Receive, loop: str = "compiled") -> tuple[Twin, Twin]:
    """The compiled and the Python twin; `loop` "python": both fan out in Python."""
    kind, codecs = KINDS[name]
    twins = Twin(kind, codecs, compiled), Twin(kind, codecs, None)
    if loop == "python":
        for twin in twins:
            twin.p._fanout = None
    return twins


def feed(twins: tuple[Twin, Twin], data: bytes, now: float) -> None:
    """One packet into both; equal answers (or errors) and equal state after."""
    answers: list[object] = []
    for twin in twins:
        try:
            h = parse_rtp(data)
        except ValueError as exc:
            answers.append(("unparsable", type(exc)))
            continue
        try:
            answers.append(twin.p.on_rtp(data, h, now))
        except Exception as exc:  # the same exception from both, if any
            answers.append((type(exc), str(exc)))
    assert answers[0] == answers[1]
    assert twins[0].state() == twins[1].state()


# -- packets --------------------------------------------------------------------

VP8_PAYLOADS = st.sampled_from(
    [
        b"",  # padding only (with the padding bit) or empty
        b"\x10",  # a descriptor and nothing else
        b"\x90",  # X set, its byte missing: a truncated descriptor
        b"\x90\xf0\x80",  # picture id cut short
        b"\x10\x01\x00\x00" + bytes(30),  # frame start, not a key frame
        b"\x10\x00\x00\x00\x9d\x01\x2a\x40\x01\xf0\x00" + bytes(20),  # key frame 320x240
        b"\x10\x00\x00\x00\x9d\x01\x2a\x80\x02\x68\x01" + bytes(20),  # key frame 640x360
        b"\x10\x00\x00\x00\x9d\x01",  # key frame, size cut off
        b"\x90\xf0\x80\x05\x07\x80\x00" + bytes(20),  # TID 2 (X, I 15-bit, L, T K)
        b"\x90\xf0\x80\x06\x07\x40\x01" + bytes(20),  # TID 1
        b"\x80\xf0\x80\x06\x07\xc0" + bytes(20),  # TID 3, continuation
        b"\x00" + bytes(40),  # continuation, no descriptor extras
    ]
)
AUDIO_PAYLOADS = st.sampled_from([b"", b"\xfc" + bytes(40), b"\xfc"])
RED_PAYLOADS = st.sampled_from(
    [
        red_payload([(111, 960, b"\xfc" + bytes(20))], 111, b"\xfc" + bytes(30)),
        red_payload([(111, 960, b"\xfc"), (111, 1920, b"\xfc" + bytes(5))], 111, b"\xfc"),
        bytes([111]) + b"\xfc" + bytes(10),  # primary only
        b"\x80\x00\x00",  # a block header cut short
        (0x80000000 | 111 << 24 | 960 << 10 | 1000).to_bytes(4, "big") + b"\x6f\xfc",  # too long
        b"",
    ]
)
LEVELS = st.sampled_from(
    [
        {1: b"\x9e"},  # voice, 30
        {1: b"\x1e"},  # no voice flag, 30
        {1: b"\x7f"},  # silence
        {1: b"\x9e\x00"},  # two bytes: not a level
        {},
        {3: b"0"},
    ]
)
PAYLOAD_TYPES = {
    "video": (96, 96, 96, 96, 97, 111),
    "audio": (111, 111, 111, 96),
    "red": (63, 63, 111, 0),
}
STEPS = st.sampled_from([1, 1, 1, 1, 2, 3, 0, -1, -3, 17, 300, 600, 20000, 40000, -30000])
DT = st.sampled_from([0.0, 0.001, 0.02, 0.02, 0.3, 0.6, 1.2, -0.05, -2.0])


def packet(name: str, seq: int, pt: int, payload: bytes, exts: dict[int, bytes], pad: int) -> bytes:
    return build_rtp(
        payload_type=pt,
        sequence=seq & 0xFFFF,
        timestamp=(seq * 3000) & 0xFFFFFFFF,
        ssrc=5000 if name == "video" else 6000,
        payload=payload,
        extensions=exts,
        padding=pad,
    )


def bad_extension(data: bytes) -> bytes:
    """The packet with its first one-byte element claiming more bytes than its block has."""
    if len(data) > 16 and data[0] & 0x10 and data[12:14] == b"\xbe\xde":
        return data[:16] + bytes([data[16] | 0x0F]) + data[17:]
    return data


@st.composite
def streams(draw: st.DrawFn, name: str) -> list[tuple[bytes, float]]:
    payloads = {"video": VP8_PAYLOADS, "audio": AUDIO_PAYLOADS, "red": RED_PAYLOADS}[name]
    seq = draw(st.sampled_from([0, 100, 65530, 65535]))
    now = draw(st.sampled_from([0.0, 5.0, 1e6]))
    out = []
    for _ in range(draw(st.integers(1, 60))):
        seq += draw(STEPS)
        now += draw(DT)
        pt = draw(st.sampled_from(PAYLOAD_TYPES[name]))
        exts = draw(LEVELS) if name != "video" else draw(st.sampled_from([{}, {3: b"0"}]))
        pad = draw(st.sampled_from([0, 0, 0, 4]))
        data = packet(name, seq, pt, draw(payloads), exts, pad)
        if draw(st.integers(0, 9)) == 0:
            data = bad_extension(data)
        out.append((data, now))
    return out


@pytest.mark.parametrize("name", ["video", "audio", "red"])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_receive_and_python_keep_the_same_books_on_hostile_streams(
    receive: Receive, name: str, data: st.DataObject
) -> None:
    twins = pair(name, receive, data.draw(st.sampled_from(["compiled", "python"])))
    for packet_data, now in data.draw(streams(name)):
        feed(twins, packet_data, now)


def test_the_compiled_twin_is_the_one_producers_use(receive: Receive) -> None:
    assert producer()._receive is receive
    assert producer("audio")._receive is receive


def test_a_plain_video_stream_is_booked_alike_through_a_wrap_and_a_loss(receive: Receive) -> None:
    twins = pair("video", receive)
    for n, seq in enumerate([65533, 65534, 65535, 0, 3, 1, 2, 2, 4]):
        key = n == 0
        body = b"\x10\x00\x00\x00\x9d\x01\x2a\x40\x01\xf0\x00" if key else b"\x10\x01\x00\x00"
        feed(twins, packet("video", seq, 96, body + bytes(20), {}, 0), n * 0.01)
    compiled = twins[0]
    assert compiled.p.frame_size == (320, 240)
    assert compiled.out.rtcp  # the loss of 1 and 2 was NACKed
    assert compiled.p.nack is not None and compiled.p.nack.missing == []
    assert len(compiled.relay.sent) == 8  # the repeat of 2 was not forwarded


def test_audio_levels_reach_the_sink_alike(receive: Receive) -> None:
    twins = pair("audio", receive)
    for n, ext in enumerate([b"\x1e", b"\x9e", b"\x1e", b"\x9e\x00"]):
        feed(twins, packet("audio", n, 111, b"\xfc" + bytes(10), {1: ext}, 0), n * 0.02)
    assert [voice for _, _, voice, _ in twins[0].levels] == [True, True, False]


def test_a_speaker_log_gets_the_rows_alike_and_never_more_than_log_max(receive: Receive) -> None:
    """A list sink (`DominantSpeaker.log`) is appended to, not called, by both twins."""
    twins = pair("audio", receive)
    logs: list[LevelLog] = [[], []]
    for twin, log in zip(twins, logs, strict=True):
        twin.p.level_sink = log
    for n, ext in enumerate([b"\x1e", b"\x9e", b"\x1e", b"\x9e\x00", b"\xff"]):
        feed(twins, packet("audio", n, 111, b"\xfc" + bytes(10), {1: ext}, 0), n * 0.02)
        assert logs[0] == logs[1]
    assert logs[0] == [(30, True, 0.0), (30, True, 0.02), (30, False, 0.04), (127, True, 0.08)]
    for log in logs:
        log[:] = [(1, True, 0.0)] * (LOG_MAX - 1)
    feed(twins, packet("audio", 9, 111, b"\xfc", {1: b"\x9e"}, 0), 1.0)
    feed(twins, packet("audio", 10, 111, b"\xfc", {1: b"\x9e"}, 0), 1.02)  # one too many
    for log in logs:
        assert len(log) == LOG_MAX and log[-1] == (30, True, 1.0)


def test_objects_it_was_not_configured_for_go_to_python(receive: Receive) -> None:
    """A subclass, or a header that is not an RtpHeader: None, and nothing changed."""

    class Special(Producer):
        __slots__ = ()

    p = Special(
        owner="x",
        mid="0",
        kind="video",
        source="camera",
        codecs=(VP8,),
        ssrc=5000,
        rtx_ssrc=None,
        ext_ids={},
        output=Capture(),
    )
    data = packet("video", 1, 96, b"\x10\x01\x00\x00", {}, 0)
    assert receive(p, data, parse_rtp(data), 1.0) is None
    assert p.stats.received == 0
    plain = producer()
    assert receive(plain, bytearray(data), parse_rtp(data), 1.0) is None  # type: ignore[arg-type]
    assert receive(plain, data, parse_rtp(data), 1) is None
    assert plain.stats.received == 0
    assert plain.on_rtp(data, parse_rtp(data), 1.0)  # and Python books it
    assert plain.stats.received == 1


def test_the_compiled_twin_binds_the_parsers_it_calls_itself() -> None:
    """A process that imported the packet modules with VISITROOM_NATIVE=0 (their
    bind_* never ran) and turns it on later still gets working producers."""
    code = (
        "import os\n"
        "from sfu.packet.rtp import parse_rtp\n"
        "from tests.sfu_fakes import producer, vp8, opus\n"
        "os.environ['VISITROOM_NATIVE'] = '1'\n"
        "video, audio = producer(), producer('audio', ssrc=6000)\n"
        "assert video._receive is not None\n"
        "for p, data in ((video, vp8(1, 0, keyframe=True)), (audio, opus(1, 960))):\n"
        "    assert p.on_rtp(data, parse_rtp(data), 1.0)\n"
        "assert video.frame_size == (320, 240), video.frame_size\n"
    )
    env = {**os.environ, "VISITROOM_NATIVE": "0"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
