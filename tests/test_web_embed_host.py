"""A host frame (/embed/{room_id}?role=host) and the page around it, on another origin:
the parent hears of knocks, holds, admissions and the roster, and commands the frame
(admit, hold, remove, mute, leave, end); commands from any other origin or window are
ignored; a provider who tested already skips the pre-call step."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import ConsoleMessage, FrameLocator, Page, expect

from tests.conftest import token
from tests.test_web_embed import event_types, open_parent, wait_for_event
from tests.web_support import Pages, ParentSite, WebServer, knock

pytestmark = pytest.mark.browser

# Tries to command the visit frame (its parent's first frame) from wherever it is served.
ROGUE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Rogue</title><link rel="icon" href="data:,"></head>
<body><script>
  const params = new URLSearchParams(location.search);
  parent.frames[0].postMessage(
    {type: "visitroom:admit", participant_id: params.get("pid"), request_id: "rogue"}, "*");
</script></body></html>
"""

_request_ids = itertools.count(1)


@pytest.fixture(scope="module")
def rogue() -> Iterator[ParentSite]:
    """A third origin, allowed nowhere, whose page the parent frames next to the visit."""
    other = ParentSite()
    (other.root / "rogue.html").write_text(ROGUE_PAGE)
    other.start()
    yield other
    other.stop()


def open_host_frame(
    pages: Pages, site: WebServer, room: str, **join: Any
) -> tuple[Page, FrameLocator, str]:
    """The parent page on its own origin, framing a host of `room` who skips pre-call."""
    parent = pages.new("parent")
    host_token = token(room, "dr-frame", "host", "Dr Frame")
    frame = open_parent(
        parent, site, room, {"token": host_token, "skip_precall": True, **join}, role="host"
    )
    return parent, frame, host_token


def command(parent: Page, message: dict[str, Any]) -> dict[str, Any]:
    """Post one command to the frame as the parent page does; returns its command_result."""
    request_id = f"r{next(_request_ids)}"
    parent.evaluate(
        """(message) => {
          const frame = document.getElementById("visit");
          frame.contentWindow.postMessage(message, new URL(frame.src).origin);
        }""",
        {**message, "request_id": request_id},
    )
    parent.wait_for_function(
        "(id) => window.events.some((e) => e.type === 'command_result' && e.request_id === id)",
        arg=request_id,
    )
    result: dict[str, Any] = parent.evaluate(
        "(id) => window.events.find((e) => e.type === 'command_result' && e.request_id === id)",
        request_id,
    )
    return result


def wait_for(parent: Page, kind: str, **match: Any) -> dict[str, Any]:
    """The first event of `kind` whose fields include `match`."""
    check = """([kind, match]) => window.events.find((e) => e.type === kind &&
        Object.entries(match).every(([k, v]) => JSON.stringify(e[k]) === JSON.stringify(v)))"""
    parent.wait_for_function(check, arg=[kind, match])
    found: dict[str, Any] = parent.evaluate(check, [kind, match])
    return found


def test_the_parent_hears_of_knocks_and_lets_in_holds_mutes_and_ends(
    pages: Pages, site: WebServer
) -> None:
    room = site.schedule()
    parent, frame, host_token = open_host_frame(pages, site, room, microphone=False)
    # Straight into the room: the parent said the provider tested already.
    expect(frame.get_by_test_id("screen-room")).to_be_visible()
    expect(frame.get_by_test_id("btn-mic")).to_have_attribute("data-state", "off")
    expect(frame.get_by_test_id("btn-camera")).to_have_attribute("data-state", "on")
    wait_for_event(parent, "admitted")

    pat, bo = pages.new("pat"), pages.new("bo")
    knock(pat, site, room, "Pat Patient")
    knocked = wait_for(parent, "participant_knocked", name="Pat Patient")
    pat_id = knocked["participant_id"]
    assert pat_id.startswith("p_")

    admitted = command(parent, {"type": "visitroom:admit", "participant_id": pat_id})
    assert admitted["ok"] is True and admitted["admitted"] == [pat_id]
    assert admitted["command"] == "admit"
    expect(pat.get_by_test_id("screen-room")).to_be_visible()
    wait_for(parent, "participant_admitted", participant_id=pat_id, name="Pat Patient")
    wait_for(parent, "participant_joined", participant_id=pat_id, role="guest")

    knock(bo, site, room, "Bo Brother")
    bo_id = wait_for(parent, "participant_knocked", name="Bo Brother")["participant_id"]
    held = command(
        parent,
        {"type": "visitroom:hold", "participant_id": bo_id, "message": "Two more minutes"},
    )
    assert held["ok"] is True
    expect(bo.get_by_test_id("hold-message")).to_have_text("Two more minutes")
    wait_for(parent, "participant_held", participant_id=bo_id, message="Two more minutes")

    muted = command(parent, {"type": "visitroom:set_devices", "microphone": True, "camera": False})
    assert muted["ok"] is True and (muted["microphone"], muted["camera"]) == (True, False)
    expect(frame.get_by_test_id("btn-mic")).to_have_attribute("data-state", "on")
    expect(frame.get_by_test_id("btn-camera")).to_have_attribute("data-state", "off")

    state = command(parent, {"type": "visitroom:get_state"})
    assert [w["participant_id"] for w in state["waiting"]] == [bo_id]
    assert state["waiting"][0]["status"] == "on_hold"
    assert {p["name"] for p in state["participants"]} == {"Dr Frame", "Pat Patient"}

    removed = command(parent, {"type": "visitroom:remove", "participant_id": pat_id})
    assert removed["ok"] is True
    expect(pat.get_by_test_id("screen-left")).to_be_visible()
    wait_for(parent, "participant_left", participant_id=pat_id, reason="removed")

    refused = command(parent, {"type": "visitroom:admit", "participant_id": ""})
    assert (refused["ok"], refused["code"]) == (False, "bad_request")

    ended = command(parent, {"type": "visitroom:end"})
    assert ended["ok"] is True
    wait_for_event(parent, "ended")
    expect(bo.get_by_test_id("left-message")).to_have_text("You've left the room")
    # Names and ids only: no token in any event, and none in any URL.
    assert host_token not in str(parent.evaluate("JSON.stringify(window.events)"))
    assert not [url for url in pages.requests if host_token in url]


def test_commands_from_another_origin_or_window_are_ignored(
    pages: Pages, site: WebServer, rogue: ParentSite
) -> None:
    pages.also_allowed.append(rogue.origin)
    (site.parent.root / "rogue.html").write_text(ROGUE_PAGE)
    room = site.schedule()
    parent, frame, _ = open_host_frame(pages, site, room)
    warnings: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "warning":
            warnings.append(message.text)

    parent.on("console", on_console)
    expect(frame.get_by_test_id("screen-room")).to_be_visible()
    guest = pages.new("guest")
    knock(guest, site, room, "Gil Guest")
    gil = wait_for(parent, "participant_knocked", name="Gil Guest")["participant_id"]

    # A page of a third origin and a sibling frame of the parent's own origin both try.
    for origin in (rogue.origin, site.parent.origin):
        parent.evaluate(
            """(src) => {
              const f = document.createElement("iframe");
              f.src = src;
              document.body.append(f);
            }""",
            f"{origin}/rogue.html?pid={quote(gil)}",
        )
    wait_for(parent, "ignored_message", reason="wrong_origin", origin=rogue.origin)
    wait_for(parent, "ignored_message", reason="wrong_source", origin=site.parent.origin)
    assert "command_result" not in event_types(parent)
    expect(guest.get_by_test_id("screen-waiting")).to_be_visible()
    assert any(
        "ignored visitroom:admit" in w and rogue.origin in w and "wrong origin" in w
        for w in warnings
    ), warnings

    # The real parent still can.
    assert command(parent, {"type": "visitroom:admit_all"})["admitted"] == [gil]
    expect(guest.get_by_test_id("screen-room")).to_be_visible()


def test_withdrawn_and_rejected_knocks_breakouts_and_the_host_leaving(
    pages: Pages, site: WebServer
) -> None:
    room = site.schedule()
    parent, frame, _ = open_host_frame(pages, site, room)
    expect(frame.get_by_test_id("screen-room")).to_be_visible()
    wes, rex, ann = pages.new("wes"), pages.new("rex"), pages.new("ann")

    knock(wes, site, room, "Wes Withdraws")
    wes_id = wait_for(parent, "participant_knocked", name="Wes Withdraws")["participant_id"]
    wes.get_by_test_id("btn-leave-lobby").click()
    wait_for(parent, "participant_knock_withdrawn", participant_id=wes_id, name="Wes Withdraws")

    knock(rex, site, room, "Rex Rejected")
    rex_id = wait_for(parent, "participant_knocked", name="Rex Rejected")["participant_id"]
    assert command(parent, {"type": "visitroom:reject", "participant_id": rex_id})["ok"] is True
    expect(rex.get_by_test_id("screen-rejected")).to_be_visible()
    wait_for(parent, "participant_rejected", participant_id=rex_id, name="Rex Rejected")

    # Breakouts opened and closed in the frame's own panel are reported too.
    knock(ann, site, room, "Ann")
    ann_id = wait_for(parent, "participant_knocked", name="Ann")["participant_id"]
    command(parent, {"type": "visitroom:admit", "participant_id": ann_id})
    expect(ann.get_by_test_id("screen-room")).to_be_visible()
    frame.get_by_test_id("btn-breakouts").click()
    panel = frame.get_by_test_id("breakout-panel")
    panel.get_by_test_id("breakout-names").fill("Blue")
    panel.get_by_test_id("btn-breakout-open").click()
    opened = wait_for_event(parent, "breakouts_opened")
    assert [r["name"] for r in opened["rooms"]] == ["Blue"]
    assert opened["rooms"][0]["participant_ids"] == [ann_id]
    panel.get_by_test_id("breakout-countdown").select_option("0")
    panel.get_by_test_id("btn-breakout-close").click()
    wait_for_event(parent, "breakouts_closed")

    assert command(parent, {"type": "visitroom:leave"})["ok"] is True
    assert wait_for_event(parent, "left")["reason"] == "left"
    expect(frame.get_by_test_id("screen-left")).to_be_visible()
    after = command(parent, {"type": "visitroom:end"})
    assert (after["ok"], after["code"]) == (False, "not_ready")


def test_without_skip_precall_the_host_sees_the_precall_step(pages: Pages, site: WebServer) -> None:
    room = site.schedule()
    parent = pages.new("parent")
    host_token = token(room, "dr-tests", "host", "Dr Tests")
    frame = open_parent(parent, site, room, {"token": host_token}, role="host")
    expect(frame.get_by_test_id("screen-precall")).to_be_visible()
    early = command(parent, {"type": "visitroom:admit_all"})
    assert (early["ok"], early["code"]) == (False, "not_ready")


def test_a_guest_frame_keeps_its_precall_step_and_takes_no_host_command(
    pages: Pages, site: WebServer
) -> None:
    room = site.schedule()
    parent = pages.new("parent")
    frame = open_parent(parent, site, room, {"name": "Gwen Guest", "skip_precall": True})
    expect(frame.get_by_test_id("screen-precall")).to_be_visible()
    expect(frame.get_by_test_id("input-name")).to_have_value("Gwen Guest")
    refused = command(parent, {"type": "visitroom:admit_all"})
    assert (refused["ok"], refused["code"]) == (False, "forbidden")
    frame.get_by_test_id("btn-skip-test").click()
    frame.get_by_test_id("btn-join").click()
    wait_for_event(parent, "knocked")
    assert command(parent, {"type": "visitroom:leave"})["ok"] is True
    assert wait_for_event(parent, "left")["reason"] == "left"
    # A guest frame reports only its own visit, never the others in the room.
    assert not [t for t in event_types(parent) if t.startswith("participant_")]
