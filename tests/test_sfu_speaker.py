"""sfu.policy.speaker: dominant speaker identification and loudest-N from audio levels."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.policy.speaker import DominantSpeaker

# A script says what a participant's packet at time t carries: (level, voice),
# or None for no packet at all (DTX, muted, lost).
Script = Callable[[float], tuple[int, bool] | None]

BACKGROUND = (85, False)  # a quiet room, flagged non-voice by the sender's VAD


def talking(*spans: tuple[float, float], level: int = 30) -> Script:
    """Voiced packets inside the spans (level wobbling +-5 dB), background outside."""

    def script(t: float) -> tuple[int, bool]:
        for start, end in spans:
            if start <= t < end:
                return level + (round(t * 50) * 7 % 11) - 5, True
        return BACKGROUND

    return script


def sentences(start: float, end: float, pause_every: float = 1.5, pause: float = 0.2) -> Script:
    """Continuous talk with a short breath every `pause_every` seconds."""
    spans = []
    t = start
    while t < end:
        spans.append((t, min(t + pause_every - pause, end)))
        t += pause_every
    return talking(*spans)


def silent(_: float) -> tuple[int, bool]:
    return BACKGROUND


def run(
    ds: DominantSpeaker,
    scripts: dict[str, Script],
    t0: float,
    t1: float,
    every: float = 0.3,
    ptime: float = 0.02,
) -> list[tuple[float, str]]:
    """Feed packets in time order and call update every `every` s; the changes seen."""
    changes = []
    next_update = t0 + every
    for i in range(round((t1 - t0) / ptime)):
        t = t0 + i * ptime
        for pid, script in scripts.items():
            packet = script(t)
            if packet is not None:
                ds.add_level(pid, packet[0], packet[1], t)
        if t >= next_update:
            new = ds.update(t)
            if new is not None:
                changes.append((round(t, 2), new))
            next_update += every
    return changes


T0 = 1_000.0


def test_nobody_is_dominant_before_anybody_speaks() -> None:
    ds = DominantSpeaker()
    assert run(ds, {"a": silent, "b": silent}, T0, T0 + 3) == []
    assert ds.current is None
    assert DominantSpeaker().update(T0) is None


def test_the_first_to_speak_becomes_dominant() -> None:
    ds = DominantSpeaker()
    changes = run(ds, {"a": silent, "b": talking((T0 + 1, T0 + 4))}, T0, T0 + 4)
    assert [who for _, who in changes] == ["b"]
    assert changes[0][0] <= T0 + 1.5
    assert ds.current == "b"


def test_a_steady_speaker_stays_dominant_through_a_short_cough() -> None:
    a = sentences(T0, T0 + 10)  # breathes at 1.3-1.5, 2.8-3.0, 4.3-4.5 ...
    # The cough starts right in a's breath, the worst moment for a, and the
    # decision runs every 100 ms so it is seen while it lasts.
    cough = talking((T0 + 4.3, T0 + 4.6), level=10)
    ds = DominantSpeaker()
    changes = run(ds, {"a": a, "b": cough}, T0, T0 + 10, every=0.1)
    assert [who for _, who in changes] == ["a"]
    assert ds.current == "a"
    # The long time scale is what holds it: without it the cough would win.
    no_long = DominantSpeaker(c3=-100.0)
    assert "b" in [who for _, who in run(no_long, {"a": a, "b": cough}, T0, T0 + 10, every=0.1)]


def test_a_laugh_over_continuous_speech_does_not_switch_either() -> None:
    ds = DominantSpeaker()
    laugh = talking((T0 + 3.0, T0 + 3.4), level=15)
    changes = run(ds, {"a": talking((T0, T0 + 8)), "b": laugh}, T0, T0 + 8, every=0.1)
    assert [who for _, who in changes] == ["a"]


def test_a_clear_new_speaker_takes_over_within_a_second() -> None:
    ds = DominantSpeaker()
    a = sentences(T0, T0 + 5)
    b = talking((T0 + 5, T0 + 10))
    changes = run(ds, {"a": a, "b": b}, T0, T0 + 10)
    assert [who for _, who in changes] == ["a", "b"]
    assert T0 + 5 < changes[1][0] <= T0 + 6.0


def test_a_new_speaker_is_found_with_a_faster_update_cadence_too() -> None:
    ds = DominantSpeaker()
    changes = run(
        ds, {"a": talking((T0, T0 + 4)), "b": talking((T0 + 4, T0 + 8))}, T0, T0 + 8, every=0.1
    )
    assert [who for _, who in changes] == ["a", "b"]
    assert changes[1][0] <= T0 + 5.0


def test_silence_keeps_the_last_speaker() -> None:
    ds = DominantSpeaker()
    scripts = {"a": talking((T0, T0 + 3)), "b": talking((T0 + 4, T0 + 7))}
    assert [who for _, who in run(ds, scripts, T0, T0 + 7)] == ["a", "b"]
    assert run(ds, {"a": silent, "b": silent}, T0 + 7, T0 + 20) == []
    assert ds.current == "b"


def test_silence_without_packets_keeps_the_last_speaker_too() -> None:
    ds = DominantSpeaker()
    run(ds, {"a": talking((T0, T0 + 3))}, T0, T0 + 3)
    assert ds.current == "a"
    run(ds, {"a": lambda t: None, "b": lambda t: None}, T0 + 3, T0 + 30)
    assert ds.update(T0 + 60) is None
    assert ds.current == "a"


def test_removing_the_dominant_speaker_picks_another_who_spoke() -> None:
    ds = DominantSpeaker()
    scripts = {"a": talking((T0 + 2, T0 + 5)), "b": talking((T0, T0 + 1.5)), "c": silent}
    run(ds, scripts, T0, T0 + 5)
    assert ds.current == "a"
    ds.remove("a")
    assert ds.current is None
    assert ds.update(T0 + 5.1) == "b"
    assert ds.current == "b"


def test_removing_the_dominant_speaker_when_nobody_else_spoke_leaves_none() -> None:
    ds = DominantSpeaker()
    run(ds, {"a": talking((T0, T0 + 2)), "b": silent}, T0, T0 + 2)
    ds.remove("a")
    assert ds.update(T0 + 2.1) is None
    assert ds.current is None


def test_removing_someone_else_or_a_stranger_changes_nothing() -> None:
    ds = DominantSpeaker()
    run(ds, {"a": talking((T0, T0 + 2)), "b": silent}, T0, T0 + 2)
    ds.remove("b")
    ds.remove("nobody")
    assert ds.current == "a"
    assert ds.loudest(5, T0 + 2) == ["a"]


def test_voice_flagged_off_packets_count_as_silence_when_vad_is_trusted() -> None:
    loud_but_not_voice: Script = lambda t: (10, False)  # noqa: E731
    trusting = DominantSpeaker()
    assert run(trusting, {"a": loud_but_not_voice}, T0, T0 + 3) == []
    ignoring = DominantSpeaker(trust_vad=False)
    loud_varying: Script = lambda t: (10 + round(t * 50) % 30, False)  # noqa: E731
    assert [w for _, w in run(ignoring, {"a": loud_varying}, T0, T0 + 3)] == ["a"]


def test_a_constant_hum_is_learned_as_noise_floor_when_vad_is_not_trusted() -> None:
    ds = DominantSpeaker(trust_vad=False)
    hum: Script = lambda t: (45, False)  # noqa: E731  (-45 dBov, loud enough to count)
    talker = talking((T0 + 2, T0 + 2.8), (T0 + 3, T0 + 3.8), (T0 + 4, T0 + 6))
    changes = run(ds, {"hum": hum, "talker": talker}, T0, T0 + 6)
    assert [who for _, who in changes] == ["talker"]


def every_60ms(script: Script) -> Script:
    return lambda t: script(t) if round(t * 50) % 3 == 0 else None


def test_a_speaker_sending_60_ms_packets_can_take_over() -> None:
    scripts = {"b": talking((T0, T0 + 3)), "a": every_60ms(talking((T0 + 3, T0 + 6)))}
    changes = run(DominantSpeaker(), scripts, T0, T0 + 6)
    assert [who for _, who in changes] == ["b", "a"]
    assert changes[1][0] <= T0 + 4.0
    # Without holding a frame's value over the gaps, its speech looks choppy.
    assert [w for _, w in run(DominantSpeaker(hold_frames=0), scripts, T0, T0 + 6)] == ["b"]


def test_stale_timestamps_and_odd_levels_are_tolerated() -> None:
    ds = DominantSpeaker()
    ds.add_level("a", 30, True, T0 + 1.0)
    ds.add_level("a", 30, True, T0 + 0.5)  # arrives with an older clock reading
    ds.add_level("a", -7, True, T0 + 1.02)
    ds.add_level("a", 999, True, T0 + 1.04)
    assert ds.update(T0 + 1.1) == "a"
    ds.update(T0 + 0.2)  # time going backwards is not an error


def test_nonsense_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        DominantSpeaker(frame_s=0)
    with pytest.raises(ValueError):
        DominantSpeaker(medium_frames=0)


# --- loudest -----------------------------------------------------------------


def test_loudest_ranks_by_recent_activity_then_id() -> None:
    ds = DominantSpeaker()
    scripts = {
        "quiet": talking((T0, T0 + 2), level=45),
        "loud": talking((T0, T0 + 2), level=15),
        "mid": talking((T0, T0 + 2), level=30),
        "zz": silent,
        "aa": silent,
    }
    run(ds, scripts, T0, T0 + 2)
    assert ds.loudest(3, T0 + 2) == ["loud", "mid", "quiet"]
    assert ds.loudest(10, T0 + 2) == ["loud", "mid", "quiet", "aa", "zz"]
    assert ds.loudest(0, T0 + 2) == []


def test_loudest_follows_who_is_speaking_now() -> None:
    ds = DominantSpeaker()
    run(ds, {"a": talking((T0, T0 + 3)), "b": talking((T0 + 3, T0 + 4))}, T0, T0 + 4)
    assert ds.loudest(2, T0 + 4) == ["b", "a"]


def test_after_everyone_falls_silent_the_most_recent_speaker_ranks_first() -> None:
    ds = DominantSpeaker()
    run(ds, {"b": talking((T0, T0 + 1)), "a": talking((T0 + 1, T0 + 2)), "c": silent}, T0, T0 + 2)
    assert ds.loudest(3, T0 + 30) == ["a", "b", "c"]


def test_an_empty_detector_has_nobody_loud() -> None:
    assert DominantSpeaker().loudest(3, T0) == []


# --- property test -----------------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("level"),
            st.sampled_from("abcd"),
            st.integers(-10, 140),
            st.booleans(),
            st.floats(0, 0.5),
        ),
        st.tuples(st.just("update"), st.just(""), st.just(0), st.just(False), st.floats(0, 2)),
        st.tuples(
            st.just("remove"), st.sampled_from("abcd"), st.just(0), st.just(False), st.just(0.0)
        ),
        st.tuples(
            st.just("loudest"), st.just(""), st.integers(-1, 6), st.just(False), st.floats(0, 1)
        ),
    ),
    max_size=300,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_any_sequence_of_calls_keeps_the_state_consistent(
    calls: list[tuple[str, str, int, bool, float]],
) -> None:
    ds = DominantSpeaker()
    present: set[str] = set()
    now = T0
    for op, pid, number, voice, dt in calls:
        now += dt
        if op == "level":
            ds.add_level(pid, number, voice, now)
            present.add(pid)
        elif op == "update":
            new = ds.update(now)
            assert new is None or new in present
        elif op == "remove":
            ds.remove(pid)
            present.discard(pid)
        else:
            ranked = ds.loudest(number, now)
            assert len(ranked) == min(max(number, 0), len(present))
            assert len(set(ranked)) == len(ranked)
            assert set(ranked) <= present
        assert ds.current is None or ds.current in present


# --- the log: rows appended per packet, folded in at the next decision ---------


def test_equal_speakers_are_ranked_by_id_whoever_sent_first() -> None:
    """Ties do not depend on arrival order (the logs fold in per participant)."""
    results = []
    for order in ("ab", "ba"):
        ds = DominantSpeaker()
        for i in range(100):
            for pid in order:
                ds.add_level(pid, 30, True, T0 + i * 0.02)
        results.append((ds.update(T0 + 2.0), ds.loudest(2, T0 + 2.0)))
    assert results == [("a", ["a", "b"]), ("a", ["a", "b"])]


def test_a_challenger_tie_goes_to_the_smaller_id_whoever_sent_first() -> None:
    results = []
    for order in ("cb", "bc"):
        ds = DominantSpeaker()
        run(ds, {"a": talking((T0, T0 + 2.0))}, T0, T0 + 2.0)
        assert ds.current == "a"
        scripts = {pid: talking((T0 + 2.0, T0 + 6.0)) for pid in order}
        scripts["a"] = silent
        changes = run(ds, scripts, T0 + 2.0, T0 + 6.0)
        results.append([pid for _, pid in changes])
    assert results[0] == results[1] == ["b"]


def test_rows_in_a_log_are_folded_in_at_the_next_update() -> None:
    ds = DominantSpeaker()
    log = ds.log("a")
    assert ds.log("a") is log  # the same list every time: producers keep it
    for i in range(60):
        log.append((30, True, T0 + i * 0.02))
    assert ds.current is None  # nothing folded in yet
    assert ds.update(T0 + 1.2) == "a"
    assert log == []  # emptied in place
    ds.remove("a")
    assert ds.log("a") is not log  # a removed speaker's log is dropped unread


# Mostly 20 ms apart, as audio packets come (the fold's common case), with gaps.
PACED = st.one_of(st.sampled_from([0.0, 0.02, 0.02, 0.02, 0.02, 0.021, 0.04, 0.1]), st.floats(0, 2))
paced_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("level"),
            st.sampled_from("abc"),
            st.one_of(st.sampled_from([10, 30, 30, 85, 127]), st.integers(-10, 140)),
            st.booleans(),
            PACED,
        ),
        st.tuples(st.just("update"), st.just(""), st.just(0), st.just(False), PACED),
        st.tuples(st.just("remove"), st.sampled_from("abc"), st.just(0), st.just(False), PACED),
        st.tuples(st.just("loudest"), st.just(""), st.integers(-1, 4), st.just(False), PACED),
    ),
    max_size=400,
)


def state(ds: DominantSpeaker) -> dict[str, tuple[object, ...]]:
    """Every participant's frame history, as `update` and `loudest` leave it."""
    return {
        pid: tuple(getattr(sp, name) for name in sp.__slots__) for pid, sp in ds._speakers.items()
    }


@settings(max_examples=300, deadline=None)
@given(st.one_of(ops, paced_ops))
def test_the_log_decides_exactly_as_add_level_does(
    calls: list[tuple[str, str, int, bool, float]],
) -> None:
    """The same calls, levels through `add_level` on one, appended to `log` on the other."""
    direct, logged = DominantSpeaker(), DominantSpeaker()
    now = T0
    for op, pid, number, voice, dt in calls:
        now += dt
        if op == "level":
            direct.add_level(pid, number, voice, now)
            logged.log(pid).append((number, voice, now))
        elif op == "update":
            assert direct.update(now) == logged.update(now)
            assert state(direct) == state(logged)
        elif op == "remove":
            direct.remove(pid)
            logged.remove(pid)
        else:
            assert direct.loudest(number, now) == logged.loudest(number, now)
            assert state(direct) == state(logged)
        assert direct.current == logged.current
    assert direct.loudest(4, now) == logged.loudest(4, now)
    assert direct.update(now + 1) == logged.update(now + 1)
