"""What a single FIFO fan-out does with the saturation rig's key frames (a model, bench only).

    python bench/loopwatch/burst_model.py [--copy-us 11 7.5] [--subscribers 100 ... 450]

The rig's publisher plays `media_workload.encode_media(1500)`: a 2 s clip
looped, 30 fps, its first frame a key frame (45 packets, 57 kB, against 2-6
for a delta frame), each frame's packets paced at 2.5 x 1500 kbit/s (so a
key frame takes ~126 ms to arrive), plus 50 audio packets a second.  A
server that forwards every packet to N subscribers in arrival order, one
copy after the other on one core (visitroom's event loop), is a FIFO queue
whose service time per packet is N x (cost of one copy): while a key frame
arrives, packets come faster than they are served whenever N x cost exceeds
the pacing gap, and the backlog at the key frame's end is what its last
packets (and the audio and delta packets queued behind them) wait.

This replays the clip's real packet schedule through that queue and prints,
per room size and cost per copy, the added latency's p50/p99/max as a
sampled subscriber sees it (its copy is among the first of each packet's
fan-out, as the rig's sampled subscribers join first) and the busy share of
the core.  It models nothing but the queue: no gc, no tick, no other task on
the core (`--share` scales the core available).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from media_workload import FPS, encode_media

PACING = 2.5
AUDIO_BYTES = 100  # an Opus packet of the rig's tone, about


def arrivals(video: list[list[bytes]], kbps: int, seconds: float) -> list[float]:
    """Arrival times (s) of every packet the publisher sends in `seconds`, sorted."""
    pacing_bps = PACING * kbps * 1000
    times: list[float] = []
    n = 0
    while n / FPS < seconds:
        sent = n / FPS
        for payload in video[n % len(video)]:
            times.append(sent)
            sent += (len(payload) + 40) * 8 / pacing_bps
        n += 1
    times += [k * 0.02 for k in range(int(seconds / 0.02))]
    return sorted(times)


def replay(times: list[float], service_s: float, first_copy_s: float) -> tuple[list[float], float]:
    """FIFO queue: each packet served for `service_s`; the sampled copy done `first_copy_s` in.

    Returns every packet's added latency (s) and the busy share of the time.
    """
    free_at = 0.0
    latencies = []
    for at in times:
        start = max(at, free_at)
        latencies.append(start + first_copy_s - at)
        free_at = start + service_s
    span = max(times[-1], free_at) - times[0]
    return latencies, len(times) * service_s / span


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copy-us", type=float, nargs="+", default=[11.0, 7.5, 5.0])
    parser.add_argument(
        "--subscribers", type=int, nargs="+", default=[100, 200, 250, 300, 325, 350, 400, 450]
    )
    parser.add_argument("--share", type=float, default=1.0, help="the core's share the server gets")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--kbps", type=int, default=1500)
    args = parser.parse_args()
    media = encode_media(args.kbps)
    times = arrivals(media.video, args.kbps, args.seconds)
    key = len(media.video[0])
    print(
        f"clip: {len(media.video)} frames, key frame {key} packets "
        f"({sum(len(p) for p in media.video[0]):,} B), {len(times) / args.seconds:.0f} packets/s in"
    )
    print("copy us  subs  fwd pps  busy %  p50 ms  p99 ms  max ms")
    for copy_us in args.copy_us:
        for n in args.subscribers:
            copy_s = copy_us / 1e6 / args.share
            lat, busy = replay(times, n * copy_s, copy_s)
            print(
                f"{copy_us:7.1f} {n:5d} {n * len(times) / args.seconds:8,.0f} {100 * busy:6.0f}"
                f" {1000 * percentile(lat, 0.5):7.1f} {1000 * percentile(lat, 0.99):7.1f}"
                f" {1000 * max(lat):7.1f}"
            )


if __name__ == "__main__":
    main()
