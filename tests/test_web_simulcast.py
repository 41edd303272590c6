"""The reference client in a real Chromium: it offers its camera in simulcast (q, h, f),
reports its tiles' rendered sizes (`video_sizes`), obeys `publish_layers` and shows a
weak downlink (`downlink`) without getting in the way of any control."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from tests.layout import unusable_controls
from tests.web_support import Pages, WebServer, host_joins, knock

pytestmark = pytest.mark.browser

T = TypeVar("T")

# Every RTCPeerConnection the page makes, so the test can read its senders back.
RECORD_PEER_CONNECTIONS = """
window.__pcs = [];
const Native = window.RTCPeerConnection;
window.RTCPeerConnection = class extends Native {
  constructor(...args) { super(...args); window.__pcs.push(this); }
};
"""


@dataclass
class Wire:
    """What one page's room socket carried, as JSON, and a way to add server messages."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    routes: list[WebSocketRoute] = field(default_factory=list)
    simulcast_answer: bool = False  # see accept_simulcast
    # Server messages of these types are not delivered: the test plays them itself
    # (the real server's `downlink` follows its estimate of the page's loopback link).
    withheld: frozenset[str] = frozenset()

    def attach(self, page: Page) -> None:
        page.add_init_script(RECORD_PEER_CONNECTIONS)
        page.route_web_socket(re.compile(r".*/v1/rooms/.*/ws$"), self._route)

    def _route(self, ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        self.routes.append(ws)
        ws.on_message(lambda message: self._up(server, message))
        server.on_message(lambda message: self._down(ws, message))

    def _up(self, server: WebSocketRoute, message: str | bytes) -> None:
        if isinstance(message, str):
            self.sent.append(json.loads(message))
        server.send(message)

    def _down(self, ws: WebSocketRoute, message: str | bytes) -> None:
        if isinstance(message, str):
            parsed = json.loads(message)
            self.received.append(parsed)
            if parsed.get("type") in self.withheld:
                return
            if parsed.get("type") == "answer" and self.simulcast_answer:
                parsed["sdp"] = accept_simulcast(parsed["sdp"], self.of_type("offer")[-1]["sdp"])
                message = json.dumps(parsed)
        ws.send(message)

    def from_server(self, message: dict[str, Any]) -> None:
        """Deliver `message` to the page as if the server had sent it."""
        self.routes[-1].send(json.dumps(message))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("type") == kind]


@pytest.fixture
def visit(pages: Pages, site: WebServer) -> Iterator[tuple[Page, Wire, Page]]:
    yield from joined(pages, site, Wire(withheld=frozenset({"downlink"})))


def joined(pages: Pages, site: WebServer, wire: Wire) -> Iterator[tuple[Page, Wire, Page]]:
    """A host (watched) and an admitted guest, both sending their fake camera."""
    room = site.schedule()
    host, guest = pages.new("host"), pages.new("guest")
    wire.attach(host)
    host_joins(host, site, room)
    knock(guest, site, room, "Pat Layers")
    host.get_by_test_id("btn-knock-let-in").click()
    expect(guest.get_by_test_id("screen-room")).to_be_visible()
    host.wait_for_function(
        """() => [...document.querySelectorAll("[data-testid=video-tile][data-kind=video] video")]
              .some((v) => v.getVideoPlaybackQuality().totalVideoFrames > 3)""",
        timeout=20000,
    )
    yield host, wire, guest


def until(page: Page, check: Callable[[], T], seconds: float) -> T:
    """`check()` once it is truthy (the page's messages arrive meanwhile), else its last value."""
    deadline = time.monotonic() + seconds
    while not (value := check()) and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    return value


def accept_simulcast(sdp: str, offer: str) -> str:
    """The answer as a simulcast-receiving SFU writes it (RFC 8853): the RID extension,
    `a=rid:X recv` and `a=simulcast:recv q;h;f` for the camera. The SFU with simulcast
    answers so itself (then this changes nothing); the one before it answers without,
    and the browser then drops all but the first encoding."""
    found = re.search(r"a=extmap:(\d+) (urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id)", offer)
    assert found, "the offer has no RID extension"
    extmap = f"a=extmap:{found.group(1)} {found.group(2)}\r\n"
    rids = "".join(f"a=rid:{rid} recv\r\n" for rid in ("q", "h", "f"))
    head, *sections = sdp.split("\r\nm=")
    out = [head]
    for section in sections:
        if (
            section.startswith("video")
            and "a=recvonly" in section
            and "a=simulcast:" not in section
        ):
            if "rtp-stream-id" not in section:
                section = section.replace("a=mid:", extmap + "a=mid:", 1)
            section = section.replace("a=mid:", rids + "a=simulcast:recv q;h;f\r\na=mid:", 1)
        out.append(section)
    return "\r\nm=".join(out)


def video_sections(sdp: str) -> list[str]:
    return [s for s in sdp.split("\r\nm=")[1:] if s.startswith("video")]


def camera_section(wire: Wire) -> str:
    offers = wire.of_type("offer")
    assert offers, "no offer was sent"
    sending = [
        s for s in video_sections(offers[-1]["sdp"]) if "a=sendonly" in s or "a=sendrecv" in s
    ]
    assert len(sending) == 1, sending
    return sending[0]


def mid_of(section: str) -> str:
    found = re.search(r"a=mid:(\S+)", section)
    assert found
    return found.group(1)


def test_the_camera_is_offered_in_simulcast_with_three_rids(visit: tuple[Page, Wire, Page]) -> None:
    host, wire, _ = visit
    camera = camera_section(wire)
    assert "a=simulcast:send q;h;f" in camera
    for rid in ("q", "h", "f"):
        assert f"a=rid:{rid} send" in camera
    assert "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id" in camera
    # Whatever the server answered, the largest encoding sent is the camera's full size:
    # a server without simulcast leaves only the first (a quarter): the SDK scales it up.
    scales = host.evaluate(
        """(mid) => window.__pcs.at(-1).getTransceivers().find((t) => t.mid === mid)
              .sender.getParameters().encodings.map((e) => e.scaleResolutionDownBy ?? 1)""",
        mid_of(camera),
    )
    assert scales in ([1], [4, 2, 1]), scales


def test_each_tile_reports_its_rendered_size_and_the_server_acks_it(
    visit: tuple[Page, Wire, Page],
) -> None:
    host, wire, _ = visit
    video = host.locator("[data-testid=video-tile][data-kind=video] video").first
    mid = (video.locator("xpath=..").get_attribute("data-key") or "").removeprefix("slot:")
    expected: list[int] = host.evaluate(
        """(el) => { const r = el.getBoundingClientRect(); const k = devicePixelRatio;
                     return [Math.round(r.width * k), Math.round(r.height * k)]; }""",
        video.element_handle(),
    )
    assert expected[0] > 100 and expected[1] > 50

    def reported() -> dict[str, Any] | None:
        for sent in wire.of_type("video_sizes")[::-1]:
            width = sent["slots"].get(mid, {}).get("width", 0)
            if isinstance(width, int) and width and abs(width - expected[0]) <= 2:
                return sent
        return None

    message = until(host, reported, 5.0)
    assert message is not None, wire.of_type("video_sizes")
    assert abs(message["slots"][mid]["height"] - expected[1]) <= 2
    others = {m: s for m, s in message["slots"].items() if m != mid}
    assert all(s == {"width": 0, "height": 0} for s in others.values()), others
    answers = {m.get("re"): m["type"] for m in wire.received if m.get("re") is not None}
    assert answers.get(message["id"]) == "ack"
    sizes_before = len(wire.of_type("video_sizes"))
    host.set_viewport_size({"width": 900, "height": 700})  # a smaller window: smaller tiles
    assert until(host, lambda: len(wire.of_type("video_sizes")) > sizes_before, 5.0)
    latest = wire.of_type("video_sizes")[-1]["slots"][mid]
    assert 0 < latest["width"] < message["slots"][mid]["width"]
    host.set_viewport_size({"width": 1280, "height": 800})


@pytest.fixture
def simulcast_visit(pages: Pages, site: WebServer) -> Iterator[tuple[Page, Wire, Page]]:
    withheld = frozenset({"publish_layers"})  # the real server's follow the guest's tile
    yield from joined(pages, site, Wire(simulcast_answer=True, withheld=withheld))


def test_publish_layers_turns_the_unneeded_encoding_off(
    simulcast_visit: tuple[Page, Wire, Page],
) -> None:
    host, wire, _ = simulcast_visit
    mid = mid_of(camera_section(wire))
    read_back = """(mid) => {
        const t = window.__pcs.at(-1).getTransceivers().find((t) => t.mid === mid);
        return t.sender.getParameters().encodings.map((e) => [e.rid ?? null, e.active]);
    }"""
    before = host.evaluate(read_back, mid)
    assert before == [["q", True], ["h", True], ["f", True]], before
    wire.from_server({"type": "publish_layers", "mid": mid, "active": ["q", "h"]})
    host.wait_for_function(
        """(mid) => { const t = window.__pcs.at(-1).getTransceivers().find((t) => t.mid === mid);
                      return t.sender.getParameters().encodings.some((e) => !e.active); }""",
        arg=mid,
        timeout=5000,
    )
    after = host.evaluate(read_back, mid)
    assert before == [["q", True], ["h", True], ["f", True]], before
    assert after == [["q", True], ["h", True], ["f", False]]
    wire.from_server({"type": "publish_layers", "mid": mid, "active": ["q", "h", "f"]})
    host.wait_for_function(
        """(mid) => { const t = window.__pcs.at(-1).getTransceivers().find((t) => t.mid === mid);
                      return t.sender.getParameters().encodings.every((e) => e.active); }""",
        arg=mid,
        timeout=5000,
    )


@pytest.mark.parametrize("viewport", [(1280, 800), (390, 844)], ids=["desktop", "phone"])
def test_a_weak_downlink_shows_a_small_note_that_covers_no_control(
    visit: tuple[Page, Wire, Page], viewport: tuple[int, int]
) -> None:
    host, wire, _ = visit
    host.set_viewport_size({"width": viewport[0], "height": viewport[1]})
    weak = host.get_by_test_id("weak-connection")
    expect(weak).to_be_hidden()
    wire.from_server({"type": "downlink", "estimate_kbps": 180})
    expect(weak).to_be_visible()
    expect(weak).to_have_text("Weak connection")
    assert unusable_controls(host) == []
    wire.from_server({"type": "downlink", "estimate_kbps": 2500})
    expect(weak).to_be_hidden()
