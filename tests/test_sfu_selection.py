"""sfu.policy.selection: sticky, deterministic slot assignment for one subscriber."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.policy.selection import assign_slots, diff, last_n_order

VIDEO4 = [("v0", "video"), ("v1", "video"), ("v2", "video"), ("v3", "video")]
AUDIO3 = [("a0", "audio"), ("a1", "audio"), ("a2", "audio")]


def assign(
    slots: list[tuple[str, str]],
    current: dict[str, str | None] | None = None,
    video: list[str] | None = None,
    audio: list[str] | None = None,
    pinned: str | None = None,
    subscriber: str = "me",
) -> dict[str, str | None]:
    return assign_slots(
        slots,
        subscriber=subscriber,
        current=current or {},
        video_order=video or [],
        audio_order=audio or [],
        pinned=pinned,
    )


def test_empty_slots_fill_from_the_head_of_each_order_in_slot_order() -> None:
    got = assign(VIDEO4 + AUDIO3, video=["a", "b", "c", "d", "e"], audio=["c", "x", "y", "z"])
    assert got == {"v0": "a", "v1": "b", "v2": "c", "v3": "d", "a0": "c", "a1": "x", "a2": "y"}


def test_the_result_lists_the_mids_in_the_subscribers_order() -> None:
    slots = [("a0", "audio"), ("v1", "video"), ("v0", "video")]
    assert list(assign(slots, video=["p"], audio=["q"])) == ["a0", "v1", "v0"]


def test_the_subscriber_never_receives_itself() -> None:
    got = assign(VIDEO4 + AUDIO3, video=["me", "a", "b"], audio=["me", "a"], pinned="me")
    assert "me" not in got.values()
    assert got == {"v0": "a", "v1": "b", "v2": None, "v3": None, "a0": "a", "a1": None, "a2": None}


def test_a_pinned_publisher_gets_a_video_slot_even_when_last_in_order() -> None:
    got = assign(VIDEO4[:2], video=["a", "b", "c"], pinned="c")
    assert got == {"v0": "c", "v1": "a"}


def test_a_pinned_participant_without_video_is_ignored() -> None:
    assert assign(VIDEO4[:2], video=["a", "b", "c"], pinned="zed") == {"v0": "a", "v1": "b"}


def test_pinning_does_not_move_a_pinned_participant_already_shown() -> None:
    got = assign(VIDEO4[:2], current={"v0": "a", "v1": "c"}, video=["a", "b", "c"], pinned="c")
    assert got == {"v0": "a", "v1": "c"}


def test_pinning_does_not_affect_audio() -> None:
    got = assign(AUDIO3[:1], video=["c"], audio=["a", "c"], pinned="c")
    assert got == {"a0": "a"}


def test_participants_still_selected_keep_their_slots() -> None:
    current: dict[str, str | None] = {"v0": "c", "v1": "a", "v2": "b", "v3": "d"}
    got = assign(VIDEO4, current=current, video=["d", "c", "b", "a", "e"])
    assert got == current


def test_only_the_slot_of_a_dropped_participant_is_refilled() -> None:
    current: dict[str, str | None] = {"v0": "c", "v1": "a", "v2": "b", "v3": "d"}
    got = assign(VIDEO4, current=current, video=["e", "a", "b", "d", "c"])
    assert got == {"v0": "e", "v1": "a", "v2": "b", "v3": "d"}
    assert diff(current, got) == {"v0": "e"}


def test_newcomers_fill_free_slots_in_slot_order_by_priority() -> None:
    current: dict[str, str | None] = {"v0": "x", "v1": "a", "v2": "y", "v3": None}
    got = assign(VIDEO4, current=current, video=["n1", "a", "n2", "n3", "x9"])
    assert got == {"v0": "n1", "v1": "a", "v2": "n2", "v3": "n3"}


def test_a_participant_appears_in_at_most_one_slot_per_kind() -> None:
    got = assign(VIDEO4, current={"v0": "a", "v1": "a"}, video=["a", "a", "b"])
    assert got == {"v0": "a", "v1": "b", "v2": None, "v3": None}


def test_the_same_participant_may_fill_a_video_and_an_audio_slot() -> None:
    assert assign(VIDEO4[:1] + AUDIO3[:1], video=["a"], audio=["a"]) == {"v0": "a", "a0": "a"}


def test_slots_beyond_the_publishers_stay_empty() -> None:
    assert assign(VIDEO4, video=["a"]) == {"v0": "a", "v1": None, "v2": None, "v3": None}
    assert assign(AUDIO3) == {"a0": None, "a1": None, "a2": None}
    assert assign([]) == {}


def test_a_participant_shown_elsewhere_who_left_is_replaced() -> None:
    got = assign(VIDEO4[:2], current={"v0": "gone", "v1": "b"}, video=["b"])
    assert got == {"v0": None, "v1": "b"}


def test_duplicate_mids_and_unknown_kinds_are_errors() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        assign([("v0", "video"), ("v0", "audio")])
    with pytest.raises(ValueError, match="kind 'application'"):
        assign([("d", "application")])


# --- diff --------------------------------------------------------------------


def test_diff_reports_changed_new_and_vanished_mids() -> None:
    old: dict[str, str | None] = {"v0": "a", "v1": "b", "v2": None, "gone": "z", "gone2": None}
    new: dict[str, str | None] = {"v0": "a", "v1": "c", "v2": "d", "v3": None, "v4": "e"}
    assert diff(old, new) == {"v1": "c", "v2": "d", "v4": "e", "gone": None}


def test_diff_of_equal_assignments_is_empty() -> None:
    same: dict[str, str | None] = {"v0": "a", "a0": None}
    assert diff(same, dict(same)) == {}


# --- last_n_order ------------------------------------------------------------


def test_last_n_order_puts_recent_speakers_first_then_the_rest_as_given() -> None:
    history = ["c", "a", "c", "gone", "b"]
    assert last_n_order(history, ["a", "b", "c", "d", "e"]) == ["c", "a", "b", "d", "e"]


def test_last_n_order_without_history_keeps_publisher_order() -> None:
    assert last_n_order([], ["d", "a", "d"]) == ["d", "a"]


# --- properties --------------------------------------------------------------

people = st.sampled_from(["me", "a", "b", "c", "d", "e", "f", "g"])


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, object]:
    n_video = draw(st.integers(0, 5))
    n_audio = draw(st.integers(0, 4))
    slots = [(f"v{i}", "video") for i in range(n_video)] + [
        (f"a{i}", "audio") for i in range(n_audio)
    ]
    slots = draw(st.permutations(slots))
    current = {mid: draw(st.none() | people) for mid, _ in slots if draw(st.booleans())}
    return {
        "slots": slots,
        "current": current,
        "video_order": draw(st.lists(people, max_size=8)),
        "audio_order": draw(st.lists(people, max_size=8)),
        "pinned": draw(st.none() | people),
    }


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_assignment_invariants_hold_for_any_input(s: dict[str, object]) -> None:
    got = assign_slots(subscriber="me", **s)  # type: ignore[arg-type]
    again = assign_slots(subscriber="me", **s)  # type: ignore[arg-type]
    assert got == again, "deterministic"
    slots: list[tuple[str, str]] = s["slots"]  # type: ignore[assignment]
    current: dict[str, str | None] = s["current"]  # type: ignore[assignment]
    assert list(got) == [mid for mid, _ in slots]
    for kind, order in (("video", s["video_order"]), ("audio", s["audio_order"])):
        mids = [mid for mid, k in slots if k == kind]
        shown = [got[mid] for mid in mids if got[mid] is not None]
        assert "me" not in shown
        assert len(shown) == len(set(shown)), "at most one slot per kind"
        head: list[str] = list(dict.fromkeys(order))  # type: ignore[call-overload]
        if kind == "video" and s["pinned"] in head:
            head.insert(0, s["pinned"])
        expected = [p for p in dict.fromkeys(head) if p != "me"][: len(mids)]
        assert set(shown) == set(expected), "exactly the top of the order is shown"
        kept: set[str] = set()
        for mid in mids:
            who = current.get(mid)
            if who in expected and who not in kept:
                assert got[mid] == who, "a selected participant keeps its slot"
                kept.add(who)
