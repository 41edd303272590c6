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

__all__ = ["collect", "main"]


def collect(runs: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """scenario -> group -> {"frozen": [...], "median": m, "adapt": [...], "load": [...],
    "kinds": {class: seconds}} over `runs` ((group, result) pairs), impaired viewers only."""
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for group, result in runs:
        for name, entry in result["scenarios"].items():
            viewer = entry.get("visitroom", {}).get("viewers", {}).get("impaired")
            if viewer is None:
                continue
            row = out[name].setdefault(
                group, {"frozen": [], "adapt": [], "load": [], "kinds": defaultdict(float)}
            )
            row["frozen"].append(round(viewer["freeze_ratio_after_3s"], 3))
            row["adapt"].append(viewer["adapt_s_p95"])
            row["load"].append(entry.get("loadavg", {}).get("visitroom"))
            for kind, seconds in viewer.get("frozen_s_by_kind_after_3s", {}).items():
                row["kinds"][kind] += seconds
    for groups in out.values():
        for row in groups.values():
            row["median"] = statistics.median(row["frozen"])
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
                  f"adapt {adapt}; load {row['load']}; by class {row['kinds']}")  # fmt: skip


if __name__ == "__main__":
    main()
