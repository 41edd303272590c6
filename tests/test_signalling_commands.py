"""Command handlers are pure: each returns its events and its ack; nothing is sent."""

from __future__ import annotations

import pytest

from sfu.control import MediaError
from signalling.commands import ROOM_COMMANDS, MediaCommands, Outcome
from signalling.messages import Request
from waiting_room.clock import FakeClock
from waiting_room.events import Admitted, Joined
from waiting_room.participant import Role
from waiting_room.room import Room


@pytest.fixture
def room() -> Room:
    room = Room("visit-1", FakeClock(1000.0))
    room.enter("h1", "Dr Smith", Role.HOST, "dr-smith")
    room.enter("g1", "Pat", Role.GUEST, None)
    return room


def test_admit_returns_its_ack_with_its_events(room: Room) -> None:
    request = Request("admit", "r1", {"participant_ids": ["g1", "nobody"]})
    outcome = ROOM_COMMANDS["admit"](room, room.get("h1"), request)
    assert any(isinstance(e, Admitted) for e in outcome.events)
    assert any(isinstance(e, Joined) for e in outcome.events)
    assert outcome.ack == {"admitted": ["g1"], "not_found": ["nobody"]}
    assert outcome.messages("r1") == [
        {"type": "ack", "re": "r1", "admitted": ["g1"], "not_found": ["nobody"]}
    ]


def test_a_request_without_an_id_gets_no_ack(room: Room) -> None:
    outcome = ROOM_COMMANDS["reject"](
        room, room.get("h1"), Request("reject", None, {"participant_id": "g1"})
    )
    assert outcome.events and outcome.messages(None) == []


def test_lobby_replies_with_the_lobby_before_its_ack(room: Room) -> None:
    outcome = ROOM_COMMANDS["lobby"](room, room.get("h1"), Request("lobby", 7, {}))
    assert outcome.events == []
    assert [m["type"] for m in outcome.messages(7)] == ["lobby", "ack"]
    assert outcome.messages(7)[0]["waiting"][0]["id"] == "g1"


def test_an_outcome_without_an_ack_sends_only_its_replies() -> None:
    answer = {"type": "answer", "sdp": "v=0", "re": 3}
    assert Outcome(ack=None, replies=(answer,)).messages(3) == [answer]


async def test_media_commands_without_a_media_plane_are_refused(room: Room) -> None:
    offer = MediaCommands(None).table["offer"]
    with pytest.raises(MediaError, match="not available"):
        await offer(room, room.get("h1"), Request("offer", 1, {"sdp": "v=0"}))
