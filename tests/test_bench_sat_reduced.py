"""`compare_janus.py --sat-reduced`: one shorter saturation search per server (<= 6 min)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import compare_janus  # noqa: E402
from saturation import Load, ladder  # noqa: E402


def test_the_reduced_search_is_one_short_search_per_server_up_to_2x400() -> None:
    parser = argparse.ArgumentParser()
    compare_janus.saturation_arguments(parser)
    args = parser.parse_args(["--sat-reduced", "--sat-runs", "3"])
    compare_janus.reduce_saturation(args)
    assert args.saturation and args.sat_runs == 1
    assert ladder(args.sat_subscribers, args.sat_publishers) == [
        Load(1, 100),
        Load(1, 200),
        Load(1, 300),
        Load(1, 400),
        Load(2, 400),
    ]
    # Each point: warm-up (at most), settle and window; a bisection point also rejoins.
    per_point = args.sat_warmup + args.sat_settle + args.sat_duration
    points = len(ladder(args.sat_subscribers, args.sat_publishers)) + args.sat_refine
    assert 2 * points * per_point <= 3 * 60, "two searches leave half of 6 min for the joins"
