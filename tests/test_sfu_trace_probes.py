"""The layer trace's probe results (sfu/routing/trace.py `probe_rows`), from a real
estimator and prober on the simulated link (tests/gcc_sim.py)."""

from __future__ import annotations

from sfu.policy.gcc import BandwidthEstimator
from sfu.policy.probe import Prober
from sfu.routing.trace import probe_rows
from tests.gcc_sim import Link, constant, simulate


def test_the_trace_carries_each_recent_probe_result() -> None:
    """An app-limited sender probing a 1 Mbit/s link: the trace shows the latest four
    results, each [t, sent, arrived, shown, saturated, estimate after] (kbit/s), the
    last saturated one at about the link, the estimate after it what the estimator says."""
    estimator = BandwidthEstimator(start_bps=300_000)
    simulate(
        Link(constant(1e6), max_queue_s=0.2),
        seconds=3.0,
        demand=constant(300_000),
        desired=constant(1_500_000),
        estimator=estimator,
        prober=Prober(),
    )
    rows = probe_rows(estimator)
    assert len(rows) == 4
    assert [row[0] for row in rows] == sorted(row[0] for row in rows)
    assert all(len(row) == 6 and row[4] in (0, 1) for row in rows)
    saturated = [row for row in rows if row[4]]
    assert saturated and 900 <= saturated[-1][2] <= 1100  # arrived at about the link
    last = estimator.probe_results[-1]
    assert rows[-1][5] == round(last.estimate_bps / 1000)
    assert probe_rows(None) == []
