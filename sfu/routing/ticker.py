"""The SFU's clock: what happens every few hundred milliseconds.

One task for the whole `LocalMedia` (not one per transport): it re-evaluates
each group's dominant speaker and slot assignment, repeats NACKs and key
frame requests that are still unanswered, sends each participant's RTCP
reports about once a second (randomised, RFC 3550 6.2), reports pre-call
statistics and ends pre-call sessions that ran out of time.  An exception
in one step is logged and the clock keeps running.

The pass over the participants visits a connected subscriber only when
something of it is due (`Participant.visit_due`), not five times a second:
its next RTCP report, a thumbnail's key frame refresh, or at once (the next
tick) when it is woken (`Participant.wake`): a switch became pending (its key
frame is asked for every tick until it completes), its slots were refilled,
its consumers or transport changed, or a simulcast layer of any track paused
or came back (`live_layers`: everybody is visited then, which is rare).
Publishers (NACK retries), pre-call sessions and participants not connected
are visited on every tick.  So each thing happens on the same tick as before.

A second, faster beat (`feedback.TWCC_FEEDBACK_INTERVAL`) sends transport-cc
feedback to the publishers that negotiated it and lets the subscribers'
Probers plan; while one of them probes it beats every `probing.PROBE_STEP`
to pace the padding.  Both beats fall on a grid of loop time (multiples of
their period, `sfu.routing.beat`), as the consent clock's rounds do, so that
they share its wake-ups.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterable, Iterator
from typing import Protocol

from sfu.control import ActiveSpeaker, MediaEvent, PrecallMeasured
from sfu.routing import feedback
from sfu.routing.beat import EPSILON, grid_after, sleep_until
from sfu.routing.group import Group
from sfu.routing.participant import Participant
from sfu.routing.precall import PrecallMeter
from sfu.routing.probing import PROBE_STEP, Probing
from sfu.routing.producer import Producer
from sfu.settings import MediaSettings
from sfu.transport.webrtc import WebRtcTransport

logger = logging.getLogger(__name__)

REPORT_INTERVAL = 1.0
# The clock's pass over the participants runs in slices of this many, the
# event loop turning between them (reads, consent answers): at 400
# subscribers one pass is 3-5 ms of Python, which would otherwise delay every
# packet arriving meanwhile by as much (docs/benchmarks.md, "Event-loop
# stalls at 400 subscribers").
TICK_SLICE = 50


class Ticked(Protocol):
    """What the clock drives: `sfu.local.LocalMedia` (kept out of this layer's imports)."""

    settings: MediaSettings
    participants: dict[str, Participant]
    groups: dict[tuple[str, str], Group]
    meters: dict[str, PrecallMeter]

    def notify(self, event: MediaEvent) -> None: ...

    def refill(self, group: Group) -> None: ...

    def after_tick(self, now: float) -> None: ...

    def after_tick_steps(self) -> Iterator[None]: ...

    def remb_cap(self, participant: Participant) -> int: ...

    def end_precall(self, pid: str) -> None: ...


class Ticker:
    def __init__(self, media: Ticked, interval: float) -> None:
        self._media = media
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._fast: asyncio.Task[None] | None = None
        self.probing = Probing()
        self.visits = 0  # participants visited (for tests and stats)
        self.beats = 0  # the fast beat's wake-ups
        self.fast_ticks = 0  # of which its feedback turns (`fast_tick`)
        self._live: dict[Producer, int] = {}  # track -> its live layers (`live_layers`)
        self._wake_all = False

    def start(self) -> None:
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run())
            self._fast = loop.create_task(self._run_fast())

    async def stop(self) -> None:
        tasks, self._task, self._fast = (self._task, self._fast), None, None
        for task in tasks:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run_fast(self) -> None:
        loop = asyncio.get_running_loop()
        period = feedback.TWCC_FEEDBACK_INTERVAL
        next_tick = grid_after(loop.time(), period)
        busy = False
        while True:
            at = min(next_tick, loop.time() + PROBE_STEP) if busy else next_tick
            await sleep_until(loop, at)
            self.beats += 1
            now = time.monotonic()
            try:
                if loop.time() + EPSILON >= next_tick:
                    next_tick = grid_after(loop.time(), period)
                    self.fast_ticks += 1
                    self.fast_tick(now)
                busy = self.probing.pump(list(self._media.participants.values()), now)
            except Exception:
                busy = False
                logger.exception("SFU feedback tick failed")

    def fast_tick(self, now: float) -> None:
        """transport-cc feedback to publishers; the subscribers' Probers plan."""
        participants = list(self._media.participants.values())
        for participant in participants:
            log = participant.receive_log  # only a publisher with transport-cc has one
            if log is None or not log.pending:
                continue
            transport = participant.transport
            if transport is not None and transport.connected:
                for packet in feedback.transport_feedback(participant):
                    transport.send_rtcp(packet)
        self.probing.plan(participants, now)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await sleep_until(loop, grid_after(loop.time(), self._interval))
            try:
                await self._sliced()
            except Exception:
                logger.exception("SFU tick failed")

    async def _sliced(self) -> None:
        """`tick`, the participants in slices of `TICK_SLICE` with the loop turning between."""
        media = self._media
        self._groups(time.monotonic())
        participants = list(media.participants.values())
        self._watch_layers(participants, time.monotonic())
        for start in range(0, len(participants), TICK_SLICE):
            if start:
                await asyncio.sleep(0)
            now = time.monotonic()
            for participant in participants[start : start + TICK_SLICE]:
                if not participant.closed:  # it may have left during a slice's pause
                    self._participant(participant, now)
        await asyncio.sleep(0)
        for _ in media.after_tick_steps():  # the layer allocation, in slices too
            await asyncio.sleep(0)

    def tick(self, now: float) -> None:
        """One whole tick in one call (`_run` runs the same in slices)."""
        media = self._media
        self._groups(now)
        participants = list(media.participants.values())
        self._watch_layers(participants, now)
        for participant in participants:
            self._participant(participant, now)
        media.after_tick(now)

    def _groups(self, now: float) -> None:
        media = self._media
        for group in list(media.groups.values()):
            speaker = group.update_speaker(now)
            # Only the group's leader speaks for a group that spans workers.
            if speaker is not None and not group.precall and group.leader:
                media.notify(ActiveSpeaker(group.room_id, group.name, speaker))
            if group.changed_orders(now):
                media.refill(group)

    def _watch_layers(self, participants: list[Participant], now: float) -> None:
        """Wake everybody this tick if a simulcast layer of some track paused or came back."""
        live = live_layers(participants, self._media.groups.values(), now)
        self._wake_all = live != self._live
        self._live = live

    def _participant(self, participant: Participant, now: float) -> None:
        # The cheap tests come first (module doc: a quiet subscriber is not visited).
        producers = participant.producers
        if (
            not producers
            and now < participant.visit_due
            and not self._wake_all
            and not participant.precall
        ):
            return
        self.visits += 1
        participant.visit_due = float("inf")  # a wake during the visit stays
        due = now  # the next tick unless it is connected and all went well
        try:
            for track in producers.values():
                for producer in track.layers:
                    producer.retry_nacks(now)
            transport = participant.transport
            if transport is not None and transport.connected:
                due = self._connected(participant, transport, now)
        finally:
            participant.visit_due = min(participant.visit_due, due)
        if participant.precall:
            self._precall(participant, now)

    def _connected(self, participant: Participant, transport: WebRtcTransport, now: float) -> float:
        """Its slots' and reports' work due now; when the next is due."""
        refresh = self._media.settings.thumbnail_refresh_s
        due = float("inf")
        for consumer in participant.consumers.values():
            if consumer.track is not None:  # a simulcast layer paused or came back
                consumer.refresh_layers(now)
            if consumer.pending is not None:
                consumer.pending.request_keyframe(now)
                due = now  # asked again every tick until the key frame comes
            elif consumer.thumbnail and consumer.source is not None:
                source = consumer.source
                if now >= source.refresh_due and source.request_keyframe(now):
                    source.refresh_due = now + refresh
                # Another subscriber of the source may push it later: visited early, not late.
                due = min(due, source.refresh_due)
        if now >= participant.next_report:
            participant.next_report = now + REPORT_INTERVAL * random.uniform(0.5, 1.5)
            for packet in feedback.reports(participant, now, self._media.remb_cap(participant)):
                transport.send_rtcp(packet)
        return min(due, participant.next_report)

    def _precall(self, participant: Participant, now: float) -> None:
        media = self._media
        if now - participant.opened_at >= media.settings.precall_max_s:
            media.end_precall(participant.id)
            return
        meter = media.meters.get(participant.id)
        if meter is not None and meter.due(now):
            media.notify(PrecallMeasured(participant.id, meter.measure(participant, now)))


def live_layers(
    participants: Iterable[Participant], groups: Iterable[Group], now: float
) -> dict[Producer, int]:
    """Each simulcast track's active layers (a bit per layer), local and remote ones."""
    live: dict[Producer, int] = {}
    for participant in participants:
        _add_live(live, participant.producers.values(), now)
    for group in groups:
        for remote in group.remotes.values():
            _add_live(live, remote.producers.values(), now)
    return live


def _add_live(live: dict[Producer, int], tracks: Iterable[Producer], now: float) -> None:
    for track in tracks:
        layers = track.layers
        if len(layers) > 1:
            live[track] = sum(1 << i for i, layer in enumerate(layers) if layer.active(now))
