"""Bandwidth probes on the SFU clock: the Prober decides, the transport pads.

A subscriber's estimate only grows about as fast as what the SFU sends it,
so when the allocation would like to send more (`Participant.desired_bps`),
its `Prober` (sfu.policy.probe) plans probe clusters and the transport
fills them with padding (`WebRtcTransport.send_padding`, on an RTX stream).

- `plan` (every `feedback.TWCC_FEEDBACK_INTERVAL`): tells each Prober the
  estimate, the desired rate (capped at the estimator's maximum), the
  media rate the transport sends now (padding and RTCP left out) and
  whether the allocation holds some slot below what it wants
  (`Participant.layers_held`: the re-check of an app-limited estimate is
  for those, and for estimates far above the media), and whether every slot
  has one step only (`Participant.layers_fixed`: never re-checked).
- `pump` (every `PROBE_STEP` while some cluster is in progress): sets the
  transport's `probe_id` to the cluster in progress, so every packet sent
  meanwhile is tagged with it (media too), and sends the padding due,
  except while a switch's key frame is being paced to the estimate
  (`Participant.pacer`: the link has no room for padding on top of it).
  An attempt's clusters start when `plan` plans them (the pump runs right
  after it) and follow one another, so once the last is over nothing is
  left to pump until the next `plan`: the beat does not step while the
  Prober only awaits the attempt's result (up to a second after it).
"""

from __future__ import annotations

from collections.abc import Iterable

from sfu.routing.participant import Participant

__all__ = ["PROBE_STEP", "Probing"]

PROBE_STEP = 0.005


class Probing:
    """The probes of every subscriber of one `LocalMedia` (see module doc)."""

    def __init__(self) -> None:
        self._sent: dict[str, tuple[float, int]] = {}  # id -> (when, media bytes sent)

    def plan(self, participants: Iterable[Participant], now: float) -> None:
        seen = set()
        for p in participants:
            prober = p.prober  # most subscribers without one: its plain attribute first
            if prober is None:
                continue
            transport, estimator = p.transport, p.estimator
            if transport is None or estimator is None:
                continue
            seen.add(p.id)
            media = transport.counters.bytes_out - transport.padding_bytes - transport.rtcp_bytes
            then, before = self._sent.get(p.id, (now, media))
            self._sent[p.id] = (now, media)
            sending = int((media - before) * 8 / (now - then)) if now > then else 0
            prober.want(
                estimate_bps=estimator.estimate_bps,
                desired_bps=min(p.desired_bps, p.max_bps),
                sending_bps=sending,
                now=now,
                held=p.layers_held,
                fixed=p.layers_fixed,
            )
            p.estimate_fresh = prober.fresh(now)
        for gone in [pid for pid in self._sent if pid not in seen]:
            del self._sent[gone]

    def pump(self, participants: Iterable[Participant], now: float) -> bool:
        """Pad the clusters in progress; True while some cluster is (module doc)."""
        busy = False
        for p in participants:
            prober = p.prober
            if prober is None:
                continue
            transport = p.transport
            if transport is None:
                continue
            cluster = prober.next_cluster(now)
            transport.probe_id = -1 if cluster is None else cluster.id
            if cluster is not None:
                due = prober.padding_due(now)
                if due > 0 and transport.connected and not (p.pacer is not None and p.pacer.busy):
                    transport.send_padding(due, cluster.id)
            busy = busy or cluster is not None
        return busy
