"""Make the README's screenshots: `python -m tests.screenshots [out_dir]` (default docs/img).

Starts a real `visitroom serve` on 127.0.0.1 and Debian's headless Chromium (the
browser tests' fake camera and microphone), and writes:

- `dashboard.png`: the provider dashboard (1280x800) with today's visits;
- `host-phone.png`: the host on a phone (390x844) with 6 participants in the visit
  (two with a camera);
- `host-phone-people.png`: the same phone with the People panel open over the
  video (4 knocks waiting, one Respond form open), the call controls below it.

Guests are plain WebSocket clients (tests/crowd.py). Nothing leaves the machine.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from playwright.sync_api import BrowserContext, ViewportSize, expect

from tests.conftest import admin_token
from tests.crowd import Crowd
from tests.servers import ROOT
from tests.web_support import (
    WebServer,
    chromium,
    host_joins,
    knock,
    new_room_id,
    token_sign_in,
    web_server,
)

PHONE: ViewportSize = {"width": 390, "height": 844}
CAMERAS = ["Ana Alvarez", "Ben Brooks"]  # browser pages with the fake camera
PATIENTS = ["Cara Chen", "Dev Patel", "Eli Evans", "Fay Fox"]  # no camera (tests/crowd.py)
everyone = CAMERAS + PATIENTS
# Resolves once a video element shows decoded frames.
PLAYING = """(video) => new Promise((resolve) => {
  const check = () => video.getVideoPlaybackQuality().totalVideoFrames > 5
    ? resolve(true) : setTimeout(check, 100);
  check();
})"""
KNOCKS = ["Gus Green", "Hana Ito", "Ivan Ivanov", "Jo Jones"]


def dashboard(context: BrowserContext, site: WebServer, out: Path) -> None:
    for starts_in, minutes in ((-10, 30), (20, 30), (60, 45), (120, 30)):
        site.schedule(
            f"visit-{new_room_id()[2:8]}", starts_in=timedelta(minutes=starts_in), minutes=minutes
        )
    site.schedule(starts_in=timedelta(days=1, hours=2))
    page = context.new_page()
    page.goto(f"{site.url}/dashboard")
    token_sign_in(page, admin_token())
    expect(page.get_by_test_id("visit-item").first).to_be_visible()
    page.screenshot(path=str(out / "dashboard.png"))
    page.close()


def host_on_a_phone(context: BrowserContext, site: WebServer, out: Path) -> None:
    room = site.schedule()
    crowd = Crowd(site.url)
    try:
        host = context.new_page()
        host.set_viewport_size(PHONE)
        host_joins(host, site, room)
        guests = [context.new_page() for _ in CAMERAS]
        for page, name in zip(guests, CAMERAS, strict=True):
            knock(page, site, room, name)
        crowd.knock(room, PATIENTS)
        expect(host.get_by_test_id("people-badge")).to_have_text(str(len(everyone)))
        host.get_by_test_id("btn-knock-let-in").click()
        grid = host.get_by_test_id("video-grid")
        expect(grid.get_by_test_id("video-tile")).to_have_count(len(everyone) + 1)
        expect(grid.locator("[data-kind=video]")).to_have_count(len(CAMERAS), timeout=45000)
        for tile in grid.locator("[data-kind=video] video").all():
            tile.evaluate(PLAYING)
        host.screenshot(path=str(out / "host-phone.png"))
        crowd.knock(room, KNOCKS)
        expect(host.get_by_test_id("people-badge")).to_have_text(str(len(KNOCKS)))
        host.get_by_test_id("btn-people").click()
        first = host.get_by_test_id("waiting-item").first
        first.get_by_test_id("btn-respond").click()
        first.get_by_test_id("respond-message").fill("I'll be with you in 5 minutes")
        host.get_by_test_id("people-panel").evaluate("(panel) => panel.scrollTo(0, 0)")
        host.screenshot(path=str(out / "host-phone-people.png"))
        for page in [host, *guests]:
            page.close()
    finally:
        crowd.close()


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="vr-shots-"))
    try:
        with web_server(tmp) as site, chromium(tmp) as context:
            dashboard(context, site, out)
            host_on_a_phone(context, site, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"screenshots written to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "img")
