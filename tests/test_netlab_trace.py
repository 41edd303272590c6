"""The network lab's freeze classes (bench/netlab_trace.py) and link deltas (netlab_link.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from netlab_link import deltas
from netlab_trace import episodes, frozen_by_kind, stalls


def series(decoded: list[int], step: float = 0.3) -> list[list[Any]]:
    return [[round(i * step, 2), 640, 30.0, n, 500, 0.0] for i, n in enumerate(decoded)]


def line(
    t: float,
    source: int | None,
    pending: int | None,
    switches: int,
    keyframes: tuple[int, int, int] = (1, 1, 1),
    requests: tuple[int, int, int] = (0, 0, 0),
) -> dict[str, Any]:
    slot = ["impaired", "1", "pub", source, pending, 0, 2, 0, True, 2, 100, switches]
    layers = [[s, "qhf"[s], 100, keyframes[s], requests[s], 1, True] for s in range(3)]
    return {"t": t, "slots": [slot], "layers": layers, "estimates": [["impaired", 400_000]]}


def test_stalls_are_runs_of_samples_without_a_new_frame() -> None:
    assert stalls(series([1, 2, 2, 2, 3, 4, 4, 5])) == [(0.3, 0.9), (1.5, 1.8)]
    assert stalls(series([1, 2, 3])) == []


def test_stalls_include_the_freezes_chromium_counted_while_frames_still_came() -> None:
    rows = series([1, 5, 9, 11, 15, 15, 20])
    rows[3][5] = 0.25  # a 0.25 s freeze ended by the sample at 0.9 s (frames 9 -> 11)
    for row in rows[4:]:
        row[5] = 0.25
    assert stalls(rows) == [(0.65, 0.9), (1.2, 1.5)]
    rows[5][5] = rows[6][5] = 0.6  # the stall at 1.2-1.5 s, counted 0.35 s: merged
    assert stalls(rows) == [(0.65, 0.9), (1.15, 1.5)]


def test_a_stall_before_the_cap_is_the_start() -> None:
    found = episodes(series([1, 1, 2]), "impaired", [], [], impaired_from=2.0)
    assert [e["kind"] for e in found] == ["start"]


def test_a_stall_waiting_for_the_target_layers_key_frame() -> None:
    trace = [line(2.0 + 0.2 * i, 2, 0, 0, requests=(1, 0, 0)) for i in range(5)]
    got = series([5, 6, 6, 6, 6, 6], step=0.3)
    found = episodes([[r[0] + 2.0, *r[1:]] for r in got], "impaired", trace, [], 1.0)
    assert found[0]["kind"] == "switch_keyframe_wait"
    assert found[0]["target"] == 0 and found[0]["keyframes_in"] == 0


def test_a_switch_done_early_in_a_stall_that_goes_on_with_drops_lost_its_key_frame() -> None:
    trace = [line(2.0, 2, 0, 0), *[line(2.2 + 0.2 * i, 0, None, 1, (2, 1, 1)) for i in range(8)]]
    got = [[2.0 + 0.3 * i, 640, 30.0, n, 500, 0.0] for i, n in enumerate([5, 6, 6, 6, 6, 6, 6])]
    link = [{"t": 2.5, "kbps": 300, "drops": 4, "backlog": 7000}]
    found = episodes(got, "impaired", trace, link, 1.0)
    assert found[0]["kind"] == "switch_keyframe_dropped"
    assert found[0]["switched_at"] == 2.2
    assert episodes(got, "impaired", trace, [], 1.0)[0]["kind"] == "switch_receiver"


def test_a_stall_without_a_switch_is_overflow_with_drops_else_the_receiver() -> None:
    trace = [line(2.0 + 0.2 * i, 1, None, 3) for i in range(5)]
    got = [[2.0 + 0.3 * i, 640, 30.0, n, 500, 0.0] for i, n in enumerate([5, 6, 6, 7])]
    link = [{"t": 2.4, "kbps": 300, "drops": 2, "backlog": 7000}]
    assert episodes(got, "impaired", trace, link, 1.0)[0]["kind"] == "overflow"
    assert episodes(got, "impaired", trace, [], 1.0)[0]["kind"] == "receiver"


def test_frozen_seconds_per_kind_count_only_after_the_given_time() -> None:
    found = [
        {"start": 1.0, "end": 2.0, "kind": "start"},
        {"start": 4.0, "end": 6.0, "kind": "overflow"},
    ]
    assert frozen_by_kind(found)["overflow"] == 2.0
    assert frozen_by_kind(found, after=5.0) == {
        "start": 0.0,
        "switch_keyframe_wait": 0.0,
        "switch_keyframe_dropped": 0.0,
        "switch_receiver": 0.0,
        "publisher_skip": 0.0,
        "publisher_burst": 0.0,
        "overflow": 1.0,
        "receiver": 0.0,
    }


def test_link_deltas_restart_when_the_qdisc_is_replaced() -> None:
    rows: list[list[float]] = [[0.0, 1000, 10, 0, 0], [0.5, 63500, 60, 3, 1500]]
    rows.append([1.0, 500, 1, 0, 0])
    assert deltas(rows) == [
        {"t": 0.5, "kbps": 1000, "drops": 3, "backlog": 1500},
        {"t": 1.0, "kbps": 8, "drops": 0, "backlog": 0},
    ]


def test_an_episode_shows_what_went_down_the_link_besides_media() -> None:
    trace = [line(2.0 + 0.2 * i, 1, None, 3) for i in range(5)]
    for i, row in enumerate(trace):  # bytes sent, padding bytes, retransmitted, requests in
        row["estimates"] = [["impaired", 400_000, 10_000 * i, 2_000 * i, 3 * i, 0]]
    got = [[2.0 + 0.3 * i, 640, 30.0, n, 500, 0.0] for i, n in enumerate([5, 6, 6, 7])]
    (found,) = episodes(got, "impaired", trace, [], 1.0)
    assert found["sent_kbps"] == 400  # 30 kB in the 0.6 s from 2.0 to 2.6
    assert found["padding_kb"] == 6.0
    assert found["retransmitted"] == 9
    assert "unfilled" not in found  # a trace from before the slot counted them


def test_an_episode_counts_the_nacked_numbers_the_slot_had_no_copy_of() -> None:
    trace = [line(2.0 + 0.2 * i, 1, None, 3) for i in range(5)]
    for i, row in enumerate(trace):
        row["slots"][0].append(7 + (i >= 3))  # one more unfilled NACK at 2.6 s
    got = [[2.0 + 0.3 * i, 640, 30.0, n, 500, 0.0] for i, n in enumerate([5, 6, 6, 7])]
    (found,) = episodes(got, "impaired", trace, [], 1.0)
    assert found["unfilled"] == 1


def encoder_rows(frames: list[int], sizes: list[int], rid: str = "h") -> list[list[Any]]:
    """Readings every 250 ms from t=0: frames encoded and bytes sent in each."""
    rows: list[list[Any]] = []
    total_frames = total_bytes = 0
    for i, (f, b) in enumerate(zip(frames, sizes, strict=True)):
        total_frames, total_bytes = total_frames + f, total_bytes + b
        rows.append([0.25 * i, rid, total_frames, total_frames, 1, 500, "none", total_bytes])
    return rows


def test_a_stall_on_a_layer_whose_encoder_skipped_or_burst_is_the_publishers() -> None:
    trace = [line(2.0 + 0.2 * i, 1, None, 3) for i in range(5)]
    trace.append({"t": 2.7, "slots": [], "layers": [], "estimates": []})  # another worker
    got = [[2.0 + 0.3 * i, 640, 30.0, n, 500, 0.0] for i, n in enumerate([5, 6, 6, 7])]
    link = [{"t": 2.4, "kbps": 1000, "drops": 2, "backlog": 25000}]
    steady = encoder_rows([8] * 16, [15000] * 16)
    burst = encoder_rows([8] * 16, [15000] * 9 + [50000] + [15000] * 6)  # at 2.25 s
    skipped = encoder_rows([8] * 9 + [1, 2] + [8] * 5, [15000] * 16)
    kind = [episodes(got, "impaired", trace, link, 1.0, e)[0]["kind"] for e in (steady, burst)]
    assert kind == ["overflow", "publisher_burst"]
    assert episodes(got, "impaired", trace, [], 1.0, skipped)[0]["kind"] == "publisher_skip"
    other = encoder_rows([8] * 9 + [1, 2] + [8] * 5, [15000] * 16, rid="q")  # not its layer
    assert episodes(got, "impaired", trace, [], 1.0, other)[0]["kind"] == "receiver"


def test_the_summary_gives_each_groups_median_freeze_after_adapting() -> None:
    from netlab_summary import collect

    def result(frozen: float, kinds: dict[str, float]) -> dict[str, Any]:
        viewer: dict[str, Any] = {"freeze_ratio_after_3s": frozen, "adapt_s_p95": 1.0}
        viewer["frozen_s_by_kind_after_3s"] = kinds
        viewer["series"] = [[0.3, 320], [15.0, 320]]
        viewer["episodes"] = [{"start": 2.4, "s": 1.5}, {"start": 9.0, "s": 2.0}]
        entry: dict[str, Any] = {"loadavg": {"visitroom": [1.0, 2.0]}}
        entry["caps"] = [[0, None], [2.0, 300]]
        entry["visitroom"] = {"viewers": {"impaired": viewer}}
        return {"scenarios": {"cap_300k": entry}}

    got = collect(
        [
            ("base", result(0.2, {"overflow": 1.0, "publisher_skip": 2.0})),
            ("head", result(0.0, {})),
            ("base", result(0.1, {"overflow": 0.5, "receiver": 0.5})),
            ("base", result(0.4, {})),
        ]
    )
    base, head = got["cap_300k"]["base"], got["cap_300k"]["head"]
    assert base["frozen"] == [0.2, 0.1, 0.4] and base["median"] == 0.2
    assert base["kinds"] == {"overflow": 1.5, "publisher_skip": 2.0, "receiver": 0.5}
    assert base["sfu"] == [0.1, 0.1, 0.0]  # 1 s of the 10 s after 5 s; the skip is not
    assert base["sfu_median"] == 0.1
    assert base["cap_stall"] == [1.5, 1.5, 1.5]  # the stall at 9 s is not the step down
    assert head["median"] == 0.0 and head["load"] == [[1.0, 2.0]]
