"""sfu/native/_gcc.c against its Python twins, function by function, on the same inputs.

Each compiled function must give exactly what its twin gives (floats bit for
bit, NaN where NaN) or refuse the same input with the same exception, and
never crash or read out of bounds on hostile input:

  _gcc.tcc_chunk_walk   sfu.packet.rtcp._tcc_chunk_walk
  _gcc.history_columns  sfu.transport.sendhistory.SendHistory._columns_per_packet
  _gcc.split_feedback   sfu.policy.gcc._split
  _gcc.arrival_order    sfu.policy.gcc._arrival_order
  _gcc.acked_windows    sfu.policy.gcc_rates._windows
  _gcc.DelayDetector    sfu.policy.gcc_delay.DelayDetector

(The whole estimator on both twins: tests/test_sfu_gcc.py, test_sfu_sendhistory.py.)
"""

from __future__ import annotations

import copy
import math
import struct
from array import array
from collections.abc import Callable
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.packet.rtcp import RtcpError, TransportCc, _tcc_chunk_walk
from sfu.policy.gcc import BandwidthEstimator, PacketResult, _arrival_order, _split
from sfu.policy.gcc_delay import DelayDetector
from sfu.policy.gcc_rates import _windows
from sfu.transport.sendhistory import EMPTY, SendHistory
from tests import gcc_golden
from tests.native_twins import compiled_gcc


def same(a: object, b: object) -> bool:
    """Equal, floats bit for bit (NaN equal to NaN, -0.0 not equal to 0.0)."""
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def outcome(call: Callable[[], Any]) -> tuple[str, object]:
    """What a call gave: ("ok", value) or ("raised", exception type)."""
    try:
        return "ok", call()
    except Exception as exc:
        return "raised", type(exc)


# --- tcc_chunk_walk ----------------------------------------------------------


def walk_both(data: bytes, i: int, end: int, count: int) -> None:
    native = compiled_gcc()
    try:
        expected = _tcc_chunk_walk(data, i, end, count)
    except RtcpError as exc:
        with pytest.raises(ValueError) as raised:
            native.tcc_chunk_walk(data, i, end, count)
        assert str(raised.value) == str(exc)
        return
    got = native.tcc_chunk_walk(data, i, end, count)
    assert got == (expected[0], expected[1], bytes(expected[2]))


chunks = st.lists(
    st.one_of(
        st.integers(0, 0xFFFF),
        st.integers(0x8000, 0xFFFF),  # status vectors
        st.integers(0, 0x7FFF).map(lambda c: c | 0x6000 if c & 1 else c),  # reserved runs
    ),
    max_size=40,
)


@settings(max_examples=1000, deadline=None)
@given(chunks, st.integers(0, 0xFFFF), st.integers(0, 6), st.integers(0, 6))
def test_the_chunk_walk_reads_any_chunks_as_the_python_does(
    words: list[int], count: int, skip: int, cut: int
) -> None:
    data = bytes(skip) + b"".join(struct.pack("!H", w) for w in words)
    end = max(skip, len(data) - cut)
    walk_both(data, skip, end, count)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.integers(-5, 80), st.integers(-5, 80), st.integers(-5, 70000))
def test_the_chunk_walk_refuses_offsets_outside_the_buffer(
    data: bytes, i: int, end: int, count: int
) -> None:
    native = compiled_gcc()
    if 0 <= i <= end <= len(data) and 0 <= count <= 0xFFFF:
        walk_both(data, i, end, count)
        return
    with pytest.raises(ValueError, match="outside the packet"):
        native.tcc_chunk_walk(data, i, end, count)


def test_the_largest_claim_is_walked_in_bounded_memory() -> None:
    data = struct.pack("!H", 0x3FFF) * 9  # 9 runs of 8191 "small delta"
    walk_both(data, 0, len(data), 0xFFFF)
    walk_both(memoryview(bytearray(data)), 0, len(data), 0xFFFF)  # type: ignore[arg-type]


# --- history_columns -----------------------------------------------------------


def columns_both(history: SendHistory, fb: TransportCc, now: float) -> None:
    """The compiled loop and `_columns_per_packet` on copies of one history."""
    native = compiled_gcc()
    python, compiled = copy.deepcopy(history), copy.deepcopy(history)
    reference = fb.reference_time
    expected = outcome(lambda: python._columns_per_packet(fb, reference, now))
    newest, oldest = compiled.next - 1, now - compiled.max_age_s
    got = outcome(
        lambda: native.history_columns(
            compiled.ring,
            compiled.mask,
            newest,
            oldest,
            fb.base_seq,
            fb.symbols,
            fb.deltas,
            reference,
        )
    )
    if expected[0] == "raised":
        assert got == expected
        # a refusal changes nothing
        assert same(compiled.ring.tolist(), python.ring.tolist())
        assert same(python.ring.tolist(), history.ring.tolist())
        return
    assert got[0] == "ok" and isinstance(got[1], tuple)
    *columns, unknown = got[1]
    assert unknown == python.unknown - history.unknown
    if expected[1] is None:
        assert columns[0] == []
    else:
        wanted = cast("tuple[Any, ...]", expected[1])
        assert same([list(c) for c in columns], [list(c) for c in wanted])
    assert same(compiled.ring.tolist(), python.ring.tolist())


garbage = st.one_of(
    st.none(),
    st.tuples(
        st.integers(-5, 300),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(1, 1500),
        st.integers(-1, 3),
    ),
)


def ring_of(data: st.DataObject, size: int, newest: int) -> array[float]:
    """Slots holding what the last `size` packets left (most of them), or garbage
    (free, or any numbers SendHistory.add could have written)."""
    ring = array("d")
    for slot in range(size):
        seq = newest - ((newest - slot) % size)  # the newest packet in this slot
        entry: tuple[float, float, int, int]
        if data.draw(st.integers(0, 3)):
            send = data.draw(st.sampled_from([0.5, 1.0, -3.0, math.nan, 9.0]))
            entry = (seq, send, data.draw(st.integers(1, 1500)), data.draw(st.integers(-1, 3)))
        else:
            entry = data.draw(garbage) or (EMPTY, 0.0, 0, 0)
        ring.extend(map(float, entry))
    return ring


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from([8, 16, 64]),
    st.data(),
    st.integers(-1, 300) | st.integers(0xFFF0, 0x1000F),
    st.integers(0, 0xFFFF),
    st.binary(max_size=80) | st.lists(st.sampled_from([0, 1, 1, 2]), max_size=80).map(bytes),
    st.binary(max_size=120),
    st.integers(-(2**41), 2**41) | st.integers(-5, 5),
    st.floats(-10, 10),
)
def test_history_columns_read_any_feedback_and_ring_as_the_python_does(
    size: int,
    data: st.DataObject,
    newest: int,
    base: int,
    symbols: bytes,
    deltas: bytes,
    reference: int,
    now: float,
) -> None:
    """Hostile feedback as parse_rtcp would never pass it (symbols 3-255, too few
    deltas), any ring contents, sequence numbers either side of the 16-bit wrap."""
    history = SendHistory(size=size, max_age_s=2.0)
    history.ring = ring_of(data, size, newest)
    history.next = newest + 1
    if data.draw(st.booleans()):  # a feedback about the packets just sent, as usual
        base = (newest + 1 - len(symbols)) & 0xFFFF
    if abs(reference) >= 2**40:  # beyond int64 ticks' exact range: the Python path
        assert (
            compiled_gcc().history_columns(
                history.ring, history.mask, newest, 0.0, base, symbols, deltas, reference
            )
            is None
        )
        return
    fb = TransportCc(1, 2, base, len(symbols), reference, 0, symbols, deltas)
    columns_both(history, fb, now)


def test_history_columns_refuse_a_mask_beyond_the_ring_and_other_rings() -> None:
    native = compiled_gcc()
    ring = array("d", (EMPTY, 0.0, 0.0, 0.0)) * 4
    with pytest.raises(IndexError):
        native.history_columns(ring, 7, 10, 0.0, 0, b"\x01", b"\x05", 0)
    with pytest.raises(IndexError):  # a slot's 4 doubles must all be there
        native.history_columns(ring[:-1], 3, 10, 0.0, 0, b"\x01", b"\x05", 0)
    entries: list[Any] = [(3, 1.0, 100, -1)] * 4  # the tuples SendHistory used to hold
    with pytest.raises(TypeError):
        native.history_columns(entries, 3, 3, 0.0, 3, b"\x01", b"\x05", 0)
    with pytest.raises(TypeError):  # read-only: a received slot could not be freed
        native.history_columns(ring.tobytes(), 3, 3, 0.0, 3, b"\x01", b"\x05", 0)
    assert entries == [(3, 1.0, 100, -1)] * 4


# --- split_feedback ------------------------------------------------------------

sane_time = st.floats(-5, 5)
any_time = st.one_of(
    sane_time,
    sane_time,
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.sampled_from([1e9, -1e9, 999_999_999.9]),
)
packet = st.tuples(
    st.integers(-5, 40) | st.integers(-(2**70), 2**70),  # sequence
    any_time,  # send time
    st.sampled_from([1200, 1, 65_535]) | st.integers(-3, 2**70),  # size
    st.none() | any_time,  # arrival
    st.sampled_from([-1, -1, 0, 3]) | st.integers(-(2**70), 2**70),  # probe
)


@settings(max_examples=1500, deadline=None)
@given(
    st.lists(packet, min_size=1, max_size=40),
    st.booleans(),
    st.sampled_from([-math.inf, 0.0, 1.0, 3.0]),
)
def test_the_feedback_split_gives_what_the_python_gives(
    packets: list[tuple[int, float, int, float | None, int]], in_order: bool, since: float
) -> None:
    if in_order:  # the usual feedback: sequences and times ascending
        packets = [
            (k, 1.0 + k / 100, size, None if arrival is None else 2.0 + k / 100, probe)
            for k, (_, _, size, arrival, probe) in enumerate(packets)
        ]
    columns: list[list[Any]] = [list(c) for c in zip(*packets, strict=True)]
    sequences, send_times, sizes, arrivals, probes = columns
    expected = _split(sequences, send_times, sizes, arrivals, probes, since)
    got = compiled_gcc().split_feedback(sequences, send_times, sizes, arrivals, probes, since)
    if expected is None:
        assert got is None
        return
    if got is None:  # the C leaves sequences and probe ids beyond 64 bits to the
        # per-packet path (the estimator's outputs are the same: see below)
        assert any(not -(2**63) <= v < 2**63 for v in columns[0] + columns[4])
        return
    expected_lists = [list(v) if isinstance(v, (list, tuple)) else v for v in expected]
    got_lists = [list(v) if isinstance(v, (list, tuple)) else v for v in got]
    assert same(got_lists, expected_lists)


hostile_results = st.builds(
    PacketResult,
    sequence=st.integers(-5, 60) | st.integers(-(2**70), 2**70),
    send_time=any_time,
    size=st.sampled_from([1200, 300, 65_535]) | st.integers(-10, 2**20),
    arrival=st.none() | any_time,
    probe=st.sampled_from([-1, -1, 0, 1]) | st.integers(-(2**70), 2**70),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(hostile_results, max_size=30), max_size=10), st.booleans())
def test_both_twins_of_the_estimator_give_the_same_outputs_on_hostile_feedback(
    feedbacks: list[list[PacketResult]], arrays: bool
) -> None:
    """The whole estimator, built once on each twin: the same snapshot after every
    feedback (exact floats), whichever path each feedback takes."""
    compiled_gcc()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VISITROOM_NATIVE", "0")
        python = (gcc_golden.ArraysEstimator if arrays else BandwidthEstimator)()
    compiled = (gcc_golden.ArraysEstimator if arrays else BandwidthEstimator)()
    assert python._split is _split and compiled._split is not _split
    for k, batch in enumerate(feedbacks):
        python.on_feedback(batch, 0.1 * k)
        compiled.on_feedback(batch, 0.1 * k)
        assert same(gcc_golden.snapshot(compiled), gcc_golden.snapshot(python)), k


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([1.0, 1.001, 1.002, 0.5]) | st.floats(-1e3, 1e3) | st.integers(-3, 3),
            st.integers(-3, 3) | st.integers(-(2**70), 2**70),
            st.floats(0, 10),
            st.integers(1, 1500),
            st.integers(-1, 2),
        ),
        max_size=70,
    ),
    st.booleans(),
    st.booleans(),
)
def test_the_arrival_order_is_the_pythons_stable_sort(
    rows: list[tuple[float, int, float, int, int]], with_probes: bool, in_sequence: bool
) -> None:
    """Ties on arrival (and on sequence) keep their order; ints among the floats."""
    arrivals = [r[0] for r in rows]
    sequences = [r[1] for r in rows]
    send_times = [r[2] for r in rows]
    sizes = [r[3] for r in rows]
    probes = [r[4] for r in rows] if with_probes else None
    args = (arrivals, sequences, send_times, sizes, probes, in_sequence)
    got = compiled_gcc().arrival_order(*args)
    if got is None:
        assert any(not -(2**63) <= v < 2**63 for v in sequences)
        return
    if not rows:
        assert got == ([], [], [], [], [] if with_probes else None)
        return
    expected = _arrival_order(*args)
    assert same(
        [None if c is None else list(c) for c in got],
        [None if c is None else list(c) for c in expected],
    )
    assert all(type(a) is type(b) for a, b in zip(got[0], expected[0], strict=True))


def test_the_feedback_split_refuses_columns_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        compiled_gcc().split_feedback([1, 2], [1.0, 2.0], [1200], [1.0, None], [-1, -1], 0.0)
    with pytest.raises(TypeError):
        compiled_gcc().split_feedback([1], [1.0], [1200], [1.0], 5, 0.0)


# --- acked_windows -------------------------------------------------------------

times = st.floats(allow_nan=True, allow_infinity=True) | st.floats(-1e3, 1e3)


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(st.tuples(times, st.integers(0, 70_000)), max_size=60),
    st.integers(0, 100),
    times,
    st.floats(0, 0.2) | times,
    st.integers(0, 10**6),
    st.none() | st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0, 1e4) | times,
)
def test_acked_windows_give_what_the_python_gives(
    packets: list[tuple[float, int]],
    extra: int,
    last: float,
    window_s: float,
    total: int,
    kbps: float | None,
    variance: float,
) -> None:
    arrivals = [a for a, _ in packets]
    sizes = [s for _, s in packets]
    args = (arrivals, sizes, extra, last, window_s, total, kbps, variance)
    expected = _windows(*args)
    got = compiled_gcc().acked_windows(*args)
    # (the Python's `last` is the last arrival object; the C's a float of it)
    assert same(got[1:], expected[1:]) and same(float(got[0]), float(expected[0]))


def test_acked_windows_on_steady_arrivals_over_many_windows() -> None:
    arrivals = [k * 0.0021 for k in range(3000)]
    sizes = [1000 + k % 300 for k in range(3000)]
    state: list[Any] = [0.0, 0.0, 0, None, 50.0]
    native_state = list(state)
    for k in range(0, 3000, 37):
        a, s = arrivals[k : k + 37], sizes[k : k + 37]
        *state, restarted = _windows(a, s, 38, *state)
        *native_state, native_restarted = compiled_gcc().acked_windows(a, s, 38, *native_state)
        assert same(native_state, state) and restarted == native_restarted == -1
    assert state[3] is not None


def test_acked_windows_refuse_what_the_python_refuses_without_a_result() -> None:
    native = compiled_gcc()
    for arrivals, sizes in (([1.0, "x"], [1, 2]), ([1.0, 2.0], [1, None]), (5, [1])):
        assert outcome(lambda: _windows(arrivals, sizes, 38, 0.0, 0.0, 0, None, 50.0))[0] == (  # type: ignore[arg-type]  # noqa: B023
            "raised"
        )
        with pytest.raises(TypeError):
            native.acked_windows(arrivals, sizes, 38, 0.0, 0.0, 0, None, 50.0)


# --- DelayDetector -------------------------------------------------------------

steady = st.lists(st.tuples(st.floats(0, 0.012), st.floats(-0.004, 0.03)), min_size=1, max_size=80)


def feed_both(batches: list[tuple[list[float], list[float], float]], resets: set[int]) -> None:
    python, compiled = DelayDetector(), compiled_gcc().DelayDetector()
    for k, (sends, arrivals, now) in enumerate(batches):
        if k in resets:
            python.reset()
            compiled.reset()
        python.add_all(sends, arrivals, now)
        compiled.add_all(sends, arrivals, now)
        assert compiled.state == python.state, k
        assert same(compiled.threshold, python.threshold), k


@settings(max_examples=300, deadline=None)
@given(st.lists(steady, min_size=1, max_size=30), st.integers(0, 3), st.sets(st.integers(0, 30)))
def test_the_delay_detector_gives_what_the_python_gives_on_a_queue(
    gaps: list[list[tuple[float, float]]], trend: int, resets: set[int]
) -> None:
    """Send gaps and queuing delays that build up (trend) and drain: overuse,
    underuse, threshold adaptation, groups and bursts."""
    send, arrival = 100.0, 5000.0
    batches = []
    for k, batch in enumerate(gaps):
        sends, arrivals = [], []
        for gap, delay in batch:
            send += gap
            arrival = max(arrival, send + 4900.0 + delay * (1 + trend * (k % 7)))
            sends.append(send)
            arrivals.append(arrival)
        batches.append((sends, arrivals, send + 0.1))
    feed_both(batches, resets)


hostile_time = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-10, 10),
    st.integers(-(2**30), 2**30),
)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(st.tuples(hostile_time, hostile_time), max_size=30), hostile_time),
        max_size=12,
    ),
    st.sets(st.integers(0, 12)),
)
def test_the_delay_detector_gives_what_the_python_gives_on_any_times(
    batches: list[tuple[list[tuple[float, float]], float]], resets: set[int]
) -> None:
    """NaN, infinities, clock jumps, reordering, ints (the estimator passes only sane
    times; the two must still agree on anything)."""
    feed_both([([s for s, _ in b], [a for _, a in b], now) for b, now in batches], resets)


def test_the_delay_detector_refuses_what_is_not_a_time_and_changes_nothing() -> None:
    detector = compiled_gcc().DelayDetector()
    detector.add_all([1.0, 1.01, 1.02], [5.0, 5.01, 5.02], 1.1)
    before = detector.threshold, detector.state
    for sends, arrivals, now in (
        ([1.03, "x"], [5.03, 5.04], 1.2),
        ([1.03], [None], 1.2),
        (7, [1.0], 1.2),
        ([1.03], [5.03], "now"),
    ):
        with pytest.raises(TypeError):
            detector.add_all(sends, arrivals, now)
    assert (detector.threshold, detector.state) == before
    with pytest.raises(TypeError):
        compiled_gcc().DelayDetector(1)


def test_acked_windows_refuse_byte_counts_beyond_64_bits_cleanly() -> None:
    """(The Python's ints would not overflow; no window holds 2^56 bytes.)"""
    native = compiled_gcc()
    with pytest.raises(OverflowError):
        native.acked_windows([1.0], [2**41], 38, 0.0, 0.0, 0, None, 50.0)
    with pytest.raises(OverflowError):
        native.acked_windows([1.0], [1200], 38, 0.0, 0.0, 2**57, None, 50.0)
    with pytest.raises(OverflowError):
        native.acked_windows([1.0] * 70_000, [2**40] * 70_000, 0, 0.0, 0.0, 0, None, 50.0)
