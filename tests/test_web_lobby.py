"""The waiting room in a real browser: knock, hold, reject, let in all, remove,
remove all, end for all, hostile names, and the join window pages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.web_support import (
    REJECTED_TEXT,
    TIMEZONE,
    Pages,
    TcpProxy,
    WebServer,
    guest_precall,
    host_joins,
    knock,
    snap,
)

pytestmark = pytest.mark.browser

XSS_NAME = "<img src=x onerror=alert(1)>"
HOLD_MESSAGE = "I'll be with you in 5 minutes"


def waiting_item(host: Page, name: str) -> Locator:
    return host.get_by_test_id("waiting-item").filter(has_text=name)


def test_knock_hold_reject_let_in_all_remove_and_remove_all(pages: Pages, site: WebServer) -> None:
    room = site.schedule()
    host = pages.new("host")
    host_joins(host, site, room)
    assert "#" not in host.url and "token" not in host.url  # the fragment is scrubbed

    pat, bob = pages.new("pat"), pages.new("bob")
    guest_precall(pat, f"{site.url}/r/{room}", XSS_NAME)
    snap(pat, "guest-precall", full_page=True)
    pat.get_by_test_id("btn-join").click()
    expect(pat.get_by_test_id("screen-waiting")).to_be_visible()
    expect(pat.get_by_test_id("waiting-title")).to_have_text("Waiting for the host to let you in")

    # The knock: a notification with "Let in", announced to screen readers.
    toast = host.get_by_test_id("knock-toast")
    expect(toast).to_be_visible()
    expect(host.get_by_test_id("knock-text")).to_have_text(f"{XSS_NAME} wants to join")
    expect(host.get_by_test_id("btn-knock-let-in")).to_be_visible()
    expect(host.get_by_test_id("announcer")).to_contain_text(f"{XSS_NAME} is waiting to join")
    knock(bob, site, room, "Bob Guest")
    expect(host.get_by_test_id("knock-text")).to_have_text(f"{XSS_NAME} and 1 other are waiting")
    expect(host.get_by_test_id("people-badge")).to_have_text("2")

    host.get_by_test_id("btn-people").click()
    panel = host.get_by_test_id("people-panel")
    expect(panel.get_by_test_id("waiting-item")).to_have_count(2)
    expect(waiting_item(host, XSS_NAME).get_by_test_id("waiting-name")).to_have_text(XSS_NAME)
    snap(host, "host-people-panel-knock")

    # Respond -> Put on hold with a message; the guest sees it and cannot reply.
    pat_item = waiting_item(host, XSS_NAME)
    pat_item.get_by_test_id("btn-respond").click()
    expect(pat_item.get_by_test_id("respond-message")).to_be_focused()
    pat_item.get_by_test_id("respond-message").fill(HOLD_MESSAGE)
    pat_item.get_by_test_id("btn-put-on-hold").click()
    expect(pat.get_by_test_id("hold-notice")).to_be_visible()
    expect(pat.get_by_test_id("hold-message")).to_be_visible()
    expect(pat.get_by_test_id("hold-message")).to_have_text(HOLD_MESSAGE)
    waiting_screen = pat.get_by_test_id("screen-waiting")
    expect(waiting_screen.locator("input, textarea, [contenteditable]")).to_have_count(0)
    expect(waiting_screen.get_by_role("button")).to_have_text(["Leave"])
    expect(waiting_item(host, XSS_NAME).get_by_test_id("waiting-status")).to_contain_text("On hold")
    snap(pat, "guest-on-hold")

    # Respond -> menu -> Reject, with the keyboard; Bob sees exactly the protocol text.
    bob_item = waiting_item(host, "Bob Guest")
    bob_item.get_by_test_id("btn-respond").click()
    menu = bob_item.get_by_test_id("btn-respond-menu")
    menu.focus()
    host.keyboard.press("Enter")
    expect(bob_item.get_by_test_id("btn-reject")).to_be_focused()
    host.keyboard.press("Enter")
    expect(bob.get_by_test_id("rejected-message")).to_have_text(REJECTED_TEXT)

    # Bob comes back as someone else; "Let in" on the knock card admits everyone waiting.
    host.get_by_test_id("btn-close-people").click()
    knock(bob, site, room, "Bob Again")
    expect(toast).to_be_visible()
    host.get_by_test_id("btn-knock-let-in").click()
    for guest in (pat, bob):
        expect(guest.get_by_test_id("screen-room")).to_be_visible()
    expect(toast).to_be_hidden()
    expect(pat.get_by_test_id("video-grid").get_by_test_id("tile-name")).to_contain_text(
        [f"{XSS_NAME} (you)", "Dr Smith", "Bob Again"]
    )

    host.get_by_test_id("btn-people").click()
    joined = host.get_by_test_id("joined-list")
    expect(joined.get_by_test_id("joined-item")).to_have_count(3)
    expect(joined.get_by_test_id("joined-name")).to_contain_text(["Dr Smith", XSS_NAME])
    assert host.locator("img[src=x]").count() == 0 and pat.locator("img[src=x]").count() == 0

    # More options -> Remove: Pat is out.
    pat_row = joined.get_by_test_id("joined-item").filter(has_text=XSS_NAME)
    pat_row.get_by_test_id("btn-participant-menu").click()
    pat_row.get_by_test_id("btn-remove").click()
    host.get_by_test_id("btn-confirm").click()  # the confirmation dialog
    expect(pat.get_by_test_id("left-message")).to_have_text("You've left the room")
    expect(pat.get_by_test_id("left-reason")).to_have_text("The host removed you from the visit.")
    expect(joined.get_by_test_id("joined-item")).to_have_count(2)

    # Panel menu -> Remove all: every guest leaves, the host stays.
    host.get_by_test_id("btn-people-menu").click()
    host.get_by_test_id("btn-remove-all").click()
    host.get_by_test_id("btn-confirm").click()  # the confirmation dialog
    expect(bob.get_by_test_id("left-message")).to_have_text("You've left the room")
    expect(joined.get_by_test_id("joined-item")).to_have_count(1)
    expect(host.get_by_test_id("screen-room")).to_be_visible()


def test_end_meeting_for_all_sends_everyone_out(pages: Pages, site: WebServer) -> None:
    room = site.schedule()
    host = pages.new("host")
    host_joins(host, site, room)
    admitted, waiting = pages.new("admitted"), pages.new("waiting")
    knock(admitted, site, room, "Ann Admitted")
    host.get_by_test_id("btn-knock-let-in").click()
    expect(admitted.get_by_test_id("screen-room")).to_be_visible()
    knock(waiting, site, room, "Wes Waiting")
    expect(host.get_by_test_id("knock-text")).to_have_text("Wes Waiting wants to join")

    host.get_by_test_id("btn-leave").click()
    expect(host.get_by_test_id("btn-leave-room")).to_be_focused()
    host.get_by_test_id("btn-end-for-all").click()
    host.get_by_test_id("btn-confirm").click()  # the confirmation dialog
    for page in (host, admitted, waiting):
        expect(page.get_by_test_id("left-message")).to_have_text("You've left the room")
        expect(page.get_by_test_id("screen-left")).to_have_attribute("data-reason", "ended")


def test_a_guest_cannot_end_the_meeting_and_leaves_alone(pages: Pages, site: WebServer) -> None:
    room = site.schedule()
    host, guest = pages.new("host"), pages.new("guest")
    host_joins(host, site, room)
    knock(guest, site, room, "Gail Guest")
    host.get_by_test_id("btn-knock-let-in").click()
    expect(guest.get_by_test_id("screen-room")).to_be_visible()
    guest.get_by_test_id("btn-leave").click()
    expect(guest.get_by_test_id("btn-end-for-all")).to_have_count(0)
    guest.get_by_test_id("btn-leave-room").click()
    expect(guest.get_by_test_id("left-message")).to_have_text("You've left the room")
    host.get_by_test_id("btn-people").click()
    expect(host.get_by_test_id("joined-item")).to_have_count(1)


def test_before_the_window_the_page_says_when_it_opens(pages: Pages, site: WebServer) -> None:
    starts_in = timedelta(hours=3)
    room = site.schedule(starts_in=starts_in)
    _, record = site.rest("GET", f"/v1/rooms/{room}")
    opens = datetime.fromisoformat(record["starts_at"].replace("Z", "+00:00")) - timedelta(
        minutes=30
    )
    expected = opens.astimezone(ZoneInfo(TIMEZONE)).strftime("%H:%M")
    guest = pages.new("early")
    guest.goto(f"{site.url}/r/{room}")  # said at once: no camera asked for, no name
    expect(guest.get_by_test_id("opens-at-message")).to_have_text(f"This visit opens at {expected}")
    expect(guest.get_by_test_id("screen-error")).to_have_count(0)
    expect(guest.get_by_test_id("btn-join")).to_have_count(0)


def test_after_the_window_the_page_says_the_visit_ended(pages: Pages, site: WebServer) -> None:
    room = site.schedule(starts_in=timedelta(hours=-6), minutes=30)
    guest = pages.new("late")
    guest.goto(f"{site.url}/r/{room}")
    expect(guest.get_by_test_id("visit-ended-message")).to_have_text("This visit has ended")
    expect(guest.get_by_test_id("btn-join")).to_have_count(0)


def test_pages_fit_a_360_pixel_phone(pages: Pages, site: WebServer) -> None:
    room = site.schedule()
    host, guest = pages.new("host"), pages.new("phone")
    guest.set_viewport_size({"width": 360, "height": 740})
    host_joins(host, site, room)
    guest_precall(guest, f"{site.url}/r/{room}", "Phoebe Phone")
    assert fits(guest)
    guest.get_by_test_id("btn-join").click()
    expect(guest.get_by_test_id("screen-waiting")).to_be_visible()
    assert fits(guest)
    host.get_by_test_id("btn-knock-let-in").click()
    expect(guest.get_by_test_id("screen-room")).to_be_visible()
    guest.get_by_test_id("btn-people").click()
    expect(guest.get_by_test_id("people-panel")).to_be_visible()
    assert fits(guest)
    for testid in ("btn-mic", "btn-camera", "btn-leave"):
        box = guest.get_by_test_id(testid).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360


def fits(page: Page) -> bool:
    width = page.evaluate("document.documentElement.scrollWidth")
    return bool(width <= page.viewport_size["width"]) if page.viewport_size else False


def test_the_guest_page_needs_a_name_and_says_so(pages: Pages, site: WebServer) -> None:
    room = site.schedule()
    guest = pages.new("nameless")
    guest_precall(guest, f"{site.url}/r/{room}", None)
    guest.get_by_test_id("btn-join").click()
    expect(guest.get_by_test_id("name-error")).to_be_visible()
    expect(guest.get_by_test_id("input-name")).to_be_focused()
    expect(guest.get_by_test_id("input-name")).to_have_attribute("aria-invalid", "true")


@pytest.fixture
def proxy(site: WebServer, pages: Pages) -> Iterator[TcpProxy]:
    relay = TcpProxy(site.process.port)
    relay.start()
    pages.also_allowed.append(relay.url)
    yield relay
    relay.stop()


def test_a_dropped_connection_resumes_in_place(
    pages: Pages, site: WebServer, proxy: TcpProxy
) -> None:
    """The guest's page goes through a relay the test cuts: the SDK resumes with its
    resume token, keeping its place in the lobby (no second knock) and in the room."""
    room = site.schedule()
    host, guest = pages.new("host"), pages.new("guest")
    host_joins(host, site, room)
    guest_precall(guest, f"{proxy.url}/r/{room}", "Rae Resume")
    guest.get_by_test_id("btn-join").click()
    expect(guest.get_by_test_id("screen-waiting")).to_be_visible()
    host.get_by_test_id("btn-people").click()
    item = waiting_item(host, "Rae Resume")
    guest_id = item.get_attribute("data-participant-id")
    item.get_by_test_id("btn-respond").click()
    item.get_by_test_id("respond-message").fill("One <i>moment</i> please")
    item.get_by_test_id("btn-put-on-hold").click()
    expect(guest.get_by_test_id("hold-message")).to_have_text("One <i>moment</i> please")

    proxy.drop_all()
    expect(guest.get_by_test_id("announcer")).to_have_text(
        "Connection lost. Reconnecting…", timeout=10000
    )
    expect(guest.get_by_test_id("announcer")).to_contain_text(
        "Message from the host: One <i>moment</i> please", timeout=10000
    )
    expect(guest.get_by_test_id("hold-message")).to_have_text("One <i>moment</i> please")
    expect(host.get_by_test_id("waiting-item")).to_have_count(1)
    assert waiting_item(host, "Rae Resume").get_attribute("data-participant-id") == guest_id

    host.get_by_test_id("btn-admit-all").click()
    expect(guest.get_by_test_id("screen-room")).to_be_visible()
    self_tile = guest.get_by_test_id("video-grid").locator("[data-kind=self]")
    expect(self_tile).to_have_attribute("data-participant-id", guest_id or "")
    proxy.drop_all()
    expect(guest.get_by_test_id("reconnecting")).to_be_visible(timeout=10000)
    expect(guest.get_by_test_id("toast-text").filter(has_text="Reconnected.")).to_be_visible(
        timeout=10000
    )
    expect(guest.get_by_test_id("screen-room")).to_be_visible()
    expect(host.get_by_test_id("joined-item")).to_have_count(2)
    host.get_by_test_id("btn-leave").click()
    host.get_by_test_id("btn-end-for-all").click()
    host.get_by_test_id("btn-confirm").click()  # the confirmation dialog
    expect(guest.get_by_test_id("left-message")).to_have_text("You've left the room")
