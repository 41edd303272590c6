"""One layer-allocation round in-process: whole (`LayerControl.tick`) against its slices.

N subscribers (stand-ins from tests/test_sfu_layering.py) of 4 simulcast
cameras on 640x360 tiles, every one due and allocated for the first time
(the worst round: a room that just joined); the round whole, and the same
round in slices of `LAYER_SLICE` (`begin`, `add` per slice, `finish`), the
largest slice being what one loop turn holds now.  Medians of `--repeat`.

    python bench/layer_round.py --subscribers 160 400 --repeat 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sfu.routing.layerclock import LAYER_SLICE  # noqa: E402
from sfu.routing.layering import LayerControl  # noqa: E402
from tests.test_sfu_layering import (  # noqa: E402
    FakeEstimator,
    FakeSlot,
    FakeSubscriber,
    camera,
    everyone_on_stage,
)


def subscribers(count: int) -> list[FakeSubscriber]:
    tracks = [camera(f"pub{k}", mid=str(k)) for k in range(4)]
    return [
        FakeSubscriber(
            f"v{n}",
            {str(k): FakeSlot("video", t) for k, t in enumerate(tracks)},
            {str(k): (640, 360) for k in range(4)},
            FakeEstimator(600_000 + 10_000 * (n % 50)),
        )
        for n in range(count)
    ]


def whole_ms(count: int) -> float:
    control, subs = LayerControl(lambda event: None), subscribers(count)
    started = time.perf_counter()
    control.tick([(s, 2_000_000, 40_000, everyone_on_stage) for s in subs], (), 0.0)
    return 1000 * (time.perf_counter() - started)


def largest_slice_ms(count: int) -> float:
    control, subs = LayerControl(lambda event: None), subscribers(count)
    control.begin()
    top = 0.0
    for start in range(0, count, LAYER_SLICE):
        batch = [
            (s, 2_000_000, 40_000, everyone_on_stage) for s in subs[start : start + LAYER_SLICE]
        ]
        started = time.perf_counter()
        control.add(batch, 0.0)
        top = max(top, time.perf_counter() - started)
    started = time.perf_counter()
    control.finish((), 0.0)
    return 1000 * max(top, time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[160, 400])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = {}
    for count in args.subscribers:
        whole = statistics.median(whole_ms(count) for _ in range(args.repeat))
        piece = statistics.median(largest_slice_ms(count) for _ in range(args.repeat))
        results[count] = {"whole_round_ms": whole, "largest_slice_ms": piece}
        print(f"{count:4d} subscribers: whole round {whole:6.2f} ms, largest slice {piece:5.2f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps({"slice": LAYER_SLICE, "results": results}, indent=1))


if __name__ == "__main__":
    main()
