"""The plot of a bench/room200.py run: per profile, packets, CPU per worker and join time."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {"1": "tab:blue", "2": "tab:orange"}


def _medians(runs: list[list[dict[str, Any]]], key: str) -> tuple[list[int], list[float]]:
    """Participants and the median of `key` over runs at each step."""
    steps = [s["participants"] for s in runs[0]]
    values = [statistics.median(float(r[i][key]) for r in runs) for i in range(len(steps))]
    return steps, values


def _cpu(runs: list[list[dict[str, Any]]]) -> tuple[list[int], list[list[float]]]:
    """Per step, the busiest worker's CPU, then the next one's (medians over runs)."""
    steps = [s["participants"] for s in runs[0]]
    workers = len(runs[0][0]["worker_cpu"])

    def ranked(run: list[dict[str, Any]], i: int, w: int) -> float:
        return float(sorted(run[i]["worker_cpu"], reverse=True)[w])

    per_worker = [
        [100 * statistics.median(ranked(r, i, w) for r in runs) for i in range(len(steps))]
        for w in range(workers)
    ]
    return steps, per_worker


def plot(results: dict[str, Any], path: Path) -> None:
    summary = results["summary"]
    fig, axes = plt.subplots(len(summary), 3, figsize=(15, 4.2 * len(summary)), squeeze=False)
    for row, (profile, by_workers) in enumerate(summary.items()):
        pps_ax, cpu_ax, join_ax = axes[row]
        for workers, entry in sorted(by_workers.items()):
            runs = entry["steps"]
            color = COLORS.get(workers, "tab:green")
            steps, pps = _medians(runs, "forwarded_pps")
            _, loss = _medians(runs, "loss_pct")
            label = f"{workers} worker{'s' if workers != '1' else ''} (max loss {max(loss):.2f}%)"
            pps_ax.plot(steps, pps, "o-", color=color, label=label)
            _, per_worker = _cpu(runs)
            for w, cpu in enumerate(per_worker):
                style = "o-" if w == 0 else "s--"
                which = "busiest worker" if w == 0 else "other worker"
                cpu_ax.plot(steps, cpu, style, color=color, label=f"{workers}w: {which}")
            _, p95 = _medians(runs, "join_to_first_frame_p95_ms")
            _, p50 = _medians(runs, "join_to_first_frame_p50_ms")
            join_ax.plot(steps, p95, "o-", color=color, label=f"{workers}w p95")
            join_ax.plot(steps, p50, "o:", color=color, label=f"{workers}w p50")
        efficiency = by_workers.get("2", {}).get("scaling_efficiency", {}).get("median")
        note = f" (scaling efficiency {efficiency:.2f})" if efficiency is not None else ""
        pps_ax.set_title(f"{profile}: packets/s delivered{note}")
        cpu_ax.set_title(f"{profile}: CPU per worker (% of one core)")
        join_ax.set_title(f"{profile}: join to first video frame (ms)")
        join_ax.axhline(1000, color="grey", linewidth=0.8, linestyle="--")
        for ax in (pps_ax, cpu_ax, join_ax):
            ax.set_xlabel("participants in the room")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            ax.set_ylim(bottom=0)
    fig.suptitle(
        "One room, 2-core machine, generator on the same cores "
        f"(medians of {len(next(iter(summary.values()))['1']['steps'])} runs)"
        if "1" in next(iter(summary.values()))
        else "One room"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
