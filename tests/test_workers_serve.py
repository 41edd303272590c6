"""A real `visitroom serve --workers 2`: a visit spread over both SFU workers through the
WebSocket protocol, worker metrics in /metrics, and a worker killed under a live call."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from tests.conftest import API_KEY, API_SECRET, Peer, host_admits_guest
from tests.servers import METRICS_HEADERS, ServerProcess
from tests.sfu_live import Pump
from tests.synthetic_peer import SyntheticPeer
from tests.waiting import eventually

pytestmark = pytest.mark.slow


class MediaClient:
    """A participant's WebSocket plus its media, offering again whenever media is closed."""

    def __init__(self, ws: Peer, **peer: Any) -> None:
        self.ws = ws
        self.peer_args = peer
        self.peer = SyntheticPeer(**peer)
        self.peers = [self.peer]
        self.reoffers = 0
        self._watcher: asyncio.Task[None] | None = None

    async def offer(self) -> None:
        answer = await self.ws.request_answer({"type": "offer", "sdp": await self.peer.offer()})
        await self.peer.connect(answer["sdp"])
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._reoffer_on_close())

    async def _reoffer_on_close(self) -> None:
        while True:
            await self.ws.next("media_closed", timeout=3600)
            self.peer.close()
            self.peer = SyntheticPeer(**self.peer_args)
            self.peers.append(self.peer)
            await self.offer()
            self.reoffers += 1

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        for peer in self.peers:
            peer.close()
            await peer.transport.wait_closed()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    env: dict[str, str | None] = {
        "VISITROOM_API_KEY": API_KEY,
        "VISITROOM_API_SECRET": API_SECRET,
        "VISITROOM_KNOCK_RATE_LIMIT": "0",
        "VISITROOM_WORKER_MAX_PARTICIPANTS": "1",
    }
    proc = ServerProcess(tmp_path / "data", env, "--workers", "2")
    await proc.start(timeout=30)
    yield proc
    proc.kill()


async def metrics(session: aiohttp.ClientSession, server: ServerProcess) -> dict[str, float]:
    async with session.get(f"{server.url}/metrics", headers=METRICS_HEADERS) as response:
        text = await response.text()
    values = {}
    for line in text.splitlines():
        if line.startswith("visitroom_media_"):
            name, _, value = line.partition(" ")
            values[name.removeprefix("visitroom_media_")] = float(value)
    return values


def worker_process(server: ServerProcess, name: str) -> psutil.Process:
    assert server.proc is not None
    for child in psutil.Process(server.proc.pid).children():
        with contextlib.suppress(psutil.Error):
            if name in child.cmdline():
                return child
    raise AssertionError(f"no {name} process")


async def test_a_visit_over_two_workers_survives_a_killed_worker(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        ws_url = f"{server.url}/v1/rooms/visit-1/ws"
        host, guest, roster = await host_admits_guest(session, ws_url)
        viewer = MediaClient(host, audio_slots=1, video_slots=1)
        sender = MediaClient(guest, audio=True, video=True)
        pumps: list[Pump] = []
        try:
            await viewer.offer()
            await sender.offer()
            pumps.append(Pump(sender.peer).start())
            await eventually(lambda: viewer.peer.transport.received > 60, 10, "host gets media")
            values = await metrics(session, server)
            assert values["workers_up"] == 2 and values["relay_groups"] == 1
            assert values["worker0_participants"] == values["worker1_participants"] == 1
            await eventually(lambda: _relayed(session, server), 5, "relay counters in /metrics")

            worker_process(server, "worker1").send_signal(signal.SIGKILL)  # the guest's
            killed = time.monotonic()
            await eventually(lambda: bool(guest.of_type("media_closed")), 3, "the guest is told")
            assert time.monotonic() - killed < 3.0
            assert [m["reason"] for m in guest.of_type("media_closed")] == ["worker_lost"]
            await eventually(lambda: sender.reoffers == 1, 5, "the guest offered again")
            pumps.append(Pump(sender.peer).start())
            got = viewer.peer.transport.received
            await eventually(
                lambda: viewer.peer.transport.received > got + 60,
                killed + 5 - time.monotonic(),
                "the host gets the guest's media again",
            )
            assert not host.of_type("media_closed"), "the host's worker lived on"
            assert len(host.of_type("knock")) == 1, "nobody knocked again"
            assert not host.of_type("participant_left") and not guest.of_type("left")
            assert len(guest.of_type("lobby_status")) == 1, "the guest never went back to the lobby"
            assert len(roster) == 2

            async def restarted() -> bool:
                values = await metrics(session, server)
                return values["workers_up"] == 2 and values["worker_restarts"] == 1

            await eventually(restarted, 15, "the worker restarted and reported in /metrics")
        finally:
            for pump in pumps:
                await pump.stop()
            await viewer.close()
            await sender.close()
            await host.close()
            await guest.close()


async def _relayed(session: aiohttp.ClientSession, server: ServerProcess) -> bool:
    values = await metrics(session, server)
    return values.get("relay_rtp_out", 0) > 0 and values.get("forwarded_pps", 0) > 0
