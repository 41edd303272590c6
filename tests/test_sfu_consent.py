"""ICE consent freshness (RFC 7675) when answers come late: a slow path is not a dead one.

Real ICE, DTLS and SRTP over loopback (tests/sfu_live.py): a publisher
reaches the SFU through a UDP relay that, once switched on, holds every
datagram for half a second each way (a round trip of 1 s: bufferbloat on a
loaded uplink, or an event loop busy with a join storm on either side).
Every consent check is answered, but after aioice's 0.5 s.  RFC 7675 5.1:
consent lasts while an answer to any request of the last 30 s arrives.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sfu.local import LocalMedia
from sfu.transport.udpmux import UdpMux
from tests.sfu_live import Pump, eventually, join, received, running_media, tracked
from tests.synthetic_peer import SyntheticPeer

# Consent checks every 0.3 s: consent expires after 6 of them, 1.8 s, not 30 s.
CONSENT = {"consent_interval_s": 0.3}
ONE_WAY_DELAY_S = 0.5


class SlowRelay(asyncio.DatagramProtocol):
    """Forwards between one client and the SFU, each datagram `delay` late once `slow`."""

    def __init__(self, sfu: tuple[str, int]) -> None:
        self.sfu = sfu
        self.slow = False
        self.client: tuple[str, int] | None = None
        self.front: asyncio.DatagramTransport | None = None  # the client's side
        self.back: asyncio.DatagramTransport | None = None  # the SFU's side
        self.forwarded = 0
        self._held: set[asyncio.TimerHandle] = set()

    async def open(self) -> int:
        """Bind both sockets; the port the client should send to."""
        loop = asyncio.get_running_loop()
        self.front, _ = await loop.create_datagram_endpoint(
            lambda: _Side(self, from_client=True), local_addr=("127.0.0.1", 0)
        )
        self.back, _ = await loop.create_datagram_endpoint(
            lambda: _Side(self, from_client=False), local_addr=("127.0.0.1", 0)
        )
        return int(self.front.get_extra_info("sockname")[1])

    def forward(self, data: bytes, addr: tuple[str, int], from_client: bool) -> None:
        if from_client:
            self.client = addr
        out = self.back if from_client else self.front
        to = self.sfu if from_client else self.client
        if out is None or to is None:
            return
        self.forwarded += 1
        if not self.slow:
            out.sendto(data, to)
            return
        handle: asyncio.TimerHandle | None = None

        def send() -> None:
            self._held.discard(handle)
            if not out.is_closing():
                out.sendto(data, to)

        handle = asyncio.get_running_loop().call_later(ONE_WAY_DELAY_S, send)
        self._held.add(handle)

    def close(self) -> None:
        for handle in self._held:
            handle.cancel()
        self._held.clear()
        for transport in (self.front, self.back):
            if transport is not None:
                transport.close()


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay: SlowRelay, *, from_client: bool) -> None:
        self.relay = relay
        self.from_client = from_client

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.relay.forward(data, (addr[0], addr[1]), self.from_client)


async def join_through(media: LocalMedia, pid: str, peer: SyntheticPeer) -> SlowRelay:
    """Join `pid` with `peer`, whose every datagram to and from the SFU goes through a relay."""
    tracked(peer)
    await media.open("r", "main", pid)
    answer = await media.offer(pid, await peer.offer())
    port = media.muxes[0].port
    relay = SlowRelay(("127.0.0.1", port))
    relay_port = await relay.open()
    await peer.connect(answer.replace(f" {port} typ host", f" {relay_port} typ host"))
    return relay


async def test_a_publisher_whose_consent_answers_come_late_keeps_its_transport() -> None:
    async with running_media(**CONSENT) as (media, events):
        alice = SyntheticPeer(audio=True, video=True)
        # Her agent checks the SFU at the same short interval: it hears only RTCP from
        # the SFU, too little to be checked on silence (sfu.transport.pathwatch).
        alice.transport._ice.consent_interval = CONSENT["consent_interval_s"]
        relay = await join_through(media, "alice", alice)
        bob = tracked(SyntheticPeer(audio_slots=1, video_slots=1))
        await media.open("r", "main", "bob")
        await bob.connect(await media.offer("bob", await bob.offer()))
        pump = Pump(alice).start()
        try:
            await eventually(lambda: received(bob) > 50, 10, "bob gets alice's media")
            transport = media.participants["alice"].transport
            assert transport is not None
            relay.slow = True
            # More than twice the consent window (1.8 s) of answers 1 s late.
            await asyncio.sleep(4.0)
            before = received(bob)
            await eventually(lambda: received(bob) > before + 50, 5, "alice's media still flows")

            assert events.closed == [], "the SFU kept alice's transport"
            assert alice.transport.connected, "alice kept hers"
            assert media.participants["alice"].transport is transport
            assert transport.counters.consent_late > 0, "the answers did come late"
            assert alice.transport.counters.consent_late > 0, "both ways"
        finally:
            await pump.stop()
            relay.close()


async def test_answers_waiting_in_the_sfus_own_socket_do_not_trigger_an_ice_restart() -> None:
    # The SFU's event loop does not get to its shared socket for 1.5 s (a join
    # storm's other work): alice answered every check in time, the answers
    # wait in the socket's queue.  That is no reason to ask her to restart ICE.
    async with running_media(**CONSENT) as (media, events):
        alice = await join(media, "alice", SyntheticPeer(audio=True, video=True))
        pump = Pump(alice).start()
        try:
            await eventually(lambda: media.stats()["rtp_in"] > 50, 10, "alice's media")
            mux = media.muxes[0]
            for _ in range(2):
                await reads_paused(mux, 1.5)
                await asyncio.sleep(0.5)
            assert events.restarts_needed == []
            assert events.closed == []
            assert alice.transport.connected
        finally:
            await pump.stop()


async def reads_paused(mux: UdpMux, seconds: float) -> None:
    """The event loop does not read `mux`'s socket for `seconds`, then catches up."""
    loop = asyncio.get_running_loop()
    sock = mux._sock
    assert sock is not None
    loop.remove_reader(sock.fileno())
    try:
        await asyncio.sleep(seconds)
    finally:
        loop.add_reader(sock.fileno(), mux._readable)
