"""The layer allocator on the SFU's clock: thin, over what producers and consumers measure.

Every tick, for each connected subscriber:

- the budget is its downlink estimate (its transport-cc estimator, else the
  REMB it sends, else the room-size table) minus what its audio slots take
  and what its resends took lately (`ResendBudget.rate_bps`: a repair goes
  down the same link, sfu.policy.resend);
- each video slot becomes a `SlotDemand`: its rendered size (`video_sizes`;
  0x0 hidden, absent unknown), stage or thumbnail (the group's choice), and
  the layers of the track in it (frame size and temporal bitrates; a paused
  layer has none);
- the subscriber's `LayerAllocator` picks the layers, `Consumer.set_layers`
  carries them out (a switch waits for a key frame of the target layer,
  which is asked for here; a step down for bandwidth cuts the old layer at
  once, `for_bandwidth`), and a `downlink` event goes out when the
  estimate moved (`DownlinkReports`).

A subscriber whose inputs did not move since its last allocation (`steady`:
the same slots, sizes and flowing layers, each layer's rate within
`RATE_SLACK` and the budget within `BUDGET_SLACK` of that round's, no
upgrade waiting for its hold, and that allocation changed nothing) keeps
its layers without running the allocator again, for up to `RECHECK_S`: the
tick's cost follows what changed, not the number of subscribers.  A layer's rates are read once per
tick however many subscribers show it.  Nor is the allocator run when only
rates or the budget moved for a subscriber whose every shown slot shows a
track of one layer at one rate (`fixed`): such a slot gets that layer
whatever the budget (`sfu.policy.allocation`), so only the slots' ceiling
(the Prober's aim) is measured again, as a full allocation would; the
compare_janus fan-outs' publisher's rate swings 20-40 % between key frames,
which sent every subscriber through the allocator every other turn.

Then every simulcast track's needed spatial layers (every layer up to the
highest its local subscribers chose, like LiveKit's dynacast; plus the layers
other workers' subscribers need, from the relay's demand) go through
`LayerNeeds`, and a change becomes a `publish_layers` event for its
publisher, by rid.

What it reads is described by the Protocols below (implemented by
`sfu.routing.producer.Producer`, `consumer.Consumer`, `participant.Participant`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from sfu.control import Downlink, MediaEvent, PublishLayers
from sfu.policy.allocation import (
    LayerAllocator,
    LayerChoice,
    LayerInfo,
    LayerNeeds,
    SlotDemand,
    cap_of,
    ceiling_bps,
    held_below,
    one_step,
)
from sfu.policy.downlink import DownlinkReports

__all__ = ["LayerControl"]

TrackKey = tuple[str, str]  # (publisher id, mid)

# A subscriber whose inputs did not move (`steady`) is allocated again after this long.
RECHECK_S = 2.0
# A layer's rate that moved less than this share, and a budget that moved less than
# this share, since the last allocation are no change (the rate meter's own noise).
RATE_SLACK = 0.1
BUDGET_SLACK = 0.05


class Layer(Protocol):
    """One encoding of a published track (a layer `Producer`)."""

    rid: str | None
    spatial: int
    frame_size: tuple[int, int] | None

    def temporal_bitrates(self, now: float) -> tuple[int, ...]: ...

    def active(self, now: float) -> bool: ...

    def request_keyframe(self, now: float) -> bool: ...


class Track(Layer, Protocol):
    """A published track: its base layer, with all its layers lowest first."""

    owner: str
    mid: str

    @property
    def layers(self) -> tuple[Layer, ...]: ...


class Slot(Protocol):
    """A receive slot (`Consumer`)."""

    kind: str

    @property
    def track(self) -> Track | None: ...

    def set_layers(
        self, spatial: int | None, temporal: int, now: float | None = None, *, cut: bool = False
    ) -> Layer | None: ...


class Estimator(Protocol):
    @property
    def estimate_bps(self) -> int: ...


class Resends(Protocol):
    """What a subscriber's resends take (`sfu.policy.resend.ResendBudget`)."""

    def rate_bps(self, now: float) -> int: ...


class Subscriber(Protocol):
    """A participant's media session (`Participant`)."""

    id: str

    @property
    def consumers(self) -> Mapping[str, Slot]: ...

    @property
    def video_sizes(self) -> Mapping[str, tuple[int, int]]: ...

    @property
    def estimator(self) -> Estimator | None: ...

    @property
    def remb_estimate(self) -> int | None: ...

    @property
    def resend_budget(self) -> Resends: ...

    # Whether its estimate was measured lately (its Prober's `fresh`; True without one):
    # only then may an upgrade rely on it (sfu.policy.allocation).
    estimate_fresh: bool


class LayerControl:
    """Layers for every subscriber of one SFU, and what publishers must send (module doc)."""

    def __init__(self, notify: Callable[[MediaEvent], None]) -> None:
        self._notify = notify
        self._allocators: dict[str, LayerAllocator] = {}
        self._downlinks: dict[str, DownlinkReports] = {}
        self.needs: LayerNeeds[TrackKey] = LayerNeeds()
        self._tracks: dict[TrackKey, Track] = {}
        self._rids: dict[TrackKey, list[str]] = {}  # the last publish_layers of each track
        self._rounds: dict[str, Round] = {}  # each subscriber's last allocation
        self._infos: dict[int, LayerInfo] = {}  # layer -> its info this tick (`_info`)
        self.skipped = 0  # allocations found steady (for tests and stats)
        self.refreshed = 0  # allocations whose choices could not move (`fixed`)
        # What each subscriber's slots would take with no bandwidth limit (the Prober's aim).
        self.desired_bps: dict[str, int] = {}
        self._wanted: dict[TrackKey, list[int | None]] = {}  # the round so far (`add`)
        # Whether some slot of a subscriber gets less than it wants (`held_below`): only
        # then may its Prober re-check an app-limited estimate (sfu.policy.probe).
        self.held: dict[str, bool] = {}
        # Whether every slot of a subscriber has one step only (`one_step`): no estimate
        # changes what it gets, so its Prober never re-checks.
        self.fixed: dict[str, bool] = {}

    def tick(
        self,
        subscribers: Iterable[tuple[Subscriber, int, int, Callable[[str], bool]]],
        relayed: Iterable[tuple[Track, Iterable[int]]],
        now: float,
    ) -> None:
        """One round: for each (subscriber, fallback budget, audio bits/s, is-stage(mid)).

        `subscribers` may be only those due this round (`sfu.policy.cadence`):
        a subscriber is forgotten by `forget`, not by its absence.  `relayed`:
        local tracks with the spatial layers other workers' subscribers need.
        The same round in pieces: `begin`, `add` (any number of times), `finish`.
        """
        self.begin()
        self.add(subscribers, now)
        self.finish(relayed, now)

    def begin(self) -> None:
        """Start a round: what the subscribers chose is collected until `finish`."""
        self._wanted = {}

    def add(
        self,
        subscribers: Iterable[tuple[Subscriber, int, int, Callable[[str], bool]]],
        now: float,
    ) -> None:
        """Allocate these subscribers (a slice of the round; see `tick`)."""
        wanted = self._wanted
        # A layer's info is read once per slice (`_info`): not across slices, between
        # which a layer may be freed and its id() taken by another.
        self._infos.clear()
        for subscriber, fallback_bps, audio_bps, on_stage in subscribers:
            estimate = self.estimate(subscriber, fallback_bps)
            resends = subscriber.resend_budget.rate_bps(now)
            self._allocate(subscriber, estimate - audio_bps, resends, on_stage, wanted, now)
            if subscriber.estimator is None and not subscriber.remb_estimate:
                continue  # nothing measured: the fallback is no news for the client
            kbps = self._downlinks.setdefault(subscriber.id, DownlinkReports()).update(
                estimate, now
            )
            if kbps is not None:
                self._notify(Downlink(subscriber.id, kbps))

    def finish(self, relayed: Iterable[tuple[Track, Iterable[int]]], now: float) -> None:
        """End the round: what publishers must send, from every slice's choices."""
        collected, self._wanted = self._wanted, {}
        # A track forgotten while the round was in slices is not brought back.
        wanted = {key: spatials for key, spatials in collected.items() if key in self._tracks}
        for track, spatials in relayed:  # other workers' subscribers (the relay's demand)
            key = (track.owner, track.mid)
            self._tracks[key] = track
            wanted.setdefault(key, []).extend(spatials)
        self._publish(wanted, now)

    def forget(self, subscriber_id: str) -> None:
        """A subscriber is gone: drop its allocator and its downlink reports."""
        self._allocators.pop(subscriber_id, None)
        self._rounds.pop(subscriber_id, None)
        self._downlinks.pop(subscriber_id, None)
        self.desired_bps.pop(subscriber_id, None)
        self.held.pop(subscriber_id, None)
        self.fixed.pop(subscriber_id, None)

    def forget_track(self, owner: str, mid: str) -> None:
        """A published track is gone: nothing more is said about it."""
        self.needs.forget((owner, mid))
        self._tracks.pop((owner, mid), None)
        self._rids.pop((owner, mid), None)

    @staticmethod
    def estimate(subscriber: Subscriber, fallback_bps: int) -> int:
        """Its downlink: its estimator's, else its REMB (at most `fallback_bps`), else that."""
        if subscriber.estimator is not None:
            return subscriber.estimator.estimate_bps
        if subscriber.remb_estimate:
            return min(subscriber.remb_estimate, fallback_bps)
        return fallback_bps

    def _allocate(
        self,
        subscriber: Subscriber,
        budget: int,
        resends: int,
        on_stage: Callable[[str], bool],
        wanted: dict[TrackKey, list[int | None]],
        now: float,
    ) -> None:
        demands, tracks = [], {}
        for mid, slot in subscriber.consumers.items():
            track = slot.track
            if slot.kind != "video" or track is None:
                continue
            tracks[mid] = track
            size = subscriber.video_sizes.get(mid)
            demands.append(demand(mid, track, size, on_stage(mid), now, self._info))
        allocator = self._allocators.setdefault(subscriber.id, LayerAllocator())
        resends = min(resends, max(0, budget))
        budget = max(0, budget - resends)
        last = self._rounds.get(subscriber.id)
        if (
            last is not None
            and last.settled
            and not allocator.waiting
            and steady(last, demands, budget, now)
        ):
            self.skipped += 1
            choices = allocator.choices
        elif (
            last is not None
            and last.settled
            and not allocator.waiting
            and fixed(last, demands, now)
        ):
            # What the allocator would do (module doc): the same choices, a new ceiling.
            self.refreshed += 1
            choices = allocator.choices
            self.desired_bps[subscriber.id] = ceiling_bps(demands)
            self._rounds[subscriber.id] = Round(now, budget, demands, True)
        else:
            self.desired_bps[subscriber.id] = ceiling_bps(demands)
            before = dict(allocator.choices)
            caps = {d.mid: cap_of(d) for d in demands}
            choices = allocator.update(
                demands, budget, now, rise=subscriber.estimate_fresh, lent_bps=resends
            )
            for mid, choice in choices.items():
                cut = for_bandwidth(before.get(mid), choice, caps[mid])
                self._apply(subscriber.consumers[mid], choice, now, cut)
            self._rounds[subscriber.id] = Round(now, budget, demands, choices == before)
            self.held[subscriber.id] = held_below(demands, choices)
            self.fixed[subscriber.id] = one_step(demands)
        for mid, choice in choices.items():
            track = tracks[mid]
            key = (track.owner, track.mid)
            self._tracks[key] = track
            wanted.setdefault(key, []).append(choice.spatial)

    def _info(self, layer: Layer, now: float) -> LayerInfo:
        """`layer_info`, once per layer per tick (every subscriber of a track reads the same)."""
        info = self._infos.get(id(layer))
        if info is None:
            info = self._infos[id(layer)] = layer_info(layer, now)
        return info

    @staticmethod
    def _apply(slot: Slot, choice: LayerChoice, now: float, cut: bool) -> None:
        awaited = slot.set_layers(choice.spatial, choice.temporal, cut=cut)
        if awaited is not None:
            awaited.request_keyframe(now)

    def _publish(self, wanted: dict[TrackKey, list[int | None]], now: float) -> None:
        for key, choices in wanted.items():
            track = self._tracks.get(key)
            if key not in self._rids and track is not None:
                # A new track: every layer for the hold, as the publisher sends them
                # (nothing to say), so none is turned off before it is even measured.
                choices.append(track.layers[-1].spatial)
                self._rids[key] = [layer.rid for layer in track.layers if layer.rid]
        for key, spatial in self.needs.update(wanted, now).items():
            track = self._tracks.get(key)
            if track is None or len(track.layers) < 2:
                continue  # no simulcast: nothing to turn on or off
            # The lowest layer always: a track with no media at all would look like
            # a camera turned off to the group's selection (`Group.orders`), so it
            # would never be chosen again and never be needed again.
            rids = [
                layer.rid
                for layer in track.layers
                if (layer.spatial in spatial or layer.spatial == 0) and layer.rid
            ]
            if rids != self._rids.get(key):
                self._rids[key] = rids
                self._notify(PublishLayers(key[0], key[1], rids))


def for_bandwidth(before: LayerChoice | None, choice: LayerChoice, cap: int) -> bool:
    """Whether `choice` steps down a spatial layer because the budget shrank (the slot's
    size still wants the layer it leaves): then the old layer is cut at once
    (`Consumer.set_layers`), so the new layer's key frame finds the link free."""
    if before is None or before.spatial is None or choice.spatial is None:
        return False
    return choice.spatial < before.spatial <= cap


def demand(
    mid: str,
    track: Track,
    size: tuple[int, int] | None,
    stage: bool,
    now: float,
    info: Callable[[Layer, float], LayerInfo] | None = None,
) -> SlotDemand:
    """What slot `mid` needs, showing `track` at `size` (None: not reported)."""
    width, height = size if size is not None else (0, 0)
    read = info or layer_info
    return SlotDemand(
        mid,
        stage,
        width,
        height,
        tuple(read(layer, now) for layer in track.layers),
        hidden=size == (0, 0),
    )


@dataclass(frozen=True)
class Round:
    """A subscriber's last allocation: when, with which budget and slots."""

    at: float
    budget: int
    demands: Sequence[SlotDemand]
    settled: bool  # it changed no choice (so the same inputs give the same choices)


def steady(last: Round, demands: Sequence[SlotDemand], budget: int, now: float) -> bool:
    """Whether `demands` and `budget` are what `last` allocated for (module doc)."""
    if now - last.at >= RECHECK_S or len(demands) != len(last.demands):
        return False
    if abs(budget - last.budget) > BUDGET_SLACK * max(last.budget, 1):
        return False
    return all(_same_slot(a, b) for a, b in zip(last.demands, demands, strict=True))


def fixed(last: Round, demands: Sequence[SlotDemand], now: float) -> bool:
    """Whether only rates or the budget moved since `last` and neither can move a choice:
    the same slots, every shown one showing a track of one layer at one rate (module doc)."""
    if now - last.at >= RECHECK_S or len(demands) != len(last.demands):
        return False
    return all(_same_fixed(a, b) for a, b in zip(last.demands, demands, strict=True))


def _same_fixed(a: SlotDemand, b: SlotDemand) -> bool:
    if not _same_place(a, b):
        return False
    if a.hidden:
        return True  # paused whatever it shows
    if len(a.layers) != len(b.layers) or len(a.layers) > 1:
        return False
    return all(_one_rate(x, y) for x, y in zip(a.layers, b.layers, strict=True))


def _one_rate(a: LayerInfo, b: LayerInfo) -> bool:
    """The same layer, one rate (no TIDs), flowing on both sides or on neither."""
    if (a.spatial, a.width, a.height) != (b.spatial, b.width, b.height):
        return False
    if len(a.bitrates) != 1 or len(b.bitrates) != 1:
        return False
    return (a.bitrates[0] == 0) == (b.bitrates[0] == 0)


def _same_place(a: SlotDemand, b: SlotDemand) -> bool:
    """The same slot, tile size and visibility."""
    return (a.mid, a.stage, a.width, a.height, a.hidden) == (
        b.mid,
        b.stage,
        b.width,
        b.height,
        b.hidden,
    )


def _same_slot(a: SlotDemand, b: SlotDemand) -> bool:
    if not _same_place(a, b):
        return False
    if len(a.layers) != len(b.layers):
        return False
    return all(_same_layer(x, y) for x, y in zip(a.layers, b.layers, strict=True))


def _same_layer(a: LayerInfo, b: LayerInfo) -> bool:
    if (a.spatial, a.width, a.height, len(a.bitrates)) != (
        b.spatial,
        b.width,
        b.height,
        len(b.bitrates),
    ):
        return False
    for old, new in zip(a.bitrates, b.bitrates, strict=True):
        if (old == 0) != (new == 0) or abs(new - old) > RATE_SLACK * old:
            return False
    return True


def layer_info(layer: Layer, now: float) -> LayerInfo:
    width, height = layer.frame_size or (0, 0)
    rates = layer.temporal_bitrates(now) if layer.active(now) else ()
    return LayerInfo(layer.spatial, width, height, tuple(rates) or (0,))
