"""The network lab's 1:1 viewer in the pure simulator (tests/gcc_sim.py).

A stage slot of a simulcast camera (320/640/1280 layers at 150 k / 500 k /
1.5 Mbit/s with L1T3, as the SDK's encodings), audio at 40 kbit/s, the real
allocator (`LayerAllocator`, on the estimate less the audio), the probe goal
the SFU clock gives the Prober (`probe_goal_bps`), and the lab's 200 ms
drop-tail queue (bench/netlab.py's tbf).  `caps` are the lab's: (from s,
bits/s or None = uncapped).  `top_until`: from then on the publisher sends
only its two lower layers, as the lab's publisher did when its own uplink
estimate fell on a loaded machine (then the SFU knows only those layers, and
its probe goal follows), until `top_back` (None: to the end).
`key_frame_x`: each switch to another spatial layer sends a key frame that
many average frames of the new layer larger, in one burst (0: none, the
default; a VP8 key frame is some 5-15 x).
`burst_s`: the bottleneck's token bucket (the lab's tbf: 0.02 s; 0, the
default: none, every frame's packets queue behind each other).
`fresh`: upgrades only on a measured estimate, as on the SFU clock (the
Prober's `fresh`); False: on any estimate, as before.
Used by tests/test_sfu_probe.py and bench/estimate_sim.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from sfu.policy.allocation import (
    LayerAllocator,
    LayerInfo,
    SlotDemand,
    ceiling_bps,
    held_below,
    probe_goal_bps,
)
from sfu.policy.gcc import BandwidthEstimator
from sfu.policy.probe import Prober
from tests.gcc_sim import FRAME_S, Link, Run, simulate, steps

AUDIO_BPS = 40_000
UNCAPPED_BPS = 50e6
CAMERA = (
    LayerInfo(0, 320, 180, (60_000, 90_000, 150_000)),
    LayerInfo(1, 640, 360, (200_000, 300_000, 500_000)),
    LayerInfo(2, 1280, 720, (600_000, 900_000, 1_500_000)),
)

Caps = tuple[tuple[float, float | None], ...]


@dataclass
class LabRun:
    run: Run  # the estimate after each feedback
    layers: list[tuple[float, int]]  # (t, spatial layer) at each change

    def top_layer_from(self, t: float) -> float | None:
        """When the viewer was next on the top layer at or after `t` (None: never)."""
        return next((at for at, layer in self.layers if at >= t and layer == 2), None)

    def estimate_reaches(self, bps: float, after: float) -> float | None:
        """The first feedback time after `after` with an estimate of at least `bps`."""
        pairs = zip(self.run.times, self.run.estimates, strict=True)
        return next((t for t, e in pairs if t > after and e >= bps), None)


def lab_viewer(
    caps: Caps,
    seconds: float,
    seed: int = 1,
    top_until: float | None = None,
    key_frame_x: float = 0.0,
    burst_s: float = 0.0,
    top_back: float | None = None,
    fresh: bool = True,
) -> LabRun:
    full = SlotDemand("1", True, 1280, 720, CAMERA)
    lower = SlotDemand("1", True, 1280, 720, CAMERA[:2])

    def slot_at(t: float) -> SlotDemand:
        gone = top_until is not None and t >= top_until
        return lower if gone and (top_back is None or t < top_back) else full

    allocator = LayerAllocator()  # as on the SFU clock: an upgrade after 1.5 s
    estimator = BandwidthEstimator(start_bps=1_000_000)
    layers: list[tuple[float, int]] = []
    prober = Prober()
    held = [True]  # whether the last allocation held the slot below its top step

    def media(t: float) -> float:
        slot = slot_at(t)
        rise = prober.fresh(t) if fresh else True
        choices = allocator.update([slot], estimator.estimate_bps - AUDIO_BPS, t, rise=rise)
        held[0] = held_below([slot], choices)
        choice = choices["1"]
        spatial = choice.spatial if choice.spatial is not None else 0
        if not layers or layers[-1][1] != spatial:
            layers.append((t, spatial))
        return CAMERA[spatial].bitrates[choice.temporal] + AUDIO_BPS

    def key_frame(t: float) -> int:
        if key_frame_x <= 0 or not layers or layers[-1][0] != t:
            return 0  # only on the frame of a spatial switch (media() just ran at t)
        return int(key_frame_x * CAMERA[layers[-1][1]].bitrates[-1] * FRAME_S / 8)

    def goal(t: float) -> float:
        return probe_goal_bps(ceiling_bps([slot_at(t)]), AUDIO_BPS)

    capacity = steps(*((t, UNCAPPED_BPS if bps is None else bps) for t, bps in caps))
    run = simulate(
        Link(capacity, max_queue_s=0.2, seed=seed, burst_s=burst_s),
        seconds=seconds,
        demand=media,
        desired=goal,
        estimator=estimator,
        prober=prober,
        key_frame=key_frame,
        held=lambda _t: held[0],
    )
    return LabRun(run, layers)
