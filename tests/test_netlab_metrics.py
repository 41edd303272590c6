"""The network lab's metrics (bench/netlab_metrics.py) on hand-made sample series."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from netlab_metrics import (  # noqa: E402
    Cap,
    Sample,
    adapt_time,
    audio_concealed_pct,
    decoded_fps,
    estimate_errors,
    freeze_ratio,
    freezes,
    p95,
    p95_or_none,
    recover_time,
    steady_width,
    width_before,
)


def series(
    widths: Sequence[int | None],
    *,
    step: float = 0.5,
    frames: Sequence[int] | None = None,
    freezes_s: Sequence[float] | None = None,
    estimates: Sequence[int | None] | None = None,
) -> list[Sample]:
    n = len(widths)
    frames = frames if frames is not None else [10 * i for i in range(n)]
    freezes_s = freezes_s if freezes_s is not None else [0.0] * n
    estimates = estimates if estimates is not None else [None] * n
    return [
        Sample(
            t=i * step,
            width=widths[i],
            fps=None,
            frames_decoded=frames[i],
            freeze_count=sum(1 for f in freezes_s[: i + 1] if f) and 1,
            freezes_s=freezes_s[i],
            concealed=0,
            audio_samples=0,
            estimate_kbps=estimates[i],
        )
        for i in range(n)
    ]


def test_adapt_time_is_the_first_lower_width_that_stays() -> None:
    # change at t=1.0; a lower layer at 2.0 that flaps back at 2.5, then stays from 3.0
    samples = series([1280, 1280, 1280, 1280, 640, 1280, 640, 640, 320, 320])
    assert adapt_time(samples, 1.0, 1280) == pytest.approx(2.0)
    assert width_before(samples, 1.0) == 1280


def test_adapt_time_is_none_when_the_width_never_drops() -> None:
    samples = series([1280] * 10)
    assert adapt_time(samples, 1.0, 1280) is None
    # nothing decoded at all is not a lower layer either
    assert adapt_time(series([None] * 6), 0.0, 1280) is None


def test_adapt_time_only_looks_until_the_next_change() -> None:
    # drops at 1.5, the cap is lifted at 3.0 and the width goes back up: still adapted
    samples = series([1280, 1280, 1280, 640, 640, 640, 1280, 1280])
    assert adapt_time(samples, 1.0, 1280, until=3.0) == pytest.approx(0.5)
    assert adapt_time(samples, 1.0, 1280) is None
    assert recover_time(samples, 3.0, 640) == pytest.approx(0.0)
    assert recover_time(samples[:6], 3.0, 640) is None


def test_freeze_ratio_counts_chromium_freezes_over_the_watched_time() -> None:
    samples = series([640] * 11, freezes_s=[0.0] * 5 + [0.5] * 6)  # 0.5 s frozen in 5 s
    assert freeze_ratio(samples) == pytest.approx(0.1)
    assert freezes(samples) == 1


def test_a_stall_still_open_at_the_end_counts_as_frozen() -> None:
    # frames stop growing at t=2.0 and never come back (Chromium has not counted it yet)
    frames = [0, 10, 20, 30, 40, 40, 40, 40, 40, 40, 40]
    samples = series([640] * 11, frames=frames)
    assert freeze_ratio(samples) == pytest.approx(3.0 / 5.0)
    assert freezes(samples) == 1
    # a short gap at the end is not a stall
    assert freeze_ratio(series([640] * 3, frames=[0, 10, 10], step=0.25)) == 0.0


def test_a_freeze_that_began_before_the_window_counts_only_its_part_inside() -> None:
    # Chromium reports a freeze when it ends: the capped viewer's 3.2 s freeze from 2.5
    # to 5.7 s counted 3.2 s in the "after adapting" window that starts at 5.0 s.
    samples = series([320] * 11, freezes_s=[0.0] + [3.2] * 10)  # reported at 0.5 s
    window = [Sample(**{**s.__dict__, "t": s.t + 5.0}) for s in samples]
    assert freeze_ratio(window) == pytest.approx(0.5 / 5.0)  # its last 0.5 s only


def test_freeze_ratio_needs_a_watched_time() -> None:
    assert freeze_ratio(series([640])) is None


def test_audio_concealment_is_a_percentage_of_received_samples() -> None:
    base = series([640, 640])
    samples = [
        Sample(**{**base[0].__dict__, "concealed": 100, "audio_samples": 48_000}),
        Sample(**{**base[1].__dict__, "concealed": 2_500, "audio_samples": 96_000}),
    ]
    assert audio_concealed_pct(samples) == pytest.approx(5.0)
    assert audio_concealed_pct(base) is None  # no audio received


def test_estimate_error_against_the_cap_in_force_after_settling() -> None:
    estimates: list[int | None] = [None, 900, 1200, 1100, 600, 400, 450, 500]
    samples = series([640] * 8, step=1.0, estimates=estimates)
    caps = [Cap(0.0, 1000), Cap(4.0, 500)]
    # settle 2 s: t=2,3 against 1000 kbit/s; t=6,7 against 500
    assert estimate_errors(samples, caps, settle_s=2.0) == pytest.approx([20.0, 10.0, 10.0, 0.0])
    # an uncapped period has no error to report
    assert estimate_errors(samples, [Cap(0.0, None)], settle_s=0.0) == []


def test_steady_width_is_the_median_once_settled() -> None:
    samples = series([320, 320, 640, 1280, 1280, 1280, 640], step=1.0)
    assert steady_width(samples, 3.0) == 1280
    assert steady_width(samples, 10.0) is None


def test_decoded_fps_from_frame_counts() -> None:
    assert decoded_fps(series([640] * 3, step=0.5, frames=[0, 15, 30])) == [
        (0.5, 30.0),
        (1.0, 30.0),
    ]


def test_p95_of_adapt_times() -> None:
    assert p95([]) is None
    assert p95([2.0]) == 2.0
    assert p95([float(i) for i in range(1, 21)]) == pytest.approx(19.05)
    assert p95_or_none([1.0, None]) is None
    assert p95_or_none([1.0, 3.0]) == pytest.approx(2.9)


def load_bench_netlab() -> ModuleType:
    """bench/netlab.py, by path: a bare `import netlab` may find tests/netlab.py (the lab
    helpers), which another test module put in sys.modules under that name first."""
    if "bench_netlab" in sys.modules:
        return sys.modules["bench_netlab"]
    spec = importlib.util.spec_from_file_location("bench_netlab", ROOT / "bench" / "netlab.py")
    assert spec is not None and spec.loader is not None
    bench_netlab = importlib.util.module_from_spec(spec)
    sys.modules["bench_netlab"] = bench_netlab
    spec.loader.exec_module(bench_netlab)
    return bench_netlab


def test_a_scenario_summary_measures_each_drop_and_recovery() -> None:
    """bench/netlab.py's summary of one viewer: the 3 M -> 500 k -> 3 M drop."""
    bench_netlab = load_bench_netlab()
    Scenario, overall, summarize = (
        bench_netlab.Scenario,
        bench_netlab.overall,
        bench_netlab.summarize,
    )

    drop = Scenario("drop", (Cap(0, None), Cap(1.0, 3000), Cap(3.0, 500), Cap(6.0, 3000)), 9.0)
    widths = [1280] * 7 + [640] * 6 + [1280] * 5  # 0.5 s apart
    got = summarize(drop, series(widths, estimates=[2800] * 12 + [3100] * 6))
    assert got["adapt_s"] == [pytest.approx(0.5)]  # 640 from t=3.5
    assert got["recover_s"] == [pytest.approx(0.5)]  # 1280 again from t=6.5
    assert got["stage_width_at_3mbit"] == 1280  # over the last 2 s
    assert got["freeze_ratio"] == 0.0
    assert got["estimate_errors"] == []  # no sample 5 s after a change
    results = {"scenarios": {"drop": {"visitroom": {"viewers": {"impaired": got}}}}}
    assert overall(results, "visitroom")["adapt_s_p95"] == pytest.approx(0.5)
    assert overall(results, "janus") == {}


def test_the_room_has_the_same_ten_participants_on_both_servers() -> None:
    """bench/netlab.py's cast: who joins, where, and who is measured (both servers)."""
    bench_netlab = load_bench_netlab()
    named = {s.name: s for s in bench_netlab.scenarios(quick=True)}
    room, one = named["room10_1m"], named["cap_1m"]
    seats = bench_netlab.cast(room)
    assert [s.name for s in seats] == [
        "publisher",
        *(f"p{i}" for i in range(7)),
        "control",
        "impaired",
    ]
    assert [s.name for s in seats if s.watched] == ["control", "impaired"]
    assert {s.browser for s in seats if s.name.startswith("p") and s.name != "publisher"} == {
        "light"
    }
    assert seats[-1].browser == "guest" and seats[0].role.width == 1280
    assert [s.name for s in bench_netlab.cast(one)] == ["publisher", "impaired"]


def test_a_janus_viewer_receives_what_visitroom_slots_hold() -> None:
    """Janus has no last-N: each viewer subscribes to the measured publisher first, those
    with a microphone next, as many videos and audios as its visitroom slots."""
    bench_netlab = load_bench_netlab()
    named = {s.name: s for s in bench_netlab.scenarios(quick=False)}
    room, one = named["room10_1m"], named["cap_1m"]
    seats = bench_netlab.cast(room)
    by_name = {s.name: s for s in seats}
    video, audio = bench_netlab.sources(by_name["impaired"], seats)
    assert video == ["publisher", "control", "p0", "p1", "p2", "p3", "p4", "p5"]
    assert audio == ["publisher", "control"]  # the light publishers have no microphone
    assert bench_netlab.sources(by_name["publisher"], seats) == (["control"], ["control"])
    assert bench_netlab.sources(by_name["p3"], seats) == ([], [])
    pair = bench_netlab.cast(one)
    assert bench_netlab.sources(pair[1], pair) == (["publisher"], ["publisher"])
    assert bench_netlab.sources(pair[0], pair) == (["impaired"], ["impaired"])


def test_janus_runs_the_room_but_not_in_the_quick_run() -> None:
    bench_netlab = load_bench_netlab()
    full, quick = bench_netlab.scenarios(quick=False), bench_netlab.scenarios(quick=True)
    assert "room10_1m" in [s.name for s in bench_netlab.janus_scenarios(full, False)]
    assert [s.name for s in bench_netlab.janus_scenarios(quick, True)] == ["drop_3m_500k_3m"]


def test_slot_owners_names_the_feed_of_each_subscribed_mid() -> None:
    """Janus numbers a subscription's mids itself; its `attached` event says whose they are."""
    from netlab_janus import slot_owners

    attached = {
        "videoroom": "attached",
        "streams": [
            {"type": "video", "mid": "0", "feed_id": 11, "feed_mid": "1"},
            {"type": "video", "mid": "1", "feed_id": 12, "feed_mid": "0"},
            {"type": "audio", "mid": "2", "feed_id": 11, "feed_mid": "0"},
            {"type": "data", "mid": "3"},
            {"type": "video", "mid": "4", "feed_id": 99, "feed_mid": "0"},  # not named
        ],
    }
    owners = slot_owners(attached, {11: "janus-publisher", 12: "p0"})
    assert owners == {"0": "janus-publisher", "1": "p0", "2": "janus-publisher"}


def test_the_full_run_impairs_long_enough_that_one_freeze_does_not_decide_it() -> None:
    """Target (a) counts the freezes after adapting: in --quick's 9 s one 0.3 s episode is
    3 % of the scenario; the full run impairs each viewer for 30 s (a 500 kbit/s dip too)."""
    bench_netlab = load_bench_netlab()
    for scenario in bench_netlab.scenarios(quick=False):
        impaired = [c for c in scenario.caps if c.kbps is not None]
        if scenario.name.startswith("drop"):
            (low,) = [(c, n) for c, n in itertools.pairwise(impaired) if c.kbps == 500]
            assert low[1].t - low[0].t >= 30.0
        else:
            start = impaired[0].t if impaired else scenario.loss_from
            assert scenario.duration - start >= 30.0, scenario.name
    quick = bench_netlab.scenarios(quick=True)
    assert sum(s.duration for s in quick) <= 6 * 17.0  # --quick stays under 3 minutes


def test_the_bounced_camera_clip_never_jumps(tmp_path: Path) -> None:
    """The lab's clip jumps back at each loop (a scene cut every 2 s, which makes every
    layer's encoder overshoot and skip frames); `bounce` plays it forward then back."""
    from netlab_clients import camera_file

    def frames(bounce: bool) -> list[bytes]:
        path = camera_file(tmp_path / f"c{bounce}.y4m", 64, 48, 5, 1.0, bounce=bounce)
        size = 64 * 48 * 3 // 2
        body = path.read_bytes().split(b"\n", 1)[1]
        chunks = body.split(b"FRAME\n")[1:]
        assert all(len(c) == size for c in chunks)
        return chunks

    looped, bounced = frames(False), frames(True)
    assert len(looped) == 5 and len(bounced) == 10
    assert bounced[:5] == looped and bounced[5:] == looped[::-1]
    # the loop point: the last frame back to the first (the cut) vs the same frame twice
    assert looped[-1] != looped[0] and bounced[-1] == bounced[0]
