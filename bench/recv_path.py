"""Micro-benchmark: what one incoming media packet costs on the SFU's receive path.

A publisher's packets, SRTP-protected (AES-256-GCM, as browsers negotiate
with aiortc) with the header extensions Chromium sends (abs-send-time,
transport-wide sequence; the audio level on audio), are sent from a client
socket on loopback to a real `UdpMux` (single-port mode), and the time to
read and handle them is measured: `recvmmsg`, the demultiplexer
(`UdpMux.datagram`, `SharedEndpoint.media`), `WebRtcTransport._on_srtp`
(SRTP unprotect), `Participant.on_rtp` (parse, transport-cc arrival log)
and `Producer.on_rtp` (receive statistics, NACK bookkeeping, retransmission
cache, audio level, VP8 descriptor, rate meter), up to the consumer loop.

The producer has --consumers real `Consumer`s (the 10x10 meeting: 9) whose
output only counts what it is handed (their send path is not measured
here: bench/send_path.py is); the rows with 0 consumers are the receive path
alone.  The rows marked "on_rtp in Python" run the same rig with the
producers' compiled `Producer.on_rtp` (`sfu.native._recv.receive`) turned off,
everything else as compiled as in the other rows: the difference is what that
one C call saves per packet, measured in the same run, alternating.  Each
round sends --packets packets (not timed), then times one
`UdpMux._readable()` call, which drains them all, as the event loop's
reader callback does; the row's figure is the median over --rounds rounds
of the best of --repeat, in microseconds per incoming packet, the
configurations alternating within each round.  Every packet is checked to
have reached every consumer.

The ICE agent is real (a shared-socket `IceConnection`, its pair selected
by hand), the transport is a real `WebRtcTransport` keyed with a real
inbound SRTP session without the DTLS handshake.  Run it pinned:

    taskset -c 0 python bench/recv_path.py
    VISITROOM_NATIVE=0 taskset -c 0 python bench/recv_path.py   # pure Python
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pylibsrtp import Policy, Session

from sfu.packet.counters import Counters
from sfu.packet.rtp import build_rtp
from sfu.routing import feedback
from sfu.routing.consumer import Consumer
from sfu.routing.group import Group
from sfu.routing.participant import Participant
from sfu.sdp.negotiate import (
    ABS_SEND_TIME_URI,
    AUDIO_LEVEL_URI,
    MID_URI,
    TWCC_URI,
    CodecChoice,
    MediaPlan,
)
from sfu.settings import MediaSettings
from sfu.transport import mmsg, srtp
from sfu.transport.ice import IceConnection, PortAllocator
from sfu.transport.sendhistory import SendHistory
from sfu.transport.udpmux import SharedEndpoint, UdpMux
from sfu.transport.webrtc import TransportState, WebRtcTransport, compiled_inlet

GCM = Policy.SRTP_PROFILE_AEAD_AES_256_GCM
VP8 = CodecChoice(
    name="vp8",
    payload_type=96,
    clock_rate=90000,
    channels=None,
    fmtp="",
    feedback=("nack", "nack pli", "ccm fir", "goog-remb", "transport-cc"),
    rtx_payload_type=97,
)
OPUS = CodecChoice(
    name="opus",
    payload_type=111,
    clock_rate=48000,
    channels=2,
    fmtp="minptime=10",
    feedback=("transport-cc",),
    rtx_payload_type=None,
)
LEVEL_ID, ABS_ID, MID_ID, TWCC_ID = 1, 2, 3, 5
EXTENSIONS = (
    (LEVEL_ID, AUDIO_LEVEL_URI),
    (ABS_ID, ABS_SEND_TIME_URI),
    (MID_ID, MID_URI),
    (TWCC_ID, TWCC_URI),
)
AUDIO_SSRC, VIDEO_SSRC = 1000, 1010


class Counting:
    """A consumer's output that only counts (the send path is bench/send_path.py's)."""

    rtcp_ssrc = 7

    def __init__(self) -> None:
        self.packets = 0

    def send_rtp(self, packet: bytes, twcc_at: int = -1) -> None:
        self.packets += 1

    def send_rewritten(
        self,
        packet: bytes,
        *,
        ssrc: int,
        sequence: int,
        timestamp: int,
        payload_type: int,
        twcc_at: int = -1,
    ) -> None:
        self.packets += 1

    def send_rtcp(self, packet: bytes) -> None:
        pass


def plans() -> tuple[MediaPlan, ...]:
    def plan(index: int, mid: str, kind: str, codec: CodecChoice, ssrc: int) -> MediaPlan:
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
            rtx_ssrc=ssrc + 1 if kind == "video" else None,
        )

    return (plan(0, "a", "audio", OPUS, AUDIO_SSRC), plan(1, "v", "video", VP8, VIDEO_SSRC))


class Rig:
    """One publisher on a real UdpMux, its consumers counting (see module doc)."""

    def __init__(
        self, consumers: int, python_on_rtp: bool = False, python_ingress: bool = False
    ) -> None:
        binding = mmsg.load()
        self.mux = UdpMux("127.0.0.1", 0, buffer_bytes=16 << 20, binding=binding)
        self.mux.open()
        if python_ingress:
            self.mux._dispatch = None  # the Python loop and UdpMux.datagram
        loop = asyncio.get_running_loop()
        assert self.mux._sock is not None
        loop.remove_reader(self.mux._sock.fileno())  # we call _readable ourselves
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.client.bind(("127.0.0.1", 0))
        self.client.connect(("127.0.0.1", self.mux.port))
        key = os.urandom(44)
        self.tx = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=GCM))
        self.participant = Participant(
            "pub",
            "room",
            Group("room", "main"),
            precall=False,
            settings=MediaSettings(),
            on_transport_lost=lambda participant, reason: None,
        )
        self.participant.apply(plans())
        if python_on_rtp:
            for producer in self.participant.all_producers():
                producer._receive = None  # the Python twin of Producer.on_rtp
        self.transport = receive_side(self.participant, key, compiled=not python_ingress)
        self.participant.transport = self.transport
        self.levels = 0
        self.outputs: list[Counting] = []
        for producer in self.participant.producers.values():
            producer.counters = self.transport.counters
            producer.level_sink = self._level
            for n in range(consumers):
                output = Counting()
                consumer = Consumer(
                    owner=f"s{n}",
                    mid=producer.mid,
                    kind=producer.kind,
                    ssrc=20_000 + 10 * n + len(self.outputs),
                    rtx_ssrc=None,
                    codecs=producer.codecs,
                    ext_ids={ABS_SEND_TIME_URI: ABS_ID, TWCC_URI: TWCC_ID},
                    output=output,
                )
                consumer.source = consumer.track = producer
                producer.attach(consumer)
                self.outputs.append(output)
        self.ice = IceConnection(
            addresses=["127.0.0.1"],
            ports=PortAllocator(None),
            counters=self.transport.counters,
            buffer_bytes=1 << 20,
            on_srtp=self.transport._on_srtp
            if self.transport.inlet is None
            else self.transport.inlet,
            muxes=[self.mux],
        )
        self.seq = {AUDIO_SSRC: 0, VIDEO_SSRC: 0}
        self.twcc = 0

    async def select(self) -> None:
        await self.ice.gather_candidates()
        endpoint = self.ice._protocols[0]
        assert isinstance(endpoint, SharedEndpoint)
        addr = self.client.getsockname()
        self.mux.claim(endpoint, addr, selected=True)
        self.ice.selected = (endpoint, addr)

    def _level(self, owner: str, level: int, voice: bool, now: float) -> None:
        self.levels += 1

    def packet(self, kind: str) -> bytes:
        ssrc = VIDEO_SSRC if kind == "video" else AUDIO_SSRC
        seq = self.seq[ssrc] = self.seq[ssrc] + 1
        self.twcc += 1
        exts = {ABS_ID: (seq * 997 & 0xFFFFFF).to_bytes(3, "big")}
        exts[TWCC_ID] = (self.twcc & 0xFFFF).to_bytes(2, "big")
        if kind == "video":
            # Chromium's descriptor with temporal layers: X, I (15 bits), L, T, K.
            pid = seq // 4
            tid = (0, 2, 1, 2)[pid % 4]
            start = seq % 4 == 1
            first = 0x90 if start else 0x80
            pid_high = 0x80 | (pid >> 8 & 0x7F)
            descriptor = bytes((first, 0xF0, pid_high, pid & 0xFF, pid // 4 & 0xFF, tid << 6 | 1))
            payload = descriptor + (b"\x01" if start else b"\x00") + bytes(1100)
            pt, ts = 96, (seq // 4) * 3000
        else:
            exts[LEVEL_ID] = bytes([0x80 | (seq % 60)])
            payload = b"\xfc" + bytes(100)
            pt, ts = 111, seq * 960
        plain = build_rtp(
            payload_type=pt,
            sequence=seq & 0xFFFF,
            timestamp=ts & 0xFFFFFFFF,
            ssrc=ssrc,
            payload=payload,
            extensions=exts,
        )
        protected: bytes = self.tx.protect(plain)
        return protected

    def round(self, kind: str, packets: int) -> float:
        datagrams = [self.packet(kind) for _ in range(packets)]
        before = self.transport.counters.rtp_in
        sent = sum(o.packets for o in self.outputs)
        for data in datagrams:
            self.client.send(data)
        start = time.perf_counter()
        for _ in range(packets):  # one call drains all unless its time budget ran out
            self.mux._readable()
            if self.transport.counters.rtp_in - before >= packets:
                break
        elapsed = time.perf_counter() - start
        feedback.transport_feedback(self.participant)  # as the clock does (not timed)
        got = self.transport.counters.rtp_in - before
        assert got == packets, f"{got} of {packets} packets reached the transport"
        per_producer = len(self.outputs) // 2
        forwarded = sum(o.packets for o in self.outputs) - sent
        assert forwarded == packets * per_producer, (forwarded, packets, per_producer)
        return elapsed / packets * 1e6

    def close(self) -> None:
        self.client.close()
        self.mux.close()


def receive_side(sink: Participant, key: bytes, compiled: bool = True) -> WebRtcTransport:
    """A WebRtcTransport keyed for receiving, without the DTLS handshake; with `compiled`,
    its `_on_srtp` is the compiled inlet (sfu.native._ingress) when built."""
    transport = WebRtcTransport.__new__(WebRtcTransport)
    module = compiled_inlet() if compiled else None
    transport.inlet = None if module is None else module.Inlet(transport, transport._on_srtp)
    transport.counters = Counters()
    transport.state = TransportState.CONNECTED
    transport.inbound_ssrcs = {AUDIO_SSRC, VIDEO_SSRC, VIDEO_SSRC + 1}
    transport.history = SendHistory()
    transport._sink = sink
    transport._rx = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=GCM))
    transport._tx = None
    transport._route = None
    transport._direct = None
    lib = srtp.load()
    if lib is not None and hasattr(lib, "inbound"):  # libsrtp bound by us
        transport._rx_direct = lib.inbound(key, GCM)
    return transport


async def run(args: argparse.Namespace) -> dict[str, Any]:
    configs = [(kind, n, "") for n in (0, args.consumers) for kind in ("video", "audio")]
    configs += [(kind, 0, "py") for kind in ("video", "audio")]
    configs += [(kind, n, "pyin") for n in (0, args.consumers) for kind in ("video", "audio")]
    rigs = {}
    for _, n, twin in configs:
        if (n, twin) not in rigs:
            rigs[n, twin] = Rig(n, python_on_rtp=twin == "py", python_ingress=twin == "pyin")
            await rigs[n, twin].select()
    results: dict[str, list[float]] = {key(*config): [] for config in configs}
    for _ in range(args.rounds):
        for kind, n, twin in configs:
            best = min(rigs[n, twin].round(kind, args.packets) for _ in range(args.repeat))
            results[key(kind, n, twin)].append(best)
    for rig in rigs.values():
        rig.close()
    return results


TWINS = {"": "", "py": ", on_rtp in Python", "pyin": ", ingress in Python"}


def key(kind: str, consumers: int, twin: str) -> str:
    return f"{kind}/{consumers}" + (f"/{twin}" if twin else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--consumers", type=int, default=9)
    parser.add_argument("--packets", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; medians")
    parser.add_argument("--json")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    summary = {key: sorted(v)[len(v) // 2] for key, v in results.items()}
    from sfu import native

    print(f"compiled paths: {'on' if native.enabled() else 'off (VISITROOM_NATIVE=0)'}")
    for name, value in summary.items():
        kind, n, *twin = name.split("/")
        label = f"{kind} packet, {n} consumers" + TWINS[twin[0] if twin else ""]
        rounds = [round(v, 2) for v in results[name]]
        print(f"{label:50} {value:6.2f} us per incoming packet  (rounds {rounds})")
    if args.json:
        Path(args.json).write_text(json.dumps({"per_packet_us": summary, "rounds": results}))


if __name__ == "__main__":
    main()
