"""Which simulcast layer each video slot of one subscriber gets, within its bandwidth.

`allocate` is the whole rule, pure and deterministic: the caller gives the
subscriber's video slots (what each renders, what layers its publisher
sends, at which bitrates) and the budget (the subscriber's estimate minus
what its audio takes: audio always goes first).

- Each slot climbs a ladder of steps: the lowest spatial layer at TID 0,
  then its higher temporal layers, then the next spatial layer from TID 1
  (half its frame rate: a higher layer is not thinned further, see
  `ladder`), ... So when the budget shrinks a slot loses some frame rate
  before resolution.
- The ladder stops at the slot's cap: the smallest layer at least ~0.9x the
  rendered size in both dimensions (the reference client crops to fill:
  object-fit cover), the top layer if none is; a thumbnail's cap is the
  lowest layer; a hidden slot (rendered 0x0) gets no video at all.
- Everybody first gets the lowest step (stage slots first), then stage slots
  climb (one step each in turn), then thumbnails. A slot is paused (spatial
  None) only when even its lowest step does not fit, and never the first
  slot (the first stage slot) nor a slot whose publisher sends one layer (no
  simulcast: that is the only way to see it): those get their lowest step
  whatever the budget (everything for a stream without TIDs, as before
  layers were allocated), and the budget left shrinks for the others. A
  visit never goes black for a low estimate, and the estimate, which only
  grows from what is sent, can recover.
- Hysteresis: a step above the slot's previous choice costs its bitrate plus
  `UPGRADE_MARGIN`, so a budget just above a step does not flap; the same
  choice is always affordable again. A step into a spatial layer above the
  previous choice's (other than the lowest layer) costs that whole layer (all
  its TIDs) plus the margin: a spatial switch costs a key frame, which on a
  tight link overflows the bottleneck's queue, so it is worth it only when the
  layer fits at its full frame rate. The TIDs of a layer thin it on the way
  down, they are not a cheap way up (the network lab saw a 400 kbit/s viewer
  flap between q at 30 fps and h at 7.5 fps, each switch a key frame and a
  freeze). `LayerAllocator` adds time: an upgrade is taken only once it has
  been possible for `upgrade_after_s`, and then only as high as has been
  possible that long (a higher choice proposed in the last moment of a lower
  one's wait waits its own time: the network lab's 300 kbit/s viewer, held
  at q's TID 1 with q's TID 2 pending, was stepped to h in the tick where h's
  emptying meter made it look cheap, and froze 4.8 s).  Nor is an upgrade
  taken on an estimate nobody measured lately (`update(rise=False)`: the
  Prober's `fresh`): it keeps waiting until a probe cluster's answer (the
  Prober's regular re-check of an app-limited estimate, which comes while a
  slot is held below its top) shows the estimate still carries it.  Except
  the TIDs a subscriber's resends took (`lent_bps`: the part of the budget
  they took lately, sfu.policy.resend): a slot stepped down further than the
  budget with them would have taken it may climb back, within the spatial
  layer it is in now, to what that budget keeps (that layer's top TID if it
  keeps a higher layer) when they stop, on the same estimate, without a new
  measure: nothing about the link changed, and no key frame is needed.  The
  network lab's 300 kbit/s viewer, thinned to q at 15 fps by the resends
  after its cap, stayed there 3-21 s waiting for a probe (branch cap300).

`LayerNeeds` turns every subscriber's choices into what each publisher must
send: every layer up to the highest one chosen (so a subscriber that has to
step down finds the lower layers flowing, as LiveKit's dynacast does); a
layer stays requested `hold_s` after its last need, and the lowest layer is
never paused while anybody subscribes.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = [
    "LayerAllocator",
    "LayerChoice",
    "LayerInfo",
    "LayerNeeds",
    "SlotDemand",
    "allocate",
    "ceiling_bps",
    "held_below",
    "nominal_bitrates",
    "one_step",
    "probe_goal_bps",
]

UPGRADE_MARGIN = 0.12  # a step above the previous choice must fit with 12 % to spare
SIZE_SLACK = 0.9  # a layer 0.9x the rendered size is sharp enough
TEMPORAL_SHARES = (0.4, 0.6, 1.0)  # libwebrtc's L1T3 split, cumulative
BITS_PER_PIXEL = 0.06  # at 30 fps: 1280x720 ~ 1.7 Mbit/s, 320x180 ~ 100 kbit/s
DEFAULT_LAYER_BPS = (150_000, 500_000, 1_700_000)  # a layer of unknown size, by index
NO_SIMULCAST_TEMPORAL = 2  # a track without layer information: forward everything
THINNED_TIDS = 1  # a layer above the lowest loses at most its top TID (see `ladder`)
# The estimate a subscriber's probes aim for, over what its slots take (`probe_goal_bps`):
# the upgrade margin, the Prober's minimum gain (10 %) and room for a back-off.
PROBE_HEADROOM = 1.3


@dataclass(frozen=True)
class LayerInfo:
    """One spatial layer of a track: its frame size (0 = unknown) and cumulative bitrates."""

    spatial: int
    width: int
    height: int
    bitrates: tuple[int, ...]  # index t: bits/s of TIDs <= t; all 0: not flowing (paused)


@dataclass(frozen=True)
class SlotDemand:
    """One video slot of a subscriber: where it is shown, and what its publisher sends."""

    mid: str
    stage: bool
    width: int  # the rendered size in device pixels; 0 = unknown
    height: int
    layers: tuple[LayerInfo, ...]  # lowest first; empty: the publisher sends no simulcast
    hidden: bool = False  # the client reported 0x0: it shows this slot nowhere


@dataclass(frozen=True)
class LayerChoice:
    """What to forward: a spatial layer (None = no video) and the highest TID."""

    spatial: int | None
    temporal: int


PAUSED = LayerChoice(None, 0)


@dataclass(frozen=True)
class _Step:
    choice: LayerChoice
    bps: int


def nominal_bitrates(layer: LayerInfo, index: int, temporal_layers: int) -> tuple[int, ...]:
    """Cumulative bitrates to assume for a layer that is not flowing (yet)."""
    if layer.width > 0 and layer.height > 0:
        top = int(layer.width * layer.height * 30 * BITS_PER_PIXEL)
    else:
        top = DEFAULT_LAYER_BPS[min(index, len(DEFAULT_LAYER_BPS) - 1)]
    if temporal_layers <= 1:
        return (top,)
    shares = TEMPORAL_SHARES if temporal_layers == 3 else _even_shares(temporal_layers)
    return tuple(int(top * share) for share in shares)


def _even_shares(count: int) -> tuple[float, ...]:
    return tuple((t + 1) / count for t in range(count))


def _bitrates(layers: Sequence[LayerInfo], index: int) -> tuple[int, ...]:
    layer = layers[index]
    if any(layer.bitrates):
        return layer.bitrates
    temporal = max((len(other.bitrates) for other in layers), default=1) or 1
    return nominal_bitrates(layer, index, temporal)


def _dimension(layers: Sequence[LayerInfo], index: int, attr: str) -> int:
    """A layer's width or height; unknown: derived from a known layer (each layer doubles)."""
    own = int(getattr(layers[index], attr))
    if own > 0:
        return own
    for other, layer in enumerate(layers):
        value = int(getattr(layer, attr))
        if value > 0:
            return int(value * 2.0 ** (index - other))
    return 0


def cap_of(slot: SlotDemand) -> int:
    """The highest spatial layer this slot may get (an index into `slot.layers`)."""
    top = len(slot.layers) - 1
    if not slot.stage:
        return 0
    if slot.width <= 0:
        return top
    for index in range(top + 1):
        width = _dimension(slot.layers, index, "width")
        if width <= 0:
            return top
        height = _dimension(slot.layers, index, "height")
        tall_enough = slot.height <= 0 or height <= 0 or height >= SIZE_SLACK * slot.height
        if width >= SIZE_SLACK * slot.width and tall_enough:
            return index
    return top


def ladder(slot: SlotDemand) -> list[_Step]:
    """Every step of `slot`, cheapest meaning first: TIDs of layer 0, then of layer 1, ...

    A layer above the lowest is thinned to half its frame rate at most (its
    top `THINNED_TIDS` + 1 temporal layers: TID 0-1 of L1T3, 15 of 30 fps):
    below that the next lower layer at its full rate costs about as much and
    looks better, and a link that cannot carry half the layer needs the lower
    one anyway (the network lab's 1 Mbit/s viewer kept 1280x720 at 4-7 fps on
    f's TID 0 for 8 s instead of 640x360 at 30).
    """
    steps = []
    for index in range(cap_of(slot) + 1):
        rates = _bitrates(slot.layers, index)
        lowest = 0 if index == 0 else max(0, len(rates) - 1 - THINNED_TIDS)
        for temporal in range(lowest, len(rates)):
            steps.append(_Step(LayerChoice(slot.layers[index].spatial, temporal), rates[temporal]))
    return steps


def ceiling_bps(slots: Sequence[SlotDemand]) -> int:
    """What `slots` would take with an unlimited budget: each one's top step (its cap).

    The rate worth probing for (`sfu.policy.probe.Prober`'s desired rate): a
    subscriber held below it has tiles that want more than it gets.
    """
    total = 0
    for slot in slots:
        if slot.hidden or not slot.layers:
            continue
        steps = ladder(slot)
        total += steps[-1].bps if steps else 0
    return total


def held_below(slots: Sequence[SlotDemand], choices: Mapping[str, LayerChoice]) -> bool:
    """Whether some shown slot gets less than the top step of its ladder (its cap's
    highest TID): only then could a different estimate change what the subscriber
    gets.  A slot whose publisher sends one layer at one rate is never held (no
    estimate changes it: the allocator gives it that layer whatever the budget).
    """
    for slot in slots:
        if slot.hidden or not slot.layers:
            continue
        choice = choices.get(slot.mid)
        if choice is None or choice.spatial is None:
            return True  # paused for the budget
        cap = cap_of(slot)
        top = (slot.layers[cap].spatial, len(_bitrates(slot.layers, cap)) - 1)
        if _rank(choice) < top:
            return True
    return False


def one_step(slots: Sequence[SlotDemand]) -> bool:
    """Whether every shown slot has one step only (one layer at one rate, or a thumbnail
    of a one-TID layer): then no estimate changes what the subscriber gets."""
    for slot in slots:
        if slot.hidden or not slot.layers:
            continue
        if cap_of(slot) > 0 or len(_bitrates(slot.layers, 0)) > 1:
            return False
    return True


def probe_goal_bps(video_bps: int, audio_bps: int) -> int:
    """The estimate worth probing for, given `ceiling_bps` of the slots and the audio.

    Not just what the slots take: the allocator takes a higher layer only
    when the estimate covers it whole plus `UPGRADE_MARGIN`, and the Prober
    stops once the estimate is within 10 % of its goal, so a goal of exactly
    the ceiling leaves the estimate short of the top layer for good (a
    viewer back on a 3 Mbit/s link after a 500 kbit/s dip stayed on 640x360
    with an estimate of 1.4 Mbit/s: no probe, and no more traffic to grow
    it from).  None without video to climb to.
    """
    if video_bps <= 0:
        return 0
    return int((video_bps + audio_bps) * PROBE_HEADROOM)


@dataclass
class _Climb:
    slot: SlotDemand
    steps: list[_Step]
    previous: LayerChoice | None
    at: int = -1  # index into steps; -1: paused

    @property
    def cost(self) -> int:
        return self.steps[self.at].bps if self.at >= 0 else 0

    def next_cost(self) -> int:
        """What the next step adds, with the upgrade margin above the previous choice; a
        spatial layer above the previous choice's (not the lowest) is entered only if it
        fits whole (see module doc)."""
        step = self.steps[self.at + 1]
        extra = step.bps - self.cost
        if _rank(step.choice) > _rank(self.previous):
            need = step.bps
            spatial = step.choice.spatial
            above = _rank(self.previous)[0]
            if spatial is not None and spatial != self.choice.spatial and spatial > max(above, 0):
                need = max(s.bps for s in self.steps if s.choice.spatial == spatial)
            extra = need - self.cost + int(need * UPGRADE_MARGIN)
        return extra

    @property
    def choice(self) -> LayerChoice:
        return self.steps[self.at].choice if self.at >= 0 else PAUSED


def allocate(
    slots: Sequence[SlotDemand],
    budget_bps: int,
    previous: Mapping[str, LayerChoice] | None = None,
) -> dict[str, LayerChoice]:
    """Each slot's layer within `budget_bps` (see module doc); `previous`: the last result."""
    before = previous or {}
    result: dict[str, LayerChoice] = {}
    climbs = []
    for slot in sorted(slots, key=lambda s: not s.stage):  # stable: the caller's order within
        if slot.hidden:
            result[slot.mid] = PAUSED
        elif not slot.layers:
            result[slot.mid] = LayerChoice(0, NO_SIMULCAST_TEMPORAL)
        else:
            climbs.append(_Climb(slot, ladder(slot), before.get(slot.mid)))
    left = budget_bps
    for n, climb in enumerate(climbs):  # the lowest step for everybody, stage first
        added = _raise(climb, left)
        if added is None and (n == 0 or len(climb.slot.layers) == 1):
            added = _raise(climb, max(left, climb.next_cost()))  # never paused: see doc
        left -= added or 0
    for tier in (True, False):
        left = _climb_round_robin([c for c in climbs if c.slot.stage is tier], left)
    result.update({climb.slot.mid: climb.choice for climb in climbs})
    return result


def _raise(climb: _Climb, left: int) -> int | None:
    """Take `climb`'s next step if it fits in `left`: what it added; None if it did not."""
    if climb.at + 1 >= len(climb.steps) or climb.next_cost() > left:
        return None
    added = climb.steps[climb.at + 1].bps - climb.cost
    climb.at += 1
    return added


def _climb_round_robin(climbs: list[_Climb], left: int) -> int:
    """One step each in turn while any fits; a slot that cannot take its next step stops."""
    active = [c for c in climbs if c.at >= 0]
    while active:
        still = []
        for climb in active:
            added = _raise(climb, left)
            if added is not None:
                left -= added
                still.append(climb)
        active = still
    return left


def _rank(choice: LayerChoice | None) -> tuple[int, int]:
    if choice is None or choice.spatial is None:
        return (-1, 0)
    return (choice.spatial, choice.temporal)


class LayerAllocator:
    """`allocate` with memory: downgrades at once, an upgrade only after `upgrade_after_s`.

    Per slot it keeps the upgrades proposed since its choice last changed, a
    staircase: each choice above the current one with the time since when it
    (or a higher one) has been proposed without a break.  An update takes the
    highest choice on it that has waited `upgrade_after_s`; a proposal lower
    than a step removes the steps above it (they are no longer possible), and
    inherits the earliest removed step's time (a higher choice was possible,
    so was this one).  One per subscriber.  Pure: the caller passes the clock.
    """

    def __init__(self, upgrade_after_s: float = 1.5) -> None:
        self.upgrade_after_s = upgrade_after_s
        self.choices: dict[str, LayerChoice] = {}
        self._stairs: dict[str, list[tuple[float, LayerChoice]]] = {}
        # Per slot, the choice the resends took it down from (module doc: `lent_bps`).
        self._lent: dict[str, LayerChoice] = {}

    def update(
        self,
        slots: Sequence[SlotDemand],
        budget_bps: int,
        now: float,
        *,
        rise: bool = True,
        lent_bps: int = 0,
    ) -> dict[str, LayerChoice]:
        """This tick's choice for every slot of `slots` (slots not given are forgotten).

        `rise`: whether the budget was measured lately (module doc); if not, no
        choice goes up, and the upgrades keep waiting (their time still counts),
        except back to what `lent_bps` took.  `lent_bps`: what the resends took
        of the estimate, already left out of `budget_bps`.
        """
        proposal = allocate(slots, budget_bps, self.choices)
        whole: dict[str, LayerChoice] | None = None
        result: dict[str, LayerChoice] = {}
        for mid, choice in proposal.items():
            old = self.choices.get(mid)
            if old is not None and _rank(choice) < _rank(old):
                if lent_bps > 0 and whole is None:
                    whole = allocate(slots, budget_bps + lent_bps, self.choices)
                kept = None if whole is None else whole[mid]
                if kept is not None and _rank(kept) > _rank(choice) and choice.spatial is not None:
                    # Back up to what the whole budget keeps, within the layer it is in now.
                    if kept.spatial != choice.spatial:
                        slot = next(s for s in slots if s.mid == mid)
                        kept = max(
                            (
                                st.choice
                                for st in ladder(slot)
                                if st.choice.spatial == choice.spatial
                            ),
                            key=_rank,
                        )
                    self._lent[mid] = kept
                else:
                    self._lent.pop(mid, None)  # the link's own estimate took it down
            result[mid] = self._settle(mid, choice, now, rise)
        self._stairs = {m: s for m, s in self._stairs.items() if m in result}
        self._lent = {
            m: c
            for m, c in self._lent.items()
            if m in result and c.spatial == result[m].spatial and _rank(c) > _rank(result[m])
        }
        self.choices = result
        return dict(result)

    @property
    def waiting(self) -> bool:
        """Whether an upgrade waits for `upgrade_after_s` (the next update may change a choice)."""
        return bool(self._stairs)

    def _settle(self, mid: str, choice: LayerChoice, now: float, rise: bool) -> LayerChoice:
        old = self.choices.get(mid)
        if old is None or _rank(choice) <= _rank(old):
            self._stairs.pop(mid, None)
            return choice
        stairs = self._stairs.setdefault(mid, [])
        since = now
        while stairs and _rank(stairs[-1][1]) >= _rank(choice):
            since = stairs.pop()[0]
        stairs.append((since, choice))
        ready = [step for at, step in stairs if now - at >= self.upgrade_after_s]
        if not ready:
            return old
        taken = ready[-1]
        if not rise:
            # The estimate is stale: wait for a measured one, or go back to what the
            # resends took (module doc; a higher choice possible that long means it was).
            lent = self._lent.get(mid)
            if lent is None or (_rank(taken) < _rank(lent) and taken.spatial != lent.spatial):
                return old
            taken = min(taken, lent, key=_rank)
        left = [(at, step) for at, step in stairs if _rank(step) > _rank(taken)]
        if left:
            self._stairs[mid] = left
        else:
            del self._stairs[mid]
        return taken


K = TypeVar("K", bound=Hashable)


@dataclass
class LayerNeeds(Generic[K]):
    """Which spatial layers of each published track somebody needs (see module doc).

    `update` takes, for every track that has subscribers, the spatial layer each
    of them chose (None: paused), and returns the tracks whose needed layers
    changed, with the layers now needed: every layer up to the highest chosen
    (an empty set: nobody subscribes).
    """

    hold_s: float = 5.0
    _last_need: dict[K, dict[int, float]] = field(default_factory=dict)
    _sent: dict[K, frozenset[int]] = field(default_factory=dict)

    def update(
        self, wanted: Mapping[K, Collection[int | None]], now: float
    ) -> dict[K, frozenset[int]]:
        for key, choices in wanted.items():
            top = max((c for c in choices if c is not None), default=0)
            needed = range(top + 1)  # up to the highest; the lowest is never paused
            seen = self._last_need.setdefault(key, {})
            for spatial in needed:
                seen[spatial] = now
        changed: dict[K, frozenset[int]] = {}
        for key in list(self._last_need):
            seen = self._last_need[key]
            for spatial in [s for s, at in seen.items() if now - at >= self.hold_s]:
                del seen[spatial]
            now_needed = frozenset(seen)
            if now_needed != self._sent.get(key):
                changed[key] = now_needed
                self._sent[key] = now_needed
            if not seen:
                del self._last_need[key]
                self._sent.pop(key, None)
        return changed

    def forget(self, key: K) -> None:
        """A track is gone: stop tracking it (nothing is reported for it)."""
        self._last_need.pop(key, None)
        self._sent.pop(key, None)

    def needed(self, key: K) -> frozenset[int]:
        return self._sent.get(key, frozenset())
