"""A storm of joins on a saturated SFU: paced, they finish and the call goes on.

Real ICE, DTLS and SRTP over loopback (tests/sfu_live.py).  The SFU is
deliberately slowed: every STUN or DTLS datagram costs its event loop
`COST_S` before it is handled (a core that has little time left for joins
once the media of those already in is forwarded).  A call (one publisher,
one subscriber) is running when `STORM` participants offer at once.

Unpaced (main at 99afb31, or `max_connecting=0`), every join starts its ICE
checks and DTLS handshake at once: they all finish together at the end, and
the call's media waits behind them in the same socket (the subscriber got
7-12% of its packets meanwhile).  Paced two at a time, the others wait for
their answer, joins finish one after another and the call keeps most of its
media (95-97%).
"""

from __future__ import annotations

import asyncio
import time

from sfu.local import LocalMedia
from sfu.transport.udpmux import UdpMux
from tests.sfu_live import Pump, eventually, join, received, running_media, tracked
from tests.synthetic_peer import SyntheticPeer

STORM = 24
COST_S = 0.02  # per STUN or DTLS datagram the SFU reads
CONNECT_S = 8.0  # a join that has not connected this long after its answer failed
# Two joins at a time: a window that cannot adapt, so that the test does not
# depend on how loaded the machine running it is (the adaptive window is
# tested in tests/test_sfu_joinpace.py).
PACED = 2


def slowed(mux: UdpMux, cost_s: float) -> None:
    """Make the datagrams of a join cost the SFU's event loop `cost_s` each: DTLS, and
    STUN requests from an address not yet selected (the consent checks of those
    already in, and the answers to the SFU's own checks, stay cheap)."""
    handle = mux.datagram

    def joining(data: bytes, addr: tuple[str, int]) -> bool:
        if 19 < data[0] < 64:
            return True
        endpoint = mux.by_addr.get(addr)
        return data[0] == 0 and (endpoint is None or endpoint.ice.selected is None)

    def datagram(data: bytes, addr: tuple[str, int]) -> None:
        if data and joining(data, addr):
            time.sleep(cost_s)  # the loop is busy: nothing else runs meanwhile
        handle(data, addr)

    mux.datagram = datagram  # type: ignore[method-assign]


async def join_timed(media: LocalMedia, pid: str, started: float) -> float:
    """Offer, wait for the answer (however long it is queued), then connect."""
    peer = tracked(SyntheticPeer(audio_slots=1, video_slots=1))
    await media.open("r", "main", pid)
    answer = await media.offer(pid, await peer.offer())
    await peer.connect(answer, timeout=CONNECT_S)
    return time.monotonic() - started


async def test_a_join_storm_on_a_saturated_sfu_completes_and_the_call_keeps_its_media() -> None:
    async with running_media(max_connecting=PACED) as (media, _events):
        publisher = await join(media, "pub", SyntheticPeer(audio=True, video=True))
        subscriber = await join(media, "sub", SyntheticPeer(audio_slots=1, video_slots=1))
        pump = Pump(publisher).start()
        await eventually(lambda: received(subscriber) > 100, what="the call's media")
        slowed(media.muxes[0], COST_S)
        # The call's rate before the storm (the slowed SFU still forwards it all).
        before, at = received(subscriber), time.monotonic()
        await asyncio.sleep(1.0)
        rate = (received(subscriber) - before) / (time.monotonic() - at)

        started = time.monotonic()
        during = received(subscriber)
        results = await asyncio.gather(
            *(join_timed(media, f"j{i}", started) for i in range(STORM)), return_exceptions=True
        )
        storm_s = time.monotonic() - started
        got = received(subscriber) - during
        await pump.stop()
        # Every slot was freed by its transport connecting, none by the timer.
        await eventually(lambda: media.joins.pace.connecting == 0, what="the slots freed")
        stats = media.joins.pace.stats

    failed = [r for r in results if isinstance(r, BaseException)]
    assert not failed, f"{len(failed)} of {STORM} joins failed: {failed[0]!r}"
    times = sorted(r for r in results if isinstance(r, float))
    # One after another: the first half is in well before the last.
    assert times[STORM // 2 - 1] < 0.75 * times[-1], times
    # The call went on meanwhile (unpaced: 7-12% of its packets; paced, 27-97%
    # depending on how loaded the machine running the test is).
    assert got >= 0.2 * rate * storm_s, (got, rate, storm_s)
    assert (stats.admitted, stats.expired) == (2 + STORM, 0)
    assert stats.queued > STORM // 2
