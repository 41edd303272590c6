"""The host's room page in a real browser with a busy room (10 participants, 12 knocks):
every panel and menu keeps every control usable on a laptop and on a phone,
destructive actions ask first, "View" clears the knock card, and an unknown visit
link is reported before the camera is asked for."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.crowd import Crowd
from tests.layout import unusable_controls
from tests.web_support import Pages, WebServer, host_joins, knock, new_room_id, snap

pytestmark = pytest.mark.browser

SIZES = {"laptop": (1280, 800), "phone": (390, 844)}
JOINED, KNOCKS = 10, 12


@pytest.fixture
def crowd(site: WebServer) -> Iterator[Crowd]:
    guests = Crowd(site.url)
    yield guests
    guests.close()


def busy_room(pages: Pages, site: WebServer, crowd: Crowd, size: str = "laptop") -> Page:
    """A host page at `size` with JOINED guests let in and KNOCKS more waiting."""
    room = site.schedule()
    host = pages.new(f"host-{size}")
    width, height = SIZES[size]
    host.set_viewport_size({"width": width, "height": height})
    host_joins(host, site, room)
    crowd.knock(room, [f"Joined Person {n}" for n in range(1, JOINED + 1)])
    expect(host.get_by_test_id("people-badge")).to_have_text(str(JOINED))
    host.get_by_test_id("btn-knock-let-in").click()
    expect(host.get_by_test_id("people-badge")).to_be_hidden()
    crowd.knock(room, [f"Waiting Guest With A Long Name {n}" for n in range(1, KNOCKS + 1)])
    expect(host.get_by_test_id("people-badge")).to_have_text(str(KNOCKS))
    return host


def assert_usable(page: Page, what: str) -> None:
    problems = unusable_controls(page)
    assert problems == [], f"{what}: {problems}"


def joined_row(host: Page, name: str) -> Locator:
    return host.get_by_test_id("joined-item").filter(has=host.get_by_text(name, exact=True))


@pytest.mark.parametrize("size", SIZES)
def test_every_panel_and_menu_keeps_every_control_usable(
    pages: Pages, site: WebServer, crowd: Crowd, size: str
) -> None:
    host = busy_room(pages, site, crowd, size)
    assert_usable(host, "the room")

    host.get_by_test_id("btn-people").click()
    panel = host.get_by_test_id("people-panel")
    expect(panel.get_by_test_id("waiting-item")).to_have_count(KNOCKS)
    expect(panel.get_by_test_id("joined-item")).to_have_count(JOINED + 1)
    assert_usable(host, "the People panel")

    # The last guest's Respond form and its Reject menu, at the bottom of a long list.
    last = panel.get_by_test_id("waiting-item").last
    last.get_by_test_id("btn-respond").click()
    expect(last.get_by_test_id("respond-message")).to_be_focused()
    assert_usable(host, "the Respond form")
    last.get_by_test_id("btn-respond-menu").click()
    expect(last.get_by_test_id("btn-reject")).to_be_focused()
    assert_usable(host, "the Reject menu")
    snap(host, f"host-{size}-reject-menu")
    host.keyboard.press("Escape")

    panel.get_by_test_id("btn-people-menu").click()
    expect(host.get_by_test_id("btn-remove-all")).to_be_focused()
    assert_usable(host, "the People options menu")
    host.keyboard.press("Escape")

    row = joined_row(host, f"Joined Person {JOINED}")
    row.get_by_test_id("btn-participant-menu").click()
    expect(row.get_by_test_id("btn-pin")).to_be_focused()
    assert_usable(host, "a participant's menu")
    row.get_by_test_id("btn-remove").click()
    expect(host.get_by_test_id("confirm-dialog")).to_be_visible()
    assert_usable(host, "the Remove confirmation")
    host.get_by_test_id("btn-confirm-cancel").click()

    host.get_by_test_id("btn-leave").click()
    expect(host.get_by_test_id("btn-leave-room")).to_be_focused()
    assert_usable(host, "the Leave menu")
    host.keyboard.press("Escape")

    host.get_by_test_id("btn-breakouts").click()
    breakouts = host.get_by_test_id("breakout-panel")
    expect(breakouts).to_be_visible()
    assert_usable(host, "the Breakouts panel")
    breakouts.get_by_test_id("btn-breakout-open").click()
    expect(breakouts.get_by_test_id("breakout-assign")).to_have_count(JOINED + 1)
    assert_usable(host, "the open breakouts")
    snap(host, f"host-{size}-breakouts")

    host.get_by_test_id("btn-stats").click()
    expect(host.get_by_test_id("stats-panel")).to_be_visible()
    assert_usable(host, "the Call info panel")

    # A notification that stays (a broadcast) never lies over a panel's controls.
    host.get_by_test_id("btn-breakouts").click()
    breakouts.get_by_test_id("breakout-broadcast-text").fill("Five minutes left")
    breakouts.get_by_test_id("btn-breakout-broadcast").click()
    expect(host.get_by_test_id("broadcast-message")).to_be_visible()
    assert_usable(host, "the Breakouts panel with a notification")
    host.get_by_test_id("btn-people").click()
    assert_usable(host, "the People panel with a notification")


def test_a_guest_on_a_phone_keeps_every_control_usable(
    pages: Pages, site: WebServer, crowd: Crowd
) -> None:
    host = busy_room(pages, site, crowd)
    room = host.url.rsplit("/", 1)[-1]
    guest = pages.new("guest-phone")
    guest.set_viewport_size({"width": 390, "height": 844})
    knock(guest, site, room, "Pat Phone")
    host.get_by_test_id("btn-knock-let-in").click()
    expect(guest.get_by_test_id("screen-room")).to_be_visible()
    assert_usable(guest, "the guest's room")
    guest.get_by_test_id("btn-people").click()
    expect(guest.get_by_test_id("joined-item")).to_have_count(JOINED + KNOCKS + 2)
    assert_usable(guest, "the guest's People panel")
    joined_row(guest, f"Joined Person {JOINED}").get_by_test_id("btn-participant-menu").click()
    assert_usable(guest, "the guest's participant menu")
    guest.keyboard.press("Escape")
    guest.get_by_test_id("btn-stats").click()
    assert_usable(guest, "the guest's Call info panel")
    guest.get_by_test_id("btn-leave").click()
    assert_usable(guest, "the guest's Leave menu")


def test_remove_remove_all_and_end_for_all_ask_first(
    pages: Pages, site: WebServer, crowd: Crowd
) -> None:
    host = busy_room(pages, site, crowd)
    host.get_by_test_id("btn-people").click()
    joined = host.get_by_test_id("joined-list").get_by_test_id("joined-item")
    dialog = host.get_by_test_id("confirm-dialog")

    # Remove: the dialog names the person; Cancel (and Escape) change nothing.
    first = joined_row(host, "Joined Person 1")
    first.get_by_test_id("btn-participant-menu").click()
    first.get_by_test_id("btn-remove").click()
    expect(dialog).to_be_visible()
    expect(dialog).to_have_attribute("data-action", "remove")
    expect(dialog).to_have_attribute("role", "alertdialog")
    expect(host.get_by_test_id("confirm-text")).to_contain_text("Joined Person 1")
    expect(host.get_by_test_id("btn-confirm-cancel")).to_be_focused()
    host.get_by_test_id("btn-confirm-cancel").click()
    expect(dialog).to_be_hidden()
    second = joined_row(host, "Joined Person 2")
    second.get_by_test_id("btn-participant-menu").click()
    second.get_by_test_id("btn-remove").click()
    expect(dialog).to_be_visible()
    host.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    host.get_by_test_id("btn-people-menu").click()
    host.get_by_test_id("btn-remove-all").click()
    expect(dialog).to_have_attribute("data-action", "remove-all")
    expect(host.get_by_test_id("confirm-text")).to_contain_text(f"{JOINED} participants")
    host.get_by_test_id("btn-confirm-cancel").click()

    host.get_by_test_id("btn-leave").click()
    host.get_by_test_id("btn-end-for-all").click()
    expect(dialog).to_have_attribute("data-action", "end-for-all")
    host.get_by_test_id("btn-confirm-cancel").click()

    # Confirming one removal (a round trip to the server) shows the cancels sent nothing.
    third = joined_row(host, "Joined Person 3")
    third.get_by_test_id("btn-participant-menu").click()
    third.get_by_test_id("btn-remove").click()
    expect(host.get_by_test_id("btn-confirm")).to_have_text("Remove")
    host.get_by_test_id("btn-confirm").click()
    expect(joined).to_have_count(JOINED)
    expect(third).to_have_count(0)
    expect(first).to_have_count(1)
    expect(second).to_have_count(1)
    expect(host.get_by_test_id("waiting-item")).to_have_count(KNOCKS)

    host.get_by_test_id("btn-people-menu").click()
    host.get_by_test_id("btn-remove-all").click()
    host.get_by_test_id("btn-confirm").click()
    expect(joined).to_have_count(1)

    host.get_by_test_id("btn-leave").click()
    host.get_by_test_id("btn-end-for-all").click()
    host.get_by_test_id("btn-confirm").click()
    expect(host.get_by_test_id("screen-left")).to_have_attribute("data-reason", "ended")


@pytest.mark.parametrize("size", SIZES)
def test_view_opens_people_and_the_knock_card_goes_away(
    pages: Pages, site: WebServer, crowd: Crowd, size: str
) -> None:
    room = site.schedule()
    host = pages.new("host")
    width, height = SIZES[size]
    host.set_viewport_size({"width": width, "height": height})
    host_joins(host, site, room)
    crowd.knock(room, ["Kim Knock"])
    toast = host.get_by_test_id("knock-toast")
    expect(toast).to_be_visible()
    host.get_by_test_id("btn-knock-view").click()
    expect(host.get_by_test_id("people-panel")).to_be_visible()
    expect(host.get_by_test_id("waiting-item")).to_have_count(1)
    expect(toast).to_be_hidden()
    assert_usable(host, "People after View")
    # Closing the panel does not bring the card back for the same knock; a new knock does.
    host.get_by_test_id("btn-close-people").click()
    expect(toast).to_be_hidden()
    crowd.knock(room, ["Lee Later"])
    expect(host.get_by_test_id("knock-text")).to_have_text("Kim Knock and 1 other are waiting")
    expect(toast).to_be_visible()


NOT_FOUND_LOG = "Failed to load resource: the server responded with a status of 404 (Not Found)"


def test_a_knock_does_not_close_the_menu_the_host_has_open(
    pages: Pages, site: WebServer, crowd: Crowd
) -> None:
    host = busy_room(pages, site, crowd)
    host.get_by_test_id("btn-people").click()
    row = joined_row(host, "Joined Person 1")
    row.get_by_test_id("btn-participant-menu").click()
    expect(row.get_by_test_id("btn-pin")).to_be_focused()
    room = host.url.rsplit("/", 1)[-1]
    crowd.knock(room, ["Nell Newcomer"])
    expect(host.get_by_test_id("people-badge")).to_have_text(str(KNOCKS + 1))
    # The list waits while the menu is open: the item is still there, focused, usable.
    expect(row.get_by_test_id("btn-pin")).to_be_focused()
    row.get_by_test_id("btn-remove").click()
    expect(host.get_by_test_id("confirm-text")).to_contain_text("Joined Person 1")
    host.get_by_test_id("btn-confirm-cancel").click()
    # Closed, the list catches up, and focus is back on the (re-rendered) menu button.
    expect(row.get_by_test_id("btn-participant-menu")).to_be_focused()
    expect(host.get_by_test_id("waiting-item")).to_have_count(KNOCKS + 1)
    expect(host.get_by_test_id("waiting-name").last).to_have_text("Nell Newcomer")


COUNT_CAMERA_REQUESTS = """
window.cameraRequests = 0;
const realGetUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = (constraints) => {
  window.cameraRequests += 1;
  return realGetUserMedia(constraints);
};
"""


def test_an_unknown_visit_is_reported_before_the_camera_is_asked_for(
    pages: Pages, site: WebServer
) -> None:
    guest = pages.new("guest")
    guest.add_init_script(COUNT_CAMERA_REQUESTS)
    guest.goto(f"{site.url}/r/{new_room_id()}")
    expect(guest.get_by_test_id("screen-error")).to_have_attribute("data-code", "not_found")
    expect(guest.get_by_test_id("error-message")).to_contain_text("Check the link")
    expect(guest.get_by_test_id("btn-join")).to_have_count(0)
    assert guest.evaluate("window.cameraRequests") == 0
    # The browser logs the window endpoint's 404; that one is expected.
    assert [e for e in pages.errors if "404" in e] == [f"guest: {NOT_FOUND_LOG}"]
    pages.errors.remove(f"guest: {NOT_FOUND_LOG}")

    # The same page for a real visit does ask (the count above can tell).
    guest.goto(f"{site.url}/r/{site.schedule()}")
    expect(guest.get_by_test_id("input-name")).to_be_visible()
    guest.wait_for_function("window.cameraRequests >= 1")
