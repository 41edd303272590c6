"""The TURN lab, for tests and benchmarks: a network namespace (tests/netlab.py), a
real coturn on its host address, a visitroom server there handing out TURN
credentials, a host Chromium outside and a guest Chromium inside the namespace,
and the iptables that leave the guest one way to the server."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import BrowserContext, sync_playwright

from tests.coturn import SECRET, Coturn
from tests.netlab import Lab, lab, lab_browsers
from tests.web_support import WebServer, web_server

PATHS = ("direct", "udp", "tcp", "tls")
IGNORE_CERTS = "--ignore-certificate-errors"


@dataclass
class Setup:
    lab: Lab
    coturn: Coturn
    site: WebServer
    host: BrowserContext  # outside the lab
    guest: BrowserContext  # inside the lab's namespace


@contextlib.contextmanager
def turn_lab(tmp: Path) -> Iterator[Setup]:
    with lab() as net:
        coturn = Coturn(tmp, net.host_ip)
        coturn.start()
        env: dict[str, str | None] = {
            "VISITROOM_ICE_HOSTS": net.host_ip,
            "VISITROOM_TURN_URLS": ",".join(coturn.urls),
            "VISITROOM_TURN_SECRET": SECRET,
        }
        try:
            with (
                web_server(tmp, env, host=net.host_ip) as site,
                sync_playwright() as pw,
                # turns: with a throwaway certificate the browser cannot verify
                lab_browsers(pw, tmp, net, site.url, IGNORE_CERTS) as (host, guest),
            ):
                yield Setup(net, coturn, site, host, guest)
        finally:
            coturn.stop()


def only_through(setup: Setup, path: str) -> None:
    """Inside the namespace, block every way to the server but `path`: TURN over
    udp, tcp or tls, or "direct" (nothing blocked)."""
    net, coturn = setup.lab, setup.coturn
    net.flush_rules()
    if path == "direct":
        return
    if path == "udp":  # UDP to the SFU blocked; UDP to coturn allowed
        net.iptables("-A", "OUTPUT", "-p", "udp", "-d", net.host_ip,
                     "!", "--dport", str(coturn.port), "-j", "DROP")  # fmt: skip
        # and TURN over TCP/TLS closed: with both relays open Chromium may
        # nominate the TCP one (seen in CI), which is not the path under test
        for port in (coturn.port, coturn.tls_port):
            net.iptables("-A", "OUTPUT", "-p", "tcp", "-d", net.host_ip,
                         "--dport", str(port), "-j", "DROP")  # fmt: skip
        return
    net.iptables("-A", "OUTPUT", "-p", "udp", "-j", "DROP")  # no UDP at all
    closed = coturn.tls_port if path == "tcp" else coturn.port
    net.iptables("-A", "OUTPUT", "-p", "tcp", "-d", net.host_ip,
                 "--dport", str(closed), "-j", "DROP")  # fmt: skip
