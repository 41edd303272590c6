"""/embed/{room_id} in a third-party page's iframe: events reach the parent by
postMessage (to its origin only), and a host token arrives by postMessage."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import FrameLocator, Page, expect

from tests.conftest import token
from tests.web_support import Pages, WebServer, host_joins

pytestmark = pytest.mark.browser


def open_parent(
    page: Page, site: WebServer, room: str, join: dict[str, Any], role: str = "guest"
) -> FrameLocator:
    src = f"{site.url}/embed/{room}?parent_origin={quote(site.parent.origin)}&role={role}"
    page.goto(f"{site.parent.origin}/parent.html?src={quote(src, safe='')}")
    page.evaluate("(join) => window.start(join)", join)
    return page.frame_locator("#visit")


def event_types(page: Page) -> list[str]:
    types: list[str] = page.evaluate("window.events.map((e) => e.type)")
    return types


def wait_for_event(page: Page, kind: str) -> dict[str, Any]:
    page.wait_for_function(f"window.events.some((e) => e.type === {kind!r})")
    found: dict[str, Any] = page.evaluate(f"window.events.find((e) => e.type === {kind!r})")
    return found


def guest_joins_in_frame(frame: FrameLocator) -> None:
    frame.get_by_test_id("btn-skip-test").click()
    frame.get_by_test_id("btn-join").click()


def test_guest_events_knocked_admitted_ended(pages: Pages, site: WebServer) -> None:
    room = site.schedule()
    host = pages.new("host")
    host_joins(host, site, room)
    parent = pages.new("parent")
    frame = open_parent(parent, site, room, {"name": "Embedded Pat"})
    expect(frame.get_by_test_id("input-name")).to_have_value("Embedded Pat")
    guest_joins_in_frame(frame)

    knocked = wait_for_event(parent, "knocked")
    assert knocked["room_id"] == room and knocked["participant_id"].startswith("p_")
    expect(host.get_by_test_id("knock-text")).to_have_text("Embedded Pat wants to join")
    host.get_by_test_id("btn-knock-let-in").click()
    expect(frame.get_by_test_id("screen-room")).to_be_visible()
    assert wait_for_event(parent, "admitted")["participant_id"] == knocked["participant_id"]

    host.get_by_test_id("btn-leave").click()
    host.get_by_test_id("btn-end-for-all").click()
    host.get_by_test_id("btn-confirm").click()  # the confirmation dialog
    expect(frame.get_by_test_id("left-message")).to_have_text("You've left the room")
    wait_for_event(parent, "ended")
    assert event_types(parent) == ["ready", "knocked", "admitted", "ended"]


def test_guest_events_rejected_and_left(pages: Pages, site: WebServer) -> None:
    room = site.schedule()
    host = pages.new("host")
    host_joins(host, site, room)
    rejected_parent, left_parent = pages.new("parent-1"), pages.new("parent-2")

    frame = open_parent(rejected_parent, site, room, {"name": "Rita Rejected"})
    guest_joins_in_frame(frame)
    wait_for_event(rejected_parent, "knocked")
    host.get_by_test_id("btn-people").click()
    item = host.get_by_test_id("waiting-item").filter(has_text="Rita Rejected")
    item.get_by_test_id("btn-respond").click()
    item.get_by_test_id("btn-respond-menu").click()
    item.get_by_test_id("btn-reject").click()
    assert (
        "contact the person who invited you"
        in wait_for_event(rejected_parent, "rejected")["message"]
    )

    frame = open_parent(left_parent, site, room, {"name": "Leo Leaves"})
    guest_joins_in_frame(frame)
    wait_for_event(left_parent, "knocked")
    frame.get_by_test_id("btn-leave-lobby").click()
    assert wait_for_event(left_parent, "left")["reason"] == "left"
    assert event_types(left_parent) == ["ready", "knocked", "left"]


def test_a_host_token_given_by_postmessage_never_touches_a_url(
    pages: Pages, site: WebServer
) -> None:
    room = site.schedule()
    host_token = token(room, "dr-embed", "host", "Dr Embed")
    parent = pages.new("parent")
    frame = open_parent(parent, site, room, {"token": host_token}, role="host")
    frame.get_by_test_id("btn-skip-test").click()
    frame.get_by_test_id("btn-join").click()
    expect(frame.get_by_test_id("screen-room")).to_be_visible()
    assert wait_for_event(parent, "admitted")["room_id"] == room
    assert not [url for url in pages.requests if host_token in url]
    frame.get_by_test_id("btn-leave").click()
    frame.get_by_test_id("btn-leave-room").click()
    assert wait_for_event(parent, "left")["reason"] == "left"
