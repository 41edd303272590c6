"""ICE for the SFU: aioice's agent, gathering only where we are told to.

`IceConnection` subclasses `aioice.Connection` (the full ICE agent, in the
controlled role since the client always offers) to:

* gather host candidates only on the configured addresses (aioice skips
  127.0.0.1 and would otherwise use every interface), on ports of the
  configured range, with a large receive buffer;
* ignore remote candidates and incoming checks that cannot pair with our
  addresses (a browser also offers its other interfaces; on loopback these
  must not win) and mDNS names (peer-reflexive discovery covers them);
* demultiplex every datagram by its first byte in `MediaProtocol`
  (RFC 7983): STUN goes to aioice, DTLS to a bounded queue that aiortc's
  `RTCDtlsTransport` reads, SRTP/SRTCP straight to a synchronous callback.
  DTLS and SRTP are only accepted from the ICE-selected address (SRTP from
  a valid pair of an agent with no selection yet, a restart's, selects that
  pair: the browser switched paths before nominating, `foreign_media`); DTLS that
  arrives from a validated address before the selection is held (a few
  datagrams at most) and released if that address is selected;
* run consent freshness (RFC 7675) itself: as aioice, a check every 5 s
  (+-20%) and consent lost after 30 s without an answer (then the agent
  closes and the DTLS transport above it fails), but an answer counts
  whenever it arrives within those 30 s (RFC 7675 5.1; aioice forgot a
  check after 0.5 s, so a slow path, or a server whose socket queue held
  the answers during a join storm, lost consent with every check
  answered; `consent_late` counts such answers); in addition a client that
  went silent for longer than its packet rate explains (`PathWatch`: 0.3 s
  after media; a client that sends only RTCP, or nothing, is checked at the
  RFC pace only) is checked at once, with a timeout of a few round trips
  (0.25 s at least; one timer polls every transport's counters,
  `sfu.transport.consentclock`), and after `CONSENT_WARN_FAILURES`
  unanswered checks in a row (one, when the client is also silent)
  `on_consent_lost` is called once per outage, so the client can be told to
  restart ICE while the DTLS association is alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aioice import Candidate, Connection, stun
from aioice.candidate import candidate_foundation, candidate_priority
from aioice.ice import (
    CONSENT_FAILURES,
    CONSENT_INTERVAL,
    CandidatePair,
    StunProtocol,
    get_host_addresses,
)

from sfu.packet.counters import Counters
from sfu.transport.consentclock import check_time, clock_for
from sfu.transport.pathwatch import POLL_S, PathWatch
from sfu.transport.stunwire import Signer, binding_request, binding_response, signed_by
from sfu.transport.udpmux import Route, SharedEndpoint, UdpMux, routes_moved
from sfu.transport.watched import Watched

logger = logging.getLogger(__name__)

MAX_DTLS_QUEUE = 64
MAX_EARLY_DTLS = 16
# DTLS datagrams accepted per second: a handshake needs a handful, and once
# SRTP is keyed only alerts and the odd retransmission are legitimate.
MAX_DTLS_PER_SECOND = 100
MAX_REMOTE_CANDIDATES = 64
# Unanswered consent checks in a row before the client is told to restart ICE.
CONSENT_WARN_FAILURES = 2
# A consent check answered later than this is late (aioice's STUN RTO): it
# still counts for consent, but not as an answer in time.
CONSENT_RTO = 0.5
# How often a check past its timeout looks whether our shared socket has been read empty.
BACKLOG_POLL_S = 0.1

SrtpHandler = Callable[[bytes], None]
Check = Callable[[], Awaitable[bool]]
ConsentHandler = Callable[[], None]


class DirectRoute:
    """Media to the selected address of a transport's own socket: one `sendto` each."""

    __slots__ = ("addr", "sock")

    def __init__(self, sock: socket.socket, addr: tuple[str, int]) -> None:
        self.sock = sock
        self.addr = addr

    def send(self, data: bytes, counters: Counters) -> None:
        try:
            self.sock.sendto(data, self.addr)
        except OSError:  # buffer full (EAGAIN) or the path went away
            counters.send_errors += 1


MediaRoute = Route | DirectRoute
RouteHandler = Callable[[MediaRoute | None], None]


def dtls_records_ok(data: bytes) -> bool:
    """Whether a datagram is a run of well-formed DTLS record headers (RFC 6347 4.1)."""
    offset, size = 0, len(data)
    while offset < size:
        if offset + 13 > size or not 20 <= data[offset] <= 25 or data[offset + 1] != 0xFE:
            return False
        offset += 13 + int.from_bytes(data[offset + 11 : offset + 13], "big")
    return offset == size


async def first_answer(check: Check, within: float) -> float | None:
    """Seconds until a `check` said True, or None after `within` s: a second check
    starts half way if the first is still unanswered (the round trip is the
    answered one's)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + within
    pending: dict[asyncio.Future[bool], float] = {}
    try:
        for attempt in range(2):
            sent = loop.time()
            pending[asyncio.ensure_future(check())] = sent
            until = sent + within / 2 if attempt == 0 else deadline
            while pending and loop.time() < until:
                done, _ = await asyncio.wait(
                    pending, timeout=until - loop.time(), return_when=asyncio.FIRST_COMPLETED
                )
                for future in done:
                    at = pending.pop(future)
                    if future.result():
                        return loop.time() - at
        return None
    finally:
        for future in pending:
            future.cancel()


@functools.lru_cache(maxsize=4096)
def _address_kind(host: str) -> tuple[int, bool] | None:
    """(IP version, loopback) of `host`, None if it is no IP address: parsing one
    with `ipaddress` took a good part of answering each client's consent check."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return ip.version, ip.is_loopback


def host_addresses(configured: tuple[str, ...]) -> list[str]:
    """The addresses to gather on: the configured ones, else all non-loopback."""
    if configured:
        return list(configured)
    return [
        a
        for a in get_host_addresses(use_ipv4=True, use_ipv6=True)
        if not ipaddress.ip_address(a).is_loopback and not ipaddress.ip_address(a).is_link_local
    ]


class PortAllocator:
    """Hands out ports of a range round-robin; `None` lets the kernel choose."""

    def __init__(self, ports: tuple[int, int] | None) -> None:
        self._ports = ports
        self._next = ports[0] if ports else 0

    def candidates(self) -> Iterator[int]:
        if self._ports is None:
            yield 0
            return
        low, high = self._ports
        for _ in range(high - low + 1):
            port = self._next
            self._next = low if port >= high else port + 1
            yield port


class MediaProtocol(StunProtocol):
    """One UDP socket of a transport; demultiplexes by the first byte."""

    def __init__(self, connection: IceConnection) -> None:
        super().__init__(connection)
        self.ice = connection
        # A second handle on the same socket: socket.sendto is cheaper than
        # the event loop transport's, and a full buffer drops the packet
        # (counted) instead of queueing without bound.
        self.sender: socket.socket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.sender = socket.socket(fileno=os.dup(sock.fileno()))

    def connection_lost(self, exc: Exception | None) -> None:
        self.close_sender()
        super().connection_lost(exc)

    def close_sender(self) -> None:
        if self.sender is not None:
            self.sender.close()
            self.sender = None

    def route_to(self, addr: tuple[str, int]) -> DirectRoute | None:
        return None if self.sender is None else DirectRoute(self.sender, addr)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:  # type: ignore[override]
        ice = self.ice
        try:
            first = data[0]
            if 127 < first < 192:
                selected = ice.selected
                if selected is not None and selected[0] is self and selected[1] == addr[:2]:
                    ice.on_srtp(data)
                else:
                    ice.foreign_media(data, (addr[0], addr[1]), self)
            elif first < 4:
                self._stun(data, (addr[0], addr[1]))
            elif 19 < first < 64:
                ice.on_dtls(data, (addr[0], addr[1]), self)
            else:
                ice.counters.unknown_packets += 1
        except Exception:  # the receive path must never die
            ice.counters.errors += 1
            logger.debug("datagram from %s dropped", addr, exc_info=True)

    def _stun(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = stun.parse_message(data)
        except Exception:  # aioice raises ValueError, struct.error, ...
            self.ice.counters.bad_stun += 1
            return
        if message.message_class in (stun.Class.RESPONSE, stun.Class.ERROR):
            transaction = self.transactions.get(message.transaction_id)
            if transaction is not None:
                transaction.response_received(message, addr)
        elif message.message_class == stun.Class.REQUEST:
            self.ice.request_received(message, addr, self)


# (the socket, the remote address) of an agent's selected pair, or None.
Selected = tuple["MediaProtocol | SharedEndpoint", tuple[str, int]] | None


class IceConnection(Connection):
    """aioice's agent restricted to our addresses and ports (see module doc)."""

    def __init__(
        self,
        *,
        addresses: list[str],
        ports: PortAllocator,
        counters: Counters,
        buffer_bytes: int,
        on_srtp: SrtpHandler,
        controlling: bool = False,
        muxes: list[UdpMux] | None = None,
        on_route: RouteHandler | None = None,
    ) -> None:
        # The SFU answers, so it is the controlled agent; test and bench
        # clients reuse this class as the controlling one.  On shared
        # sockets the ufrag must be unique among the socket's transports.
        ufrag = _unique_ufrag(muxes) if muxes else None
        super().__init__(ice_controlling=controlling, use_ipv6=True, local_username=ufrag)
        self.counters = counters
        self.on_srtp = on_srtp
        self.on_route = on_route
        self.selected = None
        self.on_consent_lost: ConsentHandler | None = None
        # Set once a remote candidate or an authenticated check is known: aioice's
        # connect() fails at once without one (a restart offer may trickle them all).
        self.remote_seen = asyncio.Event()
        # Seconds between consent checks (+-20%); aioice's 5 s unless a test shortens it.
        self.consent_interval: float = CONSENT_INTERVAL
        # When the latest consent check that got an answer was sent; open checks by id.
        self.consent_fresh = 0.0
        self._checks: dict[bytes, ConsentCheck] = {}
        # The passwords' HMAC keys, prepared once (sfu.transport.stunwire.Signer).
        self._local_signer = Signer(self.local_password.encode("utf8"))
        self._signers: tuple[bytes, Signer] | None = None
        self._muxes = muxes
        self._addresses = addresses
        self._port_allocator = ports
        self._buffer_bytes = buffer_bytes
        self._validated: set[tuple[str, int]] = set()
        self._early_dtls: list[tuple[bytes, tuple[str, int], MediaProtocol | SharedEndpoint]] = []
        self._dtls_window = 0.0
        self._dtls_count = 0
        ips = [ipaddress.ip_address(a) for a in addresses]
        self._local_versions = {ip.version for ip in ips}
        # A wildcard address can reach anything of its version.
        wildcard = any(ip.is_unspecified for ip in ips)
        self._local_is_loopback = {True, False} if wildcard else {ip.is_loopback for ip in ips}

    async def gather_candidates(self) -> None:
        if not self._local_candidates_start:
            self._local_candidates_start = True
            self._local_candidates += await self.get_component_candidates(1, self._addresses)
            self._local_candidates_end = True

    async def get_component_candidates(
        self,
        component: int,
        addresses: list[str],
        timeout: int = 5,  # noqa: ASYNC109
    ) -> list[Candidate]:
        if self._muxes is not None:
            return self._shared_candidates(component)
        candidates = []
        for address in addresses:
            protocol = await self._bind(address)
            if protocol is None:
                continue
            host, port = protocol.transport.get_extra_info("sockname")[:2]
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", host),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=host,
                port=port,
                type="host",
            )
            self._protocols.append(protocol)
            candidates.append(protocol.local_candidate)
        if not candidates:
            raise ConnectionError(f"could not bind a UDP socket on {addresses}")
        return candidates

    # The compiled dispatch remembers which handler takes an address's SRTP
    # (sfu.native._ingress.Routes): each assignment of either tells it (`Watched`).
    selected = Watched[Selected](
        routes_moved, "(the socket, the remote address) of the selected pair, or None."
    )
    on_srtp = Watched[SrtpHandler](
        routes_moved,
        "What takes the selected address's SRTP (the transport's inlet or `_on_srtp`).",
    )

    def _shared_candidates(self, component: int) -> list[Candidate]:
        candidates = []
        for mux in self._muxes or []:
            endpoint = SharedEndpoint(self, mux)
            mux.register(endpoint)
            endpoint.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", mux.host),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=mux.host,
                port=mux.port,
                type="host",
            )
            self._protocols.append(endpoint)
            candidates.append(endpoint.local_candidate)
        if not candidates:
            raise ConnectionError("no shared UDP socket to gather on")
        return candidates

    async def _bind(self, address: str) -> MediaProtocol | None:
        loop = asyncio.get_running_loop()
        for port in self._port_allocator.candidates():
            try:
                _, protocol = await loop.create_datagram_endpoint(
                    lambda: MediaProtocol(self), local_addr=(address, port)
                )
            except OSError:
                continue
            sock = protocol.transport.get_extra_info("socket")
            if sock is not None:
                for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, option, self._buffer_bytes)
            return protocol
        logger.warning("no free UDP port on %s in the configured range", address)
        return None

    # remote candidates and checks

    def reachable(self, host: str) -> bool:
        """Whether a remote address can pair with one of ours."""
        kind = _address_kind(host)
        if kind is None:
            return False
        return kind[0] in self._local_versions and kind[1] in self._local_is_loopback

    def _add_remote_candidate(self, remote_candidate: Candidate, network_host: str) -> None:
        if len(self._remote_candidates) >= MAX_REMOTE_CANDIDATES:
            self.counters.ignored_candidates += 1
            return
        if remote_candidate.transport.lower() != "udp" or not self.reachable(network_host):
            self.counters.ignored_candidates += 1
            return
        super()._add_remote_candidate(remote_candidate, network_host)
        self.remote_seen.set()

    async def add_remote_candidate(self, remote_candidate: Candidate | None) -> None:
        if remote_candidate is not None and remote_candidate.host.endswith(".local"):
            self.counters.ignored_candidates += 1  # no mDNS on a server
            return
        await super().add_remote_candidate(remote_candidate)

    def request_received(
        self, message: stun.Message, addr: tuple[str, int], protocol: StunProtocol
    ) -> None:
        if not self.reachable(addr[0]) or len(self._remote_candidates) >= MAX_REMOTE_CANDIDATES:
            self.counters.foreign_source += 1
            return
        authentic = "USERNAME" in message.attributes and _signed(message, self._local_signer)
        if authentic and len(self._validated) < MAX_REMOTE_CANDIDATES:
            self._validated.add(addr)
            self.remote_seen.set()
        if not (authentic and self._answered_check(message, addr, protocol)):
            super().request_received(message, addr, protocol)

    def _answered_check(
        self, message: stun.Message, addr: tuple[str, int], protocol: StunProtocol
    ) -> bool:
        """Answer an authenticated check the common way, as aioice's `request_received`
        would, without its second HMAC of the request and its slow answer
        (`sfu.transport.stunwire`); False for anything else (a role conflict, a
        check before `connect`, another method, a closing agent): aioice handles it."""
        attributes = message.attributes
        role = "ICE-CONTROLLING" if self.ice_controlling else "ICE-CONTROLLED"
        if (
            self._closing
            or not self._early_checks_done
            or message.message_method != stun.Method.BINDING
            or role in attributes
            or not self._valid_username(attributes["USERNAME"])
        ):
            return False
        answer = binding_response(message.transaction_id, addr, self._local_signer)
        _send_stun_bytes(protocol, answer, addr)
        self.check_incoming(message, addr, protocol)
        return True

    def validated(self, addr: tuple[str, int]) -> bool:
        """Whether an authenticated check came from `addr`."""
        return addr in self._validated

    def check_complete(self, pair: CandidatePair) -> None:
        super().check_complete(pair)
        nominated = self._nominated.get(1)
        if nominated is not None:
            self._select(nominated)

    def foreign_media(
        self, data: bytes, addr: tuple[str, int], protocol: MediaProtocol | SharedEndpoint
    ) -> None:
        """SRTP from an address that is not the selected one: if nothing is selected
        yet and it is a valid pair's (our check of it succeeded and an
        authenticated check came from it), the controlling agent chose it: it
        counts as its nomination (RFC 8445 12.1: media may flow on any valid
        pair).  After a restart Chromium switches to the new path well before
        it next sends a check with USE-CANDIDATE (up to 2.5 s later), and its
        media would be dropped meanwhile."""
        # Only an agent without a selected pair (a restart's, before it takes over):
        # an established one would flip between two live pairs on reordered packets.
        valid = self.selected is None and addr in self._validated
        pair = self._valid_pair(protocol, addr) if valid else None
        if pair is None:
            self.counters.foreign_source += 1
            return
        logger.info("media from a valid pair: %s is selected", addr)
        pair.remote_nominated = pair.nominated = True
        self.check_complete(pair)
        if self.selected is not None and self.selected[1] == addr:
            self.on_srtp(data)

    def _valid_pair(
        self, protocol: MediaProtocol | SharedEndpoint, addr: tuple[str, int]
    ) -> CandidatePair | None:
        for pair in self._check_list:
            if (
                pair.protocol is protocol
                and pair.remote_addr == addr
                and pair.state == CandidatePair.State.SUCCEEDED
            ):
                return pair
        return None

    def _select(self, pair: CandidatePair) -> None:
        protocol = pair.protocol
        if not isinstance(protocol, MediaProtocol | SharedEndpoint):
            return
        selected = (protocol, pair.remote_addr)
        if self.selected != selected:
            self.selected = selected
            if self.on_route is not None:
                self.on_route(protocol.route_to(pair.remote_addr))
            early, self._early_dtls = self._early_dtls, []
            for data, addr, protocol in early:
                self.on_dtls(data, addr, protocol)

    # consent freshness (RFC 7675)

    async def query_consent(self) -> None:
        """Consent freshness with dead-path detection (see module doc).

        A check every `consent_interval` (+-20%) as aioice does, and also as
        soon as the client went silent for longer than its packet rate
        explains (`PathWatch`: 0.3 s for a client that sent media; not for
        one that sends under 5 packets/s, RTCP only or nothing): a dead path
        is noticed in about half a second.  The counters are read every
        `POLL_S` by the event loop's one `ConsentClock` (no task wake-up
        until a check is due), nothing is added to the per-packet path.
        Consent still expires only after `CONSENT_FAILURES` intervals (30 s)
        without an answer to a check sent in that time, however late the
        answer comes.
        """
        assert self.remote_password is not None
        key = self.remote_password.encode("utf8")
        counters = self.counters
        loop = asyncio.get_running_loop()
        answered = self.consent_fresh = loop.time()
        watch = PathWatch(answered)
        next_check = self._next_check(answered)
        failures, warned, silent = 0, False, False

        def due(now: float) -> bool:  # polled every POLL_S by the loop's one clock
            nonlocal silent
            silent = watch.poll(now, counters.rtp_in + counters.rtcp_in)
            return silent or now >= next_check

        def woken(now: float) -> bool:  # polled every second while not watched
            return due(now) or watch.watched()

        while True:
            clock = clock_for(loop, POLL_S)
            if watch.watched():
                await clock.wait(due)
            else:
                # Not watched for silence (sfu.transport.pathwatch): only the RFC timer
                # concerns it (the deadline keeps it on time), and a second's resolution
                # is enough to notice that it started sending.
                await clock.wait(woken, slow=True, deadline=next_check)
                if not silent and loop.time() < next_check:
                    continue  # it sends now: watched for its silence from here on
            now = loop.time()
            next_check = self._next_check(now)
            rtt = await self._consent_answered(key, watch.timeout())
            # Answered in time, or an earlier check's answer came late: the path works.
            if rtt is not None or self.consent_fresh > answered:
                if rtt is not None:
                    watch.answered(now, rtt)
                answered, failures, warned = self.consent_fresh, 0, False
                continue
            failures += 1
            if (failures >= CONSENT_WARN_FAILURES or silent) and not warned:
                warned = True
                counters.consent_warnings += 1
                logger.info(
                    "ICE consent check unanswered (%.2f s of silence): asking for a restart",
                    loop.time() - watch.heard,
                )
                if self.on_consent_lost is not None:
                    self.on_consent_lost()
            if now - answered >= CONSENT_FAILURES * self.consent_interval:
                logger.info("ICE consent to send expired")
                self._query_consent_task = None
                await self.close()
                return

    def _remote_signer(self, key: bytes) -> Signer:
        """The signer of the remote password `key` (made again only if it changes)."""
        if self._signers is None or self._signers[0] != key:
            self._signers = (key, Signer(key))
        return self._signers[1]

    def _next_check(self, now: float) -> float:
        """0.8-1.2 intervals after `now`: on the consent clock's grid (`check_time`) for
        the server, so that its checks go out in bursts; anywhere in the window for a
        controlling agent (the tests' and benches' clients), like a browser's."""
        if self.ice_controlling:
            return now + self.consent_interval * (0.8 + 0.4 * random.random())
        return check_time(now, self.consent_interval, random.random())

    async def _consent_answered(self, key: bytes, within: float) -> float | None:
        """The round trip (s) of a check on every nominated pair, or None if one went
        unanswered for `within` s: a second check goes out half way (one lost
        datagram is no dead path).  Each check stays open for the consent
        window (`_send_check`), so an answer that comes later still moves
        `consent_fresh`; past `within`, a server behind its own shared socket
        first reads what arrived in time (`_answered_behind_queue`)."""
        loop = asyncio.get_running_loop()
        self._forget_checks(loop.time() - CONSENT_FAILURES * self.consent_interval)
        rtt = 0.0
        for pair in list(self._nominated.values()):
            sent = loop.time()
            answer = await first_answer(functools.partial(self._check, pair, key), within)
            if answer is None:
                if not await self._answered_behind_queue(sent, sent + within):
                    return None
                answer = within
            rtt = max(rtt, answer)
        return rtt

    def _check(self, pair: CandidatePair, key: bytes) -> asyncio.Future[bool]:
        """A check sent on `pair`: a future true when answered (false at once if not sent).
        A future, not a coroutine: `first_answer` waits on it without a task per check;
        cancelling it ends the wait, not the check (a late answer still counts)."""
        check = self._send_check(pair, key)
        if check is None:
            refused: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            refused.set_result(False)
            return refused
        return check.answered

    def _send_check(self, pair: CandidatePair, key: bytes) -> ConsentCheck | None:
        """Send a consent check on `pair` (None if the socket is gone).

        RFC 7675 5.1: an answer to any check sent in the last 30 s keeps
        consent, so the check stays registered on its socket until then and
        its answer counts whenever it comes (aioice forgot a consent check
        after its 0.5 s RTO: a peer, a path or a server socket queue that
        answered every check 0.6 s late lost consent).
        """
        tid = os.urandom(12)
        request = binding_request(
            tid,
            f"{self.remote_username}:{self.local_username}",
            candidate_priority(pair.component, "prflx"),
            self._tie_breaker,
            self.ice_controlling,
            self._remote_signer(key),
        )
        check = ConsentCheck(
            tid, pair.remote_addr, pair.protocol, key, self._remote_signer(key), self._answered
        )
        try:
            _watch(pair.protocol, check)
            _send_stun_bytes(pair.protocol, request, pair.remote_addr)
        except Exception:  # the socket is gone: no consent
            _unwatch(check)
            return None
        self._checks[check.transaction_id] = check
        return check

    async def _answered_behind_queue(self, sent: float, deadline: float) -> bool:
        """Whether the checks sent at `sent` were answered by `deadline`, judged at our socket.

        When this process is behind its shared socket (a join storm),
        answers that came in time wait there: the checks are judged once
        nothing that arrived before the deadline is left unread (or at the
        end of the consent window), so a busy server does not tell every
        client to restart ICE.
        """
        muxes = {
            pair.protocol.mux
            for pair in self._nominated.values()
            if isinstance(pair.protocol, SharedEndpoint)
        }
        loop = asyncio.get_running_loop()
        give_up = deadline + CONSENT_FAILURES * self.consent_interval
        while self.consent_fresh < sent:
            behind = any(mux.behind(deadline) for mux in muxes)
            if not behind or loop.time() > give_up:
                return False
            await asyncio.sleep(BACKLOG_POLL_S)
        return True

    def _answered(self, check: ConsentCheck) -> None:
        self._checks.pop(check.transaction_id, None)
        _unwatch(check)
        self.consent_fresh = max(self.consent_fresh, check.sent)
        if asyncio.get_running_loop().time() - check.sent > CONSENT_RTO:
            self.counters.consent_late += 1

    def _forget_checks(self, sent_before: float) -> None:
        """Stop waiting for the answers of checks sent before `sent_before`."""
        for tid, check in list(self._checks.items()):
            if check.sent < sent_before:
                del self._checks[tid]
                _unwatch(check)

    # DTLS

    def on_dtls(
        self, data: bytes, addr: tuple[str, int], protocol: MediaProtocol | SharedEndpoint
    ) -> None:
        if not dtls_records_ok(data):
            self.counters.bad_dtls += 1
            return
        selected = self.selected
        if selected is not None:
            if selected[0] is protocol and selected[1] == addr:
                self._queue_dtls(data)
            else:
                self.counters.foreign_source += 1
        elif addr in self._validated and len(self._early_dtls) < MAX_EARLY_DTLS:
            self._early_dtls.append((data, addr, protocol))
        else:
            self.counters.foreign_source += 1

    def _queue_dtls(self, data: bytes) -> None:
        now = time.monotonic()
        if now - self._dtls_window > 1.0:
            self._dtls_window, self._dtls_count = now, 0
        self._dtls_count += 1
        if self._dtls_count > MAX_DTLS_PER_SECOND or self._queue.qsize() >= MAX_DTLS_QUEUE:
            self.counters.dtls_overflow += 1
            return
        self.counters.dtls_in += 1
        self._queue.put_nowait((data, 1))

    def protocol_lost(self, protocol: StunProtocol) -> None:
        # aioice wakes the DTLS reader with an error when a nominated pair's
        # socket goes away.  A socket (an interface) going away is a dead
        # path like any other: an ICE restart may bring it back under the
        # same DTLS association, and consent expiry ends it otherwise.
        return

    def data_received(self, data: bytes, component: int) -> None:
        # Every datagram is demultiplexed by MediaProtocol; nothing else may
        # fill aioice's unbounded queue.
        self.counters.unknown_packets += 1

    def send_media(self, data: bytes) -> bool:
        """Send one protected datagram to the selected address; False if not sent."""
        selected = self.selected
        if selected is None:
            return False
        protocol, addr = selected
        if isinstance(protocol, SharedEndpoint):
            protocol.mux.sendto(data, addr)
            return True
        if protocol.sender is None:
            return False
        try:
            protocol.sender.sendto(data, addr)
        except OSError:  # buffer full (EAGAIN) or the path went away
            self.counters.send_errors += 1
            return False
        return True

    def close_sockets(self) -> None:
        """Close every socket now (no more media in or out); close() still follows."""
        self.selected = None
        if self.on_route is not None:
            self.on_route(None)
        for protocol in self._protocols:
            if isinstance(protocol, SharedEndpoint):
                protocol.detach()
                continue
            if isinstance(protocol, MediaProtocol):
                protocol.close_sender()
            protocol.transport.close()


class ConsentCheck(stun.Transaction):
    """One consent request, answered whenever the answer comes (no timer, no retransmission).

    aioice's sockets (`MediaProtocol`, `SharedEndpoint`) hand it the
    responses to its transaction id like any transaction's.
    """

    def __init__(
        self,
        transaction_id: bytes,
        addr: tuple[str, int],
        protocol: StunProtocol,
        key: bytes,
        signer: Signer,
        on_answer: Callable[[ConsentCheck], None],
    ) -> None:
        # The request went out as bytes (sfu.transport.stunwire); the Transaction
        # only keeps a message for retransmissions, and this one never retransmits.
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, transaction_id)
        super().__init__(request, addr, protocol, retransmissions=0, integrity_key=key)
        self.transaction_id = transaction_id
        self.protocol = protocol
        self.sent = asyncio.get_running_loop().time()
        self.answered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._signer = signer
        self._on_answer: Callable[[ConsentCheck], None] | None = on_answer

    def response_received(self, message: stun.Message, addr: tuple[str, int]) -> None:
        on_answer = self._on_answer
        if (
            on_answer is not None
            and message.message_class == stun.Class.RESPONSE
            and _signed(message, self._signer)
        ):
            self._on_answer = None
            if not self.answered.done():  # nobody waits any more: cancelled
                self.answered.set_result(True)
            on_answer(self)


def _signed(message: stun.Message, signer: Signer) -> bool:
    """`message.check_message_integrity` with a prepared signer (`stunwire.signed_by`)."""
    return signed_by(message._integrity_data, message.attributes.get("MESSAGE-INTEGRITY"), signer)


def _send_stun_bytes(protocol: StunProtocol, data: bytes, addr: tuple[str, int]) -> None:
    """Send a STUN message already packed (`send_stun` packs an aioice `Message`)."""
    if isinstance(protocol, SharedEndpoint):
        if protocol.attached:
            protocol.mux.sendto(data, addr)
    elif protocol.transport is not None:
        protocol.transport.sendto(data, addr)


def _watch(protocol: StunProtocol, check: ConsentCheck) -> None:
    """Route the responses to `check`'s transaction id to it."""
    tid = check.transaction_id
    protocol.transactions[tid] = check
    if isinstance(protocol, SharedEndpoint) and protocol.attached:
        protocol.mux.transactions[tid] = protocol


def _unwatch(check: ConsentCheck) -> None:
    protocol, tid = check.protocol, check.transaction_id
    if protocol.transactions.get(tid) is check:
        del protocol.transactions[tid]
    if isinstance(protocol, SharedEndpoint) and protocol.mux.transactions.get(tid) is protocol:
        del protocol.mux.transactions[tid]


def _unique_ufrag(muxes: list[UdpMux]) -> str:
    while True:
        ufrag = muxes[0].unique_ufrag()
        if all(ufrag not in mux.by_ufrag for mux in muxes):
            return ufrag
