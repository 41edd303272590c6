"""Reaching the SFU through a real coturn from a real Chromium in a network
namespace whose direct path is blocked (iptables), and the SFU's own side
staying on UDP: TURN over UDP, over TCP and over TLS (docs/operations.md,
"TURN"). Needs root (the lab) and coturn; the host browser is outside."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from tests.coturn import SECRET, Coturn
from tests.netlab import Lab, lab
from tests.test_web_media import own_id, wait_received
from tests.web_support import CHROMIUM, WebServer, host_joins, knock, launch, web_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@dataclass
class Setup:
    lab: Lab
    coturn: Coturn
    site: WebServer
    host: BrowserContext  # outside the lab
    guest: BrowserContext  # inside the lab's namespace


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("lab-turn")
    with lab() as net:
        coturn = Coturn(tmp, net.host_ip)
        coturn.start()
        env: dict[str, str | None] = {
            "VISITROOM_ICE_HOSTS": net.host_ip,
            "VISITROOM_TURN_URLS": ",".join(coturn.urls),
            "VISITROOM_TURN_SECRET": SECRET,
        }
        try:
            with web_server(tmp, env, host=net.host_ip) as site, sync_playwright() as pw:
                # the camera needs a secure context: the lab's http:// origin is one here
                secure = f"--unsafely-treat-insecure-origin-as-secure={site.url}"
                host = launch(pw, tmp / "host-profile", CHROMIUM, net.resolver_rule, secure)
                # turns: with a throwaway certificate the browser cannot verify
                guest = launch(
                    pw,
                    tmp / "guest-profile",
                    net.chromium_wrapper(tmp),
                    net.resolver_rule,
                    secure,
                    "--ignore-certificate-errors",
                )
                try:
                    yield Setup(net, coturn, site, host, guest)
                finally:
                    guest.close()
                    host.close()
        finally:
            coturn.stop()


def only_through(setup: Setup, path: str) -> None:
    """Inside the namespace, block every way to the server but TURN over `path`."""
    net, coturn = setup.lab, setup.coturn
    net.flush_rules()
    if path == "udp":  # UDP to the SFU blocked; UDP to coturn allowed
        net.iptables("-A", "OUTPUT", "-p", "udp", "-d", net.host_ip,
                     "!", "--dport", str(coturn.port), "-j", "DROP")  # fmt: skip
        return
    net.iptables("-A", "OUTPUT", "-p", "udp", "-j", "DROP")  # no UDP at all
    closed = coturn.tls_port if path == "tcp" else coturn.port
    net.iptables("-A", "OUTPUT", "-p", "tcp", "-d", net.host_ip,
                 "--dport", str(closed), "-j", "DROP")  # fmt: skip


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
