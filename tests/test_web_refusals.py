"""A guest turned away in a real browser: the host sees who may not knock again and
lets them back with "Allow again" (the guest side uses the SDK with a guest token)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import token
from tests.web_support import Pages, WebServer, host_joins

pytestmark = pytest.mark.browser

CONNECT = """async ([roomId, token]) => {
  const { VisitRoom } = await import("/sdk/visitroom.js");
  const room = new VisitRoom({ roomId, token, resume: false });
  try {
    const welcome = await room.connect();
    window.visit = room;
    return welcome.status;
  } catch (error) {
    return error.code;
  }
}"""


def knock_with_token(page: Page, site: WebServer, room: str) -> str:
    """Pat knocks with a guest token of their own; the `welcome` status or the error code."""
    page.goto(f"{site.url}/r/{room}")  # a page of the server's origin, to load the SDK
    result = page.evaluate(CONNECT, [room, token(room, "pat", "guest", "Pat")])
    return str(result)


def test_a_rejected_guest_is_refused_until_the_host_allows_them_again(
    pages: Pages, site: WebServer
) -> None:
    room = site.schedule()
    host = pages.new("host")
    host_joins(host, site, room)
    pat = pages.new("pat")
    assert knock_with_token(pat, site, room) == "waiting"

    host.get_by_test_id("btn-people").click()
    item = host.get_by_test_id("waiting-item").filter(has_text="Pat")
    item.get_by_test_id("btn-respond").click()
    item.get_by_test_id("btn-respond-menu").click()
    item.get_by_test_id("btn-reject").click()
    refused = host.get_by_test_id("refused-item")
    expect(refused).to_have_count(1)
    expect(refused.get_by_test_id("refused-name")).to_have_text("Pat")
    expect(refused).to_contain_text("Rejected")

    assert knock_with_token(pages.new("pat-again"), site, room) == "knock_refused"
    refused.get_by_test_id("btn-allow-knock").click()
    expect(host.get_by_test_id("refused-section")).to_be_hidden()
    expect(host.get_by_test_id("announcer")).to_contain_text("Pat may knock again")
    assert knock_with_token(pages.new("pat-third"), site, room) == "waiting"
    expect(host.get_by_test_id("waiting-item").filter(has_text="Pat")).to_have_count(1)
