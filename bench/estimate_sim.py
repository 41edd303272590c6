"""The network lab's estimate metric in the pure simulator (tests/gcc_sim.py), in seconds.

Each lab scenario (bench/netlab.py: uncapped warm-up, then a cap; the 3 M ->
500 k -> 3 M drop) with a 1:1 viewer's stage slot (320/640/1280 layers at
150 k / 500 k / 1.5 Mbit/s, as the SDK's simulcast encodings), the real
allocator (`LayerAllocator`), the probe goal the SFU clock gives the Prober
and the lab's 200 ms drop-tail queue.  Reports, like `estimate_error_pct`,
|estimate - cap| / cap over the samples taken 5 s or more after a cap
change (every 0.3 s, the estimate as the `downlink` reports would carry it:
10 % steps, at most once a second), p95 and median (over `--seeds` link
seeds: they matter only with loss or jitter, which these scenarios have
none of).

    python bench/estimate_sim.py            # the full lab's timings
    python bench/estimate_sim.py --quick    # --quick's
    python bench/estimate_sim.py --key-frames 10   # a key frame on each layer switch
    python bench/estimate_sim.py --burst-ms 20     # the lab's tbf burst at the bottleneck
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sfu.policy.downlink import DownlinkReports
from tests.gcc_lab import Caps, lab_viewer

SAMPLE_S = 0.3
SETTLE_S = 5.0


@dataclass(frozen=True)
class Scenario:
    name: str
    caps: Caps  # (from s, bits/s or None = uncapped)
    seconds: float
    top_until: float | None = None  # the publisher sends no 1280x720 layer from then on


@dataclass
class Outcome:
    errors: list[float]  # percent, the settled samples
    layers: list[tuple[float, int]]  # (t, spatial layer) on each change


def scenarios(quick: bool) -> list[Scenario]:
    w, run = (2.0, 9.0) if quick else (6.0, 24.0)
    drop = (2.0, 6.0, 12.0, 17.0) if quick else (3.0, 12.0, 27.0, 40.0)
    return [
        Scenario("cap_300k", ((0, None), (w, 300e3)), w + run),
        Scenario("cap_1m", ((0, None), (w, 1e6)), w + run),
        Scenario("cap_3m", ((0, None), (w, 3e6)), w + run),
        # the lab's publisher sent no 1280x720 layer in some runs (its own uplink
        # estimate fell) from the middle of the warm-up on: the viewer is app-limited under the cap
        Scenario("cap_1m_no_top", ((0, None), (w, 1e6)), w + run, top_until=w / 2),
        Scenario("cap_300k_no_top", ((0, None), (w, 300e3)), w + run, top_until=w / 2),
        # the top layer stops as the cap comes (the lab's stale case): the warm-up's probes
        # measured the uncapped link, and the viewer, now app-limited on 640x360, never
        # overuses the capped one
        Scenario("cap_1m_top_gone", ((0, None), (w, 1e6)), w + run, top_until=w),
        Scenario("cap_3m_top_gone", ((0, None), (w, 3e6)), w + run, top_until=w),
        Scenario(
            "drop_3m_500k_3m",
            ((0, None), (drop[0], 3e6), (drop[1], 5e5), (drop[2], 3e6)),
            drop[3],
        ),
    ]


def run_scenario(
    scenario: Scenario, seed: int, key_frame_x: float = 0.0, burst_s: float = 0.0
) -> Outcome:
    lab = lab_viewer(
        scenario.caps, scenario.seconds, seed, scenario.top_until, key_frame_x, burst_s
    )
    return Outcome(errors(scenario, lab.run.times, lab.run.estimates), lab.layers)


def errors(scenario: Scenario, times: list[float], estimates: list[int]) -> list[float]:
    reports = DownlinkReports()
    reported: int | None = None
    out = []
    sample = SAMPLE_S
    for t, estimate in zip(times, estimates, strict=True):
        kbps = reports.update(estimate, t)
        reported = kbps if kbps is not None else reported
        while sample <= t:
            cap_from, cap = cap_at(scenario, sample)
            if cap is not None and reported is not None and sample - cap_from >= SETTLE_S:
                out.append(100.0 * abs(reported * 1000 - cap) / cap)
            sample += SAMPLE_S
    return out


def cap_at(scenario: Scenario, t: float) -> tuple[float, float | None]:
    current: tuple[float, float | None] = scenario.caps[0]
    for change in scenario.caps:
        if t >= change[0]:
            current = change
    return current


def p95(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the lab's --quick timings")
    parser.add_argument("--seeds", type=int, default=1, help="link seeds (no effect without loss)")
    parser.add_argument("--layers", action="store_true", help="print the layer changes")
    parser.add_argument(
        "--key-frames",
        type=float,
        default=0.0,
        metavar="X",
        help="a key frame X average frames large on each layer switch (tests/gcc_lab.py)",
    )
    parser.add_argument(
        "--burst-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="the bottleneck's token-bucket burst (the lab's tbf: 20; default 0: none)",
    )
    args = parser.parse_args(argv)
    table = print
    table("scenario            p95 %  median %  max %   (per seed p95)")
    for scenario in scenarios(args.quick):
        seeds = range(1, args.seeds + 1)
        burst_s = args.burst_ms / 1000
        outcomes = [run_scenario(scenario, seed, args.key_frames, burst_s) for seed in seeds]
        every = [e for o in outcomes for e in o.errors]
        per_seed = " ".join(f"{p95(o.errors):5.1f}" for o in outcomes)
        table(
            f"{scenario.name:18} {p95(every):6.1f} {statistics.median(every):8.1f}"
            f" {max(every):6.1f}   ({per_seed})"
        )
        if args.layers:
            for seed, outcome in enumerate(outcomes, 1):
                changes = " ".join(f"{t:.1f}s:{s}" for t, s in outcome.layers)
                table(f"    seed {seed} layers {changes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
