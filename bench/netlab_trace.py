"""What each freeze of a lab viewer was, from the server's layer trace and the link (pure).

Inputs, all with `t` in s from the scenario's start:

- the viewer's `series` rows (bench/netlab.py `summarize`: `[t, width, fps,
  frames decoded, estimate kbit/s, freezes s]`, ~300 ms apart);
- the scenario's `layer_trace` (bench/netlab.py `layer_trace`: per SFU tick the
  slots showing the measured publisher, `[seat, mid, publisher, source spatial,
  pending spatial, wanted spatial, wanted temporal, cut, mapped, temporal,
  packets sent, switches]`, and its layers, `[spatial, rid, packets received,
  key frames received, key frame requests sent, consumers, active]`);
- the bottleneck's counters (bench/netlab_link.py `deltas`: `t`, `drops`, ...);
- the measured publisher's encoder readings (bench/netlab.py `publisher_encoder`:
  `[t, rid, frames encoded, frames sent, key frames, target kbit/s, quality
  limitation, bytes sent, ...]` every 250 ms), optional.

A *stall* is a run of samples in which the viewer decoded no new frame, or a
freeze Chromium counted (`stalls`).  Each one is put in one class (`KINDS`),
in this order:

- ``start``: it began before the link was impaired (a join, a first key frame);
- ``switch_keyframe_wait``: the slot was switching layers (pending) and the
  target layer's key frame had not reached the SFU (``asked``: how many
  requests went to that layer meanwhile: 0 means nobody asked);
- ``switch_keyframe_dropped``: the target's key frame reached the SFU and the
  slot switched, yet the stall went on while the bottleneck dropped packets
  (the key frame did not fit the tbf's queue, or queued behind the old layer);
- ``switch_receiver``: as the previous, with no drop at the bottleneck;
- ``publisher_skip``: no switch, and the publisher's encoder made at most 3
  frames of the layer the slot shows in a 250 ms reading around the stall (it
  skipped frames: nothing an SFU can forward);
- ``publisher_burst``: no switch, and the layer sent more than `BURST_X` times
  its median bytes in a reading around the stall (a frame far larger than the
  rest, e.g. a scene cut: the lab's 2 s camera clip jumps back at each loop);
- ``overflow``: no switch, the bottleneck dropped packets (a layer, a probe or
  retransmissions above the cap);
- ``receiver``: none of these (the browser's jitter buffer or decoder).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

__all__ = ["KINDS", "episodes", "frozen_by_kind", "stalls"]

KINDS = (
    "start",
    "switch_keyframe_wait",
    "switch_keyframe_dropped",
    "switch_receiver",
    "publisher_skip",
    "publisher_burst",
    "overflow",
    "receiver",
)
LEAD_S = 0.6  # what happened this long before a stall's first silent sample counts
SETTLED_S = 0.4  # a stall going on this long after its switch is not the switch's wait
BURST_X = 2.5  # a 250 ms reading of a layer's bytes this many times its median: a burst
SKIP_FRAMES = 3  # at most this many frames encoded in a 250 ms reading: frames skipped


def stalls(series: Sequence[Sequence[Any]]) -> list[tuple[float, float]]:
    """(start, end) of each stretch the viewer saw frozen: a run of samples without a new
    frame decoded (from the last sample that had one to the first that has one again, or
    the last sample), and each freeze Chromium counted (its totalFreezesDuration grew by
    d between two samples: the `d` before the later one; frames may have come in the
    same samples, a frame rate dip), overlapping ones merged."""
    found: list[tuple[float, float]] = []
    for before, row in itertools.pairwise(series):
        t0, t1 = float(before[0]), float(row[0])
        if row[3] == before[3]:
            found.append((t0, t1))
        grew = float(row[5]) - float(before[5])
        if grew > 0:
            found.append((round(max(0.0, t1 - grew), 3), t1))
    out: list[tuple[float, float]] = []
    for t0, t1 in sorted(found):
        if out and t0 <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], t1))
        else:
            out.append((t0, t1))
    return out


def _slot(line: dict[str, Any], seat: str) -> list[Any] | None:
    return next((s for s in line["slots"] if s[0] == seat), None)


def _layer(line: dict[str, Any], spatial: int) -> list[Any] | None:
    return next((layer for layer in line["layers"] if layer[0] == spatial), None)


def _estimate(line: dict[str, Any], seat: str) -> int | None:
    return next((int(e[1]) for e in line["estimates"] if e[0] == seat and e[1] is not None), None)


def _own(lines: list[dict[str, Any]], seat: str) -> dict[str, Any]:
    """What went down `seat`'s link over `lines` (the trace's estimate rows, when they
    carry the transport's counters): kbit/s sent, padding kB, packets retransmitted."""
    rows = [(float(line["t"]), e) for line in lines for e in line["estimates"] if e[0] == seat]
    if len(rows) < 2 or len(rows[0][1]) < 5:
        return {}
    (t0, a), (t1, b) = rows[0], rows[-1]
    return {
        "sent_kbps": round((b[2] - a[2]) * 8 / max(1e-3, t1 - t0) / 1000),
        "padding_kb": round((b[3] - a[3]) / 1000, 1),
        "retransmitted": b[4] - a[4],
    }


def _grew(lines: list[dict[str, Any]], spatial: int, column: int) -> tuple[int, float | None]:
    """How much a layer's counter (`column` of its row) grew over `lines`, and when first."""
    values = [(float(line["t"]), row[column]) for line in lines if (row := _layer(line, spatial))]
    if len(values) < 2:
        return 0, None
    first_at = next((t for (_, a), (t, b) in itertools.pairwise(values) if b > a), None)
    return int(values[-1][1] - values[0][1]), first_at


def _encoder(
    encoder: Sequence[Sequence[Any]], rid: str, start: float, end: float
) -> tuple[bool, bool]:
    """(skipped, burst): whether layer `rid`'s encoder skipped frames, or sent a burst,
    in a reading between `start` - `LEAD_S` and `end` (module doc)."""
    mine = [r for r in encoder if r[1] == rid]
    steps = [(float(b[0]), b[2] - a[2], b[7] - a[7]) for a, b in itertools.pairwise(mine)]
    if not steps:
        return False, False
    sizes = sorted(size for _, _, size in steps)
    median = sizes[len(sizes) // 2]
    near = [(frames, size) for t, frames, size in steps if start - LEAD_S <= t <= end + 0.25]
    skipped = any(frames <= SKIP_FRAMES for frames, _ in near)
    burst = any(size > BURST_X * median for _, size in near) and median > 0
    return skipped, burst


def episode(
    start: float,
    end: float,
    seat: str,
    trace: Sequence[dict[str, Any]],
    link: Sequence[dict[str, Any]],
    impaired_from: float,
    encoder: Sequence[Sequence[Any]] = (),
) -> dict[str, Any]:
    """One stall of `seat`: its class (module doc) and what the trace says about it."""
    lines = [line for line in trace if start - LEAD_S <= float(line["t"]) <= end]
    rows = [(float(line["t"]), slot) for line in lines if (slot := _slot(line, seat))]
    drops = sum(int(d["drops"]) for d in link if start - LEAD_S <= float(d["t"]) <= end)
    out: dict[str, Any] = {
        "start": round(start, 2),
        "end": round(end, 2),
        "s": round(end - start, 2),
        "link_drops": drops,
        "estimate_kbps": [e // 1000 for line in lines if (e := _estimate(line, seat)) is not None][
            :1
        ],
        "layers": [[t, s[3], s[4], s[7]] for t, s in rows],  # [t, source, pending, cut]
    } | _own(lines, seat)
    if len(rows) > 1 and len(rows[0][1]) > 12:  # NACKed numbers the slot had no copy of
        out["unfilled"] = rows[-1][1][12] - rows[0][1][12]
    pending = [s[4] for _, s in rows if s[4] is not None]
    switched = len(rows) > 1 and rows[-1][1][11] > rows[0][1][11]
    if start < impaired_from:
        kind = "start"
    elif pending or switched:
        target = pending[0] if pending else rows[-1][1][3]
        arrived, arrived_at = _grew(lines, target, 3)
        asked, _ = _grew(lines, target, 4)
        out |= {"target": target, "keyframes_in": arrived, "asked": asked}
        promoted_at = next(
            (t for (_, a), (t, b) in itertools.pairwise(rows) if b[11] > a[11]), None
        )
        done_at = promoted_at if promoted_at is not None else arrived_at
        out["switched_at"] = promoted_at
        if done_at is None or end - done_at < SETTLED_S:
            kind = "switch_keyframe_wait"
        elif drops:
            kind = "switch_keyframe_dropped"
        else:
            kind = "switch_receiver"
    else:
        kind = _steady_kind(rows, lines, encoder, start, end, drops)
    out["kind"] = kind
    return out


def _steady_kind(
    rows: list[tuple[float, list[Any]]],
    lines: list[dict[str, Any]],
    encoder: Sequence[Sequence[Any]],
    start: float,
    end: float,
    drops: int,
) -> str:
    """The class of a stall with no switch: the publisher's, the link's or the receiver's."""
    source = rows[-1][1][3] if rows else None
    found = (_layer(line, source) for line in reversed(lines) if source is not None)
    layer = next((row for row in found if row is not None), None)  # other workers' lines
    if layer is not None and encoder:
        skipped, burst = _encoder(encoder, str(layer[1]), start, end)
        if skipped:
            return "publisher_skip"
        if burst:
            return "publisher_burst"
    return "overflow" if drops else "receiver"


def episodes(
    series: Sequence[Sequence[Any]],
    seat: str,
    trace: Sequence[dict[str, Any]],
    link: Sequence[dict[str, Any]],
    impaired_from: float,
    encoder: Sequence[Sequence[Any]] = (),
) -> list[dict[str, Any]]:
    """Every stall of `seat`'s `series`, classified (module doc)."""
    return [episode(a, b, seat, trace, link, impaired_from, encoder) for a, b in stalls(series)]


def frozen_by_kind(
    found: Sequence[dict[str, Any]], after: float = float("-inf")
) -> dict[str, float]:
    """Seconds without a new frame per class, counting only what lies after `after`."""
    out = dict.fromkeys(KINDS, 0.0)
    for e in found:
        seconds = max(0.0, float(e["end"]) - max(float(e["start"]), after))
        out[e["kind"]] = round(out[e["kind"]] + seconds, 2)
    return out
