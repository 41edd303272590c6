"""A real Chromium changes network mid-call (issue 17): inside a network namespace
its media path is cut (iptables DROP of UDP on its first link, the signalling
WebSocket stays up) and a second link comes up (another veth, another subnet,
like Wi-Fi to cellular). The SFU notices the silence (its consent checks go
unanswered) and sends `ice_restart_needed`; the SDK restarts ICE over the
same signalling session, the SFU keeps the transport, and the video comes
back. In the "gone" case the whole first network goes away, the signalling
WebSocket with it: the SDK sees nothing arrive, finds its socket dead with a
`ping`, resumes the session on a new socket over the second link (the same
participant, no new knock) and restarts ICE there. Needs root (the lab); the
host browser is outside."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from tests.netlab import Lab, Link, lab, lab_browsers, link_up, second_link
from tests.test_web_media import own_id
from tests.web_support import WebServer, host_joins, knock, web_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Every 50 ms: how many frames the tile of `pid` has shown (any change is progress).
PROBE = """([pid]) => {
  window.__frames = [];
  window.__probe = setInterval(() => {
    const v = document.querySelector(
      `[data-testid=video-grid] figure[data-participant-id="${pid}"]:not([data-kind=self]) video`);
    const n = v && v.srcObject ? v.getVideoPlaybackQuality().totalVideoFrames : -1;
    window.__frames.push([Date.now(), n]);
  }, 50);
}"""
FRAMES = "() => window.__frames"


@dataclass
class Setup:
    lab: Lab
    link: Link
    site: WebServer
    host: BrowserContext  # outside the lab
    guest: BrowserContext  # inside the lab's namespace


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("lab-icerestart")
    with lab() as net, second_link(net) as link:
        env: dict[str, str | None] = {"VISITROOM_ICE_HOSTS": f"{net.host_ip},{link.host_ip}"}
        with (
            web_server(tmp, env, host=net.host_ip) as site,
            sync_playwright() as pw,
            lab_browsers(pw, tmp, net, site.url) as (host, guest),
        ):
            try:
                yield Setup(net, link, site, host, guest)
            finally:
                net.flush_rules()


def in_call(setup: Setup) -> tuple[Page, Page]:
    site = setup.site
    room = site.schedule()
    host, guest = setup.host.new_page(), setup.guest.new_page()
    host_joins(host, site, room)
    knock(guest, site, room, "Pat Moving")
    host.get_by_test_id("btn-knock-let-in").click()
    expect(guest.get_by_test_id("screen-room")).to_be_visible()
    return host, guest


def longest_stall(page: Page, since_ms: float) -> float:
    """The longest time (s) without a new frame after `since_ms` (page clock)."""
    samples: list[list[float]] = page.evaluate(FRAMES)
    last_change, last_value, longest = since_ms, None, 0.0
    for at, value in samples:
        if at < since_ms:
            last_value = value
            continue
        if value != last_value and value >= 0:
            longest = max(longest, at - last_change)
            last_change, last_value = at, value
    return longest / 1000


def wait_frames(page: Page, minimum: int, timeout_s: float) -> None:
    page.wait_for_function(
        "([least]) => window.__frames.length && window.__frames.at(-1)[1] >= least",
        arg=[minimum],
        timeout=timeout_s * 1000,
    )


def rank(setup: Setup, first: bool) -> None:
    """Make Chromium rank the second network above (or below) the first one: it orders
    networks of the same type by interface name, so the name decides (a random name
    made the same case 1.9 s in one run and 4.6 s in the next). The link is down."""
    name = ("vra" if first else "vrz") + setup.link.guest_link[3:]
    if name != setup.link.guest_link:
        setup.lab.inside("ip", "link", "set", "dev", setup.link.guest_link, "name", name)
        setup.link.guest_link = name


# (whether the browser ranks the second network above the dead one, the longest stall
# allowed at both ends, s), measured on the shared 2-core machine at load 20-56
# (docs/benchmarks.md):
# "before": the second link is up 3 s before the first one's UDP dies, and the browser
# prefers it (walking from cellular into Wi-Fi): the SFU notices the silence and asks
# for a restart ~0.65 s after the cut, the restart's offer, answer and checks take
# ~0.3 s, the browser switches as soon as the new path works, then a key frame:
# measured 0.8-1.9 s (the 2 s target), up to 3.1 s at load 56.
# "before_dead_ranked": the same, but the browser ranks the dead network higher (Wi-Fi
# blackholed while still associated, cellular up): Chromium keeps sending on its old
# path until that has received nothing for 2.5 s (its receiving timeout), whatever the
# SFU does: measured 3.0-4.1 s.
# "at_cut": the new link appears only as the old one dies: measured 3.3-4.0 s (3.8-6.2
# s before the faster detection; the rest is Chromium finding the new interface).
# "gone": the whole first network goes away, the signalling socket with it (its TCP
# connection is silently dead): the SDK sees nothing arrive for 1 s, its `ping` goes
# unanswered for 2 s, it resumes the session on a new socket over the second network
# (the same participant, no new knock) and restarts ICE there: measured 3.5-4.8 s
# (7.9-9.8 s while it waited for Chromium to call ICE `disconnected`, ~7 s).
CASES = {
    "before": (True, 4.0),
    "before_dead_ranked": (False, 6.0),
    "at_cut": (True, 7.0),
    "gone": (True, 8.0),
}


@pytest.mark.parametrize("new_link", CASES)
def test_a_browser_that_changes_network_gets_its_video_back(setup: Setup, new_link: str) -> None:
    net = setup.lab
    preferred, limit = CASES[new_link]
    rank(setup, preferred)
    host, guest = in_call(setup)
    try:
        host_id, guest_id = own_id(host), own_id(guest)
        host.evaluate(PROBE, [guest_id])  # what the others see of the moving browser
        guest.evaluate(PROBE, [host_id])
        wait_frames(host, 30, 20)
        wait_frames(guest, 30, 20)
        if new_link != "at_cut":
            link_up(net, setup.link)
            time.sleep(3)

        cut_ms = host.evaluate("() => Date.now()")
        cut = time.monotonic()
        if new_link == "gone":  # like Wi-Fi dying: its route goes, the server stays reachable
            net.iptables("-A", "OUTPUT", "-s", net.guest_ip, "-j", "DROP")
            net.iptables("-A", "INPUT", "-d", net.guest_ip, "-j", "DROP")
            net.inside("ip", "route", "add", f"{net.host_ip}/32", "dev", setup.link.guest_link)
        else:
            net.iptables("-A", "OUTPUT", "-p", "udp", "-s", net.guest_ip, "-j", "DROP")
            net.iptables("-A", "INPUT", "-p", "udp", "-d", net.guest_ip, "-j", "DROP")
        if new_link == "at_cut":
            link_up(net, setup.link)
        wait_frames(host, host.evaluate(FRAMES)[-1][1] + 30, 30)  # the guest's video is back
        back_s = time.monotonic() - cut
        wait_frames(guest, guest.evaluate(FRAMES)[-1][1] + 30, 10)
        time.sleep(1)
        stall_host = longest_stall(host, cut_ms)
        stall_guest = longest_stall(guest, cut_ms)
        output = setup.site.process.output().splitlines()
        restarts = [m for m in output if "ICE restart" in m]
        print(f"\n[{new_link}] 30 new frames at the host {back_s:.2f} s after the cut; "
              f"longest stall: at the host {stall_host:.2f} s, at the moving guest "
              f"{stall_guest:.2f} s (load {os.getloadavg()[0]:.1f}); {restarts[-1:]}")  # fmt: skip
        assert stall_host < limit, f"the host saw the guest's video stall {stall_host:.2f} s"
        assert stall_guest < limit, f"the guest's received video stalled {stall_guest:.2f} s"
        assert restarts, "an ICE restart, not a new connection"
        assert own_id(guest) == guest_id, "the same participant (a resume), not a new knock"
        expect(host.get_by_test_id("screen-room")).to_be_visible()
    finally:
        net.flush_rules()
        if new_link == "gone":
            net.inside("ip", "route", "del", f"{net.host_ip}/32")
        link_up(net, setup.link, up=False)
        guest.close()
        host.close()
