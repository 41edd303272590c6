"""A receiver that sends nothing is checked at the RFC 7675 pace, on time: its consent
loop waits on the clock's slow round with a deadline (sfu.transport.consentclock), not
on ten polls a second before each check. Real ICE, DTLS and SRTP over loopback with a
synthetic client (tests/synthetic_peer.py)."""

from __future__ import annotations

import itertools

from sfu.transport.consentclock import GRID_INTERVALS
from sfu.transport.pathwatch import POLL_S
from tests.sfu_live import eventually, join, running_media
from tests.synthetic_peer import SyntheticPeer

INTERVAL = 0.5


async def test_a_quiet_receiver_is_checked_every_interval_plus_or_minus_a_fifth() -> None:
    async with running_media(consent_interval_s=INTERVAL) as (media, _events):
        await join(media, "bob", SyntheticPeer(audio_slots=1, video_slots=1))
        transport = media.participants["bob"].transport
        assert transport is not None
        ice = transport._ice
        sent: list[float] = []  # when each answered check was sent

        def note() -> bool:
            if ice.consent_fresh and (not sent or ice.consent_fresh != sent[-1]):
                sent.append(ice.consent_fresh)
            return len(sent) >= 7

        await eventually(note, 15, "seven checks answered")
        gaps = [b - a for a, b in itertools.pairwise(sent)]
        # 0.8-1.2 times the interval (RFC 7675 5.1), plus one round of the clock and
        # some slack for a loaded machine; a check a slow round (1 s) late would fail.
        late = 1.2 * INTERVAL + POLL_S + 0.15
        assert all(0.8 * INTERVAL - 0.01 <= g <= late for g in gaps), gaps
        assert media.stats()["consent_warnings"] == 0


async def test_the_servers_checks_fall_on_the_clocks_grid_so_they_go_out_together() -> None:
    # At 2.5 s the grid is 0.5 s (sfu.transport.consentclock.check_time): each check
    # goes out at the first round of the clock (every POLL_S) after a grid point.
    # Checks at random times would land in the second half of the grid step as
    # often as in the first: eight of them all in the first, 1 in 256.
    interval = 2.5
    grid = GRID_INTERVALS * interval
    async with running_media(consent_interval_s=interval) as (media, _events):
        for name in ("bob", "carol"):
            await join(media, name, SyntheticPeer(audio_slots=1, video_slots=1))
        sent: dict[str, list[float]] = {"bob": [], "carol": []}

        def note() -> bool:
            for name, times in sent.items():
                transport = media.participants[name].transport
                assert transport is not None
                fresh = transport._ice.consent_fresh
                if fresh and (not times or fresh != times[-1]):
                    times.append(fresh)
            return all(len(times) >= 5 for times in sent.values())

        await eventually(note, 30, "five checks answered at each receiver")
        # The first `consent_fresh` is the connection's, not a check's.
        checks = [t for times in sent.values() for t in times[1:]]
        assert all(t % grid < grid / 2 for t in checks), [round(t % grid, 3) for t in checks]
