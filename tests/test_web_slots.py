"""More video in a real browser: the reference client receives 8 video slots (9 tiles
with its own), and a participant the SFU has no slot for is shown as such, not as if
their camera were off, while one whose camera is off is shown so even with every slot
taken (the server's `publishers`). The other publishers are synthetic (real ICE +
DTLS-SRTP)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.crowd import Crowd
from tests.web_support import Pages, WebServer, host_joins, knock, snap

pytestmark = pytest.mark.browser

PUBLISHERS = 10
VIDEO_SLOTS = 8


@pytest.fixture
def crowd(site: WebServer) -> Iterator[Crowd]:
    guests = Crowd(site.url)
    yield guests
    guests.close()


def test_nine_tiles_and_no_slot_is_not_camera_off(
    pages: Pages, site: WebServer, crowd: Crowd
) -> None:
    room = site.schedule()
    host = pages.new("host")
    host_joins(host, site, room)
    crowd.knock(room, [f"Publisher {n}" for n in range(1, PUBLISHERS + 1)] + ["Quiet Guest"])
    expect(host.get_by_test_id("people-badge")).to_have_text(str(PUBLISHERS + 1))
    host.get_by_test_id("btn-knock-let-in").click()
    grid = host.get_by_test_id("video-grid")
    tiles = grid.get_by_test_id("video-tile")

    # Nobody sends video yet and the slots are free: everyone is shown with the camera off.
    expect(grid.locator("[data-kind=avatar]")).to_have_count(PUBLISHERS + 1)
    expect(grid.locator("[data-kind=avatar]").first.get_by_test_id("tile-status")).to_have_text(
        "Camera off"
    )

    crowd.publish(0, PUBLISHERS)
    video = grid.locator("[data-testid=video-tile][data-kind=video]")
    expect(video).to_have_count(VIDEO_SLOTS, timeout=20000)
    ids = {video.nth(n).get_attribute("data-participant-id") for n in range(VIDEO_SLOTS)}
    assert len(ids) == VIDEO_SLOTS, "eight different publishers fill the eight slots"
    expect(grid.locator("[data-kind=self], [data-kind=video]")).to_have_count(VIDEO_SLOTS + 1)

    # Every slot is taken: the two publishers left over are shown without a slot, and
    # the guest without a camera as camera off (the server says who sends video).
    no_slot = grid.locator("[data-kind=no-slot]")
    expect(no_slot).to_have_count(PUBLISHERS - VIDEO_SLOTS)
    expect(no_slot.get_by_test_id("tile-status")).to_have_text(["No video slot"] * 2)
    camera_off = grid.locator("[data-kind=avatar]")
    expect(camera_off).to_have_count(1)
    expect(camera_off.get_by_test_id("tile-name")).to_have_text("Quiet Guest")
    expect(camera_off.get_by_test_id("tile-status")).to_have_text("Camera off")
    assert tiles.count() == VIDEO_SLOTS + 1 + PUBLISHERS - VIDEO_SLOTS + 1
    snap(host, "host-nine-tiles")

    # A publisher in a slot turns its camera off: it is shown as camera off, and one
    # left over takes its slot.
    index = next(n for n in range(PUBLISHERS) if crowd.participant_id(n) in ids)
    crowd.camera_off(index)
    gone = grid.locator(f"[data-participant-id='{crowd.participant_id(index)}']")
    expect(gone.get_by_test_id("tile-status")).to_have_text("Camera off", timeout=20000)
    expect(gone).to_have_attribute("data-kind", "avatar")
    expect(camera_off).to_have_count(2)
    expect(video).to_have_count(VIDEO_SLOTS)
    expect(no_slot).to_have_count(PUBLISHERS - VIDEO_SLOTS - 1)


def test_a_guest_who_turns_the_camera_off_is_shown_with_the_camera_off(
    pages: Pages, site: WebServer
) -> None:
    room = site.schedule()
    host = pages.new("host")
    host_joins(host, site, room)
    guest = pages.new("guest")
    knock(guest, site, room, "Pat Doe")
    host.get_by_test_id("btn-knock-let-in").click()
    expect(guest.get_by_test_id("screen-room")).to_be_visible()
    pat = host.get_by_test_id("video-grid").locator("[data-kind=video], [data-kind=avatar]")
    expect(pat).to_have_attribute("data-kind", "video", timeout=20000)

    # Chromium stops sending (not black frames): the host sees the camera off, not a
    # frozen or black tile, within a few seconds.
    guest.get_by_test_id("btn-camera").click()
    expect(guest.get_by_test_id("btn-camera")).to_have_attribute("data-state", "off")
    expect(pat).to_have_attribute("data-kind", "avatar", timeout=15000)
    expect(pat.get_by_test_id("tile-status")).to_have_text("Camera off")
    expect(pat.get_by_test_id("tile-name")).to_have_text("Pat Doe")

    guest.get_by_test_id("btn-camera").click()
    expect(pat).to_have_attribute("data-kind", "video", timeout=15000)
