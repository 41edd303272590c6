"""The layer trace: every video slot's forwarding state, once per SFU tick (a debug aid).

With `MediaSettings.layer_trace` (``VISITROOM_LAYER_TRACE``, a directory)
each SFU process appends one JSON line per tick (`selection_interval_s`,
0.2 s) to ``layer-trace-<pid>.jsonl`` there, from counters the forwarding
path keeps anyway (nothing is added per packet):

- ``t``: the SFU's monotonic clock;
- ``slots``: per video slot with a track, ``[subscriber, mid, publisher,
  source spatial, pending spatial, wanted spatial, wanted temporal, cut,
  mapped, temporal forwarded, packets sent, switches, unfilled]`` (a spatial
  is null when there is none; ``cut``: `Consumer._cut`, 0 none, 1 armed, 2
  cutting; ``mapped``: on the VP8-rewriting path; ``switches``: pending layers
  that became the source so far; ``unfilled``: NACKed numbers it had no copy
  of, so far);
- ``layers``: per published video layer, ``[publisher, mid, spatial, rid,
  packets received, key frames received, key frame requests sent,
  consumers attached, active]``;
- ``estimates``: per subscriber with an estimator or a transport,
  ``[subscriber, bits/s (null without an estimator),
  bytes sent, padding bytes sent, packets retransmitted, key frame requests
  received, bursts paced, packets the pacing held, the longest hold in ms,
  key frames asked for packets lost for good]``
  (the transport's counters so far, its `PacedOutput`'s and its
  `ResendBudget`'s; zeros without a
  transport): what went down the subscriber's link besides its media, a
  probe or a burst of retransmissions that overflows a bottleneck, and how
  much a switch's key frame was spread out (sfu.policy.pacing); last, the
  estimator's latest probe results (`probe_rows`, up to 4, each repeated on
  every line until newer ones replace it: read them by their time), each
  ``[t, sent kbit/s, arrived kbit/s, shown kbit/s, saturated, estimate
  after kbit/s]`` (`BandwidthEstimator.probe_results`; ``shown``: what it
  shows of a link behind a shaper's bucket), [] without an estimator.

Packets a slot dropped in a tick are its source's received packets minus
its own sent packets over that tick.  `bench/netlab.py --trace` collects
the files into its JSON.  Pure: `snapshot` reads, the caller writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sfu.policy.gcc import BandwidthEstimator
from sfu.routing.participant import Participant

__all__ = ["probe_rows", "snapshot"]


def snapshot(participants: Iterable[Participant], now: float) -> dict[str, Any]:
    """One line of the trace (module doc)."""
    slots: list[list[Any]] = []
    layers: list[list[Any]] = []
    estimates: list[list[Any]] = []
    for p in participants:
        if p.estimator is not None or p.transport is not None:
            bps = None if p.estimator is None else p.estimator.estimate_bps
            estimates.append([p.id, bps, *_link(p), probe_rows(p.estimator)])
        for mid, c in p.consumers.items():
            track = c.track
            if c.kind != "video" or track is None:
                continue
            want_s, want_t = c.wanted_layers
            cut, mapped = c.switching
            temporal = c.layers_now[1]
            source, pending = c.source, c.pending
            slots.append(
                [
                    p.id,
                    mid,
                    track.owner,
                    None if source is None else source.spatial,
                    None if pending is None else pending.spatial,
                    want_s,
                    want_t,
                    cut,
                    mapped,
                    temporal,
                    c.packets_sent,
                    c.switches,
                    c.unfilled,
                ]
            )
        for track in p.producers.values():
            if track.kind != "video":
                continue
            for layer in track.layers:
                layers.append(
                    [
                        p.id,
                        track.mid,
                        layer.spatial,
                        layer.rid,
                        layer.stats.received,
                        layer.keyframes,
                        layer.keyframe_requests,
                        len(layer.consumers),
                        layer.active(now),
                    ]
                )
    return {"t": round(now, 3), "slots": slots, "layers": layers, "estimates": estimates}


def probe_rows(estimator: BandwidthEstimator | None) -> list[list[Any]]:
    """The estimator's latest probe results as the trace writes them (module doc)."""
    if estimator is None:
        return []
    return [
        [
            round(r.at, 3),
            round(r.send_bps / 1000),
            round(r.arrival_bps / 1000),
            round(r.shown / 1000),
            int(r.saturated),
            round(r.estimate_bps / 1000),
        ]
        for r in estimator.probe_results
    ]


def _link(p: Participant) -> tuple[int, ...]:
    """(bytes sent, padding bytes sent, packets retransmitted, key frame requests received,
    bursts paced, packets held, the longest hold in ms, key frames asked for packets lost
    for good)."""
    transport, pacer = p.transport, p.pacer
    if transport is None:
        return 0, 0, 0, 0, 0, 0, 0, 0
    c = transport.counters
    paced = (
        (0, 0, 0)
        if pacer is None
        else (pacer.engagements, pacer.held, round(pacer.held_max_s * 1000))
    )
    return (
        c.bytes_out,
        transport.padding_bytes,
        c.retransmitted,
        c.keyframe_requests,
        *paced,
        p.resend_budget.lost,
    )
