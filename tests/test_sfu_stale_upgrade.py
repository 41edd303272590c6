"""No upgrade on a stale estimate (sfu/policy/probe.py `fresh`, allocation `rise`).

The network lab's 1 Mbit/s viewer (docs/benchmarks.md, branches stale1m and
hold13): the warm-up's probe put its estimate at 1.9-2.2 Mbit/s shortly before
the cap, the viewer stayed app-limited on 640x360 (or 1280x720 at 15 fps),
and 1.5 s after the probe (the allocator's upgrade delay), 0.6-1.3 s after
the cap, the allocator stepped it up on that estimate: the step filled the
1 Mbit/s queue and its key frame was dropped.  The upgrade now waits for a
measured estimate: the answer of the Prober's regular re-check of an
app-limited estimate (no extra probe is sent for it).
"""

from __future__ import annotations

from sfu.policy.allocation import LayerAllocator, LayerChoice, LayerInfo, SlotDemand
from sfu.policy.probe import FILL_WINDOW_S, FRESH_S, RECHECK_INTERVAL_S, SETTLE_S, Prober
from tests.test_sfu_layering import FakeEstimator, Run, camera, viewer

AUDIO_BPS = 40_000
CAMERA = (
    LayerInfo(0, 320, 180, (60_000, 90_000, 150_000)),
    LayerInfo(1, 640, 360, (200_000, 300_000, 500_000)),
    LayerInfo(2, 1280, 720, (600_000, 900_000, 1_500_000)),
)
SLOT = SlotDemand("1", True, 1280, 720, CAMERA)
H = LayerChoice(1, 2)
F = LayerChoice(2, 2)
SENDING = 540_000  # h and the audio: app-limited under a 2.2 Mbit/s estimate
WARM_UP_END = 1.2


def warmed_up() -> Prober:
    """A Prober whose warm-up probe (1.5 x and 2 x clusters from 1.0 s) ended at 1.2 s,
    app-limited since 1.0 s."""
    prober = Prober(duration_s=0.1)
    prober.want(estimate_bps=1_000_000, desired_bps=2_500_000, sending_bps=SENDING, now=1.0)
    assert prober.next_cluster(1.0) is not None
    assert prober.next_cluster(1.1) is not None
    return prober


def test_an_app_limited_estimate_is_fresh_only_after_a_cluster_s_answer() -> None:
    prober = warmed_up()
    fresh = {}
    for k in range(13, 50):
        t = k / 10
        prober.want(estimate_bps=2_200_000, desired_bps=2_000_000, sending_bps=SENDING, now=t)
        fresh[k] = prober.fresh(t)
    answered = WARM_UP_END + SETTLE_S
    assert fresh[13] and fresh[19]  # app-limited for less than FRESH_S (since 1.0 s)
    for k in range(20, 42):  # then only in the answer's window, until the re-check
        assert fresh[k] == (answered <= k / 10 < answered + FRESH_S - 1e-9), (k, fresh[k])


def test_an_estimate_the_media_fills_is_always_fresh() -> None:
    prober = Prober()
    for k in range(100):
        t = k / 10
        prober.want(estimate_bps=1_000_000, desired_bps=900_000, sending_bps=950_000, now=t)
        assert prober.fresh(t)


def test_one_large_reading_of_the_media_does_not_make_a_stale_estimate_fresh() -> None:
    """The lab's 1 Mbit/s viewer (branch hold13's head-1): app-limited at 400-1000
    kbit/s under a stale 2.27 Mbit/s estimate, one 100 ms reading at 2 Mbit/s (a burst of
    frames, 0.88 x the estimate); its mean over `FILL_WINDOW_S` stays app-limited.  A
    sender that fills the estimate for that long makes it fresh."""
    prober = warmed_up()
    readings = {k: 700_000 for k in range(13, 40)}
    readings[30] = 2_000_000
    for k, sending in readings.items():
        t = k / 10
        prober.want(estimate_bps=2_265_000, desired_bps=2_000_000, sending_bps=sending, now=t)
        if k >= 25:
            assert not prober.fresh(t), t
    for k in range(40, 40 + round(FILL_WINDOW_S * 10)):
        prober.want(
            estimate_bps=2_265_000, desired_bps=2_000_000, sending_bps=2_000_000, now=k / 10
        )
    assert prober.fresh(k / 10)


def test_a_cluster_planned_but_never_sent_is_no_answer() -> None:
    """Clusters planned for a jump in desired, dropped before the transport sent them
    (the allocation wanted less again at the next reading): no window of freshness."""
    prober = Prober(duration_s=0.1)
    for k in range(25):
        prober.want(estimate_bps=2_200_000, desired_bps=2_000_000, sending_bps=SENDING, now=k / 10)
    prober.want(estimate_bps=2_200_000, desired_bps=3_000_000, sending_bps=SENDING, now=2.5)
    assert prober.probing
    prober.want(estimate_bps=2_200_000, desired_bps=2_000_000, sending_bps=SENDING, now=2.6)
    for k in range(26, 40):
        t = k / 10
        prober.want(estimate_bps=2_200_000, desired_bps=2_000_000, sending_bps=SENDING, now=t)
        assert prober.next_cluster(t) is None and not prober.fresh(t), t


def replay(
    link_bps: int, *, rise_on_fresh: bool
) -> tuple[list[tuple[float, LayerChoice]], list[float]]:
    """The lab's timeline on the allocator and the Prober, driven every 0.1 s: h from 0 s,
    the warm-up probe's 2.2 Mbit/s estimate from 1.3 s, the cap at 2.0 s; a cluster that
    starts at t is answered at t + 0.3 s (within `SETTLE_S` of its end) with the link's
    rate when the link is narrower than the estimate (else the estimate stands).  Each
    change of choice, and when each cluster started."""
    prober = warmed_up()
    allocator = LayerAllocator()
    allocator.update([SLOT], 1_000_000 - AUDIO_BPS, 0.0)  # h at the start
    allocator.choices = {"1": H}
    estimate, answer_at = 1_000_000, None
    changes: list[tuple[float, LayerChoice]] = [(0.0, H)]
    clusters: list[float] = []
    for k in range(13, 90):
        t = k / 10
        if k == 13:
            estimate = 2_200_000
        if answer_at is not None and t >= answer_at - 1e-9:
            estimate, answer_at = min(estimate, link_bps), None
        rise = prober.fresh(t) if rise_on_fresh else True
        choice = allocator.update([SLOT], estimate - AUDIO_BPS, t, rise=rise)["1"]
        if choice != changes[-1][1]:
            changes.append((t, choice))
        sending = CAMERA[choice.spatial or 0].bitrates[choice.temporal] + AUDIO_BPS
        prober.want(estimate_bps=estimate, desired_bps=2_000_000, sending_bps=sending, now=t)
        if prober.next_cluster(t) is not None and answer_at is None:
            answer_at = t + 0.3
            clusters.append(t)
    return changes, clusters


def test_no_step_up_on_the_warm_up_s_estimate_after_the_cap() -> None:
    """Capped at 1 Mbit/s: the upgrade to f, possible since the probe (1.3 s), is due at
    2.8-2.9 s on a 1.5 s old estimate: it waits; the regular re-check finds 1 Mbit/s and
    the viewer stays on h.  Taken on any estimate: f at 2.8-2.9 s on a 1 Mbit/s link."""
    changes, _ = replay(1_000_000, rise_on_fresh=True)
    assert changes == [(0.0, H)]
    stale, _ = replay(1_000_000, rise_on_fresh=False)
    assert stale[1][1] == F and 2.8 <= stale[1][0] <= 2.9, stale


def test_the_waiting_upgrade_is_taken_on_the_regular_re_check_s_answer() -> None:
    """On a 3 Mbit/s link the re-check leaves the estimate where it was, and f comes at
    its answer: no probe is sent earlier for the waiting upgrade (the regular re-check,
    `RECHECK_INTERVAL_S` after the warm-up's probe), 1.7-1.8 s later than on any
    estimate."""
    fresh, clusters = replay(3_000_000, rise_on_fresh=True)
    plain, _ = replay(3_000_000, rise_on_fresh=False)
    assert plain[1][1] == F and 2.8 <= plain[1][0] <= 2.9, plain
    recheck = WARM_UP_END + RECHECK_INTERVAL_S
    assert clusters[0] == round(recheck, 1), clusters
    answered = recheck + 0.1 + SETTLE_S  # the cluster's end, then its answer
    assert fresh[1][1] == F and answered - 1e-9 <= fresh[1][0] < answered + 0.1, fresh


def test_an_upgrade_that_waited_its_time_is_held_while_the_estimate_is_stale() -> None:
    allocator = LayerAllocator(upgrade_after_s=1.5)
    assert allocator.update([SLOT], 600_000, 0.0)["1"] == H
    for k in range(1, 31):
        assert allocator.update([SLOT], 2_200_000, k / 10, rise=False)["1"] == H
    assert allocator.waiting
    assert allocator.update([SLOT], 2_200_000, 3.1, rise=True)["1"] == F  # no new wait
    # A step down is never held.
    assert allocator.update([SLOT], 600_000, 3.2, rise=False)["1"] == H


def test_the_layer_clock_holds_an_upgrade_while_the_subscriber_s_estimate_is_stale() -> None:
    """On the clock (`LayerControl`): bob on h at 800 kbit/s, then a 3 Mbit/s estimate
    nobody measured since (`estimate_fresh` False, as its Prober says): no f however long;
    once measured, f at the next turn."""
    track = camera("alice")
    bob = viewer(track, 800_000)
    run = Run()
    run.tick([bob], 0.0)
    assert bob.consumers["5"].calls[-1][0] == 1
    bob.estimator = FakeEstimator(3_000_000)
    bob.estimate_fresh = False
    for k in range(1, 9):
        run.tick([bob], k * 0.5)
        assert bob.consumers["5"].calls[-1][0] == 1
    assert run.control.held == {"bob": True}  # so its Prober keeps re-checking
    bob.estimate_fresh = True
    run.tick([bob], 4.5)
    assert bob.consumers["5"].calls[-1] == (2, 2)


Q2 = LayerChoice(0, 2)
Q1 = LayerChoice(0, 1)
H1 = LayerChoice(1, 1)
QUARTER = SlotDemand("1", True, 320, 180, CAMERA)  # q is its cap


def test_the_tid_the_resends_took_comes_back_on_a_stale_estimate() -> None:
    """The 300 kbit/s lab viewer after its step down (docs/benchmarks.md, branch
    cap300): q at 30 fps fits its 200 kbit/s budget, the resends take 80k of it, q
    drops to TID 1; when they stop, TID 2 comes back after the upgrade's wait even
    though the estimate is app-limited (nothing about the link changed)."""
    allocator = LayerAllocator(upgrade_after_s=1.5)
    assert allocator.update([QUARTER], 200_000, 0.0)["1"] == Q2
    assert allocator.update([QUARTER], 120_000, 0.5, rise=False, lent_bps=80_000)["1"] == Q1
    assert allocator.update([QUARTER], 200_000, 1.0, rise=False)["1"] == Q1  # its wait
    assert allocator.update([QUARTER], 200_000, 2.4, rise=False)["1"] == Q1
    assert allocator.update([QUARTER], 200_000, 2.5, rise=False)["1"] == Q2


def test_only_what_the_resends_took_comes_back_on_a_stale_estimate() -> None:
    """A step down the estimate explains (not the resends) still waits for a measure;
    so does anything above the choice the resends took, and a spatial step."""
    allocator = LayerAllocator(upgrade_after_s=1.5)
    assert allocator.update([QUARTER], 200_000, 0.0)["1"] == Q2
    assert allocator.update([QUARTER], 100_000, 0.5, rise=False, lent_bps=10_000)["1"] == Q1
    for k in range(6, 40):
        assert allocator.update([QUARTER], 200_000, k / 10, rise=False)["1"] == Q1
    assert allocator.update([QUARTER], 200_000, 4.0, rise=True)["1"] == Q2
    # h at 15 fps (300k) thinned from 30 fps by resends: back to 30 fps, not up to f.
    allocator = LayerAllocator(upgrade_after_s=1.5)
    assert allocator.update([SLOT], 560_000, 0.0)["1"] == H
    assert allocator.update([SLOT], 400_000, 0.5, rise=False, lent_bps=160_000)["1"] == H1
    for k in range(6, 60):
        assert allocator.update([SLOT], 3_000_000, k / 10, rise=False)["1"] == (
            H1 if k < 21 else H  # possible since 0.6 s
        )
    # Taken back, the mark is gone: a later stale step down and up waits again.
    assert allocator.update([SLOT], 400_000, 6.0, rise=False)["1"] == H1
    assert allocator.update([SLOT], 3_000_000, 9.0, rise=False)["1"] == H1


def test_a_step_down_across_a_layer_gets_back_the_tids_of_the_layer_it_is_in() -> None:
    """h at 30 fps, then the resends take most of the budget: q at 15 fps, where the
    whole budget keeps h; when they stop, q's 30 fps comes back on a stale estimate,
    h (a key frame) waits for a measure."""
    allocator = LayerAllocator(upgrade_after_s=1.5)
    assert allocator.update([SLOT], 560_000, 0.0)["1"] == H
    assert allocator.update([SLOT], 100_000, 0.5, rise=False, lent_bps=460_000)["1"] == Q1
    for k in range(6, 60):
        assert allocator.update([SLOT], 3_000_000, k / 10, rise=False)["1"] == (
            Q1 if k < 21 else Q2  # possible since 0.6 s
        )
    assert allocator.update([SLOT], 3_000_000, 6.0, rise=True)["1"] == F
