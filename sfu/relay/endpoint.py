"""The relay between SFU workers: a published stream sent once to each worker that needs it.

Like mediasoup's pipe transports and Jitsi's Octo: a worker whose group has
members on other workers sends each of its publishers' packets, as it
received them (decrypted, untouched), once to every such worker over UDP;
those fan them out locally like their own publishers' (`sfu.relay.remote`).
Feedback flows back the same way: key frame requests and NACKs of the
receiving workers reach the origin, which asks its publisher (coalesced) or
answers from its retransmission cache.  Which streams go where is decided by
the pool (`sfu.relay.routes`); this module only moves datagrams.

A datagram is a 12-byte header and a body::

    0      magic 0x56
    1      kind: 1 RTP, 2 SR, 3 FEEDBACK, 4 DEMAND
    2..3   zero
    4..7   sender: the origin id of the worker that sent the datagram
    8..11  stream: for RTP and SR the sender's stream id; for FEEDBACK and
           DEMAND the stream id at the receiving worker (the stream's origin)

RTP carries the publisher's RTP packet; SR the publisher's sender report
mapping (NTP u64, RTP timestamp u32), so receivers keep lip sync; FEEDBACK
an RTCP compound (PLI, FIR, NACK); DEMAND one byte, 1 or 0: whether the
sending worker's subscribers need that simulcast layer (0: the origin stops
relaying it there until a 1 comes; sent on change and repeated every second,
see `sfu.relay.remote.RemoteStream.demand`).  Within one machine the relay runs on
127.0.0.1 and a datagram is accepted only from the address registered for
its sender.  Between machines the same datagrams travel sealed with SRTP
(`sfu.relay.crypto`, for the peers the pool marks as secure).  Anything
malformed, unauthenticated or unknown is counted and dropped; the receive
callback never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from sfu.packet.rtcp import Fir, Nack, Pli, RtcpError, parse_rtcp
from sfu.relay.crypto import SECURE_MAGIC, SecurePair, sender_of

if TYPE_CHECKING:
    from sfu.routing.producer import Producer

logger = logging.getLogger(__name__)

MAGIC = 0x56
RTP, SR, FEEDBACK, DEMAND = 1, 2, 3, 4
KINDS = (RTP, SR, FEEDBACK, DEMAND)
HEADER = struct.Struct("!BBxxII")
SR_BODY = struct.Struct("!QI")
MAX_DATAGRAM = HEADER.size + 1500
MAX_NACKED = 64
BUFFER_BYTES = 4 * 1024 * 1024

Address = tuple[str, int]

RELAY_FIELDS = (
    "relay_rtp_out",
    "relay_rtp_in",
    "relay_feedback_out",
    "relay_feedback_in",
    "relay_retransmitted",
    "relay_bad",
    "relay_foreign",
    "relay_unknown_stream",
    "relay_send_errors",
    "relay_srtp_errors",
)


@dataclass(frozen=True)
class Header:
    kind: int
    sender: int
    stream: int


def header(kind: int, sender: int, stream: int) -> bytes:
    return HEADER.pack(MAGIC, kind, sender, stream)


def parse_header(data: bytes) -> Header | None:
    """The header of a relay datagram, None if it is not one."""
    if len(data) < HEADER.size or len(data) > MAX_DATAGRAM or data[0] != MAGIC:
        return None
    _, kind, sender, stream = HEADER.unpack_from(data)
    if kind not in KINDS:
        return None
    return Header(kind, sender, stream)


class RelayCounters:
    """Monotonic counters of one relay endpoint (see RELAY_FIELDS)."""

    def __init__(self) -> None:
        self.values = dict.fromkeys(RELAY_FIELDS, 0)

    def bump(self, name: str, by: int = 1) -> None:
        self.values[name] += by


class RemoteSink(Protocol):
    """A stream received from another worker (sfu.relay.remote.RemoteStream)."""

    def on_relay_rtp(self, data: bytes, now: float) -> bool: ...

    def on_relay_sr(self, ntp: int, rtp_timestamp: int, now: float) -> None: ...


class RelayTap:
    """Attached to a local producer as its `relay`: copies its packets to other workers."""

    __slots__ = ("_rtp_header", "endpoint", "paused", "stream", "targets")

    def __init__(self, endpoint: RelayEndpoint, stream: int) -> None:
        self.endpoint = endpoint
        self.stream = stream
        self._rtp_header = header(RTP, endpoint.origin, stream)
        self.targets: list[tuple[Address, SecurePair | None]] = []
        self.paused: set[Address] = set()  # workers whose subscribers need no packets of it

    def rtp(self, data: bytes) -> None:
        datagram = self._rtp_header + data
        send = self.endpoint.sendto
        paused = self.paused
        for address, pair in self.targets:
            if paused and address in paused:
                continue
            if pair is None:
                send(datagram, address, "relay_rtp_out")
            else:
                send(pair.seal(RTP, self.stream, data), address, "relay_rtp_out")

    def wanted(self) -> bool:
        """Whether some target worker needs this stream (has not paused it)."""
        return any(address not in self.paused for address, _ in self.targets)

    def sender_report(self, ntp: int, rtp_timestamp: int) -> None:
        body = SR_BODY.pack(ntp, rtp_timestamp)
        for address, pair in self.targets:
            datagram = header(SR, self.endpoint.origin, self.stream) + body
            self.endpoint.sendto(
                pair.seal(SR, self.stream, body) if pair else datagram, address, None
            )


class RelayEndpoint(asyncio.DatagramProtocol):
    """This worker's relay socket: sends taps' datagrams, dispatches what arrives."""

    def __init__(
        self, origin: int, clock: Callable[[], float] = time.monotonic, secret: str | None = None
    ) -> None:
        self.origin = origin
        self.counters = RelayCounters()
        self.peers: dict[int, Address] = {}  # origin id -> relay address
        self.secure: dict[int, SecurePair] = {}  # peers on other machines
        self._secret = secret
        self.sources: dict[tuple[int, int], RemoteSink] = {}  # (sender, stream) -> sink
        self.streams: dict[int, Producer] = {}  # local stream id -> producer
        self._clock = clock
        self._transport: asyncio.DatagramTransport | None = None
        self._sender: socket.socket | None = None

    async def bind(self, host: str, port: int = 0) -> Address:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        sock = transport.get_extra_info("socket")
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, BUFFER_BYTES)
        # socket.sendto on a dup is cheaper than the loop's transport, and a
        # full buffer drops (counted) instead of queueing without bound.
        self._sender = socket.socket(fileno=os.dup(sock.fileno()))
        self._sender.setblocking(False)
        address = sock.getsockname()
        return str(address[0]), int(address[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is not a subclass

    def close(self) -> None:
        if self._sender is not None:
            self._sender.close()
            self._sender = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def set_peers(self, peers: dict[int, Address], secure: set[int] | None = None) -> None:
        """Every other worker's relay address; `secure`: those on other machines (SRTP)."""
        self.peers = {o: a for o, a in peers.items() if o != self.origin}
        wanted = {o for o in secure or () if o in self.peers}
        if wanted and self._secret is None:
            raise ValueError("secure relay peers need the cluster secret")
        self.secure = {
            o: self.secure.get(o) or SecurePair(self._secret or "", self.origin, o) for o in wanted
        }

    def send(self, origin: int, kind: int, stream: int, body: bytes, counter: str | None) -> None:
        """One datagram to the worker `origin`, sealed if it is on another machine."""
        address = self.peers.get(origin)
        if address is None:
            return
        pair = self.secure.get(origin)
        datagram = (
            pair.seal(kind, stream, body) if pair else header(kind, self.origin, stream) + body
        )
        self.sendto(datagram, address, counter)

    def sendto(self, datagram: bytes, address: Address, counter: str | None) -> None:
        sender = self._sender
        if sender is None:
            return
        try:
            sender.sendto(datagram, address)
        except OSError:
            self.counters.values["relay_send_errors"] += 1
            return
        if counter is not None:
            self.counters.values[counter] += 1

    def send_demand(self, origin: int, stream: int, wanted: bool) -> None:
        """Whether this worker needs the simulcast layer `stream` of the worker `origin`."""
        self.send(origin, DEMAND, stream, b"\x01" if wanted else b"\x00", None)

    def send_feedback(self, origin: int, stream: int, rtcp: bytes) -> None:
        """RTCP about a remote stream, to the worker it comes from."""
        self.send(origin, FEEDBACK, stream, rtcp, "relay_feedback_out")

    # receiving

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            self._received(data, (addr[0], addr[1]))
        except Exception:  # the receive path must never die
            self.counters.bump("relay_bad")
            logger.debug("relay datagram from %s dropped", addr, exc_info=True)

    def _received(self, data: bytes, addr: Address) -> None:
        opened = self._open(data, addr)
        if opened is None:
            return
        head, body = opened
        now = self._clock()
        if head.kind == FEEDBACK:
            self._feedback(head, body, now)
            return
        if head.kind == DEMAND:
            self._demand(head, body)
            return
        sink = self.sources.get((head.sender, head.stream))
        if sink is None:
            self.counters.bump("relay_unknown_stream")
        elif head.kind == RTP:
            if sink.on_relay_rtp(body, now):
                self.counters.values["relay_rtp_in"] += 1
            else:
                self.counters.bump("relay_bad")
        elif len(body) == SR_BODY.size:
            ntp, rtp_timestamp = SR_BODY.unpack(body)
            sink.on_relay_sr(ntp, rtp_timestamp, now)
        else:
            self.counters.bump("relay_bad")

    def _open(self, data: bytes, addr: Address) -> tuple[Header, bytes] | None:
        """The header and body of a datagram from a known peer (unsealed if secure)."""
        if data[:1] == bytes([SECURE_MAGIC]):
            sender = sender_of(data)
            pair = self.secure.get(sender) if sender is not None else None
            if pair is None or self.peers.get(pair.peer) != addr:
                self.counters.bump("relay_foreign")
                return None
            opened = pair.open(data)
            if opened is None or opened[0] not in KINDS:
                self.counters.bump("relay_srtp_errors")
                return None
            kind, stream, body = opened
            return Header(kind, pair.peer, stream), body
        head = parse_header(data)
        if head is None:
            self.counters.bump("relay_bad")
            return None
        if self.peers.get(head.sender) != addr or head.sender in self.secure:
            self.counters.bump("relay_foreign")  # unknown, or plain from a secure peer
            return None
        return head, data[HEADER.size :]

    def _demand(self, head: Header, body: bytes) -> None:
        producer = self.streams.get(head.stream)
        address = self.peers.get(head.sender)
        tap = producer.relay if producer is not None else None
        if not isinstance(tap, RelayTap) or address is None or body not in (b"\x00", b"\x01"):
            self.counters.bump(
                "relay_unknown_stream" if body in (b"\x00", b"\x01") else "relay_bad"
            )
            return
        if body == b"\x01":
            tap.paused.discard(address)
        else:
            tap.paused.add(address)

    def _feedback(self, head: Header, body: bytes, now: float) -> None:
        producer = self.streams.get(head.stream)
        if producer is None:
            self.counters.bump("relay_unknown_stream")
            return
        try:
            packets = parse_rtcp(body)
        except RtcpError:
            self.counters.bump("relay_bad")
            return
        self.counters.bump("relay_feedback_in")
        for packet in packets:
            if isinstance(packet, Pli | Fir):
                producer.request_keyframe(now)
            elif isinstance(packet, Nack):
                self._resend(producer, head, packet.lost[:MAX_NACKED], now)

    def _resend(self, producer: Producer, head: Header, lost: tuple[int, ...], now: float) -> None:
        for sequence in lost:
            packet = producer.cached(sequence & 0xFFFF, now)
            if packet is not None:
                self.send(head.sender, RTP, head.stream, packet, "relay_retransmitted")
