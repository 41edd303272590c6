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
from sfu.policy.speaker import DominantSpeaker

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
RTCP = compound(
    build_rr(1, [ReportBlock(2, 0, 0, 70_000, 12, 0, 0)]), build_remb(1, 1_000_000, [2])
)


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
