"""What the network lab computes from a subscriber's getStats samples (pure).

A `Sample` is one reading of one received stream (video of the measured
publisher, and its audio) every ~300 ms; a `Cap` is the true downlink limit the
lab applied from a time on. Times are seconds from the start of the scenario.

* `adapt_time`: after a change (the cap dropped, or the call started on a
  capped link), the time to the first sample whose frame width is below the
  width received before the change and stays below it until the next change;
* `freeze_ratio`: frozen time / watched time: Chromium's totalFreezesDuration
  counts a freeze only once the next frame arrives, so a stall still open at
  the end (no frame decoded for `open_stall_s`) is added;
* `audio_concealed_pct`: concealed / received audio samples;
* `estimate_errors`: |SFU estimate - true cap| / cap for the samples taken at
  least `settle_s` after the cap last changed;
* `steady_width`: the median received width once settled.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

OPEN_STALL_S = 0.5  # no new frame for this long at the end of a run counts as frozen


@dataclass(frozen=True)
class Sample:
    t: float
    width: int | None  # frameWidth of the received video (None: nothing decoded yet)
    fps: float | None  # framesPerSecond as Chromium reports it
    frames_decoded: int
    freeze_count: int
    freezes_s: float  # totalFreezesDuration
    concealed: int  # audio concealedSamples
    audio_samples: int  # audio totalSamplesReceived
    estimate_kbps: int | None  # the SFU's `downlink` estimate last received (None: none yet)


@dataclass(frozen=True)
class Cap:
    t: float  # from this time on
    kbps: int | None  # None: not capped


def cap_at(caps: Sequence[Cap], t: float) -> Cap | None:
    current = None
    for cap in caps:
        if cap.t <= t:
            current = cap
    return current


def _between(samples: Sequence[Sample], start: float, end: float) -> list[Sample]:
    return [s for s in samples if start <= s.t < end]


def adapt_time(
    samples: Sequence[Sample], change_t: float, reference_width: int, until: float | None = None
) -> float | None:
    """Seconds from `change_t` to the first sample narrower than `reference_width` that
    stays narrower (until `until`, default the end); None if that never happened."""
    after = _between(samples, change_t, until if until is not None else float("inf"))
    found: float | None = None
    for sample in after:
        lower = sample.width is not None and 0 < sample.width < reference_width
        if lower and found is None:
            found = sample.t
        elif not lower:
            found = None
    return None if found is None else found - change_t


def recover_time(
    samples: Sequence[Sample], change_t: float, low_width: int, until: float | None = None
) -> float | None:
    """Seconds from `change_t` (a cap lifted) to the first sample wider than `low_width`."""
    for sample in _between(samples, change_t, until if until is not None else float("inf")):
        if sample.width is not None and sample.width > low_width:
            return sample.t - change_t
    return None


def width_before(samples: Sequence[Sample], t: float) -> int | None:
    """The received width of the last sample before `t`."""
    earlier = [s.width for s in samples if s.t < t and s.width]
    return earlier[-1] if earlier else None


def open_stall(samples: Sequence[Sample]) -> float:
    """How long no frame was decoded at the end of the run (0 below OPEN_STALL_S)."""
    if not samples:
        return 0.0
    last = samples[-1]
    since = samples[0].t
    for previous, sample in itertools.pairwise(samples):
        if sample.frames_decoded > previous.frames_decoded:
            since = sample.t
    stall = last.t - since
    return stall if stall >= OPEN_STALL_S else 0.0


def freeze_ratio(samples: Sequence[Sample]) -> float | None:
    """Frozen share of the watched time between the first and last sample.

    Chromium adds a freeze to totalFreezesDuration when it ends: a freeze
    reported between two samples began its length before the later one, and
    only its part after the first sample counts (a freeze that began before a
    window, e.g. "after adapting", is not counted whole inside it)."""
    if len(samples) < 2:
        return None
    start = samples[0].t
    watched = samples[-1].t - start
    if watched <= 0:
        return None
    frozen = open_stall(samples)
    for before, after in itertools.pairwise(samples):
        frozen += min(max(0.0, after.freezes_s - before.freezes_s), after.t - start)
    return min(1.0, max(0.0, frozen / watched))


def freezes(samples: Sequence[Sample]) -> int:
    if not samples:
        return 0
    return samples[-1].freeze_count - samples[0].freeze_count + (1 if open_stall(samples) else 0)


def audio_concealed_pct(samples: Sequence[Sample]) -> float | None:
    if len(samples) < 2:
        return None
    received = samples[-1].audio_samples - samples[0].audio_samples
    if received <= 0:
        return None
    return 100.0 * (samples[-1].concealed - samples[0].concealed) / received


def estimate_errors(
    samples: Sequence[Sample], caps: Sequence[Cap], settle_s: float = 5.0
) -> list[float]:
    """Percent errors of the estimate against the cap in force, once settled."""
    errors = []
    for sample in samples:
        cap = cap_at(caps, sample.t)
        if cap is None or cap.kbps is None or sample.estimate_kbps is None:
            continue
        if sample.t - cap.t < settle_s:
            continue
        errors.append(100.0 * abs(sample.estimate_kbps - cap.kbps) / cap.kbps)
    return errors


def steady_width(samples: Sequence[Sample], start: float, end: float | None = None) -> int | None:
    widths = [s.width for s in _between(samples, start, end or float("inf")) if s.width]
    return int(statistics.median(widths)) if widths else None


def decoded_fps(samples: Sequence[Sample]) -> list[tuple[float, float]]:
    """(t, frames decoded per second since the previous sample)."""
    out = []
    for previous, sample in itertools.pairwise(samples):
        dt = sample.t - previous.t
        if dt > 0:
            out.append((sample.t, (sample.frames_decoded - previous.frames_decoded) / dt))
    return out


def p95(values: Sequence[float]) -> float | None:
    """The 95th percentile, interpolated (None for no values)."""
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def p95_or_none(values: Sequence[float | None]) -> float | None:
    """p95 of adapt times; None when any of them never adapted (or there are none)."""
    if not values or any(v is None for v in values):
        return None
    return p95([v for v in values if v is not None])
