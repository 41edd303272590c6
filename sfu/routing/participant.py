"""A participant's media session: its transport, producers and consumers.

A `Participant` exists from `open` (admitted, no transport yet) until
`close`.  Each offer is negotiated into it: the transport is created on the
first offer (and again when the client's DTLS certificate changed, or when
an ICE restart comes before the transport was ever keyed); an ICE restart of
a keyed transport keeps it (and its DTLS association) and only replaces the
ICE agent under it (`WebRtcTransport.prepare_restart`).  Published m-lines become
`Producer`s and receive m-lines become `Consumer`s, keyed by mid so that a
renegotiation keeps the existing ones (same SSRCs, same state) and only adds
or removes what changed.  It is also the transport's `PacketSink`: RTP is
routed to the producer by SSRC (learned from the sdes:mid extension when the
offer did not announce it), RTCP goes to `feedback`.

A simulcast m-line (`MediaPlan.simulcast`) becomes one Producer per layer
(`sfu.routing.producer`): `producers[mid]` holds the track, the others are
its `layers`.  Their SSRCs are never in the offer: a packet of an unknown SSRC
is mapped by its sdes:mid to the track and by its RID (media) or repaired
RID (RTX) extension to the layer.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sfu import native
from sfu.control import CONNECT_FAILED, TRANSPORT_FAILED, Slot
from sfu.packet.counters import Counters
from sfu.packet.rtp import RtpError, RtpHeader, find_extension, parse_rtp
from sfu.packet.twcc import ReceiveLog, transport_seq_offset
from sfu.policy.gcc import BandwidthEstimator, PacketResult
from sfu.policy.probe import Prober
from sfu.policy.resend import ResendBudget
from sfu.routing import feedback
from sfu.routing.consumer import Consumer
from sfu.routing.group import participant_of, source_of
from sfu.routing.pacedoutput import PacedOutput
from sfu.routing.producer import Producer, close_track, link_layers
from sfu.sdp.answer import AnswerContext, SendStream, render_answer
from sfu.sdp.negotiate import MID_URI, RID_URI, RRID_URI, TWCC_URI, MediaPlan
from sfu.sdp.offer import Offer
from sfu.sdp.restart import OfferKind, RemoteIce, offer_kind
from sfu.settings import MediaSettings
from sfu.transport.rxtime import ARRIVAL as _ARRIVAL
from sfu.transport.sendhistory import Columns
from sfu.transport.watched import Watched
from sfu.transport.webrtc import TransportState, WebRtcTransport

if TYPE_CHECKING:
    from sfu.routing.group import Group

_monotonic = time.monotonic
MAX_LEARNED_SSRCS = 24  # media + RTX of up to 4 layers of 2 video tracks, audio, restarts
MAX_ESTIMATE_BPS = 10_000_000


class NullOutput:
    """Where consumers and producers write while there is no transport."""

    rtcp_ssrc = 0

    def send_rtp(self, packet: bytes, twcc_at: int = -1) -> None:
        pass

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
        pass

    def send_rtcp(self, packet: bytes) -> None:
        pass


NULL_OUTPUT = NullOutput()


class Participant:
    """One participant's media (see module doc)."""

    def __init__(
        self,
        participant_id: str,
        room_id: str,
        group: Group,
        *,
        precall: bool,
        settings: MediaSettings,
        on_transport_lost: Callable[[Participant, str], None],
    ) -> None:
        # Bumped by the setters of what the compiled inlet remembers (below).
        self.inlet_stamp = _new_stamp()
        self.id = participant_id
        self.settings = settings
        self.room_id = room_id
        self.group = group
        self.precall = precall
        self.pinned: str | None = None
        self.video_sizes: dict[str, tuple[int, int]] = {}  # mid -> rendered (w, h); video_sizes
        self.closed = False
        self.lock = asyncio.Lock()
        self.transport: WebRtcTransport | None = None
        self.remote: RemoteIce | None = None  # the client's ICE and DTLS, from its last offer
        self.on_consent_lost_cb: Callable[[Participant], None] | None = None
        # Told when a transport connected (LocalMedia frees its join slot).
        self.on_connected_cb: Callable[[Participant], None] | None = None
        self.rtcp_ssrc = random.getrandbits(32) | 1
        self.cname = f"vr-{random.getrandbits(48):012x}"
        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, Consumer] = {}
        self.by_ssrc = {}
        self.by_rtx_ssrc = {}
        self.consumers_by_ssrc: dict[int, Consumer] = {}
        self.slot_keys: dict[str, str | None] = {}  # mid -> source key
        self.slots_sent: list[Slot] | None = None
        self.publishing_sent: dict[str, list[str]] | None = None
        self.plans: tuple[MediaPlan, ...] = ()
        self.ext_ids: dict[str, int] = {}
        self.answer_version = 0
        self.session_id = random.getrandbits(62)
        self.opened_at = time.monotonic()
        self.next_report = 0.0
        # When the SFU clock visits it next (`sfu.routing.ticker`): 0 is the next tick.
        self.visit_due = 0.0
        self.retired: list[Counters] = []
        self.remb_estimate: int | None = None  # the participant's own REMB to us
        # Its video slots on stage (Group: stage_video_slots); None: every slot.
        self.stage_mids: frozenset[str] | None = None
        # transport-cc, when negotiated: the sequence extension id, and the
        # arrival times of what the participant sends (for its feedback).
        self.twcc_id = 0
        self.receive_log = None
        # What we send it: the estimate of its downlink from its feedback, the
        # Prober, and what the layer allocation would like to send it.
        self.estimator: BandwidthEstimator | None = None
        self.prober: Prober | None = None
        self.max_bps = MAX_ESTIMATE_BPS  # the estimator's ceiling (set_max)
        self.desired_bps = 0
        # What its slots may resend it, within its estimate (sfu.policy.resend; feedback).
        self.resend_budget = ResendBudget()
        # Its video slots' switch key frames, paced to its estimate (sfu.policy.pacing).
        self.pacer: PacedOutput | None = None
        # Some video slot gets less than it wants (LayerControl.held): the Prober's
        # re-check of an app-limited estimate is worth its padding (sfu.policy.probe).
        self.layers_held = True
        # Every video slot has one step only (LayerControl.fixed): no estimate changes
        # what it gets, so the Prober never re-checks it.
        self.layers_fixed = False
        # Whether its estimate was measured lately (its Prober's `fresh`, on the probe
        # clock): only then may the allocation step it up (sfu.policy.allocation).
        self.estimate_fresh = True
        self.feedback_columns: Columns | None = None  # of the last feedback
        self._learned = 0
        self._idle_counters = Counters()
        self._on_transport_lost = on_transport_lost
        # The transport's compiled inlet (sfu.native._ingress) runs on_rtp's common case.
        native.configured("_ingress", "participant", _configure_inlet)

    def wake(self) -> None:
        """Something of it is due: the SFU clock visits it at its next tick."""
        self.visit_due = 0.0

    # transport

    def all_producers(self) -> Iterator[Producer]:
        """Every layer of every published track (tracks are `producers`)."""
        for producer in self.producers.values():
            yield from producer.layers

    @property
    def counters(self) -> Counters:
        return self.transport.counters if self.transport is not None else self._idle_counters

    def offer_kind(self, offer: Offer) -> OfferKind:
        """What `offer` asks of the transport; a restart of a never-keyed one starts over."""
        if self.transport is None:
            return OfferKind.FIRST
        kind = offer_kind(self.remote, offer)
        if kind == OfferKind.ICE_RESTART and not self.transport.connected:
            return OfferKind.NEW_TRANSPORT
        return kind

    def restart_ice(self, offer: Offer, timeout: float) -> None:
        """The prepared ICE restart of the transport starts its checks."""
        assert self.transport is not None
        self.remote = RemoteIce.of(offer)
        self.transport.restart(
            ufrag=offer.ice_ufrag,
            pwd=offer.ice_pwd,
            candidates=list(offer.candidates),
            timeout=timeout,
        )

    def on_path_restored(self) -> None:
        """An ICE restart completed: ask for key frames both ways, so pictures come back now."""
        now = time.monotonic()
        for producer in self.all_producers():
            if producer.kind == "video":
                producer.request_keyframe(now)
        for consumer in self.consumers.values():
            target = consumer.target
            if consumer.kind == "video" and target is not None:
                target.request_keyframe(now)

    def on_consent_lost(self) -> None:
        if self.on_consent_lost_cb is not None and not self.closed:
            self.on_consent_lost_cb(self)

    def set_transport(self, transport: WebRtcTransport, offer: Offer, timeout: float) -> None:
        """Adopt a freshly gathered transport (first offer or a new DTLS association)."""
        old = self.transport
        self.transport = transport
        self.remote = RemoteIce.of(offer)
        if old is not None:
            self.retired.append(old.counters)
            old.close()
        role = _dtls_role(offer.setup, old.dtls_role if old is not None else None)
        transport.inbound_ssrcs.update(self.by_ssrc)
        transport.inbound_ssrcs.update(self.by_rtx_ssrc)
        transport.add_remote_candidates(list(offer.candidates))
        transport.start(
            ufrag=offer.ice_ufrag,
            pwd=offer.ice_pwd,
            fingerprints=offer.fingerprints,
            dtls_role=role,
            timeout=timeout,
        )
        self._bind_outputs()

    def on_transport_state(self, state: TransportState) -> None:
        transport = self.transport
        if state == TransportState.FAILED and transport is not None:
            reason = TRANSPORT_FAILED if transport.was_connected else CONNECT_FAILED
            self._lost(transport, reason)
        elif state == TransportState.CONNECTED:
            self.wake()
            if self.on_connected_cb is not None:
                self.on_connected_cb(self)
            now = time.monotonic()
            for consumer in self.consumers.values():
                if consumer.resync() and consumer.pending is not None:
                    consumer.pending.request_keyframe(now)

    def _lost(self, transport: WebRtcTransport, reason: str) -> None:
        if transport is self.transport and not self.closed:
            self.retired.append(transport.counters)
            self.transport = None
            self.remote = None
            transport.close()
            self._bind_outputs()
            self._on_transport_lost(self, reason)

    def _bind_outputs(self) -> None:
        self.wake()  # its transport came or went
        if self.transport is not None:
            self.transport.set_transport_cc(self.twcc_id)
            self.transport.padding_sources = tuple(
                c for c in self.consumers.values() if c.kind == "video"
            )
        output = self.transport if self.transport is not None else NULL_OUTPUT
        if self.pacer is not None and self.pacer.inner is not self.transport:
            self.pacer.close()  # what waits was for the transport that is gone
            self.pacer = None
        if self.pacer is None and self.transport is not None:
            self.pacer = PacedOutput(self.transport, self._pace_bps)
        for consumer in self.consumers.values():
            if consumer.output is not self.pacer:  # an engaged slot's burst stays in order
                consumer.output = output
            consumer.pacer = self.pacer if consumer.kind == "video" else None
        for producer in self.all_producers():
            producer.output = self
            producer.counters = self.counters

    def _pace_bps(self) -> float | None:
        """What a switch's key frame is paced to: the estimate, else the subscriber's REMB."""
        if self.estimator is not None:
            return self.estimator.estimate_bps
        return self.remb_estimate

    def send_rtcp(self, packet: bytes) -> None:
        if self.transport is not None:
            self.transport.send_rtcp(packet)

    # negotiation

    def apply(self, plans: tuple[MediaPlan, ...]) -> bool:
        """Make producers and consumers match `plans`; True if the producers changed."""
        self.plans = plans
        self.ext_ids = {uri: i for p in plans for i, uri in p.extensions}
        self._apply_transport_cc(plans)
        changed = self._apply_producers(plans)
        self._apply_consumers(plans)
        self._bind_outputs()
        return changed

    def _apply_transport_cc(self, plans: tuple[MediaPlan, ...]) -> None:
        """transport-cc needs both the sequence extension and the feedback type."""
        feedback = any(c.has_feedback("transport-cc") for p in plans for c in p.codecs)
        self.twcc_id = self.ext_ids.get(TWCC_URI, 0) if feedback else 0
        if not self.twcc_id:
            self.receive_log = self.estimator = self.prober = None
            self.estimate_fresh = True  # no Prober says otherwise
        elif self.receive_log is None or self.estimator is None:
            self.receive_log = ReceiveLog()
            self.estimator = BandwidthEstimator(max_bps=self.max_bps)
            self.prober = Prober()

    def set_max_bps(self, max_bps: int) -> None:
        """The most the estimate may say (the subscriber's REMB, a configured cap)."""
        self.max_bps = max_bps
        if self.estimator is not None:
            self.estimator.set_max(max_bps)

    def _apply_producers(self, plans: tuple[MediaPlan, ...]) -> bool:
        wanted = {p.mid: p for p in plans if p.publish and p.mid is not None}
        changed = False
        for mid in [m for m in self.producers if m not in wanted]:
            self._remove_producer(self.producers.pop(mid))
            changed = True
        for mid, plan in wanted.items():
            producer = self.producers.get(mid)
            rids = plan.simulcast.rids if plan.simulcast is not None else None
            if producer is not None and _rids(producer) != rids:
                self._remove_producer(self.producers.pop(mid))  # simulcast came or went
                producer = None
            if producer is None:
                producer = self._new_producer(plan)
                self.producers[mid] = producer
                changed = True
            else:
                for layer in producer.layers:
                    layer.update(plan.codecs, self.ext_ids)
            self._register_ssrcs(producer, plan)
        return changed

    def _new_producer(self, plan: MediaPlan) -> Producer:
        if plan.kind == "audio":
            source = "audio"
        else:
            taken = {p.source for p in self.producers.values()}
            source = "camera" if "camera" not in taken else "screen"
        if plan.simulcast is None or plan.kind != "video":
            return self._producer(plan, source, None)
        layers = []
        for index, rid in enumerate(plan.simulcast.rids):
            layer = self._producer(plan, source, rid)
            layer.offer_index = index
            layers.append(layer)
        link_layers(tuple(layers))
        return layers[0]

    def _producer(self, plan: MediaPlan, source: str, rid: str | None) -> Producer:
        producer = Producer(
            owner=self.id,
            mid=plan.mid or "",
            kind=plan.kind,
            source=source,
            codecs=plan.codecs,
            ssrc=None,
            rtx_ssrc=None,
            ext_ids=self.ext_ids,
            output=self,
            keyframe_interval=self.settings.keyframe_min_interval_s,
            cache_size=self.settings.rtx_cache_packets,
            cache_age=self.settings.rtx_cache_age_s,
            rid=rid,
        )
        producer.level_sink = self.group.level_sink(self.id)
        return producer

    def _register_ssrcs(self, producer: Producer, plan: MediaPlan) -> None:
        if plan.ssrc is not None and plan.ssrc != producer.ssrc:
            if producer.ssrc is not None:
                self.by_ssrc.pop(producer.ssrc, None)
            producer.set_ssrc(plan.ssrc)
            self.by_ssrc[plan.ssrc] = producer
        if plan.rtx_ssrc is not None and plan.rtx_ssrc != producer.rtx_ssrc:
            if producer.rtx_ssrc is not None:
                self.by_rtx_ssrc.pop(producer.rtx_ssrc, None)
            producer.rtx_ssrc = plan.rtx_ssrc
            self.by_rtx_ssrc[plan.rtx_ssrc] = producer
        if self.transport is not None:
            self.transport.inbound_ssrcs.update(s for s in (plan.ssrc, plan.rtx_ssrc) if s)

    def _remove_producer(self, producer: Producer) -> None:
        close_track(producer)
        layers = producer.layers
        for table in (self.by_ssrc, self.by_rtx_ssrc):
            for ssrc in [s for s, p in table.items() if any(p is layer for layer in layers)]:
                del table[ssrc]

    def _apply_consumers(self, plans: tuple[MediaPlan, ...]) -> None:
        self.wake()
        wanted = {p.mid: p for p in plans if p.receive and p.mid is not None}
        for mid in [m for m in self.consumers if m not in wanted]:
            consumer = self.consumers.pop(mid)
            consumer.close()
            self.slot_keys.pop(mid, None)
            self.consumers_by_ssrc.pop(consumer.ssrc, None)
        for mid, plan in wanted.items():
            existing = self.consumers.get(mid)
            if existing is not None and existing.kind == plan.kind:
                existing.update(plan.codecs, self.ext_ids)
                continue
            if existing is not None:
                existing.close()
                self.consumers_by_ssrc.pop(existing.ssrc, None)
            consumer = Consumer(
                owner=self.id,
                mid=mid,
                kind=plan.kind,
                ssrc=self._fresh_ssrc(),
                rtx_ssrc=self._fresh_ssrc() if plan.kind == "video" else None,
                codecs=plan.codecs,
                ext_ids=self.ext_ids,
                output=NULL_OUTPUT,
            )
            consumer.wake = self.wake
            self.consumers[mid] = consumer
            self.consumers_by_ssrc[consumer.ssrc] = consumer
            self.slot_keys[mid] = None

    def _fresh_ssrc(self) -> int:
        taken = set(self.by_ssrc) | set(self.by_rtx_ssrc) | {self.rtcp_ssrc}
        for consumer in self.consumers.values():
            taken.update((consumer.ssrc, consumer.rtx_ssrc or 0))
        while True:
            ssrc = random.getrandbits(32)
            if ssrc and ssrc not in taken:
                return ssrc

    def answer(self, offer: Offer) -> str:
        assert self.transport is not None
        streams = {}
        index = {"audio": 0, "video": 0}
        for plan in self.plans:
            consumer = self.consumers.get(plan.mid or "") if plan.receive else None
            if consumer is None:
                continue
            rtx = any(c.rtx_payload_type is not None for c in plan.codecs)
            streams[consumer.mid] = SendStream(
                ssrc=consumer.ssrc,
                rtx_ssrc=consumer.rtx_ssrc if rtx else None,
                stream_id=f"vr-slot-{index[plan.kind]}",
                track_id=f"vr-{plan.kind}-{consumer.mid}",
            )
            index[plan.kind] += 1
        self.answer_version += 1
        setup = "active" if self.transport.dtls_role == "client" else "passive"
        context = AnswerContext(self.session_id, self.answer_version, self.cname)
        return render_answer(offer, self.plans, streams, self.transport.local(setup), context)

    # slots

    def receive_slots(self) -> list[tuple[str, str]]:
        return [
            (p.mid, p.kind) for p in self.plans if p.receive and p.mid and p.mid in self.consumers
        ]

    def slot_list(self) -> list[Slot]:
        slots = []
        for mid, kind in self.receive_slots():
            key = self.slot_keys.get(mid)
            slot = Slot(mid=mid, kind=kind, participant_id=participant_of(key))
            if key is not None:
                slot["source"] = source_of(key, kind)
            slots.append(slot)
        return slots

    # What the compiled inlet reads of a participant for every packet (sfu.native.
    # _ingress: the two SSRC tables, the transport-cc id and arrival log, the
    # opening time) it remembers while `inlet_stamp` holds: each assignment bumps it
    # (`Watched`), so whoever assigns one cannot leave an inlet stale.  (The tables
    # themselves change in place: the inlet looks them up for every packet.)

    def _changed(self) -> None:
        if self.inlet_stamp is not None:
            self.inlet_stamp.bump()

    by_ssrc = Watched[dict[int, Producer]](_changed)
    by_rtx_ssrc = Watched[dict[int, Producer]](_changed)
    twcc_id = Watched[int](
        _changed, "The transport-wide sequence extension's id, 0 when not negotiated."
    )
    receive_log = Watched[ReceiveLog | None](
        _changed, "The arrival times of what it sends (for its transport-cc feedback)."
    )
    opened_at = Watched[float](_changed)

    # packets (the transport's PacketSink)

    def on_rtp(self, packet: bytes) -> None:
        """One plain RTP packet from the transport (sfu.native._ingress inlines its common
        case: a known SSRC goes to its producer)."""
        try:
            h = parse_rtp(packet)
        except RtpError:
            self.counters.bad_rtp += 1
            return
        producer = self.by_ssrc.get(h.ssrc)
        now = _monotonic()
        twcc_at = -1
        if self.twcc_id:
            # Record the transport-wide sequence number's arrival (where it is: the
            # producer's consumers number their copies there).
            twcc_at = transport_seq_offset(packet, h, self.twcc_id)
            log = self.receive_log
            if twcc_at >= 0 and log is not None:
                # When the kernel received it (SO_TIMESTAMPNS on the shared socket),
                # not when this loop got to it: a busy loop is no queue on the path.
                at = _ARRIVAL.at or now
                log.record(
                    (packet[twcc_at] << 8) | packet[twcc_at + 1],
                    int((at - self.opened_at) * 1e6),
                )
        if producer is not None:
            producer.twcc_at = twcc_at
            if not producer.on_rtp(packet, h, now):
                self.counters.bad_rtp += 1
            return
        producer = self.by_rtx_ssrc.get(h.ssrc)
        if producer is not None:
            producer.twcc_at = twcc_at  # the original keeps the RTX packet's header layout
            if h.payload_length and not producer.on_rtx(packet, h, now):
                self.counters.bad_rtp += 1
            return
        if not self._learn(packet, h, now, twcc_at):
            self.counters.unknown_ssrc += 1

    def _learn(self, packet: bytes, h: RtpHeader, now: float, twcc_at: int = -1) -> bool:
        """Map an unannounced SSRC to a producer by its sdes:mid (RFC 8843)."""
        mid_id = self.ext_ids.get(MID_URI)
        if mid_id is None or self._learned >= MAX_LEARNED_SSRCS:
            return False
        try:
            value = find_extension(packet, h, mid_id)
        except RtpError:
            return False
        producer = self.producers.get(value.decode("ascii", "replace")) if value else None
        if producer is None:
            return False
        if len(producer.layers) > 1:
            layer = self._layer_of(producer, packet, h)
            if layer is None:
                return False
            producer = layer
        self._learned += 1
        if h.payload_type in producer.apt_by_rtx:
            if producer.rtx_ssrc is not None:
                self.by_rtx_ssrc.pop(producer.rtx_ssrc, None)
            producer.rtx_ssrc = h.ssrc
            self.by_rtx_ssrc[h.ssrc] = producer
            return True
        if producer.ssrc is not None:
            self.by_ssrc.pop(producer.ssrc, None)
        producer.set_ssrc(h.ssrc)
        self.by_ssrc[h.ssrc] = producer
        producer.twcc_at = twcc_at
        return producer.on_rtp(packet, h, now)

    def on_packet_results(self, columns: Columns, now: float) -> None:
        """What the participant's transport-cc feedback says about our packets
        (`SendHistory.columns`: no object per packet, this runs for every copy)."""
        self.feedback_columns = columns
        if self.estimator is not None:
            self.estimator.on_feedback_arrays(*columns, now)

    @property
    def packet_results(self) -> list[PacketResult]:
        """The last feedback's packets as `PacketResult`s (for tests and tools)."""
        columns = self.feedback_columns
        return [] if columns is None else columns.results()

    def _layer_of(self, track: Producer, packet: bytes, h: RtpHeader) -> Producer | None:
        """The layer a packet of a simulcast track belongs to, by its (repaired) RID."""
        plan = next((p for p in self.plans if p.mid == track.mid), None)
        if plan is None or plan.simulcast is None:
            return None
        rtx = h.payload_type in track.apt_by_rtx
        value = None
        try:
            for uri in (RRID_URI, RID_URI) if rtx else (RID_URI,):
                ext_id = self.ext_ids.get(uri)
                if ext_id is not None and value is None:
                    value = find_extension(packet, h, ext_id)
        except RtpError:
            return None
        index = plan.simulcast.layer_of(value.decode("ascii", "replace")) if value else None
        if index is None:
            return None
        return next((p for p in track.layers if p.offer_index == index), None)

    def on_rtcp(self, packet: bytes) -> None:
        feedback.handle_rtcp(self, packet, time.monotonic())

    # teardown

    def reset_media(self) -> None:
        """Forget producers and consumers (the transport is gone); stay admitted."""
        for consumer in self.consumers.values():
            consumer.close()
        for producer in self.producers.values():
            close_track(producer)
        self.consumers.clear()
        self.producers.clear()
        self.consumers_by_ssrc.clear()
        self.by_ssrc.clear()
        self.by_rtx_ssrc.clear()
        self.slot_keys.clear()
        self.slots_sent = None
        self.publishing_sent = None
        self.plans = ()

    def close(self) -> None:
        """Cut everything now. Idempotent; the group is left by the caller."""
        if self.closed:
            return
        self.closed = True
        if self.pacer is not None:
            self.pacer.close()
            self.pacer = None
        transport, self.transport = self.transport, None
        if transport is not None:
            self.retired.append(transport.counters)
            transport.close()
        for consumer in self.consumers.values():
            consumer.close()
        for producer in self.producers.values():
            close_track(producer)
        self.by_ssrc.clear()
        self.by_rtx_ssrc.clear()


def _new_stamp() -> Any:
    """sfu.native._ingress.Stamp(), or None without the compiled inlet."""
    module = native.load("_ingress")
    return None if module is None else module.Stamp()


def _configure_inlet(module: ModuleType) -> None:
    module.configure("participant", Participant)
    module.configure("producer", Producer)


def _dtls_role(setup: str, current: str | None) -> str:
    """Our DTLS role: the offer decides; actpass keeps what we had, else client."""
    if setup == "active":
        return "server"
    if setup == "passive":
        return "client"
    return current or "client"


def _rids(producer: Producer) -> tuple[str, ...] | None:
    """The simulcast rids a track was made for, in offer order (None: no simulcast)."""
    if producer.rid is None:
        return None
    return tuple(layer.rid or "" for layer in sorted(producer.layers, key=lambda p: p.offer_index))
