"""Reaching the SFU through a real coturn from a real Chromium in a network
namespace whose direct path is blocked (iptables), and the SFU's own side
staying on UDP: TURN over UDP, over TCP and over TLS (docs/operations.md,
"TURN"). Needs root (the lab) and coturn; the host browser is outside."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

from tests.test_web_media import own_id, wait_received
from tests.turnlab import Setup, only_through, turn_lab
from tests.web_support import host_joins, knock

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    with turn_lab(tmp_path_factory.mktemp("lab-turn")) as running:
        yield running


def guest_sees_host(setup: Setup) -> tuple[Page, Page]:
    site = setup.site
    room = site.schedule()
    host, guest = setup.host.new_page(), setup.guest.new_page()
    host_joins(host, site, room)
    knock(guest, site, room, "Pat Relayed")
    host.get_by_test_id("btn-knock-let-in").click()
    expect(guest.get_by_test_id("screen-room")).to_be_visible()
    guest.get_by_test_id("btn-stats").click()
    try:
        wait_received(guest, own_id(host), "video", "framesDecoded", 10)
    except (AssertionError, PlaywrightError):  # what the path was, and coturn's side
        print("guest:", guest.get_by_test_id("stats-connection").text_content())
        print("coturn:", setup.coturn.output()[-3000:])
        raise
    return host, guest


@pytest.mark.parametrize("path", ["udp", "tcp", "tls"])
def test_a_blocked_browser_gets_video_through_turn(setup: Setup, path: str) -> None:
    only_through(setup, path)
    host, guest = guest_sees_host(setup)
    try:
        summary = guest.get_by_test_id("stats-connection")
        expect(summary).to_have_attribute("data-local-type", "relay")
        expect(summary).to_have_attribute("data-relay-protocol", path)
        # the SFU's own side: its host candidate, on UDP (coturn relays to it)
        expect(summary).to_have_attribute("data-remote-protocol", "udp")
        expect(summary).to_contain_text(f"Relayed through a TURN server over {path.upper()}")
    finally:
        guest.close()
        host.close()
