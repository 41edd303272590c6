"""Janus VideoRoom in the network lab, side by side with visitroom.

Janus (Debian package `janus`, bench/janus_driver.py's throwaway config) gathers
ICE only on the host end of the lab's veth; its WebSocket API stays on
127.0.0.1 and is spoken from this process (bench/janus_driver.py's
JanusSession on a loop of its own in a thread: sync Playwright owns the main
thread). The browser pages only hold the RTCPeerConnections. Every participant
of bench/netlab.py's cast publishes its camera (and microphone) as the SDK would:
VP8 simulcast with the SDK's own encodings (sizes, maxBitrate, L1T3), highest
first as janus.js sends them; then each one with slots subscribes to the
streams its visitroom slots would hold and answers Janus's offer. The lab's
Janus client asks for no substream: Janus sends the highest it has and changes
only on a `configure` request or when a substream stops arriving (its
`fallback` timer).

A viewer page looks like a visitroom one to the sampler
(`window.visit.media.slots` and `getStats`), so bench/netlab_clients.py reads both."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
import threading
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from janus_driver import (
    JanusConfig,
    JanusProcess,
    JanusSession,
    StreamRef,
    answer_sdp,
    create_room,
    jsep,
    new_api_secret,
    publisher_configure,
    publisher_join,
    publisher_mids,
    subscriber_join,
    subscriber_start,
    videoroom_event,
)
from netlab_clients import FULL
from netlab_clients import OUTBOUND as CLIENT_OUTBOUND
from playwright.sync_api import Page

from tests.netlab import Lab
from tests.servers import free_port

T = TypeVar("T")
JANUS_ID = "janus-publisher"  # the "participant id" the viewer's sampler looks for

_GATHER = """async (pc) => {
  if (pc.iceGatheringState !== "complete") await new Promise((done) => {
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") done();
    });
    setTimeout(done, 3000);
  });
  return pc.localDescription.sdp;
}"""

PUBLISH_OFFER = (
    """async ([w, h, fps, audio]) => {
  const gather = """
    + _GATHER
    + """;
  const { SIMULCAST_ENCODINGS } = await import("/sdk/media.js");
  const stream = await navigator.mediaDevices.getUserMedia(
    { audio, video: { width: w, height: h, frameRate: fps } });
  const pc = new RTCPeerConnection({ iceServers: [] });
  window.__pub = pc;
  if (audio) pc.addTransceiver(stream.getAudioTracks()[0], { direction: "sendonly" });
  // The SDK's encodings (sizes, maxBitrate, L1T3: the same streams visitroom gets),
  // highest first, as janus.js orders them: Janus takes the first rid as substream 2.
  const all = [...SIMULCAST_ENCODINGS].reverse();
  let video = null;
  for (const modes of [true, false]) {  // as the SDK: without scalabilityMode if refused
    const sendEncodings = all.map(({ scalabilityMode, ...rest }) =>
      (modes ? { ...rest, scalabilityMode } : { ...rest }));
    try {
      const track = stream.getVideoTracks()[0];
      video = pc.addTransceiver(track, { direction: "sendonly", sendEncodings });
      break;
    } catch {}
  }
  const vp8 = RTCRtpSender.getCapabilities("video").codecs.filter(
    (c) => ["video/vp8", "video/rtx"].includes(c.mimeType.toLowerCase()));
  video.setCodecPreferences(vp8);
  await pc.setLocalDescription(await pc.createOffer());
  return gather(pc);
}"""
)

SET_ANSWER = "async (sdp) => { await window.__pub.setRemoteDescription({ type: 'answer', sdp }); }"

SUBSCRIBE_ANSWER = (
    """async ([sdp, owners, stage, size]) => {
  const gather = """
    + _GATHER
    + """;
  const pc = new RTCPeerConnection({ iceServers: [] });
  window.__sub = pc;
  const slots = [];
  window.visit = { media: { slots, getStats: () => pc.getStats() } };
  pc.ontrack = (e) => {
    const mid = String(e.transceiver.mid);
    const participantId = owners[mid] ?? null;
    slots.push({ mid, kind: e.track.kind, participantId });
    const el = document.createElement(e.track.kind === "video" ? "video" : "audio");
    el.id = `slot-${mid}`;
    el.autoplay = true;
    el.muted = e.track.kind === "video";
    if (e.track.kind === "video") {  // drawn as the SDK pages are: the stage big
      const [w, h] = participantId === stage ? size : [320, 180];
      el.style.width = `${w}px`;
      el.style.height = `${h}px`;
    }
    el.srcObject = new MediaStream([e.track]);
    document.body.append(el);
  };
  await pc.setRemoteDescription({ type: "offer", sdp });
  await pc.setLocalDescription(await pc.createAnswer());
  return gather(pc);
}"""
)

# What the publisher sends, per encoding, and its own send-side estimate: the visitroom
# lab's reading, of the publishing connection (Janus sends no `publish_layers`).
OUTBOUND = CLIENT_OUTBOUND.replace("window.visit.media.getStats()", "window.__pub.getStats()")
OUTBOUND = OUTBOUND.replace("window.__publishLayers", "null")
assert "window.visit" not in OUTBOUND and "__publishLayers" not in OUTBOUND


class Janus:
    """A Janus for one lab: the process, a loop thread and one API session."""

    def __init__(self, net: Lab, folder: Path) -> None:
        low = 40000 + secrets.randbelow(200) * 100
        self.config = JanusConfig(
            folder=folder,
            ws_port=free_port(),
            rtp_ports=(low, low + 99),
            interface=net.host_link,
            address=net.host_ip,
            api_secret=new_api_secret(),
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.process = JanusProcess(self.config, pin=[])
        self.http: aiohttp.ClientSession | None = None
        self.session: JanusSession | None = None
        self.rooms = 0

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def open(self) -> None:
        async def opening() -> JanusSession:
            await self.process.wait_ready()
            self.http = aiohttp.ClientSession()
            session = JanusSession(self.process.url, self.config.api_secret)
            await session.open(self.http)
            return session

        self.session = self.call(opening())

    def close(self) -> None:
        async def closing() -> None:
            if self.session is not None:
                await self.session.close()
            if self.http is not None:
                await self.http.close()

        with contextlib.suppress(Exception):
            self.call(closing(), 15)
        self.process.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def new_room(self, publishers: int) -> int:
        assert self.session is not None
        session = self.session
        self.rooms += 1
        room = 7000 + self.rooms

        async def creating() -> None:
            handle = await session.attach()
            # transport-cc with the publisher, as Janus does by default: a Chromium
            # publisher's own congestion control then works as it would in production
            body = create_room(room, publishers) | {"transport_wide_cc_ext": True}
            await session.message(handle, body)

        self.call(creating())
        return room

    def publish(
        self, page: Page, site_url: str, room: int, size: tuple[int, int, int], audio: bool = True
    ) -> Published:
        """The page publishes its camera (simulcast) and microphone to `room`."""
        assert self.session is not None
        session = self.session
        on_origin(page, site_url)
        offer = str(page.evaluate(PUBLISH_OFFER, [*size, audio]))

        async def joining() -> tuple[int, int, dict[str, Any]]:
            handle = await session.attach()
            joined = await session.message(handle, publisher_join(room, "publisher"))
            feed = int(videoroom_event(joined, "joined")["id"])
            reply = await session.message(handle, publisher_configure(), jsep("offer", offer))
            return handle, feed, reply

        handle, feed, reply = self.call(joining())
        # the configured event lists the streams' mids (else: the transceivers' order)
        mids = publisher_mids(videoroom_event(reply, "event"))
        mids = mids or ({"audio": "0", "video": "1"} if audio else {"video": "0"})
        page.evaluate(SET_ANSWER, answer_sdp(reply, "answer"))
        self.call(session.next_event(handle, "webrtcup"))
        return Published(feed, mids)

    def subscribe(
        self,
        page: Page,
        site_url: str,
        room: int,
        streams: Sequence[StreamRef],
        names: Mapping[int, str],
        stage: str,
    ) -> None:
        """The page receives `streams` (substreams: Janus's default, the highest); its
        slots carry the names of their feeds (`names`), `stage`'s video drawn big."""
        assert self.session is not None
        session = self.session
        on_origin(page, site_url)

        async def joining() -> tuple[int, dict[str, Any]]:
            handle = await session.attach()
            return handle, await session.message(handle, subscriber_join(room, streams))

        handle, reply = self.call(joining())
        owners = slot_owners(videoroom_event(reply, "attached"), names)
        offer = answer_sdp(reply, "offer")
        answer = str(page.evaluate(SUBSCRIBE_ANSWER, [offer, owners, stage, list(FULL)]))
        started = self.call(session.message(handle, subscriber_start(), jsep("answer", answer)))
        data = videoroom_event(started, "event")
        if data.get("started") != "ok":
            raise RuntimeError(f"Janus did not start the subscription: {data}")
        self.call(session.next_event(handle, "webrtcup"))


@dataclass(frozen=True)
class Published:
    feed: int  # Janus's id of the publisher
    mids: dict[str, str]  # kind -> mid of its streams


def on_origin(page: Page, site_url: str) -> None:
    """A page of the server's origin (a secure origin for the camera; the SDK's module),
    loaded once: a participant's page publishes and subscribes."""
    if not page.url.startswith(site_url):
        page.goto(f"{site_url}/sdk/visitroom.js")


def slot_owners(attached: dict[str, Any], names: Mapping[int, str]) -> dict[str, str]:
    """mid -> the name of the feed it carries, from a subscriber's `attached` event
    (Janus's mids are the subscription's own, not the publisher's)."""
    owners = {}
    for stream in attached.get("streams", []):
        feed = stream.get("feed_id")
        if "mid" in stream and feed in names:
            owners[str(stream["mid"])] = names[feed]
    return owners


@contextlib.contextmanager
def janus(net: Lab) -> Iterator[Janus]:
    with tempfile.TemporaryDirectory(prefix="netlab-janus-") as folder:
        running = Janus(net, Path(folder))
        try:
            running.open()
            yield running
        finally:
            running.close()
