"""Breakout rooms in a real browser: open with auto-assign, broadcast, ask for help,
visit, move by select, close with a countdown."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.web_support import Pages, WebServer, host_joins, knock

pytestmark = pytest.mark.browser


def test_open_broadcast_help_visit_move_and_close(pages: Pages, site: WebServer) -> None:
    room = site.schedule()
    host = pages.new("host")
    host_joins(host, site, room)
    ann, ben = pages.new("ann"), pages.new("ben")
    knock(ann, site, room, "Ann")
    knock(ben, site, room, "Ben")
    expect(host.get_by_test_id("knock-text")).to_have_text("Ann and 1 other are waiting")
    host.get_by_test_id("btn-knock-let-in").click()
    for guest in (ann, ben):
        expect(guest.get_by_test_id("screen-room")).to_be_visible()

    host.get_by_test_id("btn-breakouts").click()
    panel = host.get_by_test_id("breakout-panel")
    panel.get_by_test_id("breakout-names").fill("Blue\nGreen")
    expect(panel.get_by_test_id("breakout-auto")).to_be_checked()
    panel.get_by_test_id("btn-breakout-open").click()
    cards = panel.get_by_test_id("breakout-room")
    expect(cards).to_have_count(2)
    for guest in (ann, ben):
        expect(guest.get_by_test_id("breakout-banner")).to_be_visible()
    places = sorted(g.get_by_test_id("breakout-name").inner_text() for g in (ann, ben))
    assert places == ["Blue", "Green"]  # spread evenly: one each
    expect(panel.get_by_test_id("breakout-member")).to_have_count(3)  # host in main + 2

    panel.get_by_test_id("breakout-broadcast-text").fill("Five minutes left, please wrap up")
    panel.get_by_test_id("btn-breakout-broadcast").click()
    for guest in (ann, ben):
        expect(guest.get_by_test_id("broadcast-message-text")).to_have_text(
            "Five minutes left, please wrap up"
        )

    # Ann asks for help; the host joins her breakout from the notification.
    ann_room = ann.get_by_test_id("breakout-name").inner_text()
    ann.get_by_test_id("btn-ask-help").click()
    help_card = host.get_by_test_id("help-request")
    expect(help_card).to_contain_text(f"Ann asked for help in {ann_room}")
    help_card.get_by_test_id("btn-help-join").click()
    expect(host.get_by_test_id("breakout-name")).to_have_text(ann_room)
    expect(ann.get_by_test_id("video-grid").get_by_test_id("tile-name")).to_contain_text(
        ["Ann (you)", "Dr Smith"]
    )
    here = panel.get_by_test_id("breakout-room").filter(has_text="(you are here)")
    expect(here).to_contain_text(ann_room)

    # Move Ben to the main room with his select.
    ben_id = ben.evaluate("document.querySelector('[data-kind=self]').dataset.participantId")
    panel.locator(f"[data-testid=breakout-assign][data-participant-id='{ben_id}']").select_option(
        label="Main room"
    )
    expect(ben.get_by_test_id("breakout-banner")).to_be_hidden()
    expect(ben.get_by_test_id("announcer")).to_have_text("You are back in the main room.")

    # Close with a countdown: everyone still in a breakout sees the time left; then close now.
    panel.get_by_test_id("breakout-countdown").select_option("30")
    panel.get_by_test_id("btn-breakout-close").click()
    expect(ann.get_by_test_id("breakout-banner-time")).to_have_text(re.compile(r"0:(30|2\d) left"))
    expect(panel.get_by_test_id("breakout-time-left")).to_have_text(re.compile(r"Time left: 0:"))
    panel.get_by_test_id("breakout-countdown").select_option("0")
    panel.get_by_test_id("btn-breakout-close").click()
    for page in (ann, host):
        expect(page.get_by_test_id("breakout-banner")).to_be_hidden()
    expect(panel.get_by_test_id("breakout-create")).to_be_visible()
    expect(ann.get_by_test_id("video-grid").get_by_test_id("tile-name")).to_have_count(3)
