"""`LocalMedia`: the media plane in this process, behind `MediaControl`.

Ordering guarantee: `open`, `open_precall`, `move`, `close` and
`close_room` make their whole state change synchronously, before the
coroutine's first suspension (they have none), so they take effect in call
order and a `close` issued right after an `open` always wins.  `offer`
parses and checks the SDP synchronously (a bad offer changes nothing), then
may suspend once while the sockets of a new transport are bound; if the
participant was closed (or re-opened) meanwhile, that transport is closed
and the offer fails with `not_admitted`, so nothing of it survives.

Events go to `MediaEvents` on the event loop: `slots_changed` whenever the
occupants of a participant's receive slots change, `active_speaker` when a
group's dominant speaker changes, `precall_stats` about once a second during
a pre-call test, and `media_closed` when the media plane itself ends a
session: "transport_failed" / "connect_failed" (the participant stays
admitted and may offer again) and "precall_timeout"; and
`ice_restart_needed` when a connected client stopped answering consent
checks (its path is probably dead: it should restart ICE with a new offer,
which keeps the transport, its DTLS association, producers and slots).  An
explicit `close` emits nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TextIO

from sfu.control import (
    MAIN_GROUP,
    MAX_VIDEO_DIMENSION,
    PRECALL_TIMEOUT,
    IceRestartNeeded,
    MediaClosed,
    MediaError,
    MediaEvent,
    MediaEvents,
    Publishers,
    Slot,
    SlotsChanged,
    deliver,
)
from sfu.gcfreeze import FREEZER
from sfu.packet import counters as counters_mod
from sfu.policy.bitrate import publisher_cap
from sfu.policy.joinpace import JoinPace
from sfu.routing.group import Group
from sfu.routing.layerclock import LayerClock
from sfu.routing.layering import Track
from sfu.routing.participant import Participant
from sfu.routing.precall import PrecallMeter
from sfu.routing.ticker import Ticker
from sfu.routing.trace import snapshot
from sfu.sdp.negotiate import negotiate
from sfu.sdp.offer import Offer, parse_candidate, parse_offer
from sfu.sdp.restart import OfferKind
from sfu.settings import MediaSettings
from sfu.transport import mmsg, srtp
from sfu.transport.dtls import CertificateStore
from sfu.transport.ice import PortAllocator, host_addresses
from sfu.transport.joingate import LATE_S, JoinGate
from sfu.transport.srtp import LibSrtp
from sfu.transport.udpmux import UdpMux
from sfu.transport.webrtc import WebRtcTransport

logger = logging.getLogger(__name__)

PRECALL_ROOM = "\x00precall"
MAX_PENDING_CANDIDATES = 32


def video_sizes(
    participant: Participant, sizes: dict[str, list[int]], cap: int
) -> dict[str, tuple[int, int]]:
    """Checked `video_sizes` of `participant`: at most as many as its video slots.

    Before its first offer the slots are not known: then at most `cap` (the server's
    video slot limit).  Mids that are not (yet) one of its video slots are kept, so a
    size sent just before a renegotiation is not lost.
    """
    negotiated = [c for c in participant.consumers.values() if c.kind == "video"]
    limit = len(negotiated) if participant.transport is not None else cap
    if len(sizes) > limit:
        raise MediaError("bad_request", f"`slots` names {len(sizes)} slots; you have {limit}")
    checked: dict[str, tuple[int, int]] = {}
    for mid, size in sizes.items():
        if (
            not isinstance(mid, str)
            or not isinstance(size, list)
            or len(size) != 2
            or not all(type(v) is int and 0 <= v <= MAX_VIDEO_DIMENSION for v in size)
        ):
            raise MediaError("bad_request", "each size must be [width, height] in device pixels")
        checked[mid] = (size[0], size[1])
    return checked


class LocalMedia:
    """The SFU of this process (see module doc); implements `MediaControl`."""

    def __init__(self, settings: MediaSettings, events: MediaEvents) -> None:
        self.settings = settings
        self.events = events
        self.participants: dict[str, Participant] = {}
        self.groups: dict[tuple[str, str], Group] = {}
        self.meters: dict[str, PrecallMeter] = {}
        self._ports = PortAllocator(settings.rtc_ports)
        self._addresses: list[str] = []
        self._certificates: CertificateStore | None = None
        self.muxes: list[UdpMux] = []
        self._srtp: LibSrtp | None = None
        self._ticker = Ticker(self, settings.selection_interval_s)
        self.layers = LayerClock(self.notify, self.participants)
        self._retired = counters_mod.total([])
        self._pending: dict[str, list[str | None]] = {}
        # New transports connecting at once, the other offers queued (sfu.policy.joinpace).
        pace = JoinPace(settings.max_connecting, settings.connecting_hold_s)
        self.joins = JoinGate(pace, self._behind)
        self.tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self._trace: TextIO | None = None  # the layer trace (settings.layer_trace), once opened

    async def start(self) -> None:
        """Generate the DTLS certificate, find the addresses, start the timers."""
        if self._started:
            return
        self._addresses = host_addresses(self.settings.ice_hosts)
        if not self._addresses:
            raise MediaError("unavailable", "no address to gather ICE candidates on")
        if self.settings.shared_socket:
            self._open_muxes()
        self._certificates = CertificateStore()
        if self.settings.layer_trace is not None and self._trace is None:
            self._trace = open_trace(self.settings.layer_trace)  # unwritable: fails here
        self._ticker.start()
        if self.settings.gc_freeze:
            FREEZER.start()
        self._started = True

    def _open_muxes(self) -> None:
        """Single-port mode: one shared socket per address, all on one port."""
        binding = mmsg.load() if self.settings.batched_io else None
        if binding is not None and self.settings.direct_srtp:
            self._srtp = srtp.load()
        port = self.settings.rtc_udp_port or 0
        try:
            for address in self._addresses:
                mux = UdpMux(
                    address, port, buffer_bytes=self.settings.socket_buffer_bytes, binding=binding
                )
                mux.open()
                self.muxes.append(mux)
                port = mux.port  # the kernel's pick for the first: the same for the others
        except OSError as exc:
            self._close_muxes()
            raise MediaError("unavailable", f"cannot bind UDP port {port}: {exc}") from None
        logger.info(
            "media on UDP %s (%s; %s; %s)",
            ", ".join(f"{m.host}:{m.port}" for m in self.muxes),
            "sendmmsg/recvmmsg" if binding else "sendto/recvfrom: no sendmmsg binding",
            f"RTP protected in the batch by {self._srtp.version}" if self._srtp else "pylibsrtp",
            "kernel receive timestamps"
            if all(m.kernel_stamps for m in self.muxes)
            else "no kernel receive timestamps",
        )

    def _close_muxes(self) -> None:
        for mux in self.muxes:
            self._retired = counters_mod.total([mux.counters], into=self._retired)
            mux.close()
        self.muxes = []

    async def stop(self) -> None:
        """Close every session and wait for the transports to wind down."""
        for pid in list(self.participants):
            self._close(pid)
        self.joins.close()
        await self._ticker.stop()
        if self.settings.gc_freeze and self._started:
            FREEZER.stop()
        await self.drain()
        self._close_muxes()
        if self._trace is not None:
            self._trace.close()
            self._trace = None
        self._started = False

    async def drain(self) -> None:
        """Wait until closed transports have released their resources."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    # admission (synchronous state changes)

    async def open(self, room_id: str, group: str, participant_id: str) -> None:
        self._open(room_id, group or MAIN_GROUP, participant_id, precall=False)

    async def open_precall(self, participant_id: str) -> None:
        self._open(PRECALL_ROOM, participant_id, participant_id, precall=True)
        self.meters[participant_id] = PrecallMeter(
            time.monotonic(), self.settings.precall_stats_interval_s
        )

    def _open(self, room_id: str, group_name: str, pid: str, *, precall: bool) -> None:
        existing = self.participants.get(pid)
        if existing is not None:
            if existing.room_id == room_id and existing.precall == precall:
                self._move(existing, group_name)
                return
            self._close(pid)
        group = self._group(room_id, group_name, precall)
        participant = Participant(
            pid,
            room_id,
            group,
            precall=precall,
            settings=self.settings,
            on_transport_lost=self._transport_lost,
        )
        participant.on_consent_lost_cb = self._consent_lost
        participant.on_connected_cb = self.joins.release
        self.participants[pid] = participant
        group.add(participant)

    def _group(self, room_id: str, name: str, precall: bool) -> Group:
        group = self.groups.get((room_id, name))
        if group is None:
            group = self.groups[(room_id, name)] = Group(room_id, name, precall=precall)
        return group

    async def move(self, participant_id: str, group: str) -> None:
        participant = self._admitted(participant_id)
        if participant.precall:
            raise MediaError("bad_request", "a pre-call session cannot be moved")
        self._move(participant, group or MAIN_GROUP)

    def _move(self, participant: Participant, name: str) -> None:
        old = participant.group
        if old.name == name:
            return
        new = self._group(participant.room_id, name, participant.precall)
        old.remove(participant)
        new.add(participant)
        participant.pinned = None
        self._forget_group(old)
        self.refill(old)
        self.refill(new)

    async def close(self, participant_id: str) -> None:
        self._close(participant_id)

    async def close_room(self, room_id: str) -> None:
        for pid in [p.id for p in self.participants.values() if p.room_id == room_id]:
            self._close(pid)

    def _close(self, pid: str) -> None:
        participant = self.participants.pop(pid, None)
        self.meters.pop(pid, None)
        self._pending.pop(pid, None)
        if participant is None:
            return
        if self.settings.gc_freeze:
            FREEZER.left()
        self.joins.release(participant)
        self.layers.forget(participant)
        participant.close()
        self.published(participant)
        counters_mod.total([*participant.retired], into=self._retired)
        group = participant.group
        group.remove(participant)
        self._forget_group(group)
        self.refill(group)

    def _forget_group(self, group: Group) -> None:
        if not group.members and not group.remotes:
            self.groups.pop((group.room_id, group.name), None)

    def _admitted(self, pid: str) -> Participant:
        participant = self.participants.get(pid)
        if participant is None or participant.closed:
            raise MediaError("not_admitted", "this participant has no media session")
        return participant

    # negotiation

    async def offer(self, participant_id: str, sdp: str) -> str:
        participant = self._admitted(participant_id)
        offer = parse_offer(sdp)
        plans = negotiate(
            offer,
            video_slots_cap=self.settings.video_slots_cap,
            audio_slots_cap=self.settings.audio_slots_cap,
            transport_cc=not participant.precall,
            per_layer_pli=self.settings.per_layer_keyframes,
        )
        async with participant.lock:
            kind = participant.offer_kind(offer)
            if kind in (OfferKind.FIRST, OfferKind.NEW_TRANSPORT):
                transport = await self._paced_transport(participant)
                participant.set_transport(transport, offer, self.settings.connect_timeout_s)
                self._flush_candidates(participant)
            elif kind == OfferKind.ICE_RESTART:
                await self._restart_ice(participant, offer)
            producers_changed = participant.apply(plans)
            answer = participant.answer(offer)
        group = participant.group
        group.dirty = group.dirty or producers_changed
        self.published(participant)
        asyncio.get_running_loop().call_soon(self._refill_after_offer, participant)
        return answer

    async def _paced_transport(self, participant: Participant) -> WebRtcTransport:
        """A new transport once this join's turn came (`joins`); its slot is freed
        when it connects, fails or closes (or after `connecting_hold_s`)."""
        try:
            turn = await self.joins.acquire(participant, self.settings.join_queue_s)
        except TimeoutError:
            message = "the media server is busy with other joins: offer again"
            raise MediaError("unavailable", message) from None
        transport: WebRtcTransport | None = None
        try:
            if turn and self._current(participant):
                transport = await self._new_transport(participant)
            if transport is None or not self._current(participant):
                raise MediaError("not_admitted", "the media session was closed")
        except BaseException:
            if transport is not None:
                transport.close()
            self.joins.release(participant)
            raise
        return transport

    def _current(self, participant: Participant) -> bool:
        return self.participants.get(participant.id) is participant and not participant.closed

    def _behind(self) -> bool:
        """Whether a media socket holds datagrams unread for `LATE_S` (joins then slow down)."""
        since = asyncio.get_running_loop().time() - LATE_S
        return any(mux.behind(since) for mux in self.muxes)

    async def _new_transport(self, participant: Participant) -> WebRtcTransport:
        if self._certificates is None:
            raise MediaError("unavailable", "the media plane is not started")
        live = sum(1 for p in self.participants.values() if p.transport is not None)
        if live >= self.settings.max_transports:
            raise MediaError("unavailable", "the media server is full")
        transport = WebRtcTransport(
            addresses=self._addresses,
            ports=self._ports,
            announced_ip=self.settings.announced_ip,
            buffer_bytes=self.settings.socket_buffer_bytes,
            certificate=self._certificates.current(),
            sink=participant,
            tasks=self.tasks,
            muxes=self.muxes or None,
            srtp=self._srtp,
            consent_interval=self.settings.consent_interval_s,
        )
        try:
            await transport.gather()
        except (OSError, ConnectionError) as exc:
            transport.close()
            raise MediaError("unavailable", f"no UDP port available: {exc}") from None
        return transport

    async def _restart_ice(self, participant: Participant, offer: Offer) -> None:
        """New ICE credentials on a keyed transport: a new agent under the same DTLS."""
        transport = participant.transport
        assert transport is not None
        try:
            await transport.prepare_restart()
        except (OSError, ConnectionError) as exc:
            raise MediaError("unavailable", f"no UDP port available: {exc}") from None
        if participant.closed or participant.transport is not transport:
            raise MediaError("not_admitted", "the media session was closed")
        participant.restart_ice(offer, self.settings.connect_timeout_s)
        self._flush_candidates(participant)

    def _consent_lost(self, participant: Participant) -> None:
        """The client stopped answering consent checks: ask it to restart ICE."""
        self.notify(IceRestartNeeded(participant.id))

    def _refill_after_offer(self, participant: Participant) -> None:
        if not participant.closed:
            self.refill(participant.group)

    async def candidate(
        self, participant_id: str, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        participant = self._admitted(participant_id)
        value = parse_candidate(candidate if isinstance(candidate, str) else "")
        if participant.transport is None:
            pending = self._pending.setdefault(participant_id, [])
            if len(pending) < MAX_PENDING_CANDIDATES:
                pending.append(value)
            return
        await participant.transport.add_remote_candidate(value)

    def _flush_candidates(self, participant: Participant) -> None:
        pending = self._pending.pop(participant.id, [])
        if participant.transport is not None:
            participant.transport.add_remote_candidates(pending)

    async def pin(self, participant_id: str, target: str | None) -> None:
        participant = self._admitted(participant_id)
        participant.pinned = target
        self._refill_member(participant.group, participant, time.monotonic())

    async def video_sizes(self, participant_id: str, sizes: dict[str, list[int]]) -> None:
        participant = self._admitted(participant_id)
        checked = video_sizes(participant, sizes, self.settings.video_slots_cap)
        if checked != participant.video_sizes:
            participant.video_sizes = checked
            self.layers.mark(participant)

    # selection

    def refill(self, group: Group) -> None:
        """Re-assign every member's slots and tell who changed."""
        now = time.monotonic()
        group.changed_orders(now)
        for member in list(group.members.values()):
            self._refill_member(group, member, now)

    def _refill_member(self, group: Group, member: Participant, now: float) -> None:
        stage = member.stage_mids
        changed = group.refill(member, now)
        if changed is not None or member.stage_mids != stage:
            self.layers.mark(member)  # its layers are allocated again at the next tick
        self._emit_slots(member, changed)

    def _emit_slots(
        self, participant: Participant, changed: tuple[list[Slot], Publishers] | None
    ) -> None:
        if changed is not None:
            self.notify(SlotsChanged(participant.id, *changed))

    def notify(self, event: MediaEvent) -> None:
        """Tell `events`; a failing listener never breaks the media plane."""
        try:
            deliver(self.events, event)
        except Exception:
            logger.exception("MediaEvents failed on %s", type(event).__name__)

    def end_precall(self, pid: str) -> None:
        """A pre-call test ran out of time."""
        self._close(pid)
        self.notify(MediaClosed(pid, PRECALL_TIMEOUT))

    def _transport_lost(self, participant: Participant, reason: str) -> None:
        self.joins.release(participant)
        participant.reset_media()
        self.published(participant)
        self.refill(participant.group)
        self.notify(MediaClosed(participant.id, reason))

    def remb_cap(self, participant: Participant) -> int:
        simulcast = any(len(p.layers) > 1 for p in participant.producers.values())
        return publisher_cap(participant.group.size, simulcast, self.settings.remb_table)

    # extension points (sfu.shard: the relay between SFU workers)

    def published(self, participant: Participant) -> None:
        """A participant's published tracks may have changed (an offer, a loss, its close)."""

    def after_tick(self, now: float) -> None:
        """The clock ran: speakers, orders and slots are up to date; allocate layers."""
        for _ in self.after_tick_steps(lambda: now):
            pass

    def after_tick_steps(self, clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
        """`after_tick` with the layer allocation in slices (`LayerClock.steps`): the SFU
        clock lets the event loop turn at each yield."""
        yield from self.layers.steps(self.participants.values(), self.relayed, clock)
        now = clock()
        if self.settings.gc_freeze:
            FREEZER.tick(len(self.participants))
        if self._trace is not None and self.participants:  # one line of the layer trace
            self._trace.write(json.dumps(snapshot(self.participants.values(), now)) + "\n")
            self._trace.flush()

    def relayed(self, now: float) -> Iterable[tuple[Track, Iterable[int]]]:
        """Local tracks other workers receive, with the spatial layers they need."""
        return ()

    # observability

    def stats(self) -> dict[str, float]:
        """Aggregate counters of every transport ever opened, plus live sizes and loss."""
        result = dict(self._retired)
        live = [p.transport.counters for p in self.participants.values() if p.transport]
        retired = [c for p in self.participants.values() for c in p.retired]
        counters_mod.total([*live, *retired, *(m.counters for m in self.muxes)], into=result)
        result["udp_send_calls"] = sum(m.egress.calls for m in self.muxes if m.egress)
        result["participants"] = len(self.participants)
        result["transports"] = len(live)
        result["groups"] = len(self.groups)
        result["producers"] = sum(len(p.producers) for p in self.participants.values())
        result["consumers"] = sum(len(p.consumers) for p in self.participants.values())
        return {**result, **self._loss(), **self._join_stats()}

    def _join_stats(self) -> dict[str, float]:
        """The pacing of joins (`joins`): now, and totals since the start."""
        pace = self.joins.pace
        stats = pace.stats
        return {
            "joins_connecting": pace.connecting,
            "joins_window": pace.window,
            "joins_shrunk": stats.shrunk,
            "joins_starving": stats.starving,
            "joins_queued": pace.waiting,
            "joins_admitted": stats.admitted,
            "joins_waited": stats.queued,
            "joins_wait_seconds": stats.wait_s,
            "joins_wait_max_seconds": stats.wait_max_s,
            "joins_expired": stats.expired,
            "joins_abandoned": stats.abandoned,
        }

    def _loss(self) -> dict[str, float]:
        """Loss now: upstream as the SFU measured it, downstream as subscribers reported it."""
        expected = lost = 0
        reported: list[float] = []
        for participant in self.participants.values():
            for producer in participant.all_producers():
                expected += producer.stats.expected
                lost += producer.stats.lost
            reported += [c.reported_loss for c in participant.consumers.values() if c.packets_sent]
        return {
            "upstream_loss_percent": 100.0 * lost / expected if expected else 0.0,
            "downstream_loss_percent": 100.0 * sum(reported) / len(reported) if reported else 0.0,
        }


def open_trace(directory: str) -> TextIO:
    """This process's layer trace file in `directory` (sfu.routing.trace), for appending."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    return (path / f"layer-trace-{os.getpid()}.jsonl").open("a", encoding="utf-8")
