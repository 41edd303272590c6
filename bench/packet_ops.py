"""Micro-benchmark of the per-packet operations of sfu.packet.rtp and friends.

Prints ns per call for each operation (best of --repeat runs of --number
calls, each through a closure, so every row includes the ~30-60 ns cost of
calling it; the "empty call" row shows that floor).  The headline row,
"input+output path", is what one forwarded packet costs in this module:
parse_rtp + find_extension on the way in, then a bytearray copy and
rewrite_header for one subscriber.

    python bench/packet_ops.py [--number N] [--repeat R] [--json PATH] [--png PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sfu.packet.keyframe import is_keyframe
from sfu.packet.rtcp import ReportBlock, build_nack, build_remb, build_rr, compound, parse_rtcp
from sfu.packet.rtp import (
    SeqUnwrapper,
    build_rtp,
    find_extension,
    parse_audio_level,
    parse_rtp,
    remap_extensions,
    rewrite_header,
)
from sfu.packet.rtx import RetransmissionCache, build_rtx
from sfu.packet.vp8 import parse_vp8
from sfu.policy.speaker import DominantSpeaker
from sfu.routing.seqmap import SeqMap
from sfu.routing.vp8map import DROP, REWRITE, Vp8Map

# Chrome-like extension ids: 1 audio level, 3 abs-send-time, 4 mid, 5 transport-cc.
VIDEO = build_rtp(
    payload_type=96,
    sequence=4242,
    timestamp=123_456,
    ssrc=0x1234_5678,
    marker=True,
    extensions={3: b"\x12\x34\x56", 4: b"0", 5: b"\x01\x02"},
    payload=b"\x90\x80\x05\x10\x02\x00\x9d\x01\x2a" + bytes(1150),
)
AUDIO = build_rtp(
    payload_type=111,
    sequence=777,
    timestamp=48_000,
    ssrc=0x0BAD_CAFE,
    extensions={1: b"\x9e", 3: b"\x12\x34\x56", 5: b"\x01\x02"},
    payload=bytes(90),
)
ID_MAP = {1: 1, 3: 2, 4: 3, 5: 4}
VP8_PAYLOAD = b"\x90\xf0\x9b\x58\x05\x63\x51" + bytes(1150)
RTCP = compound(
    build_rr(1, [ReportBlock(2, 0, 0, 70_000, 12, 0, 0)]), build_remb(1, 1_000_000, [2])
)


def vp8_stream(frames: int) -> list[tuple[bytes, int, bool, int]]:
    """(payload, timestamp, marker, sequence) of an L1T3 stream, 15-bit picture ids.

    TL0 frames take 3 packets, the others 2 (1.2 kB each).
    """
    out = []
    seq = 1000
    for f in range(frames):
        tid, sync = ((0, False), (2, True), (1, True), (2, False))[f % 4]
        pid = (7000 + f) & 0x7FFF
        tl0 = (f // 4) & 0xFF
        count = 3 if tid == 0 else 2
        for i in range(count):
            head = bytes([0x90 if i == 0 else 0x80, 0xF0, 0x80 | pid >> 8, pid & 0xFF, tl0])
            tk = bytes([tid << 6 | (0x20 if sync else 0) | 3])
            body = (b"\x50" if f == 0 else b"\x51") + bytes(1150)
            out.append((head + tk + body, (f * 3000) & 0xFFFFFFFF, i == count - 1, seq & 0xFFFF))
            seq += 1
    return out


def vp8_case(max_temporal: int, switched: bool) -> Callable[[], object]:
    """One packet through one consumer's Vp8Map + SeqMap (+ Vp8Map.write on REWRITE).

    The descriptor is parsed once per packet (by the producer), not per
    consumer: see the parse_vp8 row.
    """
    stream = [(parse_vp8(p), ts, marker, seq) for p, ts, marker, seq in vp8_stream(4000)]
    vmap = Vp8Map(max_temporal)
    smap: SeqMap[str] = SeqMap(first=0)
    out = bytearray(1200)
    state = [len(stream)]

    def restart() -> None:
        if switched:  # as after a switch: every value is rewritten
            vmap.begin()
            vmap.packet(stream[0][0], 123, True)
            vmap.begin()
        else:
            vmap.__init__(max_temporal)  # type: ignore[misc]
            vmap.begin()
        smap.begin("layer")
        state[0] = 0

    def step() -> None:
        i = state[0]
        if i == len(stream):
            restart()
            i = 0
        d, ts, marker, seq = stream[i]
        state[0] = i + 1
        verdict = vmap.packet(d, ts, marker)
        if verdict == DROP:
            smap.drop(seq, vmap.gap_dropped)
            return
        smap.forward(seq, vmap.gap_dropped)
        if verdict == REWRITE:
            vmap.write(out, 0, d)

    return step


def cases() -> list[tuple[str, Callable[[], object]]]:
    vh = parse_rtp(VIDEO)
    ah = parse_rtp(AUDIO)
    out = bytearray(VIDEO)
    payload = memoryview(VIDEO)[vh.payload_offset :]
    cache = RetransmissionCache()
    cache.store(4242, VIDEO, 0.0)
    unwrapper = SeqUnwrapper()
    speaker = DominantSpeaker()
    clock = [1000.0]

    def input_output() -> None:
        h = parse_rtp(VIDEO)
        find_extension(VIDEO, h, 5)
        packet = bytearray(VIDEO)
        rewrite_header(packet, ssrc=1, sequence=2, timestamp=3, payload_type=96)

    def audio_in() -> None:
        h = parse_rtp(AUDIO)
        value = find_extension(AUDIO, h, 1)
        if value is not None:
            voice, level = parse_audio_level(value)
            clock[0] += 0.02
            speaker.add_level("p", level, voice, clock[0])

    def per_subscriber() -> None:
        packet = bytearray(VIDEO)
        rewrite_header(packet, ssrc=1, sequence=2, timestamp=3, payload_type=96)
        remap_extensions(packet, vh, ID_MAP)

    def add_level() -> None:
        clock[0] += 0.02
        speaker.add_level("q", 30, True, clock[0])

    return [
        ("empty call", lambda: None),
        ("parse_rtp video 1.2 kB", lambda: parse_rtp(VIDEO)),
        ("parse_rtp audio", lambda: parse_rtp(AUDIO)),
        ("find_extension (last of 3)", lambda: find_extension(VIDEO, vh, 5)),
        ("find_extension audio level", lambda: find_extension(AUDIO, ah, 1)),
        ("bytearray copy 1.2 kB", lambda: bytearray(VIDEO)),
        (
            "rewrite_header",
            lambda: rewrite_header(out, ssrc=1, sequence=2, timestamp=3, payload_type=96),
        ),
        ("remap_extensions (3 elements)", lambda: remap_extensions(out, vh, ID_MAP)),
        ("is_keyframe vp8", lambda: is_keyframe("vp8", payload)),
        ("SeqUnwrapper.unwrap", lambda: unwrapper.unwrap(4242)),
        ("RetransmissionCache.store", lambda: cache.store(4242, VIDEO, 0.0)),
        ("RetransmissionCache.get", lambda: cache.get(4242, 0.5)),
        (
            "build_rtx",
            lambda: build_rtx(VIDEO, vh, rtx_ssrc=9, rtx_payload_type=97, rtx_sequence=1),
        ),
        ("DominantSpeaker.add_level", add_level),
        ("parse_rtcp RR+REMB", lambda: parse_rtcp(RTCP)),
        ("build_nack 3 seqs", lambda: build_nack(1, 2, (10, 11, 40))),
        ("audio in: parse+level+add_level", audio_in),
        ("per subscriber: copy+rewrite+remap", per_subscriber),
        ("input+output path: parse+find+copy+rewrite", input_output),
        ("parse_vp8 (15-bit pid, L, T, K)", lambda: parse_vp8(VP8_PAYLOAD)),
        ("vp8 per consumer: Vp8Map+SeqMap, as is", vp8_case(2, False)),
        ("vp8 per consumer: ... + write (after a switch)", vp8_case(2, True)),
        ("vp8 per consumer: ... thinned to TID <= 1", vp8_case(1, True)),
    ]


def measure(number: int, repeat: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for name, fn in cases():
        best = min(timeit.Timer(fn).repeat(repeat=repeat, number=number)) / number
        rows.append({"operation": name, "ns_per_op": round(best * 1e9, 1)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=100_000, help="calls per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best is kept")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--png", type=Path, help="write a bar chart here (needs matplotlib)")
    args = parser.parse_args()
    rows = measure(args.number, args.repeat)
    width = max(len(str(r["operation"])) for r in rows)
    print(f"{'operation':<{width}}  ns/op")
    for r in rows:
        print(f"{r['operation']!s:<{width}}  {r['ns_per_op']:>7}")
    meta = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "number": args.number,
        "repeat": args.repeat,
    }
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    if args.png:
        plot(rows, args.png)


def plot(rows: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [str(r["operation"]) for r in rows]
    values = [float(r["ns_per_op"]) for r in rows]  # type: ignore[arg-type]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(rows) + 1))
    ax.barh(names[::-1], values[::-1])
    ax.set_xlabel("ns per call (best of runs)")
    ax.set_title("sfu packet operations")
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
