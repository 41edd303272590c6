"""sfu.native._stats.ReceiveCore under ReceiveStats against the pure-Python twin: the same numbers.

Any sequence of arrivals (in order, late, repeated, jumps, timestamp wraps,
clock rates of audio and video), sender reports and receiver reports must
give exactly the same statistics, jitter included, with either base.
"""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu import native
from sfu.native import _stats
from sfu.packet.streamstats import (
    ReceiveCorePython,
    ReceiveStats,
    ReceiveStatsPython,
    StatsReports,
)


class CompiledStats(StatsReports, _stats.ReceiveCore):
    """ReceiveStats on the compiled core, whatever VISITROOM_NATIVE says."""

    def __init__(self, clock_rate: int) -> None:
        super().__init__(clock_rate)
        self._start_reports()


@pytest.fixture(scope="module")
def compiled() -> ModuleType:
    return _stats


def state(stats: CompiledStats | ReceiveStats | ReceiveStatsPython) -> tuple[object, ...]:
    return (
        stats.max_seq,
        stats.received,
        stats.bytes,
        stats.expected,
        stats.lost,
        stats.jitter_s,
        stats._jitter,
        stats._base,
    )


arrival = st.tuples(
    st.integers(-5, 70_000),  # extended sequence number
    st.integers(0, 0xFFFFFFFF),  # RTP timestamp
    st.integers(0, 1500),  # size
    st.floats(0.0, 1e6, allow_nan=False) | st.integers(0, 10_000),  # now
)
step = (
    arrival.map(lambda a: ("add", a))
    | st.tuples(st.integers(0, 0xFFFFFFFF), st.floats(0, 1e6)).map(lambda a: ("sr", a))
    | st.floats(0, 1e6).map(lambda now: ("report", (now,)))
)


@settings(max_examples=600, deadline=None)
@given(st.sampled_from([48000, 90000, 8000, 1]), st.lists(step, max_size=60))
def test_any_arrivals_and_reports_give_the_same_statistics(
    compiled: ModuleType, clock_rate: int, steps: list[tuple[str, tuple[object, ...]]]
) -> None:
    ours, theirs = CompiledStats(clock_rate), ReceiveStatsPython(clock_rate)
    for kind, args in steps:
        if kind == "add":
            ours.add(*args)  # type: ignore[arg-type]
            theirs.add(*args)  # type: ignore[arg-type]
        elif kind == "sr":
            ours.sender_report(*args)  # type: ignore[arg-type]
            theirs.sender_report(*args)  # type: ignore[arg-type]
        else:
            assert ours.report(*args) == theirs.report(*args)  # type: ignore[arg-type]
        assert state(ours) == state(theirs)


def test_a_steady_stream_with_jitter_matches_to_the_last_bit(compiled: ModuleType) -> None:
    ours, theirs = CompiledStats(90000), ReceiveStatsPython(90000)
    now = 1234.5678
    for n in range(5000):
        now += 0.0333 + (n * 7919 % 13) * 0.0007
        for stats in (ours, theirs):
            stats.add(n + (n % 17 == 3) * 2, (n * 3000 + 0xFFFF0000) & 0xFFFFFFFF, 1100, now)
    assert state(ours) == state(theirs) and ours._jitter > 0
    assert ours.report(now + 0.1) == theirs.report(now + 0.1)


def test_receive_stats_stand_on_the_compiled_core_unless_turned_off(compiled: ModuleType) -> None:
    core = compiled.ReceiveCore if native.enabled() else ReceiveCorePython
    assert issubclass(ReceiveStats, core)
    stats = CompiledStats(90000)
    assert stats._transit is None
    stats.add(1, 0, 10, 1.0)
    assert stats._transit == 90000.0
    with pytest.raises(OverflowError):
        stats.add(1 << 70, 0, 10, 1.0)
    with pytest.raises(TypeError):
        stats.add(1, 2, 3)  # type: ignore[call-arg]
