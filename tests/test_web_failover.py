"""A real browser call survives the loss of the SFU workers: the server re-opens the
participants on restarted workers, says `media_closed`, and the SDK offers again."""

from __future__ import annotations

import contextlib

import psutil
import pytest
from playwright.sync_api import Page, expect

from tests.test_web_media import own_id, wait_received
from tests.web_support import Pages, WebServer, host_joins, knock

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def frames_from(page: Page, sender: str) -> int:
    """framesDecoded of `sender`'s video as the Call info panel (getStats) shows it now."""
    value = page.evaluate(
        """(sender) => Math.max(0, ...[...document.querySelectorAll(
              '[data-testid=stats-row][data-direction=in][data-kind=video]')]
            .filter((row) => row.dataset.participantId === sender)
            .map((row) => Number(row.dataset.framesDecoded)))""",
        sender,
    )
    return int(value)


def kill_workers(site: WebServer) -> int:
    assert site.process.proc is not None
    killed = 0
    for child in psutil.Process(site.process.proc.pid).children():
        with contextlib.suppress(psutil.Error):
            if "sfu.workers.worker" in " ".join(child.cmdline()):
                child.kill()
                killed += 1
    return killed


def test_video_comes_back_by_itself_after_the_workers_die(pages: Pages, site: WebServer) -> None:
    room = site.schedule()
    host, guest = pages.new("host"), pages.new("guest")
    host_joins(host, site, room)
    knock(guest, site, room, "Pat Failover")
    host.get_by_test_id("btn-knock-let-in").click()
    expect(guest.get_by_test_id("screen-room")).to_be_visible()
    guest_id = own_id(guest)
    host.get_by_test_id("btn-stats").click()
    wait_received(host, guest_id, "video", "framesDecoded", 10)

    assert kill_workers(site) >= 1, "the server runs SFU worker processes"
    for page in (host, guest):  # the SDK saw media_closed (worker_lost) and re-offers
        expect(page.get_by_test_id("screen-room")).to_have_attribute(
            "data-media", "reconnecting", timeout=10_000
        )
    for page in (host, guest):
        expect(page.get_by_test_id("screen-room")).to_have_attribute(
            "data-media", "connected", timeout=45_000
        )
    before = frames_from(host, guest_id)
    host.wait_for_function(
        """([sender, least]) => [...document.querySelectorAll(
              '[data-testid=stats-row][data-direction=in][data-kind=video]')]
            .some((row) => row.dataset.participantId === sender
                           && Number(row.dataset.framesDecoded) >= least)""",
        arg=[guest_id, before + 10],
        timeout=45_000,
    )
    assert not host.get_by_test_id("screen-waiting").is_visible(), "nobody knocked again"
    assert not guest.get_by_test_id("screen-waiting").is_visible()
