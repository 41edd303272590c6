"""A reload in a real browser: the tab keeps its session (sessionStorage, never
localStorage or a URL) and resumes on load, in the waiting room and in the call,
so the host sees no new knock, no ghost and one tile."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Page, WebSocket, expect

from tests.test_web_media import own_id, wait_received
from tests.web_support import Pages, WebServer, host_joins, knock

pytestmark = pytest.mark.browser


class Frames:
    """The room-socket frames a page sent and received, across reloads."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.sockets = 0
        self.received: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        page.on("websocket", self._socket)

    def _socket(self, ws: WebSocket) -> None:
        if "/v1/rooms/" not in ws.url:
            return
        self.sockets += 1
        ws.on("framereceived", lambda payload: self.received.append(json.loads(payload)))
        ws.on("framesent", lambda payload: self.sent.append(json.loads(payload)))

    def got(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m.get("type") == kind]

    def hellos(self) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("type") == "hello"]

    def wait_for(self, what: Callable[[], bool], timeout_s: float = 15.0) -> None:
        """Let the page run (and Playwright deliver frames) until `what` holds."""
        deadline = time.monotonic() + timeout_s
        while not what():
            assert time.monotonic() < deadline, f"timed out; received {self.received}"
            self.page.wait_for_timeout(50)


def stored_session(page: Page, room: str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(
        page.evaluate("(key) => sessionStorage.getItem(key)", f"visitroom.session.{room}")
    )
    return record


@dataclass
class Visit:
    room: str
    host: Page
    guest: Page
    host_frames: Frames
    guest_frames: Frames


def guest_waits(pages: Pages, site: WebServer, name: str) -> Visit:
    """A host in a new room, and a guest `name` knocking on it (both pages recorded)."""
    room = site.schedule()
    host, guest = pages.new("host"), pages.new("guest")
    visit = Visit(room, host, guest, Frames(host), Frames(guest))
    host_joins(host, site, room)
    knock(guest, site, room, name)
    return visit


def test_a_reload_in_the_waiting_room_keeps_the_place_and_the_name(
    pages: Pages, site: WebServer
) -> None:
    visit = guest_waits(pages, site, "Pat Reload")
    room, host, guest = visit.room, visit.host, visit.guest
    host_frames, guest_frames = visit.host_frames, visit.guest_frames
    expect(host.get_by_test_id("people-badge")).to_have_text("1")
    guest_id = guest_frames.got("welcome")[0]["participant_id"]
    assert stored_session(guest, room)["name"] == "Pat Reload"

    guest.reload()
    expect(guest.get_by_test_id("screen-waiting")).to_be_visible()
    guest_frames.wait_for(lambda: len(guest_frames.got("welcome")) == 2)
    assert guest_frames.got("welcome")[1]["participant_id"] == guest_id
    assert [set(h) for h in guest_frames.hellos()] == [{"type", "name"}, {"type", "resume"}]
    assert guest.url == f"{site.url}/r/{room}"
    assert guest.evaluate("localStorage.length") == 0
    token = guest_frames.got("welcome")[1]["resume_token"]
    assert not [url for url in pages.requests if token in url]

    # The host saw one knock and no one leaving the lobby; the name is the one typed.
    expect(host.get_by_test_id("people-badge")).to_have_text("1")
    assert len(host_frames.got("knock")) == 1 and not host_frames.got("lobby_left")
    host.get_by_test_id("btn-knock-let-in").click()
    expect(guest.get_by_test_id("screen-room")).to_be_visible()
    host.get_by_test_id("btn-people").click()
    expect(host.get_by_test_id("joined-item").filter(has_text="Pat Reload")).to_have_count(1)
    assert own_id(guest) == guest_id


def test_a_reload_in_the_call_comes_back_with_media_and_one_tile(
    pages: Pages, site: WebServer
) -> None:
    visit = guest_waits(pages, site, "Pat Call")
    host, guest = visit.host, visit.guest
    host_frames, guest_frames = visit.host_frames, visit.guest_frames
    host.get_by_test_id("btn-knock-let-in").click()
    expect(guest.get_by_test_id("screen-room")).to_be_visible()
    host_id, guest_id = own_id(host), own_id(guest)
    host.get_by_test_id("btn-stats").click()
    wait_received(host, guest_id, "video", "framesDecoded", 10)
    before = guest_video_frames(host, guest_id)

    guest.reload()
    expect(guest.get_by_test_id("screen-room")).to_be_visible()
    assert own_id(guest) == guest_id
    guest.get_by_test_id("btn-stats").click()
    wait_received(guest, host_id, "video", "framesDecoded", 10)
    wait_received(host, guest_id, "video", "framesDecoded", before + 30)
    tiles = host.locator(f"[data-testid=video-tile][data-participant-id='{guest_id}']")
    expect(tiles).to_have_count(1)
    expect(tiles).to_have_attribute("data-kind", "video")
    assert guest_frames.got("welcome")[-1]["participant_id"] == guest_id
    assert not host_frames.got("participant_left")
    assert len(host_frames.got("participant_joined")) == 1


def guest_video_frames(host: Page, guest_id: str) -> int:
    frames: int = host.evaluate(
        """(pid) => Math.max(0, ...[...document.querySelectorAll(
              '[data-testid=stats-row][data-direction=in][data-kind=video]')]
            .filter((row) => row.dataset.participantId === pid)
            .map((row) => Number(row.dataset.framesDecoded)))""",
        guest_id,
    )
    return frames


def test_a_duplicated_tab_takes_the_session_and_the_first_one_stops(
    pages: Pages, site: WebServer
) -> None:
    """A duplicated tab starts with a copy of sessionStorage: it resumes, and the first
    tab is told its place moved (it does not try to take it back)."""
    visit = guest_waits(pages, site, "Pat Twice")
    room, host, first, second = visit.room, visit.host, visit.guest, pages.new("second")
    host_frames, first_frames = visit.host_frames, visit.guest_frames
    key = f"visitroom.session.{room}"
    copy = first.evaluate("(key) => sessionStorage.getItem(key)", key)
    second.goto(f"{site.url}/dashboard")  # same origin: set the copy, as a duplicate has it
    second.evaluate("([key, value]) => sessionStorage.setItem(key, value)", [key, copy])
    second.goto(f"{site.url}/r/{room}")
    expect(second.get_by_test_id("screen-waiting")).to_be_visible()
    expect(first.get_by_test_id("screen-replaced")).to_be_visible()
    expect(first.get_by_test_id("replaced-message")).to_contain_text("another tab or window")
    assert first_frames.got("replaced") and first_frames.sockets == 1
    assert first.evaluate("(key) => sessionStorage.getItem(key)", key) is None
    expect(host.get_by_test_id("people-badge")).to_have_text("1")
    assert len(host_frames.got("knock")) == 1


def test_a_session_the_server_no_longer_knows_knocks_again_with_the_name_kept(
    pages: Pages, site: WebServer
) -> None:
    """Past the resume window (here: a token the server never issued), the page starts
    over by itself: a new knock under the name the guest typed before."""
    room = site.schedule()
    host, guest = pages.new("host"), pages.new("guest")
    host_frames, guest_frames = Frames(host), Frames(guest)
    host_joins(host, site, room)
    kept = {"v": 1, "resume": "x" * 43, "participantId": "p_gone", "role": "guest"}
    kept |= {"name": "Pat Late", "data": {"cameraOn": False}, "droppedAt": None}
    guest.goto(f"{site.url}/dashboard")  # same origin, to write the tab's storage
    guest.evaluate(
        "([key, value]) => sessionStorage.setItem(key, value)",
        [f"visitroom.session.{room}", json.dumps(kept)],
    )
    guest.goto(f"{site.url}/r/{room}")
    expect(guest.get_by_test_id("screen-waiting")).to_be_visible()
    assert [set(h) for h in guest_frames.hellos()] == [{"type", "resume"}, {"type", "name"}]
    assert guest_frames.hellos()[1]["name"] == "Pat Late"
    expect(host.get_by_test_id("knock-text")).to_have_text("Pat Late wants to join")
    assert len(host_frames.got("knock")) == 1
    record = stored_session(guest, room)
    assert record["participantId"] != "p_gone" and record["data"]["cameraOn"] is False


def test_a_tab_that_goes_from_the_guest_link_to_the_host_link_joins_as_host(
    pages: Pages, site: WebServer
) -> None:
    visit = guest_waits(pages, site, "Dr Also")
    tab, room = visit.guest, visit.room
    tab.goto(site.host_url(visit.room, identity="dr-two", name="Dr Two"))
    tab.get_by_test_id("btn-skip-test").click()
    tab.get_by_test_id("btn-join").click()
    expect(tab.get_by_test_id("screen-room")).to_be_visible()
    assert visit.guest_frames.got("welcome")[-1]["role"] == "host"
    assert stored_session(tab, room)["role"] == "host"
