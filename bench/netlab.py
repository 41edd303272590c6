"""The network lab benchmark: real Chromium on impaired links, visitroom and Janus.

A network namespace joined to the host by a veth pair (tests/netlab.py; root
needed; everything is removed at the end, also on failure). The server listens
on the host's end; the impaired viewer is a Chromium inside the namespace whose
downlink is shaped by a tbf qdisc on the host's end of the veth (and, for loss,
an iptables `statistic` rule inside the namespace). Publishers are a Chromium on
the host side: the measured one sends the fake camera at 1280x720 (simulcast
where the SDK publishes it; its camera plays a generated clip with motion,
bench/netlab_clients.py's camera_file, forward and back by default: `--clip
loop` plays it as a 2 s loop that jumps back, a scene cut every 2 s after
which every layer's encoder overshoots and then skips frames, freezes no SFU
can help, which were most of the 1 Mbit/s viewer's, docs/benchmarks.md). In
the 10-person room the 7 other publishers are light (a second host-side
Chromium, its built-in fake camera at 320x180 and 15 fps, no video received)
and one unimpaired host-side viewer watches the same publisher as a control;
the pages join at once.

Every ~300 ms the viewer's getStats gives the received width, fps, frames
decoded, freezes, audio concealment and the SFU's `downlink` estimate; the
metrics are in bench/netlab_metrics.py.

Janus VideoRoom (bench/netlab_janus.py) runs the same scenarios with the same
participants (`cast`), in the same browsers: each publishes what it publishes
to visitroom, each viewer subscribes to the streams its visitroom slots would
hold (`sources`); the quick run takes Janus on the 1:1 cap drop only.

    python bench/netlab.py --json results/netlab.json          # every scenario, both servers
    python bench/netlab.py --quick --json results/netlab.json  # shorter, under 3 min
    python bench/netlab.py --only room10_1m                    # one scenario, both servers
    python bench/netlab.py --no-janus ...                      # visitroom only
    python bench/netlab.py --quick --impaired-s 40 ...         # 40 s impaired, not 9 (full: 30)
    python bench/netlab.py --hog 2 ...                         # the server's core busy
    python bench/netlab.py --clip loop ...                     # a scene cut every 2 s

`--hog N` pins the server's processes (every thread) to core 0 and runs N busy
loops there; the measured publisher's own send-side estimate
(`availableOutgoingBitrate`, every 500 ms) is in each visitroom result's
`publisher_estimate`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import netlab_metrics as m  # noqa: E402
from janus_driver import StreamRef  # noqa: E402
from netlab_clients import (  # noqa: E402
    FULL,
    OUTBOUND,
    PUBLISHER,
    RECEIVED,
    STOP,
    Role,
    begin_join,
    camera_args,
    join,
    joined,
    samples,
    start_sampler,
    wait_decoding,
)
from netlab_janus import JANUS_ID, Janus, janus  # noqa: E402
from netlab_janus import OUTBOUND as JANUS_OUTBOUND  # noqa: E402
from netlab_link import LinkSampler, deltas  # noqa: E402
from netlab_trace import episodes, frozen_by_kind  # noqa: E402
from playwright.sync_api import BrowserContext, Page, sync_playwright  # noqa: E402

from tests.conftest import token  # noqa: E402
from tests.netlab import Lab, lab, lab_browsers  # noqa: E402
from tests.web_support import CHROMIUM, WebServer, launch, web_server  # noqa: E402

# The measured publisher's own send-side estimate (getStats availableOutgoingBitrate),
# sampled every 500 ms from its join on: [[ms since the sampler started, kbit/s]]
# (window.__estimates is netlab_clients's: the SFU's `downlink` estimates).
PUBLISHER_ESTIMATE_START = """() => {
  window.__publisherEstimates = [];
  const started = performance.now();
  window.__publisherEstimateTimer = setInterval(async () => {
    const report = await window.visit.media.getStats();
    report.forEach((s) => {
      if (s.type === "candidate-pair" && s.nominated && s.availableOutgoingBitrate)
        window.__publisherEstimates.push([Math.round(performance.now() - started),
                                 Math.round(s.availableOutgoingBitrate / 1000)]);
    });
  }, 500);
}"""
# The measured publisher's encoder, per simulcast encoding, every 250 ms from its join on:
# [ms since the sampler started, rid, frames encoded, frames sent, key frames encoded,
#  target kbit/s, quality limitation, bytes sent, huge frames sent, encoder implementation].
ENCODER_START = """() => {
  window.__encoder = [];
  const started = performance.now();
  window.__encoderTimer = setInterval(async () => {
    const report = await window.visit.media.getStats();
    const t = Math.round(performance.now() - started);
    report.forEach((s) => {
      if (s.type === "outbound-rtp" && s.kind === "video")
        window.__encoder.push([t, s.rid ?? null, s.framesEncoded ?? 0, s.framesSent ?? 0,
          s.keyFramesEncoded ?? 0, Math.round((s.targetBitrate ?? 0) / 1000),
          s.qualityLimitationReason ?? null, s.bytesSent ?? 0, s.hugeFramesSent ?? 0,
          s.encoderImplementation ?? null]);
    });
  }, 250);
}"""
ENCODER_READ = "() => { clearInterval(window.__encoderTimer); return window.__encoder; }"
PUBLISHER_ESTIMATE_READ = (
    "() => { clearInterval(window.__publisherEstimateTimer); return window.__publisherEstimates; }"
)
SERVER_CORE = 0  # --hog: the server's processes and the busy loops share this core

LIGHT = Role(320, 180, fps=15, audio=False)  # so the audio slots carry the measured one
SETTLE_S = 5.0  # the estimate is compared with the cap from 5 s after a change on
ADAPT_BELOW_KBPS = 1500  # a cap under this needs a lower layer than 1280x720


@dataclass(frozen=True)
class Scenario:
    name: str
    caps: tuple[m.Cap, ...]  # the viewer's downlink cap over time (s from the start)
    duration: float
    loss_pct: float = 0.0  # random loss on the viewer's downlink, from `loss_from`
    loss_from: float = 0.0
    people: int = 2  # a 1:1 visit, or a room

    def changes(self) -> list[tuple[float, m.Cap, m.Cap | None]]:
        """(time, new cap, previous cap) for every change after the start."""
        return [(c.t, c, p) for p, c in zip((None, *self.caps), self.caps, strict=False) if c.t > 0]


def scenarios(quick: bool, impaired_s: float | None = None) -> list[Scenario]:
    """The scenarios; `impaired_s`: the impaired stretch of the capped, loss and room
    scenarios lasts this long (`--impaired-s`: freeze ratios need more than a few seconds)."""
    # Warm-up uncapped, then impaired: the full run's 30 s impaired, so that one freeze
    # episode (0.3-1 s) is 1-3 % of a scenario, not the 3-10 % of --quick's 9 s.
    w, run = (2.0, 9.0) if quick else (6.0, 30.0)
    run = impaired_s or run
    drop = (2.0, 6.0, 12.0, 17.0) if quick else (3.0, 12.0, 42.0, 55.0)  # 3M, 500k, 3M, end
    return [
        Scenario("cap_300k", (m.Cap(0, None), m.Cap(w, 300)), w + run),
        Scenario("cap_1m", (m.Cap(0, None), m.Cap(w, 1000)), w + run),
        Scenario("cap_3m", (m.Cap(0, None), m.Cap(w, 3000)), w + run),
        Scenario("loss_5pct", (m.Cap(0, None),), w + run, loss_pct=5.0, loss_from=w),
        Scenario(
            "drop_3m_500k_3m",
            (m.Cap(0, None), m.Cap(drop[0], 3000), m.Cap(drop[1], 500), m.Cap(drop[2], 3000)),
            drop[3],
        ),
        Scenario("room10_1m", (m.Cap(0, None), m.Cap(w, 1000)), w + run, people=10),
    ]


@dataclass
class Lab_:
    net: Lab
    site: WebServer
    host: BrowserContext  # the measured publisher (camera: the moving clip), host side
    guest: BrowserContext  # the impaired viewer, inside the namespace
    light: BrowserContext  # the room's other participants (the built-in fake camera)
    trace: Path | None = None  # the server's layer trace directory (--trace)


@contextlib.contextmanager
def netlab(tmp: Path, trace: bool = False, bounce: bool = False) -> Iterator[Lab_]:
    camera = camera_args(tmp, bounce)
    traced = tmp / "layer-trace" if trace else None
    with lab() as net:
        env: dict[str, str | None] = {"VISITROOM_ICE_HOSTS": net.host_ip}
        if traced is not None:
            env["VISITROOM_LAYER_TRACE"] = str(traced)
        with (
            web_server(tmp, env, host=net.host_ip) as site,
            sync_playwright() as pw,
            lab_browsers(pw, tmp, net, site.url, host_args=camera) as (host, guest),
        ):
            secure = f"--unsafely-treat-insecure-origin-as-secure={site.url}"
            light = launch(pw, tmp / "light-profile", CHROMIUM, net.resolver_rule, secure)
            try:
                yield Lab_(net, site, host, guest, light, traced)
            finally:
                light.close()
                net.cap_downlink(None)
                net.downlink_loss(0)


@dataclass
class Watched:
    """What one viewer page saw of the measured publisher."""

    page: Page
    offset: float = 0.0  # python clock (monotonic) at the page's sampler start
    raw: list[dict[str, Any]] = field(default_factory=list)


def follow(scenario: Scenario, net: Lab, start: float) -> None:
    """Apply the scenario's caps and loss at their times (from `start`, monotonic)."""
    events: list[tuple[float, Callable[[], None]]] = [
        (cap.t, functools.partial(net.cap_downlink, cap.kbps)) for cap in scenario.caps
    ]
    if scenario.loss_pct:
        events.append((scenario.loss_from, functools.partial(net.downlink_loss, scenario.loss_pct)))
    for at, action in sorted(events, key=lambda e: e[0]):
        time.sleep(max(0.0, start + at - time.monotonic()))
        action()
    time.sleep(max(0.0, start + scenario.duration - time.monotonic()))


@dataclass(frozen=True)
class Seat:
    """One participant of a scenario, the same on both servers."""

    name: str  # "publisher" (the measured one), "p0".. (light), "control", "impaired"
    browser: str  # "host", "light" (both host side) or "guest" (in the namespace)
    role: Role
    watched: bool = False  # a viewer of the measured publisher whose samples are the result


def cast(scenario: Scenario) -> list[Seat]:
    """Who takes part, in joining order: the measured publisher, then (a room) the light
    publishers and the unimpaired control viewer, then the impaired viewer. The viewers
    publish a small camera and a microphone too and watch the publisher on their stage."""
    slots = 1 if scenario.people == 2 else 8
    viewer = Role(320, 180, fps=15, video_slots=slots, audio_slots=min(slots, 3))
    seats = [Seat("publisher", "host", PUBLISHER)]
    if scenario.people > 2:
        seats += [Seat(f"p{i}", "light", LIGHT) for i in range(scenario.people - 3)]
        seats.append(Seat("control", "light", viewer, watched=True))
    seats.append(Seat("impaired", "guest", viewer, watched=True))
    return seats


def sources(seat: Seat, seats: list[Seat]) -> tuple[list[str], list[str]]:
    """(video, audio): whose streams `seat` receives on Janus, which has no last-N: the
    measured publisher first, then those with a microphone, then in joining order, as
    many as visitroom's slots (`video_slots`, `audio_slots`) hold."""
    others = [s for s in seats if s.name != seat.name]
    ranked = sorted(others, key=lambda s: (s.name != "publisher", not s.role.audio))
    video = [s.name for s in ranked if s.role.width][: seat.role.video_slots]
    audio = [s.name for s in ranked if s.role.audio][: seat.role.audio_slots]
    return video, audio


def _browser(setup: Lab_, seat: Seat) -> BrowserContext:
    return {"host": setup.host, "light": setup.light, "guest": setup.guest}[seat.browser]


def run_visitroom(setup: Lab_, scenario: Scenario) -> dict[str, Any]:
    site, net = setup.site, setup.net
    room = site.schedule()
    seats = cast(scenario)
    opened: list[Page] = []
    pages: dict[str, Page] = {}
    try:
        for seat in seats:
            opened.append(_browser(setup, seat).new_page())
            pages[seat.name] = opened[-1]
        first, *rest = seats
        who = token(room, "provider", "host", "Dr P")
        pid = join(pages[first.name], site.url, room, who, first.role)
        pages[first.name].evaluate(PUBLISHER_ESTIMATE_START)
        pages[first.name].evaluate(ENCODER_START)
        encoder_at = time.monotonic()
        for seat in rest:
            user = "patient" if seat.name == "impaired" else seat.name
            who = token(room, user, "host", seat.name.capitalize())
            stage = pid if seat.watched else None
            begin_join(pages[seat.name], site.url, room, who, seat.role, stage)
        names = {pid: first.name}
        for seat in rest:
            names[joined(pages[seat.name])] = seat.name
        watched = {s.name: Watched(pages[s.name]) for s in seats if s.watched}
        raw = watch(watched, pid, scenario, net)
        link = raw.pop("link")
        start = watched["impaired"].offset
        outbound = pages[first.name].evaluate(OUTBOUND)
        estimates = pages[first.name].evaluate(PUBLISHER_ESTIMATE_READ)
        encoder = pages[first.name].evaluate(ENCODER_READ)
    finally:
        net.cap_downlink(None)
        net.downlink_loss(0)
        # End the visit for everyone before the pages close: a page that just closes
        # leaves its media session on the server for the resume window (30 s), and the
        # next scenario runs on the same server and namespace.
        status, _ = site.rest("DELETE", f"/v1/rooms/{room}")
        if status != 200:
            print(f"netlab: ending room {room} answered {status}", file=sys.stderr)
        for p in opened:
            with contextlib.suppress(Exception):
                p.close()
    result = {
        "viewers": raw,
        "link": link,
        "publisher_layers": outbound,
        "publisher_estimate": publisher_estimate(estimates),
        # t in s from the scenario's start (about: the sampler starts at the publisher's join)
        "publisher_encoder": [
            [round(row[0] / 1000 + encoder_at - start, 2), *row[1:]] for row in encoder
        ],
    }
    result["encoder_summary"] = encoder_summary(result["publisher_encoder"], scenario.duration)
    if setup.trace is not None:
        trace = layer_trace(setup.trace, start, scenario.duration, pid, names)
        result["layer_trace"] = trace
        explain(scenario, raw, trace, link, result["publisher_encoder"])
    return result


def explain(
    scenario: Scenario,
    viewers: dict[str, Any],
    trace: list[dict[str, Any]],
    link: list[dict[str, Any]],
    encoder: list[list[Any]],
) -> None:
    """Each viewer's stalls, classified from the trace and the link (bench/netlab_trace.py):
    `episodes`, and `frozen_s_by_kind` over the impaired stretch and after adapting."""
    impaired_from = min((c.t for c in scenario.caps if c.kbps), default=scenario.loss_from)
    low = [c.t for c in scenario.caps if c.kbps is not None and c.kbps < ADAPT_BELOW_KBPS]
    for name, v in viewers.items():
        # a control viewer's own link is not capped: its bottleneck counters say nothing
        own = link if name == "impaired" else []
        found = episodes(v["series"], name, trace, own, impaired_from, encoder)
        v["episodes"] = found
        v["frozen_s_by_kind"] = frozen_by_kind(found, impaired_from)
        v["frozen_s_by_kind_after_3s"] = frozen_by_kind(
            found, min(low, default=impaired_from) + 3.0
        )


def encoder_summary(rows: list[list[Any]], duration: float) -> dict[str, Any]:
    """Per rid over the scenario: key frames and frames encoded, and the longest run of
    readings (250 ms apart) with at most 3 frames encoded each, under 12 fps (the encoder
    skipping that layer's frames: after key frames it did for up to 2 s, the control
    viewer's freeze)."""
    out: dict[str, Any] = {}
    for rid in sorted({str(r[1]) for r in rows}):
        mine = [r for r in rows if str(r[1]) == rid and 0.0 <= r[0] <= duration]
        if len(mine) < 2:
            continue
        longest = run = 0.0
        for a, b in itertools.pairwise(mine):
            run = run + b[0] - a[0] if b[2] - a[2] <= 3 else 0.0
            longest = max(longest, run)
        out[rid] = {
            "keyframes": mine[-1][4] - mine[0][4],
            "frames": mine[-1][2] - mine[0][2],
            "longest_skip_s": round(longest, 2),
            # e.g. "SimulcastEncoderAdapter (libvpx, libvpx, libvpx)": one encoder per layer
            "implementation": mine[-1][9] if len(mine[-1]) > 9 else None,
        }
    return out


def layer_trace(
    directory: Path, start: float, duration: float, publisher: str, names: dict[str, str]
) -> list[dict[str, Any]]:
    """The server's layer trace (sfu/routing/trace.py) over the scenario (from 2 s before
    its start; `t` from its start, the same monotonic clock): the slots showing
    `publisher`'s video and its layers; participant ids replaced by seat names."""
    lines: list[dict[str, Any]] = []
    for path in sorted(directory.glob("layer-trace-*.jsonl")):
        for text in path.read_text().splitlines():
            line = json.loads(text)
            t = line["t"] - start
            if not -2.0 <= t <= duration + 1.0:
                continue
            slots = [[names.get(s[0], s[0]), *s[1:]] for s in line["slots"] if s[2] == publisher]
            layers = [s[2:] for s in line["layers"] if s[0] == publisher]
            estimates = [[names.get(e[0], e[0]), *e[1:]] for e in line["estimates"]]
            for e in estimates:  # the probe results' times (the trace's last column) too
                if e and isinstance(e[-1], list):
                    e[-1] = [[round(r[0] - start, 3), *r[1:]] for r in e[-1]]
            line = {"t": round(t, 3), "slots": slots, "layers": layers, "estimates": estimates}
            lines.append(line)
    return sorted(lines, key=lambda line: float(line["t"]))


def publisher_estimate(series: list[list[int]]) -> dict[str, Any]:
    """The measured publisher's own estimate (kbit/s): median and lowest over the
    scenario, median of its second half, and the series."""
    values = [float(kbps) for _, kbps in series]
    late = [float(kbps) for t, kbps in series if series and t >= series[-1][0] / 2]
    return {
        "median_kbps": _median(values),
        "min_kbps": min(values, default=None),
        "second_half_median_kbps": _median(late),
        "series": series,
    }


def watch(
    watched: dict[str, Watched], publisher: str, scenario: Scenario, net: Lab
) -> dict[str, Any]:
    """Once every viewer decodes `publisher`: sample them through the scenario; each
    viewer's summary, counters and what it received."""
    for w in watched.values():
        wait_decoding(w.page, publisher)
    for w in watched.values():
        start_sampler(w.page, publisher)
        w.offset = time.monotonic()
    start = watched["impaired"].offset
    with LinkSampler(net.host_link, start) as link:
        follow(scenario, net, start)
    for w in watched.values():
        w.raw = w.page.evaluate(STOP)
    viewers: dict[str, Any] = {
        name: summarize(scenario, samples(w.raw, w.offset - start), name == "impaired")
        | {
            "counters": counters(w.raw),
            "received": w.page.evaluate(RECEIVED),
            "wire": wire(w.raw, w.offset - start),
        }
        for name, w in watched.items()
    }
    viewers["link"] = deltas(link.rows)  # the bottleneck's tbf, per ~0.1 s (netlab_link)
    return viewers


def wire(raw: list[dict[str, Any]], offset_s: float) -> list[list[float]]:
    """What reached the viewer per sample, to tell frames that never arrived from frames
    that arrived and were not decoded: [t, frames received, frames decoded, frames
    dropped, packets received, key frames decoded, jitter buffer delay (ms, mean over
    the frames emitted since the previous sample), NACKs sent, packets lost, PLIs sent]
    (the last three so far: a stall with packets arriving and no NACK had no sequence
    gap; one with NACKs and no retransmission had one the SFU could not fill)."""
    out: list[list[float]] = []
    before: dict[str, Any] = {}
    for r in raw:
        emitted = r.get("jb_emitted", 0) - before.get("jb_emitted", 0)
        delay = r.get("jb_delay", 0.0) - before.get("jb_delay", 0.0)
        out.append(
            [
                round(float(r["t"]) + offset_s, 2),
                r.get("received", 0),
                r["frames"],
                r.get("dropped", 0),
                r.get("packets", 0),
                r["keyframes"],
                round(1000 * delay / emitted, 1) if emitted > 0 else -1,
                r.get("nacks", 0),
                r.get("lost", 0),
                r.get("plis", 0),
            ]
        )
        before = r
    return out


def run_janus(setup: Lab_, rig: Janus, scenario: Scenario) -> dict[str, Any]:
    """The same participants with Janus VideoRoom: each publishes its camera (simulcast,
    the SDK's encodings) and microphone, then each with slots subscribes to `sources`
    (Janus's default substream, the highest: the lab's Janus client asks for nothing)."""
    site, net = setup.site, setup.net
    seats = cast(scenario)
    room = rig.new_room(len(seats))
    opened: list[Page] = []
    pages: dict[str, Page] = {}
    try:
        published = {}
        for seat in seats:
            opened.append(_browser(setup, seat).new_page())
            page = pages[seat.name] = opened[-1]
            size = (seat.role.width, seat.role.height, seat.role.fps)
            published[seat.name] = rig.publish(page, site.url, room, size, seat.role.audio)
        names = {p.feed: JANUS_ID if n == "publisher" else n for n, p in published.items()}
        for seat in seats:
            video, audio = sources(seat, seats)
            streams = [StreamRef(published[n].feed, published[n].mids["video"]) for n in video]
            streams += [StreamRef(published[n].feed, published[n].mids["audio"]) for n in audio]
            if streams:
                rig.subscribe(pages[seat.name], site.url, room, streams, names, JANUS_ID)
        watched = {s.name: Watched(pages[s.name]) for s in seats if s.watched}
        raw = watch(watched, JANUS_ID, scenario, net)
        link = raw.pop("link")
        outbound = pages["publisher"].evaluate(JANUS_OUTBOUND)
    finally:
        net.cap_downlink(None)
        net.downlink_loss(0)
        for p in opened:
            with contextlib.suppress(Exception):
                p.close()
    return {"viewers": raw, "link": link, "publisher_layers": outbound}


def counters(raw: list[dict[str, Any]]) -> dict[str, Any]:
    """What the viewer's video counters grew by over the run (PLIs it sent, key frames
    decoded, NACKs, packets lost) and its mean received rate."""
    if len(raw) < 2:
        return {}
    first, last = raw[0], raw[-1]
    grew = {k: last.get(k, 0) - first.get(k, 0) for k in ("plis", "keyframes", "nacks", "lost")}
    seconds = max(1e-3, float(last["t"]) - float(first["t"]))
    return grew | {"kbps": round((last["bytes"] - first["bytes"]) * 8 / seconds / 1000)}


def summarize(scenario: Scenario, got: list[m.Sample], capped: bool = True) -> dict[str, Any]:
    """The metrics of one viewer in one scenario, and its time series for the plot
    (`capped` False: a control viewer the caps do not apply to: no adapt times)."""
    adapt: list[float | None] = []
    recover: list[float | None] = []
    changes = scenario.changes() if capped else []
    for index, (at, cap, previous) in enumerate(changes):
        until = changes[index + 1][0] if index + 1 < len(changes) else None
        before = m.width_before(got, at) or FULL[0]
        down = cap.kbps is not None and cap.kbps < ADAPT_BELOW_KBPS
        if down:
            adapt.append(m.adapt_time(got, at, before, until))
        elif (
            previous is not None and previous.kbps is not None and previous.kbps < ADAPT_BELOW_KBPS
        ):
            recover.append(m.recover_time(got, at, before, until))
    impaired_from = min((c.t for c in scenario.caps if c.kbps), default=scenario.loss_from)
    during = [s for s in got if s.t >= impaired_from]
    errors = m.estimate_errors(got, scenario.caps, SETTLE_S) if capped else []
    last_cap = scenario.caps[-1]
    settled = min(last_cap.t + SETTLE_S, scenario.duration - 2.0)  # the last 2 s at least
    steady = m.steady_width(got, settled)
    low = [c.t for c in scenario.caps if c.kbps is not None and c.kbps < ADAPT_BELOW_KBPS]
    after_adapt = [s for s in during if s.t >= min(low, default=impaired_from) + 3.0]
    return {
        "adapt_s": adapt,
        "adapt_s_p95": m.p95_or_none(adapt),
        "recover_s": recover,
        "freeze_ratio": m.freeze_ratio(during),
        "freeze_ratio_after_3s": m.freeze_ratio(after_adapt),
        "freezes": m.freezes(during),
        "audio_concealed_pct": m.audio_concealed_pct(during),
        "estimate_error_pct": m.p95(errors) if errors else None,
        "estimate_error_pct_median": sorted(errors)[len(errors) // 2] if errors else None,
        "width_before": m.width_before(got, impaired_from),
        "steady_width": steady,
        "stage_width_at_3mbit": steady if last_cap.kbps == 3000 else None,
        "estimate_errors": [round(e, 1) for e in errors],
        "fps_steady": _median([f for t, f in m.decoded_fps(got) if t >= settled]),
        "series": [
            [
                round(s.t, 2),
                s.width,
                s.fps,
                s.frames_decoded,
                s.estimate_kbps,
                round(s.freezes_s, 3),
            ]
            for s in got
        ],
    }


def _median(values: list[float]) -> float | None:
    return sorted(values)[len(values) // 2] if values else None


def janus_scenarios(chosen: list[Scenario], quick: bool) -> list[Scenario]:
    """Which scenarios also run on Janus: all of them (the quick run: the 1:1 cap drop
    only; the room on Janus does not fit in its 3 minutes)."""
    return [s for s in chosen if s.name.startswith("drop")] if quick else chosen


def run(args: argparse.Namespace) -> dict[str, Any]:
    every = scenarios(args.quick, args.impaired_s)
    chosen = [s for s in every if not args.only or s.name in args.only]
    on_janus = [] if args.no_janus else janus_scenarios(chosen, args.quick)
    results: dict[str, Any] = {
        "benchmark": "netlab",
        "quick": args.quick,
        "clip": args.clip,
        "scenarios": {},
    }
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="netlab-")))
        setup = stack.enter_context(netlab(tmp, args.trace, args.clip == "bounce"))
        if args.hog:
            stack.enter_context(hogged(setup.site.process.proc, args.hog))
            results["hog"] = {"busy_loops": args.hog, "core": SERVER_CORE}
        rig = stack.enter_context(janus(setup.net)) if on_janus else None
        for scenario in chosen:
            began = time.monotonic()
            entry: dict[str, Any] = {
                "caps": [[c.t, c.kbps] for c in scenario.caps],
                "loss_pct": scenario.loss_pct,
                "people": scenario.people,
                "loadavg": {},  # the machine's 1-minute load average before and after each
            }
            results["scenarios"][scenario.name] = entry
            visitroom = functools.partial(run_visitroom, setup, scenario)
            entry["visitroom"] = loaded(entry, "visitroom", visitroom)
            if rig is not None and scenario in on_janus:
                entry["janus"] = loaded(
                    entry, "janus", functools.partial(run_janus, setup, rig, scenario)
                )
            loads = ", ".join(f"{k} load {a}->{b}" for k, (a, b) in entry["loadavg"].items())
            estimate = entry["visitroom"]["publisher_estimate"]["median_kbps"]
            print(f"{scenario.name}: {time.monotonic() - began:.0f} s ({loads}; visitroom "
                  f"publisher estimate median {estimate} kbit/s)", flush=True)  # fmt: skip
    results["overall"] = {side: overall(results, side) for side in ("visitroom", "janus")}
    return results


@contextlib.contextmanager
def hogged(server: subprocess.Popen[bytes] | None, count: int) -> Iterator[None]:
    """The server's processes (every thread) pinned to SERVER_CORE, with `count` busy
    loops there, each in a session (autogroup) of its own, as bench/join_storm.py --hog."""
    assert server is not None, "the server is running"
    for pid in (server.pid, *descendants(server.pid)):
        subprocess.run(["taskset", "-a", "-p", "-c", str(SERVER_CORE), str(pid)],
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    command = ["taskset", "-c", str(SERVER_CORE), sys.executable, "-c", "while True: pass"]
    busy = [subprocess.Popen(command, start_new_session=True) for _ in range(count)]
    try:
        yield
    finally:
        for hog in busy:
            hog.kill()
            hog.wait()


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (the SFU workers), from /proc."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                out += [int(child), *descendants(int(child))]
    return out


def loaded(entry: dict[str, Any], side: str, running: Callable[[], dict[str, Any]]) -> Any:
    """`running()`, with the load average before and after it in `entry["loadavg"][side]`
    (the machine is shared: a loaded one is part of the result)."""
    before = os.getloadavg()[0]
    result = running()
    entry["loadavg"][side] = [round(before, 2), round(os.getloadavg()[0], 2)]
    return result


OVERALL = ("adapt_s_p95", "freeze_ratio", "estimate_error_pct", "audio_concealed_pct",
           "stage_width_at_3mbit")  # fmt: skip


def overall(results: dict[str, Any], side: str) -> dict[str, Any]:
    """The impaired viewers over every scenario: p95 of adapt times and estimate errors,
    the worst freeze ratio (once adapted) and audio concealment, the width at 3 Mbit/s."""
    seen = [
        entry[side]["viewers"]["impaired"]
        for entry in results["scenarios"].values()
        if side in entry
    ]
    if not seen:
        return {}

    def worst(key: str) -> float | None:
        return max((v[key] for v in seen if v[key] is not None), default=None)

    widths = [v["stage_width_at_3mbit"] for v in seen if v["stage_width_at_3mbit"]]
    errors = [e for v in seen for e in v["estimate_errors"]]
    return {
        "adapt_s_p95": m.p95_or_none([a for v in seen for a in v["adapt_s"]]),
        "freeze_ratio": worst("freeze_ratio_after_3s"),
        "estimate_error_pct": m.p95(errors),
        "audio_concealed_pct": worst("audio_concealed_pct"),
        "stage_width_at_3mbit": min(widths) if widths else None,
    }


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 1 else f"{value:.1f}"
    return str(value)


def print_table(results: dict[str, Any]) -> None:
    columns = ("adapt_s_p95", "freeze_ratio", "freeze_ratio_after_3s", "freezes",
               "audio_concealed_pct", "estimate_error_pct", "steady_width",
               "fps_steady")  # fmt: skip
    heads = ("adapt p95 s", "freeze", "after 3 s", "freezes", "audio conc %", "est err %",
             "width", "fps")  # fmt: skip
    print(f"{'scenario':18} {'sfu':9} " + " ".join(f"{h:>12}" for h in heads))
    for name, entry in results["scenarios"].items():
        for side in ("visitroom", "janus"):
            for viewer, v in entry.get(side, {}).get("viewers", {}).items():
                label = side if viewer == "impaired" else f"{side[:5]}-{viewer[:3]}"
                print(f"{name:18} {label:9} " + " ".join(f"{_cell(v[c]):>12}" for c in columns))
                kinds = {k: s for k, s in v.get("frozen_s_by_kind_after_3s", {}).items() if s}
                if kinds:  # what the stalls after adapting were (netlab_trace)
                    print(f"{'':28} frozen s after 3 s by class: {kinds}")
    for side in ("visitroom", "janus"):
        if results.get("overall", {}).get(side):
            print(f"overall {side}: " + ", ".join(
                f"{k} {_cell(v)}" for k, v in results["overall"][side].items()))  # fmt: skip


def stalls(series: list[list[Any]]) -> list[tuple[float, float]]:
    """(start, end) of the stretches in which no frame was decoded (plot rows)."""
    out: list[tuple[float, float]] = []
    for previous, row in itertools.pairwise(series):
        if row[3] == previous[3]:
            if out and out[-1][1] == previous[0]:
                out[-1] = (out[-1][0], row[0])
            else:
                out.append((previous[0], row[0]))
    return out


WIDTH_COLORS = {
    ("visitroom", "impaired"): "tab:blue",
    ("visitroom", "control"): "tab:cyan",
    ("janus", "impaired"): "tab:orange",
    ("janus", "control"): "tab:olive",
}


def plot(results: dict[str, Any], path: Path) -> None:
    """Per scenario: the received width (left axis; shaded while frozen) and the SFU's
    estimate and the true cap (right axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["scenarios"])
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 2.6 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        entry = results["scenarios"][name]
        rate = ax.twinx()
        end = 0.0
        styles = {"visitroom": "-", "janus": "--"}
        for side, style in styles.items():
            for viewer, v in entry.get(side, {}).get("viewers", {}).items():
                series = v["series"]
                if not series:
                    continue
                end = max(end, series[-1][0])
                t = [row[0] for row in series]
                label = f"{side} {viewer} width"
                color = WIDTH_COLORS.get((side, viewer), "tab:gray")  # red: the estimate
                widths = [row[1] or 0 for row in series]
                line = ax.plot(t, widths, style, color=color, label=label, lw=1.2)
                for t0, t1 in stalls(series):  # no new frame decoded: frozen
                    ax.axvspan(t0, t1, color=line[0].get_color(), alpha=0.15, lw=0)
                if viewer == "impaired" and any(row[4] for row in series):
                    estimates = [row[4] for row in series]
                    rate.plot(t, estimates, style, color="tab:red", label=f"{side} estimate")
        caps = entry["caps"] + [[end, None]]
        label = "cap"
        for (t0, kbps), (t1, _) in itertools.pairwise(caps):
            if kbps:
                rate.hlines(kbps, t0, t1, colors="black", linestyles=":", label=label)
                label = "_cap"  # one legend entry
        loss = f", {entry['loss_pct']:g}% loss on the downlink" if entry["loss_pct"] else ""
        ax.set_title(f"{name}{loss}")
        ax.set_ylabel("frame width")
        ax.set_ylim(0, 1400)
        rate.set_ylabel("kbit/s")
        rate.set_ylim(bottom=0)
        lines = ax.get_legend_handles_labels()
        more = rate.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="lower left")
    axes[-1, 0].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter scenarios (under 3 min)")
    parser.add_argument("--only", nargs="*", help="scenario names to run")
    parser.add_argument("--no-janus", action="store_true", help="visitroom only")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--impaired-s",
        type=float,
        help="the impaired stretch of the cap, loss and room scenarios, in s (quick: 9, else 30)",
    )
    parser.add_argument(
        "--hog",
        type=int,
        default=0,
        help="N busy loops on the server's core (core 0; the server's processes pinned there)",
    )
    parser.add_argument("--plot", type=Path, help="PNG (default: next to --json)")
    parser.add_argument(
        "--trace",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the server's layer trace (VISITROOM_LAYER_TRACE) and each stall explained from it "
        "in each visitroom result (default; --no-trace: neither)",
    )
    parser.add_argument(
        "--clip",
        choices=("loop", "bounce"),
        default="bounce",
        help="the publisher's camera clip: played forward and back (default: no jump, as a "
        "camera) or a 2 s loop that jumps back (a scene cut every 2 s: every layer's encoder "
        "overshoots, then skips frames; the lab's clip before 2026-12-07)",
    )
    args = parser.parse_args()
    result = run(args)
    result["command"] = " ".join(["python", *sys.argv])
    result["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    picture = args.plot or (args.json.with_suffix(".png") if args.json else None)
    if picture:
        plot(result, picture)
        print(f"plot: {picture}")


if __name__ == "__main__":
    main()
