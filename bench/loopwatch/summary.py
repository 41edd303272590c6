"""Summarise `bench/loopwatch` output: stall distributions in the measured window.

    python bench/loopwatch/summary.py DIR [DIR ...]

Each DIR holds the JSON lines one server wrote (`sitecustomize.py`, one line
a second).  The measured window of a saturation point is taken as the last
`--window` seconds (default 6: settle and a 5 s window) in which the shared
socket's read callbacks took >= 300 ms of the second (media flowing at full
rate; the joins before and the teardown after read far less).  For each
timed name: the count, percentiles from the histogram (as bucket edges) and
the max, in the window; the gc pauses also over the whole run (the joins
included).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
from typing import Any

EDGES_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200)
WINDOW_KEYS = (
    "loop_wait",
    "UdpMux._readable",
    "Ticker.tick",
    "LayerClock.tick",
    "LayerClock.allocate_slice",
    "LayerControl.finish",
    "gc0",
    "gc1",
)
WHOLE_KEYS = ("gc1", "gc2")
BUSY_MS = 300.0


def rows(folder: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(glob.glob(os.path.join(folder, "*.jsonl"))):
        with open(path) as lines:
            out += [json.loads(line) for line in lines if line.strip()]
    return sorted(out, key=lambda r: float(r["t"]))


def window(all_rows: list[dict[str, Any]], seconds: int) -> list[dict[str, Any]]:
    busy = [
        i
        for i, r in enumerate(all_rows)
        if r.get("UdpMux._readable", {}).get("total_ms", 0) >= BUSY_MS
    ]
    if not busy:
        return []
    end = busy[-1]
    return all_rows[max(0, end - seconds + 1) : end + 1]


def merged(selected: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    buckets = [0] * (len(EDGES_MS) + 1)
    count, total, top = 0, 0.0, 0.0
    for r in selected:
        stat = r.get(key)
        if not stat:
            continue
        buckets = [a + b for a, b in zip(buckets, stat["buckets"], strict=True)]
        count += stat["count"]
        total += stat["total_ms"]
        top = max(top, stat["max_ms"])
    if not count:
        return None
    return {
        "count": count,
        "total_ms": round(total, 1),
        "max_ms": round(top, 1),
        "p50_le_ms": edge(buckets, count, 0.5),
        "p90_le_ms": edge(buckets, count, 0.9),
        "p99_le_ms": edge(buckets, count, 0.99),
        "buckets": buckets,
    }


def edge(buckets: list[int], count: int, q: float) -> float | None:
    """The upper edge of the bucket holding quantile q (None: above the last edge)."""
    seen = 0
    for i, n in enumerate(buckets):
        seen += n
        if seen >= q * count:
            return EDGES_MS[i] if i < len(EDGES_MS) else None
    return None


def clusters(selected: list[dict[str, Any]], gap_s: float = 0.3) -> list[dict[str, Any]]:
    """The window's long events (`long`: wall time, ms, what) grouped when < `gap_s` apart.

    Each cluster: its start (s after the window's first event), span, the
    longest `loop_wait`, the longest read wake-up and the datagrams it read,
    and the time since the previous cluster's start (a key frame every 2 s
    shows as a period of 2.0).
    """
    events = sorted((e for r in selected for e in r.get("long", [])), key=lambda e: e[0])
    out: list[dict[str, Any]] = []
    for at, ms, what in events:
        if not out or at - out[-1]["_last"] > gap_s:
            out.append({"_start": at, "_last": at, "wait_ms": 0.0, "read_ms": 0.0, "read_n": 0})
        c = out[-1]
        c["_last"] = max(c["_last"], at + ms / 1000)
        if what == "loop_wait":
            c["wait_ms"] = max(c["wait_ms"], ms)
        elif what.startswith("UdpMux._readable") and ms > c["read_ms"]:
            c["read_ms"] = ms
            c["read_n"] = int(what.split("n=")[1]) if "n=" in what else 0
    starts = [c["_start"] for c in out]
    for i, c in enumerate(out):
        c["at_s"] = round(c["_start"] - starts[0], 3)
        c["span_ms"] = round(1000 * (c["_last"] - c["_start"]), 1)
        c["since_previous_s"] = round(starts[i] - starts[i - 1], 3) if i else None
        c["wait_ms"], c["read_ms"] = round(c["wait_ms"], 1), round(c["read_ms"], 1)
        del c["_start"], c["_last"]
    return out


def summary(folder: str, seconds: int) -> dict[str, Any]:
    all_rows = rows(folder)
    selected = window(all_rows, seconds)
    return {
        "window_s": len(selected),
        "window": {k: merged(selected, k) for k in WINDOW_KEYS},
        "whole_run": {k: merged(all_rows, k) for k in WHOLE_KEYS},
        "long_clusters": clusters(selected),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--window", type=int, default=6)
    parser.add_argument("--json", help="write the summaries here")
    args = parser.parse_args()
    result = {os.path.basename(f.rstrip("/")): summary(f, args.window) for f in args.folders}
    for name, s in result.items():
        print(f"{name}: window {s['window_s']} s")
        for scope in ("window", "whole_run"):
            for key, m in s[scope].items():
                if m is not None:
                    print(
                        f"  {scope:9s} {key:17s} n={m['count']:5d} p50<={m['p50_le_ms']} "
                        f"p90<={m['p90_le_ms']} p99<={m['p99_le_ms']} max {m['max_ms']} ms "
                        f"(total {m['total_ms']} ms)"
                    )
        for c in s["long_clusters"]:
            print(
                f"  long at {c['at_s']:7.3f} s (+{c['since_previous_s']}): span {c['span_ms']} ms,"
                f" loop_wait max {c['wait_ms']} ms, read wake-up max {c['read_ms']} ms"
                f" ({c['read_n']} datagrams)"
            )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=1)


if __name__ == "__main__":
    main()
