"""Who fills whose slots in a group: speakers, screen shares, pins, pre-call echo."""

from __future__ import annotations

import pytest

from sfu.packet.counters import Counters
from sfu.packet.rtp import parse_rtp
from sfu.relay.endpoint import RelayEndpoint
from sfu.relay.remote import RemotePublisher, RemoteStream, describe
from sfu.routing.group import SCREEN, Group, participant_of
from sfu.routing.participant import Participant
from sfu.settings import MediaSettings
from tests.sfu_fakes import media_plans, opus, producer


def member(group: Group, pid: str, n: int, **kw: object) -> Participant:
    p = Participant(
        pid,
        group.room_id,
        group,
        precall=group.precall,
        settings=MediaSettings(),
        on_transport_lost=lambda participant, reason: None,
    )
    p.apply(media_plans(ssrc=1000 * (n + 1), **kw))  # type: ignore[arg-type]
    group.add(p)
    return p


def slots(group: Group, p: Participant, now: float = 0.0) -> dict[str, str | None]:
    group.changed_orders(now)
    group.refill(p, now)
    return {s["mid"]: s["participant_id"] for s in p.slot_list()}


def speak(group: Group, pid: str, start: float, seconds: float, level: int = 10) -> None:
    for n in range(int(seconds / 0.02)):
        group.on_level(pid, level, True, start + n * 0.02)


@pytest.mark.parametrize("path", ["compiled", "python"])
def test_audio_levels_reach_the_speaker_through_its_log_without_a_call(path: str) -> None:
    """The producers' sink is the speaker's log: the packet path appends, the tick decides."""
    group = Group("r", "main")
    member(group, "viewer", 0, audio=False, video=False)
    alice = member(group, "alice", 1)
    audio = alice.producers["a"].layers[0]
    log = group.speaker.log("alice")
    assert audio.level_sink is log
    if path == "python":
        audio._receive = None
    else:
        assert audio._receive is not None, "run `python -m sfu.native.build` first"
    for n in range(75):
        data = opus(n, n * 960, ssrc=audio.ssrc or 0, level=10)
        assert audio.on_rtp(data, parse_rtp(data), n * 0.02)
    assert len(log) == 75  # appended, not folded in yet
    assert group.update_speaker(1.5) == "alice"
    assert log == []


def test_two_participants_receive_each_other_and_never_themselves() -> None:
    group = Group("r", "main")
    alice, bob = member(group, "alice", 0), member(group, "bob", 1)
    assert set(slots(group, alice).values()) == {"bob", None}
    assert slots(group, alice)["rv0"] == "bob" and slots(group, alice)["ra0"] == "bob"
    assert "bob" not in [v for k, v in slots(group, bob).items() if v == "bob"]
    assert alice.consumers["rv0"].target is bob.producers["v"]


def test_the_dominant_speaker_takes_the_only_video_slot() -> None:
    group = Group("r", "main")
    viewer = member(group, "viewer", 0, audio=False, video=False, video_slots=1)
    member(group, "alice", 1)
    member(group, "bob", 2)
    speak(group, "alice", 0.0, 1.5)
    assert group.update_speaker(1.5) == "alice"
    assert slots(group, viewer, 1.5)["rv0"] == "alice"
    speak(group, "bob", 1.5, 2.0)
    for n in range(20):
        group.on_level("alice", 127, False, 1.5 + n * 0.1)
    assert group.update_speaker(3.5) == "bob"
    assert slots(group, viewer, 3.5)["rv0"] == "bob"


def test_free_audio_slots_are_filled_and_the_loudest_come_first() -> None:
    group = Group("r", "main")
    viewer = member(group, "viewer", 0, audio=False, video=False, audio_slots=1)
    member(group, "alice", 1)
    member(group, "bob", 2)
    speak(group, "bob", 0.0, 0.5)
    assert slots(group, viewer, 0.5)["ra0"] == "bob"


def test_a_screen_share_is_a_source_of_its_own_but_never_sent_back() -> None:
    group = Group("r", "main")
    presenter = member(group, "alice", 0, screen=True)
    viewer = member(group, "bob", 1)
    seen = slots(group, viewer)
    assert list(seen.values()).count("alice") == 3  # audio, camera and screen
    keys = set(viewer.slot_keys.values())
    assert "alice" + SCREEN in keys and participant_of("alice" + SCREEN) == "alice"
    screen_consumer = next(
        c for m, c in viewer.consumers.items() if viewer.slot_keys[m] == "alice" + SCREEN
    )
    assert screen_consumer.target is presenter.producers["s"]
    sources = {s["source"] for s in viewer.slot_list() if s["participant_id"] == "alice"}
    assert sources == {"audio", "camera", "screen"}
    assert all("source" not in s for s in viewer.slot_list() if s["participant_id"] is None)
    assert set(slots(group, presenter).values()) <= {"bob", None}


def test_a_pinned_participant_keeps_a_slot_whoever_speaks() -> None:
    group = Group("r", "main")
    viewer = member(group, "viewer", 0, audio=False, video=False, video_slots=1)
    member(group, "alice", 1)
    member(group, "bob", 2)
    viewer.pinned = "bob"
    speak(group, "alice", 0.0, 1.5)
    group.update_speaker(1.5)
    assert slots(group, viewer, 1.5)["rv0"] == "bob"


def test_a_slot_whose_source_left_is_refilled() -> None:
    group = Group("r", "main")
    viewer = member(group, "viewer", 0, audio=False, video=False, video_slots=1)
    alice = member(group, "alice", 1)
    member(group, "bob", 2)
    first = slots(group, viewer)["rv0"]
    leaving = alice if first == "alice" else group.members["bob"]
    leaving.close()
    group.remove(leaving)
    assert slots(group, viewer)["rv0"] not in (None, leaving.id)


def test_slot_lists_are_reported_only_when_they_change() -> None:
    group = Group("r", "main")
    alice = member(group, "alice", 0)
    member(group, "bob", 1)
    group.changed_orders(0.0)
    assert group.refill(alice, 0.0) is not None
    assert group.refill(alice, 0.0) is None


def test_a_precall_session_receives_exactly_its_own_media() -> None:
    group = Group("\x00precall", "p", precall=True)
    me = member(group, "p", 0, screen=True, audio_slots=1, video_slots=3)
    assert slots(group, me) == {"ra0": "p", "rv0": "p", "rv1": "p", "rv2": None}
    assert me.consumers["rv0"].target is me.producers["v"]
    assert me.consumers["rv1"].target is me.producers["s"]


def remote(group: Group, pid: str, ssrc: int) -> RemotePublisher:
    """A publisher of another worker: camera and microphone arriving through the relay."""
    publisher = RemotePublisher(pid)
    for n, kind in enumerate(("audio", "video")):
        desc = describe(producer(kind, ssrc=ssrc + n, owner=pid))
        publisher.add(
            RemoteStream(RelayEndpoint(1), 2, ssrc + n, pid, desc, MediaSettings(), Counters())
        )
    group.add_remote(publisher)
    return publisher


def test_a_remote_publisher_fills_slots_like_a_member() -> None:
    group = Group("r", "main")
    viewer = member(group, "viewer", 0, audio=False, video=False, audio_slots=1, video_slots=1)
    far = remote(group, "far", 500)
    assert slots(group, viewer) == {"ra0": "far", "rv0": "far"}
    assert viewer.consumers["rv0"].target is far.producers["2:501"]
    group.remove_remote("far")
    assert slots(group, viewer) == {"ra0": None, "rv0": None}


def test_a_remote_speaker_can_become_the_dominant_speaker() -> None:
    group = Group("r", "main")
    viewer = member(group, "viewer", 0, audio=False, video=False, video_slots=1)
    member(group, "near", 1)
    remote(group, "far", 500)
    speak(group, "far", 0.0, 1.5)
    assert group.update_speaker(1.5) == "far"
    assert slots(group, viewer, 1.5)["rv0"] == "far"


def test_a_follower_fills_slots_from_the_leaders_orders_not_its_own() -> None:
    group = Group("r", "main")
    viewer = member(group, "viewer", 0, audio=False, video=False, video_slots=1)
    member(group, "near", 1)
    remote(group, "far", 500)
    speak(group, "near", 0.0, 1.5)
    group.update_speaker(1.5)
    group.lead(False)
    group.impose((["far", "near", "left-already"], ["far", "near"]))
    assert slots(group, viewer, 1.5)["rv0"] == "far", "the leader's choice wins"
    video, audio = group.current_orders or ([], [])
    assert video == ["far", "near"] and audio == ["far", "near"]
    group.lead(True)
    group.impose((["far", "near"], ["far", "near"]))  # ignored while leading
    assert slots(group, viewer, 1.5)["rv0"] == "near", "a leader decides by itself"


def test_members_the_leader_has_not_listed_yet_keep_their_place_after_the_listed() -> None:
    group = Group("r", "main")
    group.lead(False)
    member(group, "new", 0)
    remote(group, "far", 500)
    group.impose((["far"], ["far"]))
    assert group.orders(0.0) == (["far", "new"], ["far", "new"])
    assert group.size == 1
    group.size_hint = 40
    assert group.size == 40


def test_no_key_frame_is_asked_for_while_the_subscriber_is_not_connected() -> None:
    group = Group("r", "main")
    viewer = member(group, "viewer", 0, audio=False, video=False, video_slots=1)
    alice = member(group, "alice", 1)
    slots(group, viewer)
    assert viewer.consumers["rv0"].pending is alice.producers["v"]
    # Its connection asks (Participant.on_transport_state); one asked now would be
    # lost and would hold that one back for the coalescing interval.
    assert alice.producers["v"].request_keyframe(0.0), "nothing was asked before"


def test_with_one_stage_slot_the_speaker_is_at_full_rate_and_the_others_are_thumbnails() -> None:
    group = Group("r", "main")
    settings = MediaSettings(stage_video_slots=1)
    viewer = Participant(
        "viewer", "r", group, precall=False, settings=settings,
        on_transport_lost=lambda participant, reason: None,
    )  # fmt: skip
    viewer.apply(media_plans(ssrc=1, audio=False, video=False, video_slots=3))
    group.add(viewer)
    for n, pid in enumerate(("alice", "bob", "carol")):
        member(group, pid, n + 1)
    speak(group, "bob", 0.0, 1.5)
    group.update_speaker(1.5)
    slots(group, viewer, 1.5)
    thumbnails = {viewer.slot_keys[m]: c.thumbnail for m, c in viewer.consumers.items()}
    assert thumbnails == {"bob": False, "alice": True, "carol": True}
    viewer.pinned = "carol"
    slots(group, viewer, 1.5)
    thumbnails = {viewer.slot_keys[m]: c.thumbnail for m, c in viewer.consumers.items()}
    assert thumbnails == {"bob": True, "alice": True, "carol": False}


def test_the_senders_are_the_publishers_that_publish_in_the_same_order() -> None:
    group = Group("r", "main")
    member(group, "viewer", 0, audio=False, video=False)
    member(group, "alice", 1)
    remote(group, "far", 500)
    member(group, "viewer2", 2, audio=False, video=False)
    member(group, "bob", 3)
    assert [p.id for p in group.publishers()] == ["viewer", "alice", "viewer2", "bob", "far"]
    assert [p.id for p in group.senders()] == ["alice", "bob", "far"]
