"""Single-port mode: every transport of this process on one UDP socket per address.

`UdpMux` owns the socket (one per ICE host address, all on the same port:
`MediaSettings.rtc_udp_port`, or one the kernel picks) and demultiplexes
what arrives:

* STUN requests by the local ICE ufrag (the part of the USERNAME attribute
  before the colon): each transport has its own, unique on the socket;
* STUN responses by the transaction id of the check or consent request the
  transport sent;
* DTLS and SRTP/SRTCP by the remote address.  An address belongs to a
  transport once it has *selected* it (ICE nomination, which needs a round
  trip, so a spoofed source cannot take it), or, before that, once an
  authenticated check came from it (for DTLS that arrives before the
  selection) and no other transport has selected it.

Anything else (no ufrag, a ufrag nobody has, an address nobody owns,
garbage) is dropped and counted in the mux's own `Counters`, and never
reaches a transport.

Reading: `loop.add_reader` on the socket, up to 64 datagrams per `recvmmsg`
call (`sfu.transport.mmsg`), each dispatched synchronously with its kernel
receive time in `rxtime.ARRIVAL` (SO_TIMESTAMPNS, `sfu.transport.rxtime`),
calls repeated until the socket is empty or 50 ms are spent, then the send
batch is flushed.  With sfu.native compiled, a batch is dispatched by one C
call (`sfu.native._ingress.dispatch`: the loop and `datagram`'s SRTP case,
everything else handed to `datagram`); without it, by the Python loop.
Sending: `Egress.queue` copies a protected datagram into the batch; the
batch is flushed at the end of every read, when it is full, and otherwise by
a `loop.call_soon` scheduled on the first datagram queued (packets sent from
timers or the relay), so nothing waits past the current turn of the event
loop.  Without the binding (`mmsg.load()` is None) the same objects read with
`recvmsg` (the stamp in its ancillary data) and send each datagram with
`sendto` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import secrets
import socket
import sys
import termios
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aioice import stun
from aioice.ice import StunProtocol

from sfu import native
from sfu.packet.counters import Counters
from sfu.transport import mmsg, rxtime
from sfu.transport.watched import Watched

if TYPE_CHECKING:
    from sfu.transport.srtp import OutboundSrtp

logger = logging.getLogger(__name__)

# Linux's values (asm-generic/socket.h); Python's socket module does not name them.
SO_SNDBUFFORCE = 32 if sys.platform.startswith("linux") else None
SO_RCVBUFFORCE = 33 if sys.platform.startswith("linux") else None
READ_BATCH = 64
# A wake-up reads batches until the socket is empty, for at most this long.
READ_BUDGET_S = 0.05
SEND_BATCH = 256
# A connected transport needs at most a handful of addresses (MAX_REMOTE_CANDIDATES bounds it).
MAX_ADDRESSES_PER_ENDPOINT = 64


class Egress:
    """The send side of one socket: batched with sendmmsg, or sendto per datagram."""

    # The compiled per-copy path reads `idle` in its slot (sfu.native._fanout).
    __slots__ = (
        "_held",
        "_scheduled",
        "batch",
        "binding",
        "direct_sends",
        "family",
        "idle",
        "sock",
    )

    def __init__(self, sock: socket.socket, binding: mmsg.Mmsg | None) -> None:
        self.sock = sock
        self.family = sock.family
        self.binding = binding
        self.batch = mmsg.new_batch(binding, sock.fileno(), SEND_BATCH) if binding else None
        self._scheduled = False
        self._held = False
        # Neither held by a read batch nor scheduled: the next datagram schedules a flush.
        self.idle = True
        self.direct_sends = 0

    def destination(self, addr: tuple[str, int]) -> mmsg.Destination:
        return mmsg.Destination(self.binding, self.family, addr)

    def queue(self, data: bytes, destination: mmsg.Destination, counters: Counters) -> None:
        batch = self.batch
        if batch is None:
            self._sendto(data, destination, counters)
            return
        batch.add(data, destination, counters)
        self._queued(batch)

    def queue_srtp(
        self,
        packet: bytes,
        header: tuple[int, int, int, int] | None,
        srtp: OutboundSrtp,
        destination: mmsg.Destination,
        counters: Counters,
        twcc_at: int = -1,
        twcc_seq: int = 0,
    ) -> int:
        """Plain RTP in, protected in the batch (header rewritten first if given); size or -1.

        `WebRtcTransport.send_rewritten` does the same inline (the per-copy path).
        `twcc_at` >= 0 (no header only): the transport-wide sequence number is written there.
        """
        batch = self.batch
        assert batch is not None, "only on a batched egress"
        if header is None:
            size = batch.add_srtp(packet, srtp, destination, counters, twcc_at, twcc_seq)
        else:
            size = batch.add_rewritten(packet, header, srtp, destination, counters)
        self._queued(batch)
        return size

    def _queued(self, batch: mmsg.Batch) -> None:
        """Flush a full batch now; else make sure it goes out in this turn of the loop."""
        if batch.count >= batch.capacity:
            batch.flush()
        elif self.idle:
            self.schedule()

    def schedule(self) -> None:
        """Flush in this turn of the event loop (a datagram was queued outside a read)."""
        self._scheduled = True
        self.idle = False
        asyncio.get_running_loop().call_soon(self._flush_soon)

    def _sendto(self, data: bytes, destination: mmsg.Destination, counters: Counters) -> None:
        self.direct_sends += 1
        try:
            if destination.addr is None:
                self.sock.send(data)
            else:
                self.sock.sendto(data, destination.addr)
        except OSError:  # buffer full (EAGAIN) or the path went away
            counters.send_errors += 1

    def hold(self) -> None:
        """A read batch is being handled: its end flushes, no callback needed."""
        self._held = True
        self.idle = False

    def release(self) -> None:
        self._held = False
        self.idle = not self._scheduled
        self.flush()

    def _flush_soon(self) -> None:
        self._scheduled = False
        self.idle = not self._held
        self.flush()

    def flush(self) -> None:
        if self.batch is not None and self.batch.count:
            self.batch.flush()

    @property
    def calls(self) -> int:
        return self.direct_sends + (self.batch.calls if self.batch is not None else 0)


class Route:
    """Where one transport's media goes: an egress and the selected remote address."""

    __slots__ = ("destination", "egress")

    def __init__(self, egress: Egress, destination: mmsg.Destination) -> None:
        self.egress = egress
        self.destination = destination

    def send(self, data: bytes, counters: Counters) -> None:
        self.egress.queue(data, self.destination, counters)


class UdpMux:
    """One shared UDP socket and its demultiplexer (see module doc)."""

    def __init__(
        self, host: str, port: int, *, buffer_bytes: int, binding: mmsg.Mmsg | None
    ) -> None:
        self.host = host
        self.requested_port = port
        self.port = 0
        self.counters = Counters()
        self.by_ufrag: dict[str, SharedEndpoint] = {}
        self.by_addr: dict[tuple[str, int], SharedEndpoint] = {}
        self.transactions: dict[bytes, SharedEndpoint] = {}
        self._buffer_bytes = buffer_bytes
        self._binding = binding
        self._sock: socket.socket | None = None
        self._reader: mmsg.Reader | None = None
        self.egress: Egress | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Event-loop time of the last read that found the socket empty: what
        # had arrived by then has been handed on (sfu.transport.ice reads it).
        self.drained_at = 0.0
        # Whether the socket stamps what it receives (SO_TIMESTAMPNS; sfu.transport.rxtime).
        self.kernel_stamps = False
        # The compiled twin of the dispatch loop in `_drain` (set on open), or None,
        # and its memo of which handler takes an address's SRTP (see `routes_moved`).
        self._dispatch: Callable[..., None] | None = None
        self._routes: Any = None

    # socket

    def open(self) -> None:
        """Bind the socket and start reading (OSError if the port is taken)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            for force, option in (
                (SO_RCVBUFFORCE, socket.SO_RCVBUF),
                (SO_SNDBUFFORCE, socket.SO_SNDBUF),
            ):
                # FORCE passes net.core.rmem_max/wmem_max when we may (root);
                # otherwise the kernel caps the plain option at them.
                try:
                    if force is None:
                        raise OSError
                    sock.setsockopt(socket.SOL_SOCKET, force, self._buffer_bytes)
                except OSError:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, option, self._buffer_bytes)
            sock.bind((self.host, self.requested_port))
        except OSError:
            sock.close()
            raise
        self.kernel_stamps = rxtime.enable(sock)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self.egress = Egress(sock, self._binding)
        if self._binding is not None:
            self._reader = mmsg.new_reader(self._binding, sock.fileno(), READ_BATCH)
        else:
            self._reader = mmsg.SocketReader(sock, READ_BATCH)
        self._dispatch = compiled_dispatch()
        module = native.load("_ingress") if self._dispatch is not None else None
        self._routes = None if module is None else module.Routes()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        self._reader = None  # its descriptor may be reused
        if self.egress is not None:
            self.egress.flush()
            if self.egress.batch is not None:
                self.egress.batch.close()
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(sock.fileno())
        sock.close()
        for endpoint in list(self.by_ufrag.values()):
            endpoint.detach()

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    def _readable(self) -> None:
        egress, reader = self.egress, self._reader
        if egress is None or reader is None:
            return
        egress.hold()
        try:
            self._drain(reader)
        except OSError:
            self.counters.errors += 1
            logger.debug("read from the shared socket failed", exc_info=True)
        finally:
            rxtime.ARRIVAL.at = 0.0  # only a datagram being dispatched has one
            egress.release()

    def _drain(self, reader: mmsg.Reader) -> None:
        """Read batches until the socket is empty or `READ_BUDGET_S` is spent.

        One batch per wake-up let the socket's queue grow behind the event
        loop's other work (a join storm's handshakes and messages): seconds
        of queued media and consent answers in a 4 MiB buffer, with the
        loop itself never late.  What is already connected goes first.
        """
        deadline = time.monotonic() + READ_BUDGET_S
        dispatch = self.dispatch
        while True:
            batch = reader.read()
            dispatch(batch)
            if self._reader is not reader:  # closed by what it dispatched
                return
            if len(batch) < READ_BATCH:
                if self._loop is not None:
                    self.drained_at = self._loop.time()
                return
            if time.monotonic() > deadline:
                self.counters.read_backlog += 1
                return

    def dispatch(self, batch: list[tuple[bytes, tuple[str, int], float]]) -> None:
        """Each datagram of a read to `datagram`, its arrival time in `rxtime.ARRIVAL`."""
        compiled = self._dispatch
        if compiled is not None:  # the same in one C call, the SRTP case inlined
            compiled(
                batch, self.by_addr, self.datagram, rxtime.ARRIVAL, self._dropped, self._routes
            )
            return
        datagram = self.datagram
        arrival = rxtime.ARRIVAL
        for data, addr, at in batch:
            arrival.at = at
            datagram(data, addr)

    def behind(self, since: float) -> bool:
        """Whether datagrams that arrived before event-loop time `since` may still be unread.

        Not when a read found the socket empty after `since`, nor when
        nothing waits in it now (an idle socket is never read).
        """
        if self.drained_at >= since or self._sock is None:
            return False
        try:
            waiting = fcntl.ioctl(self._sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return False
        return int.from_bytes(waiting, sys.byteorder) > 0

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        """A datagram outside the media path (STUN, DTLS): sent at once."""
        if self._sock is None:
            return
        try:
            self._sock.sendto(data, addr)
        except OSError:
            self.counters.send_errors += 1

    # demultiplexing

    def datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        """One datagram from `addr` (see module doc); never raises."""
        try:
            first = data[0]
            if 127 < first < 192:
                endpoint = self.by_addr.get(addr)
                if endpoint is None:
                    self.counters.foreign_source += 1
                    return
                # The selected pair's (SharedEndpoint.selects inlined: once per packet).
                ice = endpoint.ice
                selected = ice.selected
                if selected is not None and selected[0] is endpoint and selected[1] == addr:
                    ice.on_srtp(data)
                else:
                    ice.foreign_media(data, addr, endpoint)
            elif first < 4:
                self._stun(data, addr)
            elif 19 < first < 64:
                endpoint = self.by_addr.get(addr)
                if endpoint is None:
                    self.counters.foreign_source += 1
                else:
                    endpoint.ice.on_dtls(data, addr, endpoint)
            else:
                self._counters_of(addr).unknown_packets += 1
        except Exception as exc:  # the receive path must never die
            self._dropped(addr, exc)

    def _dropped(self, addr: tuple[str, int], exc: BaseException) -> None:
        """Handling a datagram from `addr` raised `exc`: counted, logged, dropped."""
        self._counters_of(addr).errors += 1
        logger.debug("datagram from %s dropped", addr, exc_info=exc)

    def _counters_of(self, addr: tuple[str, int]) -> Counters:
        """Whose drop it is: the transport owning the address, else the socket's."""
        endpoint = self.by_addr.get(addr)
        return self.counters if endpoint is None else endpoint.ice.counters

    def _stun(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = stun.parse_message(data)
        except Exception:  # aioice raises ValueError, struct.error, ...
            self._counters_of(addr).bad_stun += 1
            return
        if message.message_class in (stun.Class.RESPONSE, stun.Class.ERROR):
            endpoint = self.transactions.get(message.transaction_id)
            if endpoint is None:
                self._counters_of(addr).bad_stun += 1
                return
            endpoint.response(message, addr)
        elif message.message_class == stun.Class.REQUEST:
            username = message.attributes.get("USERNAME")
            ufrag = username.split(":", 1)[0] if isinstance(username, str) else None
            endpoint = self.by_ufrag.get(ufrag) if ufrag else None
            if endpoint is None:
                self._counters_of(addr).unknown_ufrag += 1
                return
            endpoint.ice.request_received(message, addr, endpoint)
            if endpoint.ice.validated(addr):
                self.claim(endpoint, addr, selected=False)
        else:
            self._counters_of(addr).bad_stun += 1  # indications: nothing of ours uses them

    # registration

    def unique_ufrag(self) -> str:
        while True:
            ufrag = secrets.token_hex(8)
            if ufrag not in self.by_ufrag:
                return ufrag

    def register(self, endpoint: SharedEndpoint) -> None:
        ufrag = endpoint.ice.local_username
        if ufrag in self.by_ufrag:
            raise ValueError("ICE ufrag already in use on this socket")
        self.by_ufrag[ufrag] = endpoint

    def claim(self, endpoint: SharedEndpoint, addr: tuple[str, int], *, selected: bool) -> None:
        """`addr` is `endpoint`'s: selected, or authenticated while nobody selected it."""
        owner = self.by_addr.get(addr)
        if owner is endpoint:
            return
        if owner is not None:
            if not selected and owner.selects(addr):
                self.counters.address_conflicts += 1
                return
            owner.addresses.discard(addr)
        if len(endpoint.addresses) >= MAX_ADDRESSES_PER_ENDPOINT:
            self.counters.address_conflicts += 1
            return
        self.by_addr[addr] = endpoint
        endpoint.addresses.add(addr)

    def unregister(self, endpoint: SharedEndpoint) -> None:
        if self.by_ufrag.get(endpoint.ice.local_username) is endpoint:
            del self.by_ufrag[endpoint.ice.local_username]
        for addr in endpoint.addresses:
            if self.by_addr.get(addr) is endpoint:
                del self.by_addr[addr]
        endpoint.addresses.clear()
        for tid in [t for t, e in self.transactions.items() if e is endpoint]:
            del self.transactions[tid]
        if self._routes is not None:
            # The compiled dispatch's memo would keep the departed's handler (its
            # transport, participant, buffers) until the next SRTP datagram.
            self._routes.forget()

    def route(self, addr: tuple[str, int]) -> Route | None:
        if self.egress is None:
            return None
        return Route(self.egress, self.egress.destination(addr))


def routes_moved(_owner: object = None) -> None:
    """An agent's `selected` or `on_srtp`, or an endpoint's `ice`, changed.

    The compiled dispatch remembers, per source address, the handler the
    selected pair gave (sfu.native._ingress.Routes); it forgets them all when
    `by_addr` changes (its dict version) or when this is called.  Those three
    attributes are `Watched` with it (with their owner), so no caller can forget to.
    """
    module = native.load("_ingress")
    if module is not None:
        module.moved()


def compiled_dispatch() -> Callable[..., None] | None:
    """sfu.native._ingress.dispatch (the twin of `_drain`'s loop), or None."""
    module = native.load("_ingress")
    return None if module is None else module.dispatch


class SharedEndpoint(StunProtocol):
    """One transport's place on a `UdpMux`: what aioice sees as its socket."""

    def __init__(self, ice: Any, mux: UdpMux) -> None:
        super().__init__(ice)
        self.ice = ice
        self.mux = mux
        self.addresses: set[tuple[str, int]] = set()
        self.attached = True

    # The compiled dispatch's memo (see `routes_moved`) is told of each assignment.
    ice = Watched[Any](routes_moved, "The ICE agent whose socket this is.")

    def selects(self, addr: tuple[str, int]) -> bool:
        selected = self.ice.selected
        return selected is not None and selected[0] is self and selected[1] == addr

    def response(self, message: stun.Message, addr: tuple[str, int]) -> None:
        transaction = self.transactions.get(message.transaction_id)
        if transaction is not None:
            transaction.response_received(message, addr)

    def route_to(self, addr: tuple[str, int]) -> Route | None:
        self.mux.claim(self, addr, selected=True)
        return self.mux.route(addr)

    def detach(self) -> None:
        """No datagram reaches this endpoint any more."""
        if self.attached:
            self.attached = False
            self.mux.unregister(self)

    # what aioice calls

    async def request(
        self,
        request: stun.Message,
        addr: tuple[str, int],
        integrity_key: bytes | None = None,
        retransmissions: int | None = None,
    ) -> tuple[stun.Message, tuple[str, int]]:
        if not self.attached:
            raise stun.TransactionFailed(
                stun.Message(request.message_method, stun.Class.ERROR, request.transaction_id)
            )
        self.mux.transactions[request.transaction_id] = self
        try:
            return await super().request(request, addr, integrity_key, retransmissions)
        finally:
            if self.mux.transactions.get(request.transaction_id) is self:
                del self.mux.transactions[request.transaction_id]

    def send_stun(self, message: stun.Message, addr: tuple[str, int]) -> None:
        if self.attached:
            self.mux.sendto(bytes(message), addr)

    async def send_data(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.attached:
            self.mux.sendto(data, addr)

    async def close(self) -> None:
        self.detach()

    def __repr__(self) -> str:
        return f"shared({self.mux.host}:{self.mux.port})"
