"""When the SFU tells a client its downlink estimate: pure."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.policy.downlink import DownlinkReports


def test_the_first_estimate_is_reported_in_kbit_per_second() -> None:
    assert DownlinkReports().update(1_234_567, 0.0) == 1235


def test_a_move_under_ten_percent_is_not_reported() -> None:
    reports = DownlinkReports()
    reports.update(1_000_000, 0.0)
    assert reports.update(1_090_000, 5.0) is None
    assert reports.update(910_000, 6.0) is None
    assert reports.update(1_100_000, 7.0) == 1100
    assert reports.update(989_000, 8.0) == 989


def test_at_most_one_report_a_second_however_far_it_moves() -> None:
    reports = DownlinkReports()
    reports.update(3_000_000, 0.0)
    assert reports.update(300_000, 0.5) is None
    assert reports.update(300_000, 1.0) == 300


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20_000_000), st.floats(0.0, 3.0)), max_size=60))
def test_reports_are_a_second_apart_and_each_moved_ten_percent(
    steps: list[tuple[int, float]],
) -> None:
    reports = DownlinkReports()
    now = 0.0
    sent: list[tuple[float, int]] = []
    for estimate, gap in steps:
        now += gap
        kbps = reports.update(estimate, now)
        if kbps is not None:
            sent.append((now, kbps))
    for (t0, k0), (t1, k1) in itertools.pairwise(sent):
        assert t1 - t0 >= 1.0
        assert abs(k1 - k0) >= 0.1 * max(k0, 1)
