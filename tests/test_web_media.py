"""Media in a real browser through the SFU: video and audio decoded both ways
(getStats), screen sharing, and the pre-call test's verdict."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.web_support import (
    Pages,
    WebServer,
    guest_precall,
    host_joins,
    knock,
    snap,
)

pytestmark = pytest.mark.browser


def own_id(page: Page) -> str:
    pid: str = (
        page.get_by_test_id("video-grid")
        .locator("[data-kind=self]")
        .get_attribute("data-participant-id")
        or ""
    )
    assert pid.startswith("p_")
    return pid


def wait_received(page: Page, sender: str, kind: str, counter: str, at_least: int) -> None:
    """Wait until the Call info panel (getStats) shows `counter` >= at_least from `sender`."""
    page.wait_for_function(
        """([sender, kind, counter, least]) => [...document.querySelectorAll(
              `[data-testid=stats-row][data-direction=in][data-kind=${kind}]`)]
            .some((row) => row.dataset.participantId === sender
                           && Number(row.dataset[counter]) >= least)""",
        arg=[sender, kind, counter, at_least],
        timeout=20000,
    )


def test_video_and_audio_are_decoded_both_ways(pages: Pages, site: WebServer) -> None:
    room = site.schedule()
    host, guest = pages.new("host"), pages.new("guest")
    host_joins(host, site, room)
    knock(guest, site, room, "Pat Media")
    host.get_by_test_id("btn-knock-let-in").click()
    expect(guest.get_by_test_id("screen-room")).to_be_visible()
    host_id, guest_id = own_id(host), own_id(guest)

    for page in (host, guest):
        page.get_by_test_id("btn-stats").click()
        expect(page.get_by_test_id("stats-panel")).to_be_visible()
    wait_received(host, guest_id, "video", "framesDecoded", 10)
    wait_received(guest, host_id, "video", "framesDecoded", 10)
    wait_received(host, guest_id, "audio", "packetsReceived", 20)
    wait_received(guest, host_id, "audio", "packetsReceived", 20)
    expect(host.get_by_test_id("media-notice")).to_be_hidden()

    # The slot's video tile carries the sender's name and plays.
    tile = guest.locator(
        f"[data-testid=video-tile][data-kind=video][data-participant-id='{host_id}']"
    )
    expect(tile.get_by_test_id("tile-name")).to_have_text("Dr Smith")
    guest.wait_for_function(
        "(el) => el.querySelector('video').getVideoPlaybackQuality().totalVideoFrames > 5",
        arg=tile.element_handle(),
    )
    host.get_by_test_id("btn-close-stats").click()
    # The SFU names a dominant speaker (both fake microphones beep): one tile is lit.
    expect(host.locator("[data-testid=video-tile][data-active-speaker=true]")).to_have_count(
        1, timeout=15000
    )
    snap(host, "host-video")

    # Pinning the guest is accepted by the media plane.
    host.get_by_test_id("btn-people").click()
    row = host.get_by_test_id("joined-item").filter(has_text="Pat Media")
    row.get_by_test_id("btn-participant-menu").click()
    row.get_by_test_id("btn-pin").click()
    expect(host.get_by_test_id("announcer")).to_have_text("Pinned Pat Media.")

    # Removing the guest cuts its media: the host's slot for it empties.
    row.get_by_test_id("btn-participant-menu").click()
    row.get_by_test_id("btn-remove").click()
    host.get_by_test_id("btn-confirm").click()  # the confirmation dialog
    expect(guest.get_by_test_id("left-message")).to_have_text("You've left the room")
    expect(
        host.locator(f"[data-testid=video-tile][data-participant-id='{guest_id}']")
    ).to_have_count(0)


def test_a_shared_screen_reaches_the_other_side(pages: Pages, site: WebServer) -> None:
    room = site.schedule()
    host, guest = pages.new("host"), pages.new("guest")
    host_joins(host, site, room)
    knock(guest, site, room, "Sam Screen")
    host.get_by_test_id("btn-knock-let-in").click()
    expect(guest.get_by_test_id("screen-room")).to_be_visible()
    host_id = own_id(host)

    host.get_by_test_id("btn-screen").click()
    expect(host.get_by_test_id("btn-screen")).to_have_text("Stop sharing")
    expect(host.locator("[data-testid=video-tile][data-kind=screen]")).to_be_visible()
    host_tiles = guest.locator(
        f"[data-testid=video-tile][data-kind=video][data-participant-id='{host_id}']"
    )
    expect(host_tiles).to_have_count(2)  # camera and screen
    screen_tile = host_tiles.and_(guest.locator("[data-source=screen]"))
    expect(screen_tile.get_by_test_id("tile-name")).to_have_text("Dr Smith (screen)")
    guest.get_by_test_id("btn-stats").click()
    guest.wait_for_function(
        """(sender) => [...document.querySelectorAll(
              "[data-testid=stats-row][data-direction=in][data-kind=video]")]
            .filter((row) => row.dataset.participantId === sender
                             && Number(row.dataset.framesDecoded) > 0).length === 2""",
        arg=host_id,
        timeout=20000,
    )
    host.get_by_test_id("btn-screen").click()
    expect(host_tiles).to_have_count(1, timeout=10000)


def test_the_precall_test_gives_a_verdict_on_each_check(pages: Pages, site: WebServer) -> None:
    room = site.schedule()
    guest = pages.new("precall")
    guest.goto(f"{site.url}/r/{room}")
    guest.get_by_test_id("input-name").fill("Tess Test")
    guest.get_by_test_id("btn-run-test").click()
    expect(guest.get_by_test_id("precall-progress")).to_be_visible()
    expect(guest.get_by_test_id("precall-verdict")).to_be_visible(timeout=30000)
    for check in ("camera", "microphone", "connection", "bitrate"):
        expect(guest.get_by_test_id(f"verdict-{check}")).to_have_attribute("data-status", "ok")
    expect(guest.get_by_test_id("precall-verdict")).to_have_text("Everything looks good.")
    expect(guest.get_by_test_id("verdict-bitrate")).to_contain_text("kbps")
    expect(guest.get_by_test_id("btn-join")).to_be_focused()
    snap(guest, "guest-precall-verdict", full_page=True)


def test_the_precall_test_says_when_the_camera_is_off_the_air(
    pages: Pages, site: WebServer
) -> None:
    """A guest who denied the camera: the test still runs and the camera check fails."""
    guest = pages.new("no-camera")
    guest.add_init_script(
        """{
          const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
          navigator.mediaDevices.getUserMedia = (c) => real({...c, video: false});
        }"""
    )
    guest_precall(guest, f"{site.url}/r/{site.schedule()}", "Nora NoCam")
    guest.get_by_test_id("btn-run-test").click()
    expect(guest.get_by_test_id("precall-verdict")).to_be_visible(timeout=30000)
    expect(guest.get_by_test_id("verdict-camera")).to_have_attribute("data-status", "fail")
    expect(guest.get_by_test_id("verdict-microphone")).to_have_attribute("data-status", "ok")
    expect(guest.get_by_test_id("precall-verdict")).to_have_attribute("data-status", "fail")
