"""The send history's feedback columns say exactly what its per-packet reading said.

`SendHistory.columns` reads the usual feedback without a Python step per
packet; `results_as_before` below is the per-packet reading it replaced
(sfu/transport/sendhistory.py at c81cc58, `SendHistory.results`), kept here
as the oracle.  Real feedback bytes throughout (`build_feedback` then
`parse_rtcp`), on recorded Chromium feedback and on hypothesis' sequences
of sends and feedbacks (lost packets, large and negative deltas, repeated,
stale and never-sent sequence numbers, the ring wrapping and overwritten).
Each test runs on both twins (`gcc_twin`): the Python reading and the
compiled one (sfu/native/_gcc.c `history_columns`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfu.packet.rtcp import TransportCc, parse_rtcp
from sfu.packet.twcc import build_feedback, receive_times, unwrap_reference
from sfu.policy.gcc import BandwidthEstimator, PacketResult
from sfu.transport.sendhistory import EMPTY, STRIDE, Columns, SendHistory
from tests import gcc_golden
from tests.gcc_sim import load_recording
from tests.native_twins import gcc_twin  # noqa: F401 (a fixture)

DATA = Path(__file__).parent / "data"


def results_as_before(history: SendHistory, fb: TransportCc, now: float) -> list[PacketResult]:
    """`SendHistory.results` as it was: one `PacketResult` per remembered packet
    (on the ring's entries as the tuples it used to hold)."""
    history.feedbacks += 1
    ring, mask = history.entries(), history.mask
    if fb.status_count > len(ring):
        history.unknown += fb.status_count
        return []
    newest = history.next - 1
    oldest = now - history.max_age_s
    reference = unwrap_reference(history._reference, fb.reference_time)
    history._reference = reference
    out: list[PacketResult] = []
    for seq16, arrival_us in receive_times(fb, reference):
        seq = newest - ((newest - seq16) & 0xFFFF)
        entry = ring[seq & mask]
        if entry is None or entry[0] != seq or entry[1] < oldest:
            history.unknown += 1
        elif arrival_us is None:
            out.append(PacketResult(seq, entry[1], entry[2], None, entry[3]))
        else:
            out.append(PacketResult(seq, entry[1], entry[2], arrival_us / 1e6, entry[3]))
            ring[seq & mask] = None
            history.ring[(seq & mask) * STRIDE] = EMPTY
    return out


def feedback(base: int, arrivals: list[int | None], count: int = 0) -> list[TransportCc]:
    out = []
    for data in build_feedback(1, 2, base & 0xFFFF, arrivals, count):
        (fb,) = parse_rtcp(data)
        assert isinstance(fb, TransportCc)
        out.append(fb)
    return out


class Counting(SendHistory):
    """Counts the feedbacks read without a Python step per packet (by C-level
    builtins, or by the compiled loop when sfu.native has it)."""

    __slots__ = ("at_once",)

    def __init__(self, size: int = 8192, max_age_s: float = 2.0) -> None:
        super().__init__(size, max_age_s)
        self.at_once = 0

    def _columns_at_once(self, fb: TransportCc, reference: int, now: float) -> Columns | None:
        columns = super()._columns_at_once(fb, reference, now)
        self.at_once += columns is not None
        return columns

    def _columns_native(
        self, fb: TransportCc, reference: int, now: float
    ) -> Columns | Literal[False] | None:
        columns = super()._columns_native(fb, reference, now)
        self.at_once += columns is not None and columns is not False
        return columns


def state(history: SendHistory) -> tuple[object, ...]:
    return (history.entries(), history.unknown, history.feedbacks, history._reference, history.next)


@pytest.mark.usefixtures("gcc_twin")
def test_a_feedback_of_remembered_packets_is_read_at_once_and_answered_once() -> None:
    history = SendHistory(size=16)
    for seq in range(10):
        history.add(history.take(), 1.0 + seq / 1000, 1000 + seq, 3 if seq == 4 else -1)
    arrivals: list[int | None] = [2_000_000 + 1000 * k for k in range(6)]
    arrivals[2] = None
    (fb,) = feedback(3, arrivals)
    columns = history.columns(fb, now=1.5)
    assert columns is not None
    assert list(columns.sequences) == [3, 4, 5, 6, 7, 8]
    assert list(columns.arrivals) == [2.0, 2.001, None, 2.003, 2.004, 2.005]
    assert list(columns.sizes) == [1003, 1004, 1005, 1006, 1007, 1008]
    assert list(columns.probes) == [-1, 3, -1, -1, -1, -1]
    assert [entry is None for entry in history.entries()[3:9]] == [True, True, False] + [True] * 3
    again = history.columns(fb, now=1.5)
    assert again is not None and list(again.sequences) == [5], "only the lost one is left"
    assert history.unknown == 5


@pytest.mark.usefixtures("gcc_twin")
def test_stale_or_never_sent_packets_are_skipped_as_before() -> None:
    history = SendHistory(size=16)
    for seq in range(40):  # the ring holds 24..39
        history.add(history.take(), seq / 100, 500, -1)
    before = copy.deepcopy(history)
    for base, n in ((20, 8), (36, 8), (30, 4)):
        (fb,) = feedback(base, [1_000_000 + 500 * k for k in range(n)])
        for now in (0.5, 3.0):
            expected = results_as_before(before, fb, now)
            assert history.results(fb, now) == expected
            assert state(history) == state(before)


@pytest.mark.usefixtures("gcc_twin")
def test_feedback_about_more_than_the_ring_holds_yields_nothing() -> None:
    history = SendHistory(size=16)
    for _ in range(20):
        history.add(history.take(), 1.0, 500)
    (fb,) = feedback(0, [1_000_000] * 20)
    assert history.columns(fb, now=1.0) is None and history.unknown == 20


def _replay(path: Path) -> tuple[list[list[object]], list[list[object]], int]:
    """A recording's packets sent through two histories and wire feedback, into
    two estimators: the per-packet reading into `on_feedback`, `columns` into
    `on_feedback_arrays`; each estimator's snapshot after every feedback."""
    _, feedbacks = load_recording(path)
    new, old = Counting(), SendHistory()
    by_columns, by_results = BandwidthEstimator(), BandwidthEstimator()
    got: list[list[object]] = []
    expected: list[list[object]] = []
    sent = 0
    for at, packets in feedbacks:
        if not packets:
            continue
        ordered = sorted(packets, key=lambda p: p.sequence)
        arrivals: dict[int, int | None] = {}
        for p in ordered:
            while sent <= p.sequence:  # what the feedback does not mention was sent too
                for history in (new, old):
                    history.add(sent, p.send_time, p.size, p.probe)
                sent += 1
                new.next = old.next = sent
            arrivals[p.sequence] = None if p.arrival is None else round(p.arrival * 1e6)
        first, last = ordered[0].sequence, ordered[-1].sequence
        wire = [arrivals.get(seq) for seq in range(first, last + 1)]
        for fb in feedback(first, wire):
            columns = new.columns(fb, at)
            results = results_as_before(old, fb, at)
            assert (columns.results() if columns else []) == results
            if columns is not None:
                by_columns.on_feedback_arrays(*columns, at)
            by_results.on_feedback(results, at)
            got.append(gcc_golden.snapshot(by_columns))
            expected.append(gcc_golden.snapshot(by_results))
        assert state(new) == state(old)
    return got, expected, new.at_once


@pytest.mark.usefixtures("gcc_twin")
def test_recorded_chromium_feedback_gives_the_estimator_the_same_outputs() -> None:
    for name in gcc_golden.RECORDINGS:
        got, expected, at_once = _replay(DATA / f"{name}.jsonl")
        assert len(got) > 100 and at_once > len(got) / 2, (name, len(got), at_once)
        assert got == expected, name


# A step: ("send", packets, gap between them in ms, size, probe cluster)
# or ("feedback", first sequence relative to the next one (None: the last ones sent),
# arrival gaps in 250 us ticks with None for lost, delay before it is read in ms).
_send = st.tuples(
    st.just("send"),
    st.integers(1, 40),
    st.integers(0, 30),
    st.integers(1, 1400),
    st.sampled_from([-1, -1, -1, 0, 5]),
)
_small = st.integers(0, 255)  # 1-byte deltas: the usual feedback, read at once
_gaps = st.one_of(
    st.lists(st.one_of(_small, _small, _small, st.none()), min_size=1, max_size=60),
    st.lists(st.one_of(_small, st.none(), st.integers(-2000, 40_000)), min_size=1, max_size=60),
)
# the first sequence reported: None for the packets just sent (the usual case)
_feedback = st.tuples(
    st.just("feedback"),
    st.one_of(st.none(), st.none(), st.integers(-120, 5)),
    _gaps,
    st.integers(0, 3000),
    st.none(),
)


@pytest.mark.usefixtures("gcc_twin")
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.sampled_from([16, 64, 256]),
    st.sampled_from([0.5, 2.0]),
    st.integers(0, 0xFFFF),
    st.lists(st.one_of(_send, _feedback), min_size=1, max_size=30),
)
def test_any_feedback_is_read_as_the_per_packet_reading_did(
    size: int, max_age_s: float, start: int, steps: list[tuple[object, ...]]
) -> None:
    new, old = Counting(size, max_age_s), SendHistory(size, max_age_s)
    new.next = old.next = start  # wherever the 16-bit numbers are
    clock = 10.0
    receiver_us = 7_000_000
    for step in steps:
        if step[0] == "send":
            _, count, gap_ms, nbytes, probe = step
            assert isinstance(count, int) and isinstance(gap_ms, int)
            assert isinstance(nbytes, int) and isinstance(probe, int)
            for _ in range(count):
                clock += gap_ms / 1000
                for history in (new, old):
                    history.add(history.take(), clock, nbytes, probe)
            continue
        _, offset, gaps, delay_ms, _unused = step
        assert isinstance(gaps, list) and isinstance(delay_ms, int)
        if offset is None:
            offset = -len(gaps)
        assert isinstance(offset, int)
        arrivals: list[int | None] = []
        for gap in gaps:
            if gap is None:
                arrivals.append(None)
            else:
                receiver_us = max(receiver_us + gap * 250, 0)
                arrivals.append(receiver_us)
        if all(a is None for a in arrivals):
            arrivals[0] = receiver_us
        clock += delay_ms / 1000
        for fb in feedback(new.next + offset, arrivals):
            columns = new.columns(fb, clock)
            assert (columns.results() if columns else []) == results_as_before(old, fb, clock)
            assert state(new) == state(old)


@pytest.mark.usefixtures("gcc_twin")
def test_the_usual_feedback_is_read_at_once() -> None:
    history = Counting()
    clock = 1.0
    for n in range(50):
        first = history.next
        for _ in range(30):
            clock += 0.003
            history.add(history.take(), clock, 1200)
        arrivals: list[int | None] = [round((clock + k * 0.003) * 1e6) for k in range(30)]
        if n % 5 == 0:
            arrivals[7] = None
        (fb,) = feedback(first, arrivals, n)
        assert history.columns(fb, clock) is not None
    assert history.at_once == 50


def test_the_ring_is_flat_doubles_written_in_place_whatever_wraps() -> None:
    history = SendHistory(size=64)
    ring = history.ring
    assert ring.itemsize * len(ring) == 64 * STRIDE * 8  # 32 bytes a slot
    assert history.entries() == [None] * 64
    for n in range(200):  # three wraps
        history.add(history.take(), 1.0 + n, 1000 + n, n % 3 - 1)
    assert history.ring is ring and len(ring) == 64 * STRIDE
    assert history.entries()[199 & 63] == (199, 200.0, 1199, 199 % 3 - 1)
    assert history.entries()[0] == (192, 193.0, 1192, 192 % 3 - 1)
