"""Micro-benchmark: what one forwarded copy costs on each send path of the SFU.

One 1,200-byte VP8 packet is forwarded by `Consumer.forward` to 50
subscribers, each a real `WebRtcTransport` send side (keyed with AES-256-GCM,
as browsers negotiate with aiortc), to a counting socket on loopback; the
cost per copy is the best of --repeat rounds of --packets packets, divided by
the copies.  The paths:

* `own socket, pylibsrtp, sendto`: a socket per transport (VISITROOM_RTC_PORTS),
  as every transport sent before single-port mode;
* `shared socket, pylibsrtp, sendmmsg`: single-port mode with
  `direct_srtp=False`: pylibsrtp's `protect`, the result copied into the batch;
* `shared socket, in-place SRTP, sendmmsg`: the default: header written and
  packet protected in the batch slot (sfu.transport.srtp);
* `... + transport-cc`: the same with transport-cc negotiated by publisher and
  subscribers: each copy also gets its transport's own transport-wide
  sequence number (written in the batch slot) and a send history entry; the
  publisher's extension is located once per packet (Participant.on_rtp's
  share, counted here too);
* `shared socket, whole copies (send_rtp)` and its `+ transport-cc`: the
  subscribers negotiated another id for one extension, so each copy is made
  whole (header and extension ids rewritten in a new packet) and sent with
  `send_rtp`, in-place SRTP in the batch, as the copies whose VP8 descriptor
  is rewritten after a simulcast switch are.

Each copy sent with transport-cc is reported once in the subscriber's
feedback: `feedback_cost` is what that costs per reported packet (parse the
feedback, read the send history's columns, run the bandwidth estimator), for
feedbacks of --per-feedback packets (500 packets/s, every 100 ms: 50); the
whole cost of a copy is the transport-cc row plus that.

With the compiled per-copy path built (sfu.native._fanout; the default unless
VISITROOM_NATIVE=0) the packets go through `Producer.on_rtp`'s compiled
fan-out: every plain copy is rewritten, protected and queued in one C loop
(`Consumer.forward` in Python only for the others, e.g. the `whole` paths'
extension remaps); with VISITROOM_NATIVE=0, through the Python loop.  Run it
both ways to compare; the first line says which ran.

The transports are built without ICE/DTLS (their send side only, with the
objects the real handshake would hand over), so the numbers are the send
path alone: run it pinned, e.g. `taskset -c 0 python bench/send_path.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pylibsrtp import Policy, Session

from sfu import native
from sfu.packet.counters import Counters
from sfu.packet.rtcp import TransportCc, parse_rtcp
from sfu.packet.rtp import build_rtp, parse_rtp
from sfu.packet.twcc import build_feedback, transport_seq_offset
from sfu.policy.gcc import BandwidthEstimator
from sfu.routing.consumer import Consumer
from sfu.routing.producer import Producer
from sfu.sdp.negotiate import TWCC_URI, CodecChoice
from sfu.transport import mmsg, srtp
from sfu.transport.ice import DirectRoute
from sfu.transport.sendhistory import SendHistory
from sfu.transport.udpmux import Egress, Route
from sfu.transport.webrtc import WebRtcTransport

GCM = Policy.SRTP_PROFILE_AEAD_AES_256_GCM
VP8 = CodecChoice(
    name="VP8",
    payload_type=96,
    clock_rate=90000,
    channels=None,
    fmtp="",
    feedback=(),
    rtx_payload_type=None,
)


TWCC_ID = 3
EXT_IDS = {TWCC_URI: TWCC_ID}
# A subscriber that negotiated other extension ids than the publisher: each copy is
# made whole (`Consumer._copy`) and sent with `send_rtp`, as copies whose VP8
# descriptor is rewritten after a simulcast switch are.
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
PUBLISHER_WHOLE = {TWCC_URI: TWCC_ID, ABS_SEND_TIME: 2}
SUBSCRIBER_WHOLE = {TWCC_URI: TWCC_ID, ABS_SEND_TIME: 5}


class NoRtcp:
    rtcp_ssrc = 1

    def send_rtcp(self, packet: bytes) -> None:
        pass


def send_side(route: Any, direct: Any) -> WebRtcTransport:
    """A WebRtcTransport's send side, keyed, without ICE/DTLS (see module doc)."""
    transport = WebRtcTransport.__new__(WebRtcTransport)
    transport.counters = Counters()
    key = os.urandom(44)
    transport._tx = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=GCM))
    transport._route = route
    transport.history = SendHistory()
    transport._set_direct(direct)  # and its compiled twin, when built
    return transport


def build(
    path: str, fanout: int, receiver: socket.socket, keep: list[Any], spread: bool = False
) -> list[Consumer]:
    binding, lib = mmsg.load(), srtp.load()
    assert binding is not None and lib is not None
    shared = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    shared.setblocking(False)
    shared.setsockopt(socket.SOL_SOCKET, 32, 16 << 20)  # SO_SNDBUFFORCE (root)
    keep.append(shared)
    egress = Egress(shared, binding)
    egress.hold()  # as inside a read batch: flushed by us, no event loop needed
    dest = receiver.getsockname()
    consumers = []
    for n in range(fanout):
        if spread:  # a receiving socket per subscriber, as in a room (the kernel's share)
            own = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            own.bind(("127.0.0.1", 0))
            own.setblocking(False)
            keep.append(own)
            dest = own.getsockname()
        if path == "own":
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            keep.append(sock)
            transport = send_side(DirectRoute(sock, dest), None)
        elif path == "pylibsrtp":
            transport = send_side(Route(egress, egress.destination(dest)), None)
        else:
            session = lib.outbound(os.urandom(44), GCM)
            transport = send_side(None, (egress, egress.destination(dest), session))
        if path in ("twcc", "twcc-whole"):
            transport.set_transport_cc(TWCC_ID)
        consumer = Consumer(
            owner=f"s{n}",
            mid="1",
            kind="video",
            ssrc=1000 + n,
            rtx_ssrc=None,
            codecs=(VP8,),
            ext_ids=_subscriber_ids(path),
            output=transport,
        )
        consumers.append(consumer)
    keep.append(egress)
    return consumers


def _subscriber_ids(path: str) -> dict[str, int]:
    if path.endswith("whole"):
        return SUBSCRIBER_WHOLE if path == "twcc-whole" else {ABS_SEND_TIME: 5}
    return EXT_IDS if path == "twcc" else {}


def _publisher_ids(path: str) -> dict[str, int]:
    if path.endswith("whole"):
        return PUBLISHER_WHOLE if path == "twcc-whole" else {ABS_SEND_TIME: 2}
    return EXT_IDS if path == "twcc" else {}


def measure(path: str, fanout: int, packets: int, repeat: int, spread: bool = False) -> float:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE (root)
    receiver.setblocking(False)
    keep: list[Any] = [receiver]
    consumers = build(path, fanout, receiver, keep, spread)
    egress = next((k for k in keep if isinstance(k, Egress)), None)
    producer = Producer(
        owner="pub",
        mid="0",
        kind="video",
        source="camera",
        codecs=(VP8,),
        ssrc=5,
        rtx_ssrc=None,
        ext_ids=_publisher_ids(path),
        output=NoRtcp(),
    )
    twcc = path in ("twcc", "twcc-whole")
    publisher_ids = _publisher_ids(path)
    elements = {publisher_ids[uri]: bytes(3) for uri in publisher_ids if uri != TWCC_URI}
    for consumer in consumers:
        consumer.source = producer
    loop = producer._fanout
    best = float("inf")
    seq = 0
    for _ in range(repeat):
        batch = []
        for _ in range(packets):
            seq += 1
            data = build_rtp(
                payload_type=96,
                sequence=seq & 0xFFFF,
                timestamp=seq * 3000,
                ssrc=5,
                payload=bytes(1180 if twcc else 1188),
                extensions={
                    **elements,
                    **({TWCC_ID: (seq & 0xFFFF).to_bytes(2, "big")} if twcc else {}),
                }
                or None,
            )
            batch.append((data, parse_rtp(data)))
        start = time.perf_counter()
        for data, header in batch:
            if twcc:
                producer.twcc_at = transport_seq_offset(data, header, TWCC_ID)
            if loop is not None:  # Producer.on_rtp's loop, compiled
                loop(producer, consumers, data, header, "VP8", 0.0, producer.twcc_at)
            else:
                for consumer in consumers:
                    consumer.forward(producer, data, header, "VP8", 0.0)
            if egress is not None:
                egress.flush()  # what the end of a read batch does
        best = min(best, time.perf_counter() - start)
        for item in keep:
            if isinstance(item, socket.socket) and item.getsockname()[1]:
                _drain(item)
    for item in keep:
        if isinstance(item, socket.socket):
            item.close()
    return best / (packets * fanout) * 1e6


def feedback_cost(per_feedback: int, feedbacks: int) -> float:
    """Microseconds per reported packet: parse + SendHistory.columns + estimator (median),
    as sfu.routing.feedback does it."""
    history = SendHistory()
    estimator = BandwidthEstimator()
    sent = 0.0
    times: list[float] = []
    for n in range(feedbacks):
        first = history.next
        arrivals: list[int | None] = []
        for k in range(per_feedback):
            sent += 0.002
            history.add(history.take(), sent, 1200)
            jitter = (k * 7919 + n * 104729) % 5 * 0.0002
            arrivals.append(None if k == 17 else int((sent + 0.02 + jitter) * 1e6))
        datagrams = build_feedback(1, 2, first & 0xFFFF, arrivals, n)
        start = time.perf_counter()
        for data in datagrams:
            for fb in parse_rtcp(data):
                if isinstance(fb, TransportCc):
                    columns = history.columns(fb, sent)
                    if columns is not None:
                        estimator.on_feedback_arrays(*columns, sent)
        times.append(time.perf_counter() - start)
    # The median feedback, as the send rows take the best round: robust to other load.
    return sorted(times)[len(times) // 2] / per_feedback * 1e6


def _drain(sock: socket.socket) -> None:
    try:
        while True:
            sock.recv(2048)
    except BlockingIOError:
        pass


PATHS = {
    "own": "own socket, pylibsrtp, sendto",
    "pylibsrtp": "shared socket, pylibsrtp, sendmmsg",
    "inplace": "shared socket, in-place SRTP, sendmmsg",
    "twcc": "... + transport-cc",
    "whole": "shared socket, whole copies (send_rtp)",
    "twcc-whole": "... + transport-cc",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fanout", type=int, default=50)
    parser.add_argument("--packets", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians")
    parser.add_argument("--per-feedback", type=int, default=50)
    parser.add_argument("--paths", nargs="+", choices=list(PATHS), default=list(PATHS))
    parser.add_argument(
        "--spread", action="store_true", help="a receiving socket per subscriber (default: one)"
    )
    parser.add_argument("--json")
    args = parser.parse_args()
    compiled = native.load("_fanout") is not None
    print(f"per-copy path: {'compiled (sfu.native._fanout)' if compiled else 'pure Python'}")
    results: dict[str, list[float]] = {key: [] for key in [*PATHS, "feedback"]}
    for _ in range(args.rounds):
        for key in args.paths:
            results[key].append(measure(key, args.fanout, args.packets, args.repeat, args.spread))
        results["feedback"].append(feedback_cost(args.per_feedback, 200))
    summary = {key: sorted(values)[len(values) // 2] for key, values in results.items() if values}
    print(f"fan-out {args.fanout}, {'a receiving socket each' if args.spread else 'one receiver'}")
    for key, label in PATHS.items():
        if key not in summary:
            continue
        print(f"{label:45} {summary[key]:6.2f} us per copy  (rounds {results[key]})")
    label = "transport-cc feedback + estimator"
    rounds = [round(v, 2) for v in results["feedback"]]
    print(f"{label:45} {summary['feedback']:6.2f} us per reported packet  (rounds {rounds})")
    if "twcc" in summary:
        whole = summary["twcc"] + summary["feedback"]
        print(f"{'copy with transport-cc, all told':45} {whole:6.2f} us per copy")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "compiled": compiled,
                    "fanout": args.fanout,
                    "spread": args.spread,
                    "per_copy_us": summary,
                    "rounds": results,
                }
            )
        )


if __name__ == "__main__":
    main()
