"""Connections that have not proved anything yet: a header deadline and a per-address cap.

aiohttp has no header-read timeout: a connection that sends the start of a
request and never finishes its headers holds a file descriptor, a protocol
object and a task until aiohttp's keep-alive check notices it, and a few
thousand of them stall the event loop; twenty thousand exhaust the
file-descriptor limit (issue 12).  This module bounds both:

* a deadline: a connection whose first request's headers are not complete
  within `header_timeout_s` is closed (with TLS, the handshake gets the same
  deadline through ``ssl_handshake_timeout``);
* a budget of connections still in their headers (`max_pending`, 3/4 of the
  open-file limit): past it, the oldest is dropped for each new one, so
  half-open connections from many addresses never exhaust the file
  descriptors that health checks, WebSockets and the workers need;
* a per-address cap: at most `per_address` connections from one client
  address (for IPv6 one /64, what one subscriber usually gets) that are
  not yet *trusted*.  A connection is trusted once it is a room WebSocket
  whose ``hello`` carried a verified token or a resume (`Guard.trust`), or
  when it comes from a configured trusted reverse proxy (which does its own
  limiting; see docs/operations.md).  A connection over the cap is answered
  ``503`` and closed at once.

`PeerBook` is the pure part (addresses in, verdicts out).  `GuardedProtocol`
holds each connection until its headers are in, then hands it to aiohttp's
protocol; `GuardedSite` is a `web.TCPSite` whose server makes them; `Guard`
ties these together and is told by the WebSocket handler when a hello was
verified.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import resource
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024  # more without an empty line: aiohttp's parser refuses it
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 38\r\n\r\ntoo many connections from your address\n"
)


class PeerBook:
    """Untrusted connections per client address, against a cap (pure)."""

    def __init__(self, per_address: int, trusted_proxies: tuple[str, ...] = ()) -> None:
        self.per_address = per_address
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]
        self.open: Counter[str] = Counter()
        self.refused = 0

    def is_proxy(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.proxies)

    @staticmethod
    def key(address: str) -> str:
        """Whom an address stands for: itself, or for IPv6 its /64 (one subscriber's)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return address
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                return str(ip.ipv4_mapped)
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
        return address

    def admit(self, address: str) -> bool:
        """Count a new connection from `address`; False (and not counted) over the cap."""
        key = self.key(address)
        if self.open[key] >= self.per_address:
            self.refused += 1
            return False
        self.open[key] += 1
        return True

    def release(self, address: str) -> None:
        """An admitted connection ended or became trusted."""
        key = self.key(address)
        self.open[key] -= 1
        if self.open[key] <= 0:
            del self.open[key]


class Stage(enum.Enum):
    HEADERS = "headers"  # waiting for the first request's headers (the deadline runs)
    UNTRUSTED = "untrusted"  # a request came; still counted against the cap
    TRUSTED = "trusted"  # a verified WebSocket: no longer counted
    CLOSED = "closed"


class GuardedProtocol(asyncio.Protocol):
    """One connection: the deadline and the count, then aiohttp's protocol once headers are in.

    Until the first request's headers are complete (an empty line), the bytes
    are only kept: a half-open connection costs a small object and a timer,
    not an aiohttp handler, parser and task.  Then aiohttp's protocol is made
    and given the connection and the bytes, as if it had had them all along.
    """

    def __init__(self, guard: Guard, make_inner: Callable[[], asyncio.Protocol]) -> None:
        self.guard = guard
        self.inner: asyncio.Protocol | None = None
        self.address = ""
        self.stage = Stage.HEADERS
        self.counted = False  # against the per-address cap (not for a trusted proxy)
        self.transport: asyncio.Transport | None = None
        self._make_inner = make_inner
        self._head = bytearray()
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's does not subclass it
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self.guard.book.is_proxy(self.address):
            if not self.guard.book.admit(self.address):
                self.stage = Stage.CLOSED
                transport.write(REFUSAL)
                transport.close()
                self.guard.refused(self.address)
                return
            self.counted = True
        self.guard.connections[transport] = self
        self.guard.waiting(self)
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self.guard.header_timeout_s, self._late)

    def _late(self) -> None:
        if self.stage is Stage.HEADERS and self.transport is not None:
            self.guard.late += 1
            log.debug("closing a connection from %s: no complete request headers", self.address)
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)
            return
        if self.stage is not Stage.HEADERS:
            return
        start = max(0, len(self._head) - 2)
        self._head += data
        ended = self._head.find(b"\n\r\n", start) >= 0 or self._head.find(b"\n\n", start) >= 0
        if ended or len(self._head) > MAX_HEAD_BYTES:  # too long: aiohttp refuses it
            self._hand_over()

    def shed(self) -> None:
        """The oldest of too many half-open connections: make room for a new one."""
        if self.stage is Stage.HEADERS and self.transport is not None:
            self.transport.abort()

    def _hand_over(self) -> None:
        assert self.transport is not None
        self.guard.pending.pop(self, None)
        self.stage = Stage.UNTRUSTED
        if self._deadline is not None:
            self._deadline.cancel()
        head, self._head = bytes(self._head), bytearray()
        self.inner = self._make_inner()
        self.inner.connection_made(self.transport)
        self.inner.data_received(head)

    def _leave(self, stage: Stage) -> None:
        """To TRUSTED or CLOSED: it stops counting against its address."""
        if self.stage in (Stage.HEADERS, Stage.UNTRUSTED):
            if self.counted:
                self.guard.book.release(self.address)
            if self._deadline is not None:
                self._deadline.cancel()
        self.stage = stage

    def trust(self) -> None:
        if self.stage is not Stage.CLOSED:
            self._leave(Stage.TRUSTED)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stage is Stage.CLOSED:
            return  # refused: aiohttp never saw it
        self._leave(Stage.CLOSED)
        if self.transport is not None:
            self.guard.connections.pop(self.transport, None)
        self.guard.pending.pop(self, None)
        if self.inner is not None:
            self.inner.connection_lost(exc)


class Guard:
    """The header deadline and the per-address cap of one server (see module doc)."""

    def __init__(
        self,
        header_timeout_s: float,
        per_address: int,
        trusted_proxies: tuple[str, ...] = (),
        max_pending: int = 10_000,
    ) -> None:
        self.header_timeout_s = header_timeout_s
        self.book = PeerBook(per_address, trusted_proxies)
        self.connections: dict[asyncio.BaseTransport, GuardedProtocol] = {}
        # Connections still in their headers, oldest first; past `max_pending` the
        # oldest is dropped for each new one (`serve` sets it to 3/4 of the fd limit).
        self.pending: OrderedDict[GuardedProtocol, None] = OrderedDict()
        self.max_pending = max_pending
        self.shed = 0
        self.late = 0
        self._refusals_logged = 0.0

    def protocol_factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """What `loop.create_server` takes: aiohttp's protocols, each guarded."""
        return lambda: GuardedProtocol(self, server)

    def client_address(self, request: web.BaseRequest) -> str:
        """The client's address: behind a trusted proxy, the last X-Forwarded-For hop before it."""
        remote = request.remote or ""
        if not self.book.is_proxy(remote):
            return remote  # anyone else's X-Forwarded-For is whatever it wants it to be
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
        for hop in reversed([h for h in hops if h]):
            if not self.book.is_proxy(hop):
                return hop
        return remote

    def trust(self, request: web.BaseRequest) -> None:
        """This request's connection proved itself (a verified hello): no longer counted."""
        guarded = self.connections.get(request.transport) if request.transport else None
        if guarded is not None:
            guarded.trust()

    def refused(self, address: str) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._refusals_logged > 10.0:
            self._refusals_logged = loop.time()
            log.warning(
                "refusing connections from %s: %d untrusted already (%d refused so far)",
                address,
                self.book.per_address,
                self.book.refused,
            )

    def waiting(self, conn: GuardedProtocol) -> None:
        """A new connection waits for its headers; the oldest waiting goes if too many do."""
        while len(self.pending) >= self.max_pending:
            oldest, _ = self.pending.popitem(last=False)
            self.shed += 1
            oldest.shed()
        self.pending[conn] = None

    def stats(self) -> dict[str, int]:
        return {
            "untrusted_connections": sum(self.book.open.values()),
            "refused_connections": self.book.refused,
            "header_timeouts": self.late,
            "pending_connections": len(self.pending),
            "pending_connections_shed": self.shed,
        }


GUARD = web.AppKey("guard", Guard)


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections go through `Guard` (and TLS handshakes get its deadline)."""

    def __init__(self, runner: web.AppRunner, guard: Guard, *args: Any, **kwargs: Any) -> None:
        super().__init__(runner, *args, **kwargs)
        self.guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        ssl_args: dict[str, Any] = {}
        if self._ssl_context is not None:
            ssl_args = {
                "ssl": self._ssl_context,
                "ssl_handshake_timeout": self.guard.header_timeout_s,
            }
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.guard.protocol_factory(server),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
            **ssl_args,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


def raise_fd_limit() -> tuple[int, int]:
    """Raise this process's soft limit of open files to the hard limit; the (soft, hard) now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
    return soft, hard
