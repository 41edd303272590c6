"""Which webhook events a room change makes (signalling/webhook_events.py) and the visit's
start, end and counts (waiting_room/visit.py): pure, with a real Room and a fake clock."""

from __future__ import annotations

import json
from typing import Any

import pytest

from signalling.webhook_events import Hook, body, encode, portal_event, room_events
from waiting_room.breakouts import BreakoutSpec
from waiting_room.clock import FakeClock
from waiting_room.events import Event
from waiting_room.participant import Role
from waiting_room.room import Room
from waiting_room.visit import Visit, note

Row = tuple[str, str | None, dict[str, Any]]


class VisitRun:
    """A room and what the executor does with each command's events."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.room = Room("visit-1", self.clock)
        self.hooks: list[Hook] = []

    def run(self, events: list[Event]) -> list[Row]:
        room = self.room
        room.visit, changes = note(
            room.visit, events, self.clock(), lambda: room.joined_count, room.is_empty
        )
        hooks = room_events(room.id, events, changes)
        self.hooks.extend(hooks)
        return [(h.event, h.person.id if h.person else None, dict(h.data)) for h in hooks]


@pytest.fixture
def visit() -> VisitRun:
    return VisitRun()


def test_a_visit_with_knock_hold_admit_reject_remove_and_end(visit: VisitRun) -> None:
    room, clock = visit.room, visit.clock
    assert visit.run(room.enter("h", "Dr Who", Role.HOST, "dr-who")) == [
        ("room_started", "h", {}),
        ("participant_joined", "h", {}),
    ]
    assert visit.run(room.enter("g", "Pat Patient", Role.GUEST, "pat-7")) == [
        ("participant_knocked", "g", {})
    ]
    assert visit.run(room.hold("h", "g", "Dr Who is finishing a call")) == [
        ("participant_held", "g", {})
    ]
    assert visit.run(room.admit("h", ["g"])) == [
        ("participant_admitted", "g", {"by": "dr-who"}),
        ("participant_joined", "g", {}),
    ]
    assert visit.run(room.enter("x", "Someone", Role.GUEST, None)) == [
        ("participant_knocked", "x", {})
    ]
    assert visit.run(room.reject("h", "x")) == [("participant_rejected", "x", {})]
    clock.advance(600)
    assert visit.run(room.remove("h", "g")) == [
        ("participant_left", "g", {"reason": "removed", "was_joined": True})
    ]
    clock.advance(30)
    assert visit.run(room.end("h")) == [
        ("participant_left", "h", {"reason": "ended", "was_joined": True}),
        (
            "room_ended",
            None,
            {
                "reason": "ended",
                "duration_s": 630.0,
                "knocks": 2,
                "admitted": 1,
                "rejected": 1,
                "removed": 1,
                "joined": 2,
                "peak": 2,
            },
        ),
    ]
    assert room.visit == Visit(), "the next host starts a new visit"


def test_no_event_holds_a_name_a_hold_message_or_a_broadcast(visit: VisitRun) -> None:
    room = visit.room
    visit.run(room.enter("h", "Dr Who", Role.HOST, "dr-who"))
    visit.run(room.enter("g", "Pat Patient", Role.GUEST, "pat-7"))
    visit.run(room.hold("h", "g", "Your results are in"))
    visit.run(room.admit("h", None))
    visit.run(room.open_breakouts("h", [BreakoutSpec("Consult", ("g",))]))
    visit.run(room.broadcast("h", "Back in a minute"))
    visit.run(room.close_breakouts("h", None))
    visit.run(room.leave("g"))
    sent = b"".join(encode(body(h, "evt_x", visit.clock())) for h in visit.hooks)
    for private in (b"Dr Who", b"Pat Patient", b"results", b"Consult", b"minute"):
        assert private not in sent
    assert b'"identity":"pat-7"' in sent


def test_the_last_person_leaving_ends_the_visit(visit: VisitRun) -> None:
    room = visit.room
    visit.run(room.enter("h", "Dr", Role.HOST, "dr"))
    visit.run(room.enter("g", "Pat", Role.GUEST, "pat"))
    visit.run(room.admit("h", ["g"]))
    assert [r[0] for r in visit.run(room.leave("h"))] == ["participant_left"]
    visit.clock.advance(5)
    rows = visit.run(room.leave("g"))
    assert [r[0] for r in rows] == ["participant_left", "room_ended"]
    assert rows[1][2]["reason"] == "empty" and rows[1][2]["duration_s"] == 5.0


def test_a_guest_who_gives_up_waiting_leaves_from_the_lobby(visit: VisitRun) -> None:
    room = visit.room
    visit.run(room.enter("g", "Pat", Role.GUEST, None))
    assert visit.run(room.leave("g")) == [
        ("participant_left", "g", {"reason": "left", "was_joined": False})
    ], "no room_started: no host came, so no room_ended either"


def test_a_dropped_participant_leaves_as_disconnected(visit: VisitRun) -> None:
    room = visit.room
    visit.run(room.enter("h", "Dr", Role.HOST, "dr"))
    visit.run(room.enter("g", "Pat", Role.GUEST, "pat"))
    visit.run(room.admit("h", ["g"]))
    room.disconnect("g")
    visit.clock.advance(31)
    assert visit.run(room.expire(30)) == [
        ("participant_left", "g", {"reason": "disconnected", "was_joined": True})
    ]


def test_breakouts_opened_and_closed_at_once_or_by_the_timer(visit: VisitRun) -> None:
    room = visit.room
    visit.run(room.enter("h", "Dr", Role.HOST, "dr"))
    for pid in ("a", "b"):
        visit.run(room.enter(pid, pid, Role.GUEST, pid))
    visit.run(room.admit("h", None))
    rows = visit.run(room.open_breakouts("h", [BreakoutSpec("One"), BreakoutSpec("Two")], True))
    assert rows == [("breakouts_opened", None, {"by": "dr", "breakouts": 2, "assigned": 2})]
    assert visit.run(room.close_breakouts("h", 60)) == [], "a countdown: not closed yet"
    visit.clock.advance(61)
    assert visit.run(room.tick_breakouts()) == [("breakouts_closed", None, {"by": None})]
    visit.run(room.open_breakouts("h", [BreakoutSpec("Three")], True))
    assert visit.run(room.close_breakouts("h", None)) == [("breakouts_closed", None, {"by": "dr"})]


def test_a_visit_outlives_a_restart_in_the_stored_room(visit: VisitRun) -> None:
    room = visit.room
    visit.run(room.enter("h", "Dr", Role.HOST, "dr"))
    restored = Room.from_dict(json.loads(json.dumps(room.to_dict())), visit.clock)
    assert restored.visit == room.visit and restored.visit.started_at == visit.clock()
    old = room.to_dict()
    del old["visit"]  # stored by a version before webhooks
    assert Room.from_dict(old, visit.clock).visit == Visit()


def test_an_event_as_sent_has_the_documented_fields() -> None:
    room = Room("visit-1", FakeClock())
    events = room.enter("g", "Pat", Role.GUEST, None)
    hook = room_events("visit-1", events, [])[0]
    assert body(hook, "evt_1", 1_800_000_000.25) == {
        "id": "evt_1",
        "event": "participant_knocked",
        "created_at": "2027-01-15T08:00:00.250Z",
        "room_id": "visit-1",
        "participant_id": "g",
        "identity": None,
        "role": "guest",
        "data": {},
    }
    assert hook.order_key == "visit-1"


def test_portal_events_carry_the_patient_id_only() -> None:
    hook = portal_event("portal_opted_out", "pt_123")
    assert body(hook, "evt_2", 0.0) == {
        "id": "evt_2",
        "event": "portal_opted_out",
        "created_at": "1970-01-01T00:00:00.000Z",
        "room_id": None,
        "data": {"patient_id": "pt_123"},
    }
    with pytest.raises(ValueError, match="not a portal webhook event"):
        portal_event("portal_deleted", "pt_123")
