"""A subscriber's switch key frames paced to its estimate (the I/O shell of sfu.policy.pacing).

One `PacedOutput` per subscriber transport (`Participant.pacer`), made by
`Participant._bind_outputs`.  It is an `RtpOutput` in front of the
transport, and it is in a consumer's path only while it is *engaged*: a video
slot that switches layers or sources (`Consumer.forward` promoting its
pending layer at the key frame) calls `engage`, which points the consumer's
`output` here while the subscriber has an estimate.  From then on that
slot's copies (the key frame, the frames after it, resends) go through the
`Pacer`: at once while the bucket pays for them, else into its FIFO, which a
timer drains every few ms (`Pacer.next_at`).  When the FIFO is empty and the
bucket has refilled the slot's `output` is the transport again.

The ordinary path does not change: an engaged consumer's `output` has no
compiled route (`fast` is None), so the compiled fan-out hands its copies to
`Consumer.forward` for as long as it is engaged, and every other consumer
(audio, slots not switching) is served as before, never held behind the
burst.  Packets waiting here get their transport-wide sequence number when
they leave, so the estimator sees when they really went.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from sfu.policy.pacing import Pacer

if TYPE_CHECKING:
    from sfu.routing.consumer import Consumer, RtpOutput

__all__ = ["PacedOutput"]

MIN_TIMER_S = 0.002  # the drain's shortest wait: the loop's timers are not finer


class PacedOutput:
    """The pacing in front of one subscriber transport (module doc)."""

    fast = None  # never a compiled route: an engaged consumer's copies come through Python

    def __init__(
        self,
        inner: RtpOutput,
        rate_bps: Callable[[], float | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self._rate_bps = rate_bps
        self._clock = clock
        self._pacer: Pacer[tuple[float, Callable[[], None]]] | None = None
        self._engaged: list[Consumer] = []
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.engagements = 0  # bursts paced (switches with an estimate)
        self.held = 0  # packets that waited
        self.held_max_s = 0.0  # the longest wait

    @property
    def busy(self) -> bool:
        """Something waits here (the Prober adds no padding meanwhile)."""
        return self._pacer is not None and self._pacer.waiting > 0

    def engage(self, consumer: Consumer) -> bool:
        """Pace `consumer`'s copies from now on, until the burst has left; False
        without an estimate (nothing says what the link has room for)."""
        if self.closed:
            return False
        rate = self._rate_bps()
        if not rate:
            return False
        now = self._clock()
        if self._pacer is None:
            self._pacer = Pacer(rate, now)
            self.engagements += 1
        else:
            self._pacer.set_rate(rate, now)
        if consumer not in self._engaged:
            self._engaged.append(consumer)
        consumer.output = self
        return True

    def send_rtp(self, packet: bytes, twcc_at: int = -1) -> None:
        self._offer(partial(self.inner.send_rtp, packet, twcc_at), len(packet))

    def send_rewritten(
        self,
        packet: bytes,
        *,
        ssrc: int,
        sequence: int,
        timestamp: int,
        payload_type: int,
        twcc_at: int = -1,
    ) -> None:
        send = partial(
            self.inner.send_rewritten,
            packet,
            ssrc=ssrc,
            sequence=sequence,
            timestamp=timestamp,
            payload_type=payload_type,
            twcc_at=twcc_at,
        )
        self._offer(send, len(packet))

    def close(self) -> None:
        """Drop what waits and give every engaged consumer's output back. Idempotent."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pacer is not None:
            self._pacer.drop()
        self._release()

    def _offer(self, send: Callable[[], None], size: int) -> None:
        """`send` (the copy bound to the transport) now if the pacing allows, else later."""
        pacer = self._pacer
        if pacer is None or self.closed:
            send()
            return
        now = self._clock()
        if pacer.idle(now):
            self._release()
            send()
        elif pacer.offer((now, send), size, now):
            send()
        else:
            self.held += 1
            self._schedule(now)

    def _drain(self) -> None:
        self._timer = None
        pacer = self._pacer
        if pacer is None or self.closed:
            return
        now = self._clock()
        for offered, send in pacer.due(now):
            self.held_max_s = max(self.held_max_s, now - offered)
            send()
        self._schedule(now)

    def _schedule(self, now: float) -> None:
        pacer = self._pacer
        if self._timer is not None or pacer is None:
            return
        at = pacer.next_at(now)
        if at is None:
            return  # the FIFO is empty: the next copy (or `idle`) decides
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(at - now, MIN_TIMER_S), self._drain)

    def _release(self) -> None:
        """Every engaged consumer writes to the transport again (unless rebound meanwhile)."""
        for consumer in self._engaged:
            if consumer.output is self:
                consumer.output = self.inner
        self._engaged.clear()
        self._pacer = None
