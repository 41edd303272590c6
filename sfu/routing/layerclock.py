"""The layer allocation of one `LocalMedia`, run on its clock (`after_tick`).

`LayerControl` (sfu.routing.layering) does the work for the subscribers
given; this shell chooses them and what it needs to know of each:

- who: connected, non-pre-call participants that are due (`Cadence`: every
  `ALLOCATION_PERIOD_S`, staggered; at once when `mark`ed because its
  slots, their stage/thumbnail class or its tile sizes changed, or when its
  estimate moved by 20 %);
- its budget: its transport-cc estimate, else its REMB, else the room-size
  table's per-publisher cap times its filled video slots (what it would get
  without simulcast), minus the audio it receives (audio always first);
- stage or thumbnail: the group's choice (`Participant.stage_mids`; with
  `stage_video_slots` 0 every slot is stage-class, sized by its tile).

After each round, what each subscriber's slots would take with no limit
(`LayerControl.desired_bps`), with the audio and some headroom
(`allocation.probe_goal_bps`), is its Prober's desired rate: probes run only
when a subscriber is held below what its tiles want; whether some slot
gets less than its top step (`LayerControl.held`, `Participant.layers_held`)
and whether every slot has one step only (`LayerControl.fixed`,
`Participant.layers_fixed`) decide whether its Prober may re-check an
app-limited estimate.

`steps` runs a round in slices of `LAYER_SLICE` due subscribers, yielding
between them so that the caller (the SFU clock) lets the event loop turn:
one round at 400 subscribers was 5-21 ms in one callback (docs/benchmarks.md,
"Event-loop stalls at 400 subscribers").  Who is due is decided once, at the
start; a subscriber that closed meanwhile is skipped, and the publishers are
told what to send once, at the end, from every slice's choices.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping

from sfu.control import MediaEvent, PublishLayers
from sfu.policy.allocation import probe_goal_bps
from sfu.policy.bitrate import cap_for
from sfu.policy.cadence import Cadence
from sfu.routing.layering import LayerControl, Track
from sfu.routing.participant import Participant

__all__ = ["ALLOCATION_PERIOD_S", "LAYER_SLICE", "LayerClock"]

ALLOCATION_PERIOD_S = 0.5
# Due subscribers allocated per slice of a round (`steps`): about 100 us each
# when their inputs moved, so a slice holds the loop 1-3 ms.
LAYER_SLICE = 25

Relayed = Iterable[tuple[Track, Iterable[int]]]
Due = tuple[Participant, int]  # a subscriber due this round, with its fallback budget


class LayerClock:
    """See module doc."""

    def __init__(
        self, notify: Callable[[MediaEvent], None], local: Mapping[str, Participant]
    ) -> None:
        self._notify = notify
        self._local = local
        self.control = LayerControl(self._tell)
        self.cadence: Cadence[str] = Cadence(ALLOCATION_PERIOD_S)
        self.rounds = 0  # subscriber allocations run (for tests and stats)

    def _tell(self, event: MediaEvent) -> None:
        # A remote track's publisher is another worker's: its layers follow this
        # worker's demand through the relay, not a message from here.
        if isinstance(event, PublishLayers) and event.participant_id not in self._local:
            return
        self._notify(event)

    def mark(self, participant: Participant) -> None:
        """Its slots, stage or sizes changed: allocate at the next tick."""
        self.cadence.mark(participant.id)

    def forget(self, participant: Participant) -> None:
        """It left: forget it as a subscriber and its tracks as a publisher."""
        self.cadence.forget(participant.id)
        self.control.forget(participant.id)
        for track in participant.producers.values():
            self.control.forget_track(participant.id, track.mid)

    def tick(self, participants: Iterable[Participant], relayed: Relayed, now: float) -> None:
        """One whole round in one call (`steps` runs the same in slices)."""
        due = self._due(participants, now)
        self.control.begin()
        self.allocate_slice(due, now)
        self.control.finish(relayed, now)

    def steps(
        self,
        participants: Iterable[Participant],
        relayed: Callable[[float], Relayed],
        clock: Callable[[], float] = time.monotonic,
    ) -> Iterator[None]:
        """One round in slices of `LAYER_SLICE`, yielding between them (module doc)."""
        now = clock()
        due = self._due(participants, now)
        self.control.begin()
        for start in range(0, len(due), LAYER_SLICE):
            if start:
                yield
                now = clock()
            self.allocate_slice(due[start : start + LAYER_SLICE], now)
        now = clock()
        self.control.finish(relayed(now), now)

    def _due(self, participants: Iterable[Participant], now: float) -> list[Due]:
        due = []
        caps: dict[int, int] = {}  # a group's room-table cap, read once per tick
        for p in participants:
            transport = p.transport
            if p.precall or p.closed or transport is None or not transport.connected:
                continue
            estimator = p.estimator
            if estimator is not None:  # its own estimate: the fallback is needed when due only
                fallback, estimate = None, estimator.estimate_bps
            else:
                fallback = _fallback(p, caps)
                estimate = LayerControl.estimate(p, fallback)
            if self.cadence.due(p.id, estimate, now):
                due.append((p, fallback_bps(p) if fallback is None else fallback))
        return due

    def allocate_slice(self, due: Iterable[Due], now: float) -> None:
        """Allocate these due subscribers (skipping any that closed since the round began)."""
        batch = [
            (p, fallback, audio_bps(p, now), stage_test(p)) for p, fallback in due if not p.closed
        ]
        self.rounds += len(batch)
        self.control.add(batch, now)
        for p, _, audio, _ in batch:  # the Prober's aim: the slots' ceilings plus the audio
            p.desired_bps = probe_goal_bps(self.control.desired_bps.get(p.id, 0), audio)
            p.layers_held = self.control.held.get(p.id, True)
            p.layers_fixed = self.control.fixed.get(p.id, False)


def fallback_bps(participant: Participant) -> int:
    """The budget of a subscriber that measures nothing: the room table's cap per slot."""
    filled = sum(1 for c in participant.consumers.values() if c.kind == "video" and c.track)
    return cap_for(participant.group.size, participant.settings.remb_table) * max(1, filled)


def _fallback(participant: Participant, caps: dict[int, int]) -> int:
    """`fallback_bps`, with its group's cap from `caps` (filled on first use)."""
    group = participant.group
    cap = caps.get(id(group))
    if cap is None:
        cap = caps[id(group)] = cap_for(group.size, participant.settings.remb_table)
    filled = 0
    for consumer in participant.consumers.values():
        if consumer.kind == "video" and consumer.track is not None:
            filled += 1
    return cap * max(1, filled)


def audio_bps(participant: Participant, now: float) -> int:
    """What its audio slots receive now."""
    return sum(
        c.source.bitrate_bps(now)
        for c in participant.consumers.values()
        if c.kind == "audio" and c.source is not None
    )


def stage_test(participant: Participant) -> Callable[[str], bool]:
    """Whether a slot of `participant` is stage-class (module doc)."""
    stage = participant.stage_mids
    if stage is None or not participant.settings.stage_video_slots:
        return _everywhere
    return stage.__contains__


def _everywhere(mid: str) -> bool:
    return True
