"""Several bench/netlab.py results side by side: each capped viewer's freeze ratio after
adapting, per run and the median per group (e.g. base against head, alternating runs).

    python bench/netlab_summary.py base=base-1.json head=head-1.json base=base-2.json ...

Each argument is GROUP=FILE, or a FILE alone (group "-").  Printed per
scenario and group: the impaired viewer's `freeze_ratio_after_3s` of every run, their
median, the adapt times, the load averages, and the frozen seconds after adapting by
class (bench/netlab_trace.py) summed over the runs.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import netlab_metrics as m

__all__ = ["collect", "main"]

PUBLISHER = ("publisher_skip", "publisher_burst", "start")
ADAPTED_S = 3.0  # bench/netlab.py counts freezes from this long after the first low cap


def _after_adapting(entry: dict[str, Any], viewer: dict[str, Any]) -> float:
    """The viewer's freeze ratio after adapting, computed again from its series with
    today's `netlab_metrics.freeze_ratio` (results written before it counted a freeze
    that began before the window whole), else as stored."""
    caps = entry.get("caps", [])
    low = [float(t) for t, kbps in caps if kbps is not None and kbps < 1500]
    rows = viewer.get("series", [])
    if not low or not rows or len(rows[0]) < 6:
        return round(float(viewer["freeze_ratio_after_3s"]), 3)
    after = min(low) + ADAPTED_S
    samples = [
        m.Sample(float(r[0]), r[1], r[2], int(r[3]), 0, float(r[5]), 0, 0, r[4])
        for r in rows
        if float(r[0]) >= after
    ]
    ratio = m.freeze_ratio(samples)
    return (
        round(ratio, 3) if ratio is not None else round(float(viewer["freeze_ratio_after_3s"]), 3)
    )


def _cap_stall(entry: dict[str, Any], viewer: dict[str, Any]) -> float:
    """The longest stall (netlab_trace episodes) beginning within `ADAPTED_S` of the first
    cap below 1.5 Mbit/s: the freeze of the step down itself."""
    low = [float(t) for t, kbps in entry.get("caps", []) if kbps is not None and kbps < 1500]
    if not low:
        return 0.0
    at = min(low)
    found = [e for e in viewer.get("episodes", []) if at <= float(e["start"]) < at + ADAPTED_S]
    return round(max((float(e["s"]) for e in found), default=0.0), 2)


def _counted(entry: dict[str, Any]) -> float:
    """The seconds the freeze ratio after adapting counts (bench/netlab.py `summarize`)."""
    caps = entry.get("caps", [])
    low = [float(t) for t, kbps in caps if kbps is not None and kbps < 1500]
    series = entry["visitroom"]["viewers"]["impaired"].get("series", [])
    if not low or not series:
        return 0.0
    return max(0.0, float(series[-1][0]) - (min(low) + ADAPTED_S))


def collect(runs: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """scenario -> group -> {"frozen": [...], "median": m, "adapt": [...], "load": [...],
    "kinds": {class: seconds}, "sfu": [...], "sfu_median": m} over `runs` ((group,
    result) pairs), impaired viewers only.  "sfu": the share of the counted seconds
    (after adapting) spent in stalls of a class other than the publisher's
    (`PUBLISHER`: its encoder skipped frames or burst) and the start."""
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for group, result in runs:
        for name, entry in result["scenarios"].items():
            viewer = entry.get("visitroom", {}).get("viewers", {}).get("impaired")
            if viewer is None:
                continue
            row = out[name].setdefault(
                group,
                {
                    "frozen": [],
                    "adapt": [],
                    "load": [],
                    "kinds": defaultdict(float),
                    "sfu": [],
                    "cap_stall": [],
                },
            )
            row["frozen"].append(_after_adapting(entry, viewer))
            row["adapt"].append(viewer["adapt_s_p95"])
            row["cap_stall"].append(_cap_stall(entry, viewer))
            row["load"].append(entry.get("loadavg", {}).get("visitroom"))
            kinds = viewer.get("frozen_s_by_kind_after_3s", {})
            for kind, seconds in kinds.items():
                row["kinds"][kind] += seconds
            counted = _counted(entry)
            others = sum(s for k, s in kinds.items() if k not in PUBLISHER)
            row["sfu"].append(round(others / counted, 3) if counted else None)
    for groups in out.values():
        for row in groups.values():
            row["median"] = statistics.median(row["frozen"])
            known = [x for x in row["sfu"] if x is not None]
            row["sfu_median"] = statistics.median(known) if known else None
            row["kinds"] = {k: round(v, 2) for k, v in row["kinds"].items() if v}
    return dict(out)


def main() -> None:
    runs = []
    for arg in sys.argv[1:]:
        group, _, path = arg.rpartition("=")
        runs.append((group or "-", json.loads(Path(path).read_text())))
    for name, groups in collect(runs).items():
        print(name)
        for group, row in groups.items():
            adapt = ["-" if a is None else f"{a:.1f}" for a in row["adapt"]]
            print(f"  {group:8} frozen after 3 s {row['frozen']} median {row['median']:.3f}; "
                  f"not the publisher's {row['sfu']} median {row['sfu_median']}; "
                  f"adapt {adapt}; stall at the cap {row['cap_stall']} s; load {row['load']}; "
                  f"by class {row['kinds']}")  # fmt: skip


if __name__ == "__main__":
    main()
