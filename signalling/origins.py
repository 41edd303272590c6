"""Which browser pages may open a WebSocket: `Origin` and `Host` against the configuration.

A page's `Origin` and the request's `Host` are both chosen by whoever names
the server: after a DNS rebinding, a page of ``http://evil.example`` reaches
this server with ``Host: evil.example`` and ``Origin: http://evil.example``.
So neither is trusted for being equal to the other.  A browser's upgrade
(one that sends `Origin`) is allowed when

- its `Host` is the public base URL's, an allowed origin's, this node's own
  URL's (``VISITROOM_NODE_URL`` or the bind address), or an IP literal or
  ``localhost`` (names no DNS answer can rebind), and
- its `Origin` is the public base URL's or one of ``VISITROOM_ALLOWED_ORIGINS``,
  or the page was served from that same IP literal or ``localhost`` address.

Clients that send no `Origin` (SDKs, scripts) are not browsers: they need a
token or a name in ``hello`` like everyone else.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
MAX_SHOWN = 200  # characters of a refused Origin/Host kept in the audit trail


def _split_host(netloc: str) -> tuple[str, int | None] | None:
    """(lowercased host name, port or None) of a `host[:port]`; None if malformed."""
    try:
        parts = urlsplit(f"//{netloc.strip()}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.username is not None or parts.path:
        return None
    return parts.hostname.lower(), port


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lowercased, without a default port."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    shown = f"[{host}]" if ":" in host else host
    try:
        port = parts.port
    except ValueError:
        return ""
    if port is not None and port != DEFAULT_PORTS.get(scheme):
        shown += f":{port}"
    return f"{scheme}://{shown}"


def _unreboundable(host: str) -> bool:
    """An IP literal or localhost: no DNS answer can point such a name elsewhere."""
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class OriginPolicy:
    origins: frozenset[str]
    hosts: frozenset[tuple[str, int]]

    @classmethod
    def build(cls, base_url: str, allowed: Iterable[str], own_url: str) -> OriginPolicy:
        origins = {origin_of(base_url), *(origin_of(o) for o in allowed)}
        hosts: set[tuple[str, int]] = set()
        for url in (*origins, origin_of(own_url)):
            parts = urlsplit(url)
            port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
            if parts.hostname:
                hosts.add((parts.hostname.lower(), port))
        return cls(frozenset(o for o in origins if o), frozenset(hosts))

    def _host_known(self, host: tuple[str, int | None]) -> bool:
        name, port = host
        if _unreboundable(name):
            return True
        if port is not None:
            return (name, port) in self.hosts
        return (name, 80) in self.hosts or (name, 443) in self.hosts

    def refusal(self, origin: str | None, host: str | None) -> str | None:
        """Why a browser's upgrade is refused ("host" or "origin"), or None when it is allowed."""
        if origin is None:
            return None
        parsed = _split_host(host or "")
        if parsed is None or not self._host_known(parsed):
            return "host"
        if origin_of(origin) in self.origins:
            return None
        page = _split_host(urlsplit(origin).netloc)
        if page is not None and _unreboundable(page[0]) and page == parsed:
            return None  # served from this very address, which cannot be rebound
        return "origin"
