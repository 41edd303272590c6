"""When and how much to probe a subscriber's downlink (libwebrtc's probe_controller, simplified).

The bandwidth estimate only grows about as fast as what the SFU actually
sends (the delay-based increase is capped at 1.5 x the acknowledged
bitrate): a subscriber who gets thumbnails today never shows that its link
could carry a stage layer.  So when the allocator wants more than the
estimate allows, the transport adds padding for a short while, a probe
cluster, and the estimator measures how fast the cluster arrived
(gcc_rates.ProbeRates).

- `want(...)` is called on the clock (every 100 ms or so) with the estimate,
  what the allocator would like to send (`desired_bps`, capped by the caller
  at the estimator's maximum: no probe can lift the estimate past it) and
  what media is sent now (`sending_bps`, padding not included).
  When desired > estimate and the link is calm (the estimate has not
  dropped by 10 % in the last second, nor within 2 s after such a drop), it
  plans an attempt: clusters at 1.5 x and 2 x the estimate (capped at
  desired), back to back, each `duration_s` long (a pause between them was
  tried: in the network lab's 1 Mbit/s run the 2 x cluster, sent on a
  drained queue and a full bucket, then read "got through" more often, and
  the searches padded 141 kB after the cap against main's 79).  Under
  `low_bps` (450 kbit/s) an attempt is the 1.5 x cluster alone:
  a small link's queue is small (the network lab's 300 kbit/s viewer: 7.5
  kB behind a 2000-byte bucket), and 1.5 x then 2 x pad 0.15 s of the
  estimate into it.  (A longer cluster at a lower gain, 1.25 x over 0.3 s,
  was tried: with the estimate already at or a little above the link, what
  queues is the cluster's whole excess, 0.075 s of the estimate against
  0.05 s; in the simulator with the lab's bucket it doubled the 300 kbit/s
  viewer's queueing delay.)
- An attempt succeeds if, within a second after its last cluster, the
  estimate rose by 10 %: then it probes again right away from the new
  estimate (exponential search), except under `low_bps` when the estimate
  reached less than 0.9 x the attempt's top target (libwebrtc's
  ProbeController searches further only above 0.7 x what it probed for):
  then the probe found the link, or near it, and the next attempt waits
  `interval_s` (an attempt at once from 316 kbit/s measured on a 300
  kbit/s link padded 9 kB into its 7.5 kB queue in 0.2 s; docs/benchmarks.md,
  branch resend).  Otherwise it waits 2 s, then 4, up to
  `max_interval_s` (5 s), before the next attempt, which is then a single
  cluster at 1.5 x (a failed probe queues data and may cost a delay-based
  decrease: keep re-checks small); a jump in desired (a new stage slot)
  starts afresh.
- A probe's own overuse (libwebrtc's probe_controller, `RequestProbe`):
  when the estimate drops by 10 % or more within a second after an
  attempt planned while the media sent was well below the estimate
  (app-limited: under 0.85 x the estimate before the drop), the
  delay-based decrease started from what an app-limited sender gets
  through (0.85 x the acknowledged rate), not from the link.  Once the
  queue the probe built has drained (`DRAIN_S`), one cluster at 0.85 x
  the estimate before the drop checks whether the link still carries
  it; if it does, the estimate is back near the link at once instead of
  climbing 8 % a second from there.  At most one such probe per
  `DROP_PROBE_INTERVAL_S`; it never starts an exponential search, and
  the backoff of the failed attempt stands.
- A re-check of an application-limited estimate (libwebrtc's ALR probing,
  `ProbeController::Process` with periodic ALR probes): while the estimate
  covers what is wanted, the prober is otherwise quiet, and the media sent
  has stayed under 0.85 x the estimate (app-limited) for `RECHECK_INTERVAL_S`
  since the last cluster, one cluster at the estimate (at most
  `RECHECK_MAX_GAIN` x the media sent: a burst far above a slow link would
  overflow its queue) checks whether the link still carries it.  An
  estimate learns a link only from what is sent: a warm-up probe may have
  measured a link that a cap has since narrowed, and an app-limited sender
  never overuses it to find out (the network lab's stale 2.3 Mbit/s
  estimate on a 1 Mbit/s link, held to the end).  If the link carries the
  cluster it arrives whole and changes nothing (the estimator lets a probe
  that did not saturate raise the estimate, never lower it); if not, it
  arrives at the link's rate and the estimator takes that.  A re-check is
  not judged (no search, no backoff) and its drop is not a probe's own
  overuse: it is the answer.  libwebrtc probes at 2 x the estimate every
  5 s; this one never aims above the estimate (the goal logic decides
  growth) and runs every 3 s, so that a cap that came while the
  subscriber was app-limited is found within 5 s.
  Only where the estimate could change what the subscriber gets (as
  libwebrtc probes in ALR only up to what is allocated): never when every
  slot has one step only (`want(fixed=True)`: one layer at one rate, as a
  camera without simulcast); else when the allocation gives some slot
  less than it wants (`held=True`: a higher layer or TID not chosen), or
  when the estimate has stayed at least `RECHECK_FAR_ABOVE` x the media
  since it became app-limited (a warm-up probe's measure far above
  anything sent since, that a returning layer would be sent into).  A
  gallery of one-layer cameras is never re-checked: each re-check is 0.1 s
  of padding at up to 4 x the media, to every such subscriber, for nothing
  its estimate could change (its estimate sat at 3.3-3.9 x its media in
  a 60-person transport-cc gallery: 6 % of the packets sent were re-checks;
  docs/benchmarks.md, branch gallery).
- A cluster that got through whole shows the link only as far as a
  shaper's token bucket could not have absorbed it (gcc_rates.link_at_least:
  a bucket of 2000 bytes or 20 ms at the rate passes a burst that fits it
  at line speed; the network lab's 300 kbit/s viewer read a 100 ms cluster
  at 1.5 x from 244 kbit/s as 390 "got through"), and the estimator reads
  it so once a saturated cluster showed a narrow link (gcc.py).  So under
  `low_bps` a cluster lasts long enough that a 2000-byte bucket is at most
  `BUCKET_SHARE` of its bytes (`duration_s` at least, at most
  `MAX_CLUSTER_S`): 0.17 s at 366 kbit/s, 0.14 s at 450; then one at 1.5 x
  that got through shows 1.12 x the estimate.  Its padding cap
  (`PADDING_MAX_S`) grows with it.  With the estimate at the link it puts
  up to 3.05 kB over the link's rate where a 100 ms one put 2.3 kB: the
  bucket passes 2000 bytes of that, and the rest is what shows the link.
- `next_cluster(now)` is the cluster in progress at `now` (None when none):
  the transport tags EVERY packet it sends to this subscriber while it is
  in progress, media and padding alike, with its id (PacketResult.probe),
  so the estimator measures the total rate.
- `padding_due(now)` is how many padding bytes to send now so that media +
  padding reach the cluster's target rate; call it every few milliseconds
  (each call pays what accrued since the last one), send the bytes in at
  least `min_packets` packets over the cluster.  A cluster's padding is at
  most `PADDING_MAX_S` of the estimate's bytes (read when the cluster
  starts): padding beyond what the link carries queues at its bottleneck,
  and a small link queue (the network lab's 7.5 kB at 300 kbit/s, 200 ms)
  overflows when a probe meets a media burst (its 300 kbit/s viewer's
  `overflow` stalls came with 7-16 kB of padding).  It binds only while
  app-limited: with the media at the estimate, even the 2 x cluster pads
  100 ms of it.

Pure: no clock of its own, everything is driven by `now` (seconds).
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

from sfu.policy.gcc_rates import BUCKET_BYTES

__all__ = ["ProbeCluster", "Prober"]

SCALES = (1.5, 2.0)
DROP_RATIO = 0.9  # an estimate below 0.9 x its recent high means congestion
HIGH_WINDOW_S = 1.0
CALM_S = 2.0
SUCCESS_RATIO = 1.1
RESULT_WAIT_S = 1.0
DESIRED_JUMP = 1.25
MIN_GAIN = 1.1  # a cluster must aim at least 10 % above the estimate
DROP_PROBE_FRACTION = 0.85  # re-probe at this fraction of the estimate before the drop
APP_LIMITED_FRACTION = 0.85  # sending below this x the estimate: app-limited
PROBE_UNCERTAINTY = 0.05  # a re-probe is worth it while the estimate is below 0.95 x its target
DRAIN_S = 0.5  # after a probe's overuse, let its queue drain before re-probing
DROP_PROBE_INTERVAL_S = 5.0
RECHECK_INTERVAL_S = 3.0  # app-limited this long since the last cluster: re-check the estimate
RECHECK_MAX_GAIN = 4.0  # a re-check aims at most this x the media sent
# An estimate this x the media all along is re-checked even if nothing is held.
RECHECK_FAR_ABOVE = 2.0
PADDING_MAX_S = 0.1  # a cluster pads at most this long of the estimate's bytes
# Under this estimate an attempt is one cluster (a small link's queue is small).
LOW_BPS = 450_000
FURTHER_RATIO = 0.9  # search further at once only if the estimate reached 0.9 x the top target
# An app-limited estimate counts as measured (`fresh`) this long after a cluster's answer...
FRESH_S = 1.0
# ... which comes this long after the cluster ended (feedback, then the estimator's step).
SETTLE_S = 0.3
# `fresh` judges whether the media fills the estimate on its mean over this long (as
# libwebrtc's ALR detector, on a 500 ms budget): one large frame is not a measure.
FILL_WINDOW_S = 0.5
BUCKET_SHARE = 0.25  # under low_bps a cluster lasts so long that a bucket is at most 1/4 of it
MAX_CLUSTER_S = 0.4


class ProbeCluster(NamedTuple):
    id: int
    target_bps: int  # total rate to send while it lasts, media + padding
    start: float
    duration: float  # seconds
    min_packets: int  # send at least this many packets in it


class _Attempt(NamedTuple):
    start_estimate: int
    end: float
    top_target: int = 0  # its highest cluster's target
    after_drop: bool = False  # a re-probe after a probe's own overuse: no search from it
    recheck: bool = False  # a re-check of an app-limited estimate: not judged


class Prober:
    """Plans probe clusters for one subscriber; see the module docstring."""

    def __init__(
        self,
        *,
        duration_s: float = 0.1,
        min_packets: int = 10,
        interval_s: float = 2.0,
        max_interval_s: float = 5.0,
        low_bps: int = LOW_BPS,
    ) -> None:
        self.duration_s = duration_s
        self.low_bps = low_bps
        self.min_packets = min_packets
        self.interval_s = interval_s
        self.max_interval_s = max_interval_s
        self._next_id = 0
        self._planned: deque[ProbeCluster] = deque()
        self._active: ProbeCluster | None = None
        self._paid_until = 0.0  # padding was paid for up to this time
        self._owed = 0.0  # fraction of a byte carried over
        self._padding_left = 0  # bytes the cluster in progress may still pad
        self._attempt: _Attempt | None = None
        self._next_attempt = 0.0
        self._backoff = interval_s
        self._estimate = 0
        self._sending = 0
        self._attempt_desired = 0
        self._high: tuple[float, int] | None = None  # (since, estimate): recent high
        self._calm_from = 0.0
        self._last_end = -1e18  # when the last attempt's clusters ended
        self._sending_at_attempt = 0  # media sent when it was planned
        self._drop_probe: tuple[float, int] | None = None  # (due, target)
        self._last_drop_probe = -1e18
        self._app_limited_since: float | None = None  # sending under 0.85 x the estimate
        self._far_above_since: float | None = None  # sending under the estimate / 2
        self._held = True  # the allocation holds some slot below what it wants (`want`)
        self._fixed = False  # every slot has one step only: no estimate changes anything
        self._last_was_recheck = False
        # For `fresh` only: the media sent lately (when, bit/s), since when its mean
        # has been under the estimate's app-limited fraction, when the last cluster
        # that was sent ended.
        self._recent: deque[tuple[float, int]] = deque()
        self._thin_since: float | None = None
        self._sent_end = -1e18

    @property
    def probing(self) -> bool:
        """Whether an attempt is planned, running or awaiting its result."""
        return self._attempt is not None

    def fresh(self, now: float) -> bool:
        """Whether the estimate was measured lately, so that an upgrade may rely on it.

        Yes while the media sent fills it (its mean over `FILL_WINDOW_S` not
        app-limited, or app-limited for less than `FRESH_S`), and for `FRESH_S`
        from `SETTLE_S` after a cluster that was sent ended (its answer: a link
        that carried the cluster changed nothing, one that did not lowered the
        estimate).  Otherwise it is what some earlier
        probe measured, maybe before the link narrowed: the network lab's
        1 Mbit/s viewer, app-limited on 640x360 or 1280x720 at 15 fps, was
        stepped up 0.6-1.3 s after its link was capped on a 1.9-2.2 Mbit/s
        estimate from the warm-up's probe, filled the queue, and the key frame
        of the step was dropped (LiveKit, likewise, raises an allocation only
        on a probe's result).  An upgrade held for this waits for the next
        cluster: the re-check of an app-limited estimate comes while the
        allocation holds a slot below its top (`want(held=True)`),
        `RECHECK_INTERVAL_S` after the last cluster or the start of the
        app-limited spell, whichever is later.  The mean, not each 100 ms
        reading: the lab's 1 Mbit/s viewer, app-limited at 400-1000 kbit/s
        under a stale 2.27 Mbit/s estimate, was stepped up 1.3 s after the cap
        once a reading of its burst reached 0.85 x the estimate.
        """
        since = self._thin_since
        if since is None or now - since < FRESH_S:
            return True
        answered = self._sent_end + SETTLE_S
        return answered <= now < answered + FRESH_S

    def want(
        self,
        *,
        estimate_bps: int,
        desired_bps: int,
        sending_bps: int,
        now: float,
        held: bool = True,
        fixed: bool = False,
    ) -> None:
        """Tell the prober the current numbers; it may plan an attempt.

        `held`: whether the allocation gives some slot less than it wants;
        `fixed`: whether every slot has one step only (the re-check of an
        app-limited estimate: see the module doc).
        """
        self._estimate = max(estimate_bps, 0)
        self._sending = max(sending_bps, 0)
        self._held = held
        self._fixed = fixed
        self._watch_app_limited(now)
        self._watch_fill(now)
        self._watch_drops(now)
        self._judge_attempt(now)
        if desired_bps < self._estimate * MIN_GAIN:
            self._drop_probe = None
            if self._attempt is None or not self._attempt.recheck:
                self._planned.clear()  # nothing more to find out
                self._recheck_when_stale(now)
            return
        if self._drop_probe is not None and self._attempt is None:
            self._reprobe_after_drop(desired_bps, now)
        if desired_bps > self._attempt_desired * DESIRED_JUMP and self._attempt is None:
            self._next_attempt = now  # the allocation wants notably more: ask now
            self._backoff = self.interval_s
        if self._attempt is not None or now < self._next_attempt or now < self._calm_from:
            return
        self._plan(desired_bps, now)

    def next_cluster(self, now: float) -> ProbeCluster | None:
        """The cluster in progress at `now` (starting the next planned one when due)."""
        active = self._active
        if active is not None and now < active.start + active.duration:
            return active
        self._active = None
        while self._planned and now >= self._planned[0].start:
            cluster = self._planned.popleft()
            if now < cluster.start + cluster.duration:
                self._active = cluster
                self._paid_until = cluster.start
                self._owed = 0.0
                stretch = cluster.duration / self.duration_s  # (a longer cluster pads more)
                self._padding_left = int(self._estimate * PADDING_MAX_S * stretch / 8)
                self._sent_end = cluster.start + cluster.duration
                break
        return self._active

    def padding_due(self, now: float) -> int:
        """Bytes of padding to send now for the cluster in progress (0 without one)."""
        cluster = self.next_cluster(now)
        if cluster is None:
            return 0
        elapsed = now - self._paid_until
        if elapsed <= 0:
            return 0
        self._paid_until = now
        self._owed += max(cluster.target_bps - self._sending, 0) * elapsed / 8
        due = int(self._owed)
        self._owed -= due
        due = min(due, self._padding_left)
        self._padding_left -= due
        return due

    def _plan(self, desired_bps: int, now: float) -> None:
        estimate = max(self._estimate, 1)
        targets = sorted({min(int(estimate * s), desired_bps) for s in SCALES})
        targets = [t for t in targets if t >= estimate * MIN_GAIN]
        if self._backoff > self.interval_s or estimate < self.low_bps:
            targets = targets[:1]  # the last attempt failed, or the link is small: one cluster
        if not targets:
            return
        start = now
        for target in targets:
            duration = self._duration(target)
            self._planned.append(
                ProbeCluster(self._next_id, target, start, duration, self.min_packets)
            )
            self._next_id += 1
            start += duration
        self._attempt = _Attempt(self._estimate, start, targets[-1])
        self._attempt_desired = desired_bps
        self._last_end = start
        self._sending_at_attempt = self._sending
        self._last_was_recheck = False

    def _duration(self, target: int) -> float:
        """How long a cluster at `target` lasts (module doc: a shaper's bucket)."""
        if self._estimate >= self.low_bps:
            return self.duration_s
        bucket_bits = 8 * BUCKET_BYTES
        longer = min(bucket_bits / (BUCKET_SHARE * max(target, 1)), MAX_CLUSTER_S)
        return max(self.duration_s, longer)

    def _watch_app_limited(self, now: float) -> None:
        if self._sending >= APP_LIMITED_FRACTION * self._estimate:
            self._app_limited_since = None
        elif self._app_limited_since is None:
            self._app_limited_since = now
        if self._sending * RECHECK_FAR_ABOVE > self._estimate:
            self._far_above_since = None
        elif self._far_above_since is None:
            self._far_above_since = now

    def _watch_fill(self, now: float) -> None:
        """For `fresh`: whether the mean media over `FILL_WINDOW_S` fills the estimate."""
        recent = self._recent
        recent.append((now, self._sending))
        while now - recent[0][0] >= FILL_WINDOW_S:
            recent.popleft()
        mean = sum(sending for _, sending in recent) / len(recent)
        if mean >= APP_LIMITED_FRACTION * self._estimate:
            self._thin_since = None
        elif self._thin_since is None:
            self._thin_since = now

    def _recheck_when_stale(self, now: float) -> None:
        """The re-check of an app-limited estimate (see the module doc), when due."""
        since = self._app_limited_since
        if (
            self._attempt is not None
            or since is None
            or now < self._calm_from
            or now - max(since, self._last_end) < RECHECK_INTERVAL_S
        ):
            return
        if self._fixed:
            return  # no estimate would change what it gets (one step per slot)
        far = self._far_above_since
        if not self._held and (far is None or now - max(far, self._last_end) < RECHECK_INTERVAL_S):
            return  # no estimate would change what it gets, and it is not far off the media
        target = min(self._estimate, int(RECHECK_MAX_GAIN * self._sending))
        if self._sending <= 0 or target < self._sending * MIN_GAIN:
            return  # nothing sent (nothing to check for), or the media is the check
        cluster = ProbeCluster(self._next_id, target, now, self.duration_s, self.min_packets)
        self._planned.append(cluster)
        self._next_id += 1
        end = now + self.duration_s
        self._attempt = _Attempt(self._estimate, end, recheck=True)
        self._last_end = end
        self._sending_at_attempt = self._sending
        self._last_was_recheck = True

    def _reprobe_after_drop(self, desired_bps: int, now: float) -> None:
        """The one cluster after a probe's own overuse (see the module doc), when due."""
        assert self._drop_probe is not None
        due, target = self._drop_probe
        if now < due:
            return
        self._drop_probe = None
        target = min(target, desired_bps)
        if target * (1 - PROBE_UNCERTAINTY) <= self._estimate:
            return  # the estimate came back by itself
        duration = self._duration(target)
        self._planned.append(ProbeCluster(self._next_id, target, now, duration, self.min_packets))
        self._next_id += 1
        self._attempt = _Attempt(self._estimate, now + duration, after_drop=True)
        self._last_end = now + duration
        self._last_drop_probe = now
        self._last_was_recheck = False

    def _judge_attempt(self, now: float) -> None:
        attempt = self._attempt
        if attempt is None or now < attempt.end:
            return
        if attempt.recheck:
            if now >= attempt.end + RESULT_WAIT_S:
                self._attempt = None  # not judged: the estimate says what it found
            return
        if attempt.after_drop:
            if self._estimate >= attempt.start_estimate * SUCCESS_RATIO or (
                now >= attempt.end + RESULT_WAIT_S
            ):
                self._attempt = None  # the failed attempt's backoff stands
            return
        grew = self._estimate >= attempt.start_estimate * SUCCESS_RATIO
        further = attempt.start_estimate >= self.low_bps or (
            self._estimate >= attempt.top_target * FURTHER_RATIO
        )
        if grew and further:
            self._attempt = None  # it got through: look further right away
            self._backoff = self.interval_s
            self._next_attempt = now
        elif now < attempt.end + RESULT_WAIT_S:
            return
        elif grew:  # it found the link, or near it: probing again at once would overflow it
            self._attempt = None
            self._backoff = self.interval_s
            self._next_attempt = now + self.interval_s
        else:
            self._attempt = None
            self._next_attempt = now + self._backoff
            self._backoff = min(self._backoff * 2, self.max_interval_s)

    def _watch_drops(self, now: float) -> None:
        high = self._high
        if high is None or self._estimate >= high[1] or now - high[0] > HIGH_WINDOW_S:
            self._high = (now, self._estimate)
            return
        if self._estimate < high[1] * DROP_RATIO:
            self._calm_from = now + CALM_S
            self._planned.clear()
            self._high = (now, self._estimate)
            self._after_own_overuse(high[1], now)

    def _after_own_overuse(self, before: int, now: float) -> None:
        """A drop right after an attempt while app-limited: plan the re-probe."""
        attempt = self._attempt
        if attempt is not None and attempt.after_drop:
            return  # the re-probe's own overuse: nothing more to try
        if self._last_was_recheck:
            return  # a re-check found a narrower link: that drop is its answer
        if not (
            now - self._last_end <= RESULT_WAIT_S
            and self._sending_at_attempt < APP_LIMITED_FRACTION * before
            and now - self._last_drop_probe >= DROP_PROBE_INTERVAL_S
        ):
            return
        if attempt is not None:  # the attempt failed: back off as usual
            self._attempt = None
            self._next_attempt = now + self._backoff
            self._backoff = min(self._backoff * 2, self.max_interval_s)
        self._drop_probe = (now + DRAIN_S, int(before * DROP_PROBE_FRACTION))
