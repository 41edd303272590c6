"""The estimator's exact outputs on fixed inputs, to hold a faster version to them.

`traces()` feeds the recorded feedback in tests/data/, two closed-loop
simulations (tests/gcc_sim.py) and seeded hostile feedback (NaN, absurd
times and sizes, losses, probes, shuffles, duplicates, clock jumps) to a
`BandwidthEstimator` and returns, per scenario and per feedback,
`snapshot`.  tests/data/estimator_golden.json
holds what the straightforward implementation (before the per-packet work
was optimised) returned; test_sfu_gcc.py checks that the estimator still
returns exactly that, through `on_feedback` and `on_feedback_arrays`.
If the estimator's behaviour changes on purpose, regenerate the file with
`python bench/estimator.py --golden tests/data/estimator_golden.json`.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path

from sfu.policy.gcc import BandwidthEstimator, PacketResult
from sfu.policy.probe import Prober
from tests.gcc_sim import Link, constant, load_recording, simulate

DATA = Path(__file__).parent / "data"
RECORDINGS = ("chromium_twcc_300kbit", "chromium_twcc_loopback", "twcc_feedback_drop")
HOSTILE_SEEDS = 12

Trace = list[list[object]]


class ArraysEstimator(BandwidthEstimator):
    """Takes every feedback through `on_feedback_arrays` (parallel lists)."""

    def on_feedback(self, results: Sequence[PacketResult], now: float) -> None:
        sequences = [r.sequence for r in results]
        send_times = [r.send_time for r in results]
        sizes = [r.size for r in results]
        arrivals = [r.arrival for r in results]
        probes = [r.probe for r in results]
        self.on_feedback_arrays(sequences, send_times, sizes, arrivals, probes, now)


def snapshot(est: BandwidthEstimator) -> list[object]:
    """The public values, and the exact floats inside (a small change shows there first):
    the delay-based and loss-based rates, the acknowledged rate, the detector's threshold
    (`_delay`; it was `_detector` in the plain implementation that wrote the file)."""
    detector = getattr(est, "_delay", None) or getattr(est, "_detector")  # noqa: B009
    return [
        est.estimate_bps,
        est.delay_bps,
        est.acked_bps,
        est.state,
        est._aimd.bps,
        est._loss.bps,
        est._acked.bps,
        detector.threshold,
    ]


def hostile_feedback(seed: int) -> list[tuple[float, list[PacketResult]]]:
    """120 feedbacks of 0-100 packets: mostly sane, with every kind of garbage."""
    rng = random.Random(seed)
    feedbacks = []
    seq = 0
    t = 0.0
    for k in range(120):
        batch = []
        for _ in range(rng.choice([0, 1, 3, 10, 20, 50, 100])):
            t += rng.choice([0.0, 0.0005, 0.001, 0.002, 0.005, 0.0051, 0.01])
            send = t
            if rng.random() < 0.02:
                send = rng.choice([math.nan, math.inf, -1e12, t - 5.0, t + 100])
            arrival: float | None = 1000 + send + 0.02 + rng.random() * rng.choice([0, 0.02, 0.2])
            r = rng.random()
            if r < 0.05:
                arrival = None
            elif r < 0.06:
                arrival = rng.choice([math.nan, -math.inf, 1e15, 0.0, t - 4, t + 4])
            size = rng.choice([1200, 100, 1000, 0, 70000]) if rng.random() < 0.1 else 1200
            probe = rng.choice([-1, -1, -1, k // 10])
            batch.append(PacketResult(seq, send, size, arrival, probe))
            seq += rng.choice([1, 1, 1, 1, 0, 2])
        if rng.random() < 0.2:
            rng.shuffle(batch)
        if rng.random() < 0.05:
            batch += batch[:3]
        now = t + 0.13 + rng.choice([0, 0, 0.05, 3.0, -0.5])
        feedbacks.append((math.nan if rng.random() < 0.01 else now, batch))
    return feedbacks


def traces(arrays: bool = False) -> dict[str, Trace]:
    """Scenario name -> the estimator's snapshot after each feedback."""
    make = ArraysEstimator if arrays else BandwidthEstimator
    out: dict[str, Trace] = {}
    for name in RECORDINGS:
        est = make()
        trace = []
        for k, (at, packets) in enumerate(load_recording(DATA / f"{name}.jsonl")[1]):
            est.on_feedback(packets, at)
            if k % 7 == 0:
                est.on_rtt(0.03 + (k % 5) * 0.02, at)
            trace.append(snapshot(est))
        out[name] = trace
    for seed in range(HOSTILE_SEEDS):
        rng = random.Random(1000 + seed)
        est = make(start_bps=rng.choice([300_000, 1_000_000]))
        trace = []
        for k, (at, packets) in enumerate(hostile_feedback(seed)):
            est.on_feedback(packets, at)
            if k % 13 == 0:
                est.set_max(rng.choice([500_000, 2_000_000, 10_000_000]))
            if k % 5 == 0:
                est.on_rtt(rng.choice([0.01, 0.1, math.nan, 20.0]), at)
            trace.append(snapshot(est))
        out[f"hostile{seed}"] = trace
    jitter = Link(constant(3_000_000), jitter_s=0.05, seed=4)
    run = simulate(jitter, seconds=8, demand=constant(5e6), prober=Prober(), estimator=make())
    out["simulated_jitter"] = [[e, s] for e, s in zip(run.estimates, run.sent_bps, strict=True)]
    lossy = Link(constant(1e9), loss=0.05, seed=3)
    run = simulate(lossy, seconds=8, demand=constant(5e6), estimator=make(start_bps=2_000_000))
    out["simulated_loss"] = [[e, s] for e, s in zip(run.estimates, run.sent_bps, strict=True)]
    return out


def write(path: Path, traces_by_name: dict[str, Trace]) -> None:
    """One scenario a line (diffs stay readable)."""
    lines = [
        f"{json.dumps(name)}: {json.dumps(t, separators=(',', ':'))}"
        for name, t in traces_by_name.items()
    ]
    path.write_text("{\n" + ",\n".join(lines) + "\n}\n")


def read(path: Path) -> dict[str, Trace]:
    loaded: dict[str, Trace] = json.loads(path.read_text())
    return loaded
