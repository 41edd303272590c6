"""Cost of the bandwidth estimator per TWCC feedback (sfu/policy/gcc.py).

The SFU runs `BandwidthEstimator.on_feedback` once per feedback from each
subscriber (every 50-100 ms), never per forwarded packet.  This measures
the microseconds one call takes for feedbacks of 20, 50 and 100 packets
(steady video at the matching rate, with jitter and 1 % loss, a probe
cluster now and then), and for replaying each recorded feedback sequence
in tests/data/ (a simulated link whose cap moves; real Chromium feedback
on loopback and through a 300 kbit/s cap).  Prints a table; --json
writes the numbers.

    python bench/estimator.py [--feedbacks N] [--repeat R] [--json PATH]
    python bench/estimator.py --record tests/data/twcc_feedback_drop.jsonl
    python bench/estimator.py --golden tests/data/estimator_golden.json

--arrays times `on_feedback_arrays` (the feedback as parallel lists, what
the transport can pass without a PacketResult per packet) instead.

The per-packet loops run compiled (sfu/native/_gcc.c) when the module is
built, and in Python with VISITROOM_NATIVE=0: the table's first line and the
JSON's "twin" say which; run both, alternating, to compare.

--record regenerates the recording from tests/gcc_sim.py's simulated
bottleneck link (it is simulator output, not a browser capture); --golden
rewrites the estimator's exact outputs the tests hold it to (only when its
behaviour changes on purpose).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sfu.native
from sfu.policy.gcc import BandwidthEstimator, PacketResult
from sfu.policy.probe import Prober
from tests import gcc_golden
from tests.gcc_sim import Link, constant, load_recording, simulate, steps, write_recording

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
RECORDING = DATA / "twcc_feedback_drop.jsonl"
RECORDED_CAPS = [(0.0, 3_000_000), (6.0, 500_000), (12.0, 1_500_000)]
RECORDED_SECONDS = 18.0
SETTLE_S = 4.5  # the replay test checks each phase from its start + SETTLE_S to its end


def synthetic_feedbacks(packets: int, count: int, seed: int = 1) -> list[list[PacketResult]]:
    """`count` feedbacks of `packets` packets each, 100 ms apart."""
    rng = random.Random(seed)
    gap = 0.1 / packets
    feedbacks = []
    seq = 0
    for k in range(count):
        probe = k if k % 20 == 0 else -1
        batch = []
        for i in range(packets):
            send = k * 0.1 + i * gap
            arrival = None if rng.random() < 0.01 else 7.0 + send + 0.03 + rng.random() * 0.004
            batch.append(PacketResult(seq, send, 1200, arrival, probe))
            seq += 1
        feedbacks.append(batch)
    return feedbacks


def time_feedbacks(feedbacks: list[list[PacketResult]], repeat: int, arrays: bool = False) -> float:
    """Best-of-`repeat` CPU microseconds per on_feedback call over the whole sequence
    (`arrays`: per on_feedback_arrays call, given each feedback as parallel lists).

    CPU time of this thread (time.thread_time), not wall time: the machine is
    shared, and waiting for a core is not the estimator's cost.
    """
    columns = [[list(c) for c in zip(*batch, strict=True)] for batch in feedbacks]
    best = float("inf")
    for _ in range(repeat):
        estimator = BandwidthEstimator()
        start = time.thread_time()
        if arrays:
            for k, (seqs, sends, sizes, arrivals, probes) in enumerate(columns):
                estimator.on_feedback_arrays(seqs, sends, sizes, arrivals, probes, k * 0.1 + 0.13)
        else:
            for k, batch in enumerate(feedbacks):
                estimator.on_feedback(batch, k * 0.1 + 0.13)
        best = min(best, time.thread_time() - start)
    return best / len(feedbacks) * 1e6


def record(path: Path) -> None:
    """Write the simulated feedback sequence the replay test and this bench read."""
    run = simulate(
        Link(steps(*RECORDED_CAPS), seed=11),
        seconds=RECORDED_SECONDS,
        demand=constant(5e6),
        prober=Prober(),
    )
    header: dict[str, object] = {
        "source": "tests/gcc_sim.py simulated bottleneck (not a browser capture)",
        "caps": RECORDED_CAPS,
        "seconds": RECORDED_SECONDS,
        "settle_s": SETTLE_S,
        "format": "packets: [sequence, send_time, size, arrival or null, probe]",
    }
    write_recording(path, header, run.feedback)
    print(f"wrote {len(run.feedback)} feedbacks to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feedbacks", type=int, default=300, help="feedbacks per run")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--record", type=Path, help="write the simulated recording and exit")
    parser.add_argument(
        "--golden", type=Path, help="write the estimator's exact outputs (tests/gcc_golden.py)"
    )
    parser.add_argument(
        "--arrays", action="store_true", help="time on_feedback_arrays (parallel lists)"
    )
    args = parser.parse_args()
    if args.record:
        record(args.record)
        return
    if args.golden:
        gcc_golden.write(args.golden, gcc_golden.traces())
        return
    rows: list[tuple[str, float, float]] = []  # (case, packets per feedback, us per feedback)
    for size in (20, 50, 100):
        us = time_feedbacks(synthetic_feedbacks(size, args.feedbacks), args.repeat, args.arrays)
        rows.append((f"{size} packets", size, us))
    for path in sorted(DATA.glob("*twcc*.jsonl")):
        recorded = [packets for _, packets in load_recording(path)[1]]
        mean = sum(len(f) for f in recorded) / len(recorded)
        us = time_feedbacks(recorded, args.repeat, args.arrays)
        rows.append((path.stem, round(mean, 1), us))
    twin = "python" if sfu.native.load("_gcc") is None else "compiled"
    print(f"per-packet loops: {twin} (VISITROOM_NATIVE={os.environ.get('VISITROOM_NATIVE', '1')})")
    print(f"{'case':<28} {'packets':>8} {'us/feedback':>12} {'us/packet':>10}")
    for case, packets, us in rows:
        print(f"{case:<28} {packets:>8} {us:>12.1f} {us / packets:>10.2f}")
    if args.json:
        result = {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "entry": "on_feedback_arrays" if args.arrays else "on_feedback",
            "twin": twin,
            "rows": [
                {
                    "case": c,
                    "packets": p,
                    "us_per_feedback": round(u, 1),
                    "us_per_packet": round(u / p, 2),
                }
                for c, p, u in rows
            ],
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
