"""One participant's bundled ICE + DTLS-SRTP transport.

Composition, not inheritance of a peer connection:

* `IceConnection` (an aioice `Connection`) inside aiortc's `RTCIceGatherer`
  and `RTCIceTransport`, which run the checks and consent freshness;
* `KeyingDtlsTransport` (aiortc's `RTCDtlsTransport`) for the handshake,
  the fingerprint check and the SRTP keys;
* the fast path: `MediaProtocol` calls `_on_srtp` synchronously for every
  SRTP/SRTCP datagram from the selected address; it is unprotected with the
  pylibsrtp session and handed to the `PacketSink` (the participant) in the
  same callback.  `send_rtp`/`send_rtcp` protect and `sendto` directly.
  With sfu.native compiled the ICE agent is given `inlet` instead
  (`sfu.native._ingress.Inlet`): `_on_srtp` in C, with the participant's
  `on_rtp` inlined, and this Python method for anything unusual.

`close()` is synchronous and idempotent: the sockets are closed and the
sink detached before it returns, so no packet flows after it; the aioice and
aiortc objects are torn down in a background task (`wait_closed()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from array import array
from collections.abc import Coroutine
from types import ModuleType
from typing import Any, Protocol

import pylibsrtp
from aioice import Candidate
from aiortc.rtcdtlstransport import RTCCertificate
from aiortc.rtcicetransport import RTCIceGatherer, RTCIceParameters, RTCIceTransport
from pylibsrtp import Session

from sfu import native
from sfu.packet.counters import Counters
from sfu.packet.rtp import RtpError, RtpHeader, build_rtp, parse_rtp, rewritten
from sfu.packet.twcc import ReceiveLog, transport_seq_at, with_transport_seq
from sfu.sdp.answer import LocalTransport
from sfu.transport import rxtime
from sfu.transport.dtls import KeyingDtlsTransport
from sfu.transport.ice import IceConnection, MediaRoute, PortAllocator, RouteHandler
from sfu.transport.mmsg import Destination
from sfu.transport.sendhistory import SendHistory
from sfu.transport.srtp import InboundSrtp, LibSrtp, OutboundSrtp, SrtpError
from sfu.transport.udpmux import Egress, Route, UdpMux
from sfu.transport.watched import Watched

logger = logging.getLogger(__name__)

# Distinct SSRCs admitted into the SRTP session (each costs libsrtp state);
# the publisher's announced SSRCs are always admitted.
MAX_INBOUND_SSRCS = 32
# Nothing larger crosses a 1500-byte MTU path unfragmented (sfu.packet.rtp.MAX_PACKET).
MAX_DATAGRAM = 1500
_monotonic = time.monotonic
# The RTP padding count is one byte.
MAX_PADDING = 255


def compiled_sends() -> ModuleType | None:
    """sfu.native._fanout, told which classes hold the counters and send history, or None."""
    return native.configured("_fanout", "sends", _configure_sends)


def _configure_sends(module: ModuleType) -> None:
    module.configure("counters", Counters)
    module.configure("history", SendHistory)
    module.configure("egress", Egress)


def compiled_inlet() -> ModuleType | None:
    """sfu.native._ingress, told the counters class, the parser and the arrival stamp, or None."""
    return native.configured("_ingress", "inlet", _configure_inlet)


def _configure_inlet(module: ModuleType) -> None:
    parsers = native.load("_rtp")
    if parsers is None:
        raise TypeError("sfu.native._rtp (the parser the inlet calls) is not compiled")
    parsers.bind_rtp(RtpHeader, RtpError)
    module.configure("counters", Counters)
    module.configure("log", ReceiveLog)
    module.configure("arrival", rxtime.Arrival)
    module.bind(parsers.parse_rtp, RtpError, rxtime.ARRIVAL)


class PacketSink(Protocol):
    def on_rtp(self, packet: bytes) -> None: ...

    def on_rtcp(self, packet: bytes) -> None: ...

    def on_transport_state(self, state: TransportState) -> None: ...

    def on_consent_lost(self) -> None: ...

    def on_path_restored(self) -> None: ...


class PaddingSource(Protocol):
    """A stream padding-only probe packets may go on (a video consumer's RTX stream)."""

    def padding_header(self) -> tuple[int, int, int, int] | None:
        """(SSRC, payload type, sequence, timestamp) of the next padding packet, or None."""


class TransportState(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    FAILED = "failed"
    CLOSED = "closed"


_ALLOWED = {
    TransportState.NEW: {TransportState.CONNECTING, TransportState.CLOSED},
    TransportState.CONNECTING: {
        TransportState.CONNECTED,
        TransportState.FAILED,
        TransportState.CLOSED,
    },
    TransportState.CONNECTED: {TransportState.FAILED, TransportState.CLOSED},
    TransportState.FAILED: {TransportState.CLOSED},
    TransportState.CLOSED: set(),
}


class WebRtcTransport:
    """ICE + DTLS-SRTP for one participant (see module doc)."""

    # libsrtp bound by us (sfu.transport.srtp): RTP unprotected without pylibsrtp;
    # None: pylibsrtp's session (`_rx`) does it (`_rx_direct`).
    _rx_direct_now: InboundSrtp | None = None
    # `_on_srtp` in C (sfu.native._ingress.Inlet), unless a subclass changed it.
    inlet: Any = None
    # Transport-wide congestion control (set_transport_cc): the sequence
    # extension's id the peer negotiated, 0 when it did not (the `twcc_id` property).
    _twcc_id = 0
    padding_sources: tuple[PaddingSource, ...] = ()
    # The probe cluster in progress (sfu.policy.probe), set by the clock: every
    # packet sent meanwhile, media and padding alike, is tagged with it (`probe_id`).
    _probe_id = -1
    # Of counters.bytes_out: what padding probes and RTCP took (the rest is media).
    padding_bytes = 0
    rtcp_bytes = 0
    # The compiled twin of `_direct` (sfu.native._fanout.Direct: the same batch,
    # destination, session, counters, history and egress), None without it (`fast`).
    _fast: Any = None

    def __init__(
        self,
        *,
        addresses: list[str],
        ports: PortAllocator,
        announced_ip: str | None,
        buffer_bytes: int,
        certificate: RTCCertificate,
        sink: PacketSink,
        tasks: set[asyncio.Task[None]] | None = None,
        controlling: bool = False,
        muxes: list[UdpMux] | None = None,
        srtp: LibSrtp | None = None,
        consent_interval: float | None = None,
    ) -> None:
        self.counters = Counters()
        self.state = TransportState.NEW
        self.dtls_role = "client"
        self.was_connected = False
        self.inbound_ssrcs = set()
        self.history = SendHistory()
        self._sink = sink
        self._announced_ip = announced_ip
        self._rx = None
        self._tx: Session | None = None
        self._route: MediaRoute | None = None
        # libsrtp bound by us (sfu.transport.srtp): RTP protected in the send batch.
        self._srtp = srtp
        self._tx_direct: OutboundSrtp | None = None
        self._direct: tuple[Egress, Destination, OutboundSrtp] | None = None
        compiled = compiled_inlet()
        if compiled is not None and type(self)._on_srtp is WebRtcTransport._on_srtp:
            self.inlet = compiled.Inlet(self, self._on_srtp)
        self._ice_args: dict[str, Any] = {
            "addresses": addresses,
            "ports": ports,
            "counters": self.counters,
            "buffer_bytes": buffer_bytes,
            "on_srtp": self._on_srtp if self.inlet is None else self.inlet,
            "controlling": controlling,
            "muxes": muxes,
        }
        self._consent_interval = consent_interval
        self._ice = self._new_ice()
        # The agent of an ICE restart until it selects a pair (then it is `_ice`).
        self._next_ice: IceConnection | None = None
        gatherer = RTCIceGatherer(iceServers=[])
        gatherer._connection = self._ice
        self._ice_transport = RTCIceTransport(gatherer)
        self._dtls = KeyingDtlsTransport(
            self._ice_transport, certificate, self._on_keys, self._on_dtls_state
        )
        self._task: asyncio.Task[None] | None = None
        self._closed_task: asyncio.Task[None] | None = None
        # The owner's set of background tasks, so that it can wait for them.
        self._tasks = tasks if tasks is not None else set()

    # setup

    async def gather(self) -> None:
        """Bind the sockets (host candidates only)."""
        await self._ice.gather_candidates()

    def local(self, setup: str) -> LocalTransport:
        """Our side for the answer; `setup` is "active" or "passive"."""
        ice = self._next_ice or self._ice
        candidates = ice.local_candidates
        advertised = [self._announced_ip or c.host for c in candidates]
        return LocalTransport(
            ice_ufrag=ice.local_username,
            ice_pwd=ice.local_password,
            fingerprints=tuple(
                (f.algorithm, f.value)
                for f in self._dtls.getLocalParameters().fingerprints
                if f.algorithm == "sha-256"
            ),
            setup=setup,
            candidates=tuple(
                _candidate_sdp(c, host) for c, host in zip(candidates, advertised, strict=True)
            ),
            address=advertised[0],
            port=candidates[0].port,
        )

    def start(
        self,
        *,
        ufrag: str,
        pwd: str,
        fingerprints: tuple[tuple[str, str], ...],
        dtls_role: str,
        timeout: float,
    ) -> None:
        """Start ICE then DTLS in the background; the sink hears of success or failure."""
        self.dtls_role = dtls_role
        self._set_state(TransportState.CONNECTING)
        params = RTCIceParameters(usernameFragment=ufrag, password=pwd)
        self._task = self._track(self._connect(params, fingerprints, dtls_role, timeout))

    async def _connect(
        self,
        params: RTCIceParameters,
        fingerprints: tuple[tuple[str, str], ...],
        role: str,
        deadline: float,
    ) -> None:
        try:
            async with asyncio.timeout(deadline):
                await self._ice_transport.start(params)
                if self._ice_transport.state != "completed":
                    raise ConnectionError("ICE failed")
                await self._dtls.start_with(role, fingerprints)
        except (TimeoutError, ConnectionError) as exc:
            logger.info("transport failed to connect: %s", exc or "timeout")
        except Exception:
            logger.exception("transport failed to connect")
        if self.state == TransportState.CONNECTING and self._tx is None:
            self._set_state(TransportState.FAILED)

    def add_remote_candidates(self, candidates: list[str | None]) -> None:
        """Add candidates (from the offer or held back) in the background."""
        if candidates:
            self._track(self._add_all(candidates))

    async def _add_all(self, candidates: list[str | None]) -> None:
        for candidate in candidates:
            await self.add_remote_candidate(candidate)

    async def add_remote_candidate(self, candidate: str | None) -> None:
        """A remote candidate attribute value, or None for end-of-candidates."""
        if self.state in (TransportState.CLOSED, TransportState.FAILED):
            return
        parsed = None if candidate is None else Candidate.from_sdp(candidate)
        with contextlib.suppress(ValueError):  # after end-of-candidates
            await (self._next_ice or self._ice).add_remote_candidate(parsed)

    # ICE restart: a new agent under the same DTLS association

    def _new_ice(self) -> IceConnection:
        ice = IceConnection(**self._ice_args)
        ice.on_route = self._route_handler(ice)
        ice.on_consent_lost = self._consent_lost
        if self._consent_interval is not None:
            ice.consent_interval = self._consent_interval
        return ice

    @property
    def restarting(self) -> bool:
        return self._next_ice is not None

    async def prepare_restart(self) -> None:
        """Gather a new agent with new credentials; `local()` describes it from now on.

        The DTLS transport keeps reading the same queue: the new agent queues
        its DTLS records there.  A restart still pending is abandoned.
        """
        self._drop_next_ice()
        ice = self._new_ice()
        ice._queue = self._ice._queue
        self._next_ice = ice
        try:
            await ice.gather_candidates()
        except BaseException:
            self._drop_next_ice()
            raise

    def restart(self, *, ufrag: str, pwd: str, candidates: list[str], timeout: float) -> None:
        """Run the checks of the prepared agent; it takes over when it selects a pair."""
        ice = self._next_ice
        if ice is None or self.state in (TransportState.CLOSED, TransportState.FAILED):
            return
        ice.remote_username, ice.remote_password = ufrag, pwd
        self._track(self._restart(ice, candidates, timeout))

    async def _restart(self, ice: IceConnection, candidates: list[str], deadline: float) -> None:
        try:
            async with asyncio.timeout(deadline):
                for candidate in candidates:
                    with contextlib.suppress(ValueError):
                        await ice.add_remote_candidate(Candidate.from_sdp(candidate))
                await ice.remote_seen.wait()
                await ice.connect()
        except (TimeoutError, ConnectionError) as exc:
            logger.info("ICE restart failed: %s", exc or "timeout")
            if ice is self._next_ice:
                self._drop_next_ice()
        except Exception:
            logger.exception("ICE restart failed")
            if ice is self._next_ice:
                self._drop_next_ice()

    def _route_handler(self, ice: IceConnection) -> RouteHandler:
        def on_route(route: MediaRoute | None) -> None:
            adopted = ice is self._next_ice and route is not None
            if adopted:
                self._adopt(ice)
            if ice is self._ice:
                self._set_route(route)
            sink = self._sink
            if adopted and sink is not None:
                sink.on_path_restored()  # after the route: its key frame requests use it

        return on_route

    def _adopt(self, ice: IceConnection) -> None:
        """The restarted agent selected a pair: it carries DTLS and media from now on."""
        old, self._ice, self._next_ice = self._ice, ice, None
        transport = self._ice_transport
        transport._connection = ice
        transport._recv = ice.recv
        transport._send = ice.send
        transport.iceGatherer._connection = ice
        self._retire_ice(old)
        self.counters.ice_restarts += 1
        logger.info("ICE restart: the new path is selected")

    def _drop_next_ice(self) -> None:
        ice, self._next_ice = self._next_ice, None
        if ice is not None:
            self._retire_ice(ice)

    def _retire_ice(self, ice: IceConnection) -> None:
        """Close an agent that no longer carries anything, without waking the DTLS reader."""
        ice.on_route = None
        ice.on_consent_lost = None
        ice._queue = asyncio.Queue()
        ice.close_sockets()
        self._track(self._close_ice(ice))

    async def _close_ice(self, ice: IceConnection) -> None:
        with contextlib.suppress(Exception):
            await ice.close()

    def _consent_lost(self) -> None:
        sink = self._sink
        if sink is not None and self.state == TransportState.CONNECTED:
            sink.on_consent_lost()

    # state

    def _set_state(self, state: TransportState) -> None:
        if state == self.state:
            return
        if state not in _ALLOWED[self.state]:
            raise RuntimeError(f"transport cannot go from {self.state.value} to {state.value}")
        self.state = state
        sink = self._sink
        if sink is not None:
            sink.on_transport_state(state)

    def _on_keys(self, rx: Session, tx: Session) -> None:
        if self.state == TransportState.CONNECTING:
            self._rx, self._tx = rx, tx
            self._tx_direct = self._own_session()
            self._rx_direct = self._own_inbound()
            self._update_direct()
            self.was_connected = True
            self._set_state(TransportState.CONNECTED)

    def _own_session(self) -> OutboundSrtp | None:
        if self._srtp is None or self._dtls.tx_key is None:
            return None
        key, profile = self._dtls.tx_key
        try:
            return self._srtp.outbound(key, profile)
        except SrtpError:
            logger.warning("libsrtp refused the session: pylibsrtp protects instead")
            return None

    def _own_inbound(self) -> InboundSrtp | None:
        if self._srtp is None or self._dtls.rx_key is None:
            return None
        key, profile = self._dtls.rx_key
        try:
            return self._srtp.inbound(key, profile)
        except SrtpError:
            logger.warning("libsrtp refused the session: pylibsrtp unprotects instead")
            return None

    def _update_direct(self) -> None:
        """RTP goes straight into the send batch when keyed, batched and bound."""
        route, srtp = self._route, self._tx_direct
        if isinstance(route, Route) and route.egress.batch is not None and srtp is not None:
            self._set_direct((route.egress, route.destination, srtp))
        else:
            self._set_direct(None)

    def _set_direct(self, direct: tuple[Egress, Destination, OutboundSrtp] | None) -> None:
        self._direct = direct
        self.fast = None
        compiled = compiled_sends() if direct is not None else None
        if direct is not None and compiled is not None:
            egress, destination, srtp = direct
            if isinstance(egress.batch, compiled.SendBatch) and isinstance(
                self.history.ring, array
            ):
                self.fast = compiled.Direct(
                    egress.batch,
                    destination,
                    srtp,
                    self.counters,
                    self.history,
                    egress,
                    self._twcc_id,
                    self._probe_id,
                )

    def _on_dtls_state(self, state: str) -> None:
        if state in ("closed", "failed") and self.state == TransportState.CONNECTED:
            self._rx_direct = None
            self._rx = self._tx = None
            self._tx_direct = None
            self._set_direct(None)
            self._set_state(TransportState.FAILED)

    def _set_route(self, route: MediaRoute | None) -> None:
        self._route = route
        self._update_direct()

    # What the compiled inlet reads for every packet (`_rx`, `_rx_direct`, `_sink`,
    # `inbound_ssrcs`, `counters`) it remembers: each setter makes it read them
    # again (`Inlet.forget`), so whoever assigns one cannot leave it stale.

    @property
    def fast(self) -> Any:
        """The compiled route (sfu.native._fanout.Direct) or None."""
        return self._fast

    @fast.setter
    def fast(self, fast: Any) -> None:
        # Consumers' memos keep the Direct they read here while it is not retired.
        old, self._fast = self._fast, fast
        if old is not None and old is not fast:
            old.retire()  # (only ever a Direct: `_set_direct` makes them)

    def _inlet_forget(self) -> None:
        if self.inlet is not None:
            self.inlet.forget()

    # What the compiled inlet remembers of the transport (`Watched`: each
    # assignment makes it forget).
    _rx = Watched[Session | None](_inlet_forget)
    _rx_direct = Watched[InboundSrtp | None](_inlet_forget)
    _sink = Watched[PacketSink | None](_inlet_forget)
    inbound_ssrcs = Watched[set[int]](
        _inlet_forget,
        "The SSRCs admitted (the set itself may grow: the inlet reads it per packet).",
    )
    counters = Watched[Counters](_inlet_forget)

    @property
    def connected(self) -> bool:
        return self._tx is not None

    # fast path

    def _on_srtp(self, data: bytes) -> None:
        """One SRTP/SRTCP datagram from the selected address (`inlet` is the twin)."""
        counters = self.counters
        rx = self._rx
        sink = self._sink
        if rx is None or sink is None:
            counters.not_keyed += 1
            return
        size = len(data)
        if size < 12:
            counters.bad_rtp += 1
            return
        if size > MAX_DATAGRAM:
            counters.oversize += 1
            return
        if 191 < data[1] < 224:  # RTCP packet types 192-223 (RFC 5761)
            self._on_srtcp(rx, sink, data)
            return
        ssrc = int.from_bytes(data[8:12], "big")
        if ssrc not in self.inbound_ssrcs and not self._admit(ssrc):
            return
        direct = self._rx_direct
        if direct is not None:
            plain = direct.unprotect(data)
            if plain is None:
                counters.srtp_errors += 1
                return
            packet = plain
        else:
            try:
                packet = rx.unprotect(data)
            except (pylibsrtp.Error, ValueError):
                counters.srtp_errors += 1
                return
        counters.rtp_in += 1
        counters.bytes_in += len(data)
        sink.on_rtp(packet)

    def _on_srtcp(self, rx: Session, sink: PacketSink, data: bytes) -> None:
        ssrc = int.from_bytes(data[4:8], "big")
        if ssrc not in self.inbound_ssrcs and not self._admit(ssrc):
            return
        try:
            packet = rx.unprotect_rtcp(data)
        except (pylibsrtp.Error, ValueError):
            self.counters.srtp_errors += 1
            return
        self.counters.rtcp_in += 1
        sink.on_rtcp(packet)

    def _admit(self, ssrc: int) -> bool:
        if len(self.inbound_ssrcs) >= MAX_INBOUND_SSRCS:
            self.counters.unknown_ssrc += 1
            return False
        self.inbound_ssrcs.add(ssrc)
        return True

    def set_transport_cc(self, ext_id: int | None) -> None:
        """The peer negotiated transport-cc with this sequence extension id (None: it did not)."""
        self.twcc_id = ext_id or 0

    # The compiled route (`fast`) keeps its own copy of these two for the per-copy
    # path: each assignment writes both, and `_set_direct` gives them to a new route.
    @property
    def twcc_id(self) -> int:
        return self._twcc_id

    @twcc_id.setter
    def twcc_id(self, value: int) -> None:
        self._twcc_id = value
        if self.fast is not None:
            self.fast.twcc_id = value

    @property
    def probe_id(self) -> int:
        return self._probe_id

    @probe_id.setter
    def probe_id(self, value: int) -> None:
        self._probe_id = value
        if self.fast is not None:
            self.fast.probe_id = value

    def send_rtp(self, packet: bytes, twcc_at: int = -1) -> None:
        """Protect and send (or queue, on a shared socket) one RTP packet.

        With transport-cc negotiated, the packet gets the transport's next
        transport-wide sequence number (written in its extension, or the
        extension inserted) and goes in the send history.  `twcc_at`: where
        the packet has this transport's extension's value, when the caller
        knows (a consumer's copy of a packet whose offset the publisher's
        transport found); -1: it is looked up.
        """
        self._send_rtp(packet, self.probe_id, twcc_at)

    def _send_rtp(self, packet: bytes, probe: int, at: int = -1) -> int:
        twcc = self.twcc_id
        if not twcc:
            return self._protect_and_send(packet)
        history = self.history
        seq = history.next
        history.next = seq + 1
        # Usually the packet has the element (a copy of a publisher's packet, a
        # retransmission, padding we built): numbered where it is, no parse.
        if not 0 <= at <= len(packet) - 2:
            at = transport_seq_at(packet, twcc)
        if at < 0:
            try:
                packet = with_transport_seq(packet, parse_rtp(packet), twcc, seq)
            except RtpError:
                self.counters.bad_rtp += 1
                return self._protect_and_send(packet)  # unnumbered: the estimator never sees it
        size = self._protect_and_send(packet, at, seq)
        if size > 0:
            history.add(seq, _monotonic(), len(packet), probe)
        return size

    def _protect_and_send(self, packet: bytes, twcc_at: int = -1, twcc_seq: int = 0) -> int:
        """Protect and queue or send `packet`; with `twcc_at` >= 0, its copy carries
        `twcc_seq` there (the transport-wide sequence number)."""
        direct = self._direct
        if direct is not None:
            egress, destination, srtp = direct
            size = egress.queue_srtp(
                packet, None, srtp, destination, self.counters, twcc_at, twcc_seq
            )
            self._sent(size)
            return size
        tx, route = self._tx, self._route
        if tx is None or route is None:
            return -1
        if twcc_at >= 0:
            numbered = bytearray(packet)
            numbered[twcc_at : twcc_at + 2] = (twcc_seq & 0xFFFF).to_bytes(2, "big")
            packet = bytes(numbered)
        try:
            data = tx.protect(packet)
        except (pylibsrtp.Error, ValueError):
            self.counters.send_errors += 1
            return -1
        route.send(data, self.counters)
        self._sent(len(data))
        return len(data)

    def send_rewritten(
        self,
        packet: bytes,
        *,
        ssrc: int,
        sequence: int,
        timestamp: int,
        payload_type: int,
        twcc_at: int = -1,
    ) -> None:
        """`send_rtp` of `packet` with a new header (sfu.routing.consumer's fast path).

        `twcc_at`: where `packet` carries the transport-wide sequence value at
        this transport's extension id (-1: it does not; the slow path inserts it).
        """
        twcc = self.twcc_id
        fast = self.fast
        if fast is not None and (not twcc or twcc_at >= 0):
            fast.send(packet, payload_type, sequence, timestamp, ssrc, twcc_at, twcc, self.probe_id)
            return
        direct = self._direct
        if direct is not None and (not twcc or twcc_at >= 0):
            # Egress.queue_srtp inlined: this runs once per copy.
            egress, destination, srtp = direct
            batch = egress.batch
            assert batch is not None
            counters = self.counters
            header = (payload_type, sequence, timestamp, ssrc)
            if twcc:
                history = self.history
                seq = history.next
                history.next = seq + 1
                size = batch.add_rewritten(
                    packet, header, srtp, destination, counters, twcc_at, seq
                )
                if size > 0:  # RTP bytes, as the estimator wants
                    history.add(seq, _monotonic(), len(packet), self.probe_id)
            else:
                size = batch.add_rewritten(packet, header, srtp, destination, counters)
            if size > 0:
                counters.rtp_out += 1
                counters.bytes_out += size
            if batch.count >= batch.capacity:
                batch.flush()
            elif egress.idle:
                egress.schedule()
            return
        if self._tx is not None and self._route is not None:
            self.send_rtp(
                rewritten(
                    packet,
                    ssrc=ssrc,
                    sequence=sequence,
                    timestamp=timestamp,
                    payload_type=payload_type,
                )
            )

    def send_padding(self, nbytes: int, probe_id: int = -1) -> int:
        """About `nbytes` of padding-only RTP packets for a bandwidth probe; bytes sent.

        As libwebrtc does: on the RTX stream of the first padding source that
        has one (a video consumer that has sent media), each packet up to
        `MAX_PADDING` bytes of padding and numbered like any other, with
        `probe_id` in the send history (bytes sent counts SRTP as on the
        wire, for the Prober's accounting).  Nothing is sent without transport-cc
        (nobody would report on it) or without an RTX stream.
        """
        if not self.twcc_id or nbytes <= 0 or not self.connected:
            return 0
        sent = 0
        for source in self.padding_sources:
            while sent < nbytes:
                header = source.padding_header()
                if header is None:
                    break
                ssrc, payload_type, sequence, timestamp = header
                packet = build_rtp(
                    payload_type=payload_type,
                    sequence=sequence,
                    timestamp=timestamp,
                    ssrc=ssrc,
                    padding=max(1, min(MAX_PADDING, nbytes - sent)),
                )
                size = self._send_rtp(packet, probe_id)
                if size <= 0:
                    return sent
                self.counters.padding_out += 1
                self.padding_bytes += size
                sent += size
            if sent:
                break
        return sent

    def _sent(self, size: int) -> None:
        if size > 0:
            counters = self.counters
            counters.rtp_out += 1
            counters.bytes_out += size

    def send_rtcp(self, packet: bytes) -> None:
        tx, route = self._tx, self._route
        if tx is None or route is None:
            return
        try:
            data = tx.protect_rtcp(packet)
        except (pylibsrtp.Error, ValueError):
            self.counters.send_errors += 1
            return
        route.send(data, self.counters)
        self.counters.rtcp_out += 1
        self.counters.bytes_out += len(data)
        self.rtcp_bytes += len(data)

    # teardown

    def close(self) -> None:
        """Cut media now; the rest of the teardown runs in the background."""
        if self.state == TransportState.CLOSED:
            return
        self._rx_direct = None
        self._rx = self._tx = None
        self._route = self._tx_direct = None
        self._set_direct(None)
        self._ice.close_sockets()
        if self._next_ice is not None:
            self._next_ice.close_sockets()
        self._set_state(TransportState.CLOSED)
        self._sink = None
        if self._task is not None:
            self._task.cancel()
        self._closed_task = self._track(self._teardown())

    def _track(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _teardown(self) -> None:
        ice, self._next_ice = self._next_ice, None
        if ice is not None:
            await self._close_ice(ice)
        with contextlib.suppress(Exception):
            await self._dtls.stop()
        with contextlib.suppress(Exception):
            await self._ice_transport.stop()
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await self._task
        if self.inlet is not None:
            # It refers back to this transport (and its fallback is our method): without
            # that cycle a departed transport goes with its last reference, not at the
            # next full collection, which the GC freezer makes rare.
            self.inlet.close()

    async def wait_closed(self) -> None:
        if self._closed_task is not None:
            await asyncio.shield(self._closed_task)


def _candidate_sdp(candidate: Candidate, host: str) -> str:
    return (
        f"{candidate.foundation} {candidate.component} udp {candidate.priority} "
        f"{host} {candidate.port} typ host generation 0"
    )
