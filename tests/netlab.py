"""A network lab for tests: a network namespace joined to the host by a veth pair,
with iptables rules inside it and Chromium started in it (docs/operations.md and
../notes: what this kernel can emulate). Root only; everything is removed again.

Addresses: a /24 under 10.77.0.0/16 that no interface of the machine uses; the
host side is .1 (the server listens there), the namespace side .2. Traffic goes
only to these addresses and loopback."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Playwright

from tests.web_support import CHROMIUM, launch


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the network lab needs root (network namespaces, veth, iptables)")


def sh(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def free_subnet() -> str:
    """'10.77.N' for an N no interface of the machine has an address in."""
    used = sh("ip", "-4", "-o", "addr", "show")
    for _ in range(200):
        prefix = f"10.77.{secrets.randbelow(250) + 2}"
        if f" {prefix}." not in used:
            return prefix
    raise RuntimeError("no free 10.77.N.0/24 for the lab")


@dataclass
class Lab:
    namespace: str
    host_link: str
    prefix: str
    _loss: float = 0.0

    @property
    def host_ip(self) -> str:
        return f"{self.prefix}.1"

    @property
    def guest_ip(self) -> str:
        return f"{self.prefix}.2"

    @property
    def guest_link(self) -> str:
        """The namespace's end of the veth pair."""
        return f"vrg{self.namespace.removeprefix('vrlab')}"

    @property
    def resolver_rule(self) -> str:
        """Chromium's loopback-only rule, also letting the lab's host address through
        (a later --host-resolver-rules wins over the one in CHROMIUM_ARGS)."""
        return f"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE {self.host_ip}"

    def inside(self, *args: str) -> str:
        return sh("ip", "netns", "exec", self.namespace, *args)

    def iptables(self, *rule: str) -> None:
        """One iptables command inside the namespace (e.g. "-A", "OUTPUT", ...)."""
        self.inside("iptables", "-w", *rule)

    def flush_rules(self) -> None:
        self.iptables("-F", "OUTPUT")
        self.iptables("-F", "INPUT")

    def cap_downlink(self, kbps: int | None) -> None:
        """Cap what the host sends into the namespace (the guest's downlink) with a tbf
        qdisc on the host's end of the veth; None removes the cap. Callable mid-call."""
        if kbps is None:
            with contextlib.suppress(RuntimeError):
                sh("tc", "qdisc", "del", "dev", self.host_link, "root")
            return
        burst = max(2000, kbps * 1000 // 8 // 50)  # bytes: 20 ms at the rate, >= one packet
        sh("tc", "qdisc", "replace", "dev", self.host_link, "root", "tbf", "rate",
           f"{kbps}kbit", "burst", str(burst), "latency", "200ms")  # fmt: skip

    def downlink_loss(self, percent: float) -> None:
        """Drop `percent` % of the UDP packets the guest receives (0: none)."""
        with contextlib.suppress(RuntimeError):
            self.iptables("-D", "INPUT", *self._loss_rule(self._loss))
        self._loss = percent
        if percent > 0:
            self.iptables("-A", "INPUT", *self._loss_rule(percent))

    def _loss_rule(self, percent: float) -> tuple[str, ...]:
        return ("-p", "udp", "-m", "statistic", "--mode", "random",
                "--probability", f"{percent / 100:.4f}", "-j", "DROP")  # fmt: skip

    def chromium_wrapper(self, directory: Path) -> Path:
        """An executable that starts Chromium inside the namespace (for playwright)."""
        wrapper = directory / f"chromium-{self.namespace}"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {self.namespace} {CHROMIUM} "$@"\n')
        wrapper.chmod(0o755)
        return wrapper


@contextlib.contextmanager
def lab() -> Iterator[Lab]:
    need_root()
    suffix = secrets.token_hex(3)
    namespace, host_link, guest_link = f"vrlab{suffix}", f"vrh{suffix}", f"vrg{suffix}"
    prefix = free_subnet()
    made = Lab(namespace, host_link, prefix)
    try:
        sh("ip", "netns", "add", namespace)
        sh("ip", "link", "add", host_link, "type", "veth", "peer", "name", guest_link)
        sh("ip", "link", "set", guest_link, "netns", namespace)
        sh("ip", "addr", "add", f"{made.host_ip}/24", "dev", host_link)
        sh("ip", "link", "set", host_link, "up")
        made.inside("ip", "addr", "add", f"{made.guest_ip}/24", "dev", guest_link)
        made.inside("ip", "link", "set", guest_link, "up")
        made.inside("ip", "link", "set", "lo", "up")
        yield made
    finally:
        with contextlib.suppress(RuntimeError):
            sh("ip", "link", "del", host_link)  # takes its peer in the namespace with it
        with contextlib.suppress(RuntimeError):
            sh("ip", "netns", "del", namespace)


@dataclass
class Link:
    """Another veth pair between the host and a lab's namespace, on its own /24."""

    host_link: str
    guest_link: str
    prefix: str

    @property
    def host_ip(self) -> str:
        return f"{self.prefix}.1"

    @property
    def guest_ip(self) -> str:
        return f"{self.prefix}.2"


@contextlib.contextmanager
def second_link(made: Lab) -> Iterator[Link]:
    """A second way into the namespace; its namespace end is down until `link_up`."""
    suffix = secrets.token_hex(3)
    link = Link(f"vrh{suffix}", f"vrg{suffix}", free_subnet())
    try:
        sh("ip", "link", "add", link.host_link, "type", "veth", "peer", "name", link.guest_link)
        sh("ip", "link", "set", link.guest_link, "netns", made.namespace)
        sh("ip", "addr", "add", f"{link.host_ip}/24", "dev", link.host_link)
        sh("ip", "link", "set", link.host_link, "up")
        made.inside("ip", "addr", "add", f"{link.guest_ip}/24", "dev", link.guest_link)
        yield link
    finally:
        with contextlib.suppress(RuntimeError):
            sh("ip", "link", "del", link.host_link)


def link_up(made: Lab, link: Link, up: bool = True) -> None:
    made.inside("ip", "link", "set", link.guest_link, "up" if up else "down")


@contextlib.contextmanager
def lab_browsers(
    pw: Playwright,
    tmp: Path,
    net: Lab,
    site_url: str,
    *guest_args: str,
    host_args: Sequence[str] = (),
) -> Iterator[tuple[BrowserContext, BrowserContext]]:
    """(host, guest): a Chromium outside the lab and one inside its namespace, both
    reaching the lab's server at `site_url` (its http:// origin treated as secure, so
    the camera works)."""
    secure = f"--unsafely-treat-insecure-origin-as-secure={site_url}"
    host = launch(pw, tmp / "host-profile", CHROMIUM, net.resolver_rule, secure, *host_args)
    wrapper = net.chromium_wrapper(tmp)
    guest = launch(pw, tmp / "guest-profile", wrapper, net.resolver_rule, secure, *guest_args)
    try:
        yield host, guest
    finally:
        guest.close()
        host.close()
