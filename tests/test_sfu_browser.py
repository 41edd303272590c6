"""A real Chromium publishes its fake camera through the SFU to another Chromium page."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

from sfu.local import LocalMedia
from tests.sfu_live import eventually, running_media
from tests.web_support import CHROMIUM, CHROMIUM_ARGS

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]


PAGE = """<!doctype html><html><body><video id="v" autoplay muted playsinline></video>
<script>
window.state = {answered: false, tracks: 0, error: null};
async function join(pid, publish) {
  try {
    const pc = new RTCPeerConnection({iceServers: []});
    window.pc = pc;
    pc.ontrack = (e) => {
      window.state.tracks += 1;
      if (e.track.kind === "video") {
        document.getElementById("v").srcObject = new MediaStream([e.track]);
      }
    };
    if (publish) {
      const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
      for (const track of stream.getTracks()) pc.addTransceiver(track, {direction: "sendonly"});
    } else {
      pc.addTransceiver("audio", {direction: "recvonly"});
      pc.addTransceiver("video", {direction: "recvonly"});
    }
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((ok) => {
      if (pc.iceGatheringState === "complete") return ok();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && ok();
      setTimeout(ok, 3000);
    });
    const reply = await fetch("/offer/" + pid, {method: "POST", body: pc.localDescription.sdp});
    if (!reply.ok) throw new Error(await reply.text());
    await pc.setRemoteDescription({type: "answer", sdp: await reply.text()});
    window.state.answered = true;
  } catch (e) { window.state.error = String(e); }
}
async function decoded() {
  const stats = await window.pc.getStats();
  let frames = 0;
  stats.forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") frames += r.framesDecoded || 0;
  });
  return frames;
}
</script></body></html>"""


@contextlib.asynccontextmanager
async def serving(html: str, **settings: Any) -> AsyncIterator[tuple[str, LocalMedia]]:
    """A LocalMedia (MediaSettings overrides) and a page at `/` whose `fetch("/offer/<pid>")`
    negotiates with it."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail("Chromium is required for the browser tests (apt-get install chromium)")
    async with running_media(**settings) as (media, _):

        async def page(request: web.Request) -> web.Response:
            return web.Response(text=html, content_type="text/html")

        async def offer(request: web.Request) -> web.Response:
            pid = request.match_info["pid"]
            await media.open("visit", "main", pid)
            return web.Response(text=await media.offer(pid, await request.text()))

        app = web.Application()
        app.router.add_get("/", page)
        app.router.add_post("/offer/{pid}", offer)
        runner = web.AppRunner(app)
        await runner.setup()
        server = web.TCPSite(runner, "127.0.0.1", 0)
        await server.start()
        port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            yield f"http://127.0.0.1:{port}/", media
        finally:
            await runner.cleanup()


@contextlib.asynccontextmanager
async def alice_and_bob(url: str, profile: Path) -> AsyncIterator[tuple[Page, Page]]:
    """One Chromium, two pages of `url`: alice publishes, bob only watches; both joined."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            publisher, viewer = await browser.new_page(), await browser.new_page()
            for page in (publisher, viewer):
                await page.goto(url)
            await publisher.evaluate("join('alice', true)")
            await viewer.evaluate("join('bob', false)")
            for page in (publisher, viewer):
                state = await page.evaluate("window.state")
                assert state["error"] is None and state["answered"], state
            yield publisher, viewer
        finally:
            await browser.close()


@pytest.fixture
async def site() -> AsyncIterator[tuple[str, LocalMedia]]:
    async with serving(PAGE) as served:
        yield served


async def test_chromium_video_goes_through_the_sfu_to_chromium(
    site: tuple[str, LocalMedia], tmp_path: Path
) -> None:
    url, media = site
    async with alice_and_bob(url, tmp_path) as (_publisher, viewer):
        frames = {"n": 0}

        async def decoded() -> int:
            frames["n"] = await viewer.evaluate("decoded()")
            return frames["n"]

        for _ in range(150):
            if await decoded() >= 30:
                break
            await viewer.wait_for_timeout(100)
        assert frames["n"] >= 30, frames
        assert await viewer.evaluate("window.state.tracks") == 2
        stats = media.stats()
        assert stats["errors"] == 0 and stats["bad_rtp"] == 0
        await eventually(lambda: media.stats()["rtcp_in"] > 0, what="RTCP from Chromium")
