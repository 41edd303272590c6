"""Many guests without a browser, for pages that must cope with a busy room.

`Crowd` knocks plain WebSocket guests into a room of a running server, on an
event loop of its own thread, so sync Playwright tests can fill a lobby with a
dozen knocks next to the real browser pages. Each guest keeps reading its
socket until the crowd closes. Once let in, guests can `publish` synthetic
video (real ICE + DTLS-SRTP, fake VP8: tests/synthetic_peer.py) so a browser
sees more publishers than it has video slots.
"""

from __future__ import annotations

import aiohttp

from tests.conftest import Peer
from tests.loop_thread import LoopThread
from tests.sfu_live import Pump
from tests.synthetic_peer import SyntheticPeer


class Crowd:
    """Guests on plain WebSockets; `knock` waits until every one is in the lobby."""

    def __init__(self, server_url: str) -> None:
        self._ws_base = server_url.replace("http://", "ws://")
        self._loop = LoopThread()
        self._session: aiohttp.ClientSession | None = None
        self.guests: list[Peer] = []
        self._media: list[tuple[SyntheticPeer, Pump]] = []
        self._peers: dict[int, SyntheticPeer] = {}  # guest index -> its media

    def knock(self, room_id: str, names: list[str]) -> None:
        self._loop.run(self._knock_all(room_id, names))

    def close(self) -> None:
        self._loop.run(self._close())
        self._loop.stop()

    async def _knock_all(self, room_id: str, names: list[str]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        for name in names:  # one at a time: knock order is the lobby's order
            await self._knock(room_id, name)

    async def _knock(self, room_id: str, name: str) -> None:
        assert self._session is not None
        ws = await self._session.ws_connect(
            f"{self._ws_base}/v1/rooms/{room_id}/ws", protocols=("visitroom.v1.json",)
        )
        guest = Peer(ws)
        await guest.send({"type": "hello", "name": name})
        welcome = await guest.next("welcome", timeout=10)
        assert welcome["status"] == "waiting", welcome
        self.guests.append(guest)

    def publish(self, first: int, last: int) -> None:
        """Guests [first, last) (let in already) send video and audio."""
        self._loop.run(self._publish_all(self.guests[first:last]))

    async def _publish_all(self, guests: list[Peer]) -> None:
        for guest in guests:
            await guest.next("admitted", timeout=10)
            peer = SyntheticPeer(audio=True, video=True)
            self._peers[self.guests.index(guest)] = peer
            answer = await guest.request_answer({"type": "offer", "sdp": await peer.offer()})
            await peer.connect(answer["sdp"])
            self._media.append((peer, Pump(peer).start()))

    def participant_id(self, index: int) -> str:
        welcome = self.guests[index].of_type("welcome")[0]
        return str(welcome["participant_id"])

    def camera_off(self, index: int) -> None:
        """Guest `index` (a publisher) stops sending video, as a browser whose camera is off."""
        self._loop.run(self._camera_off(index))

    async def _camera_off(self, index: int) -> None:
        for peer, pump in self._media:
            if peer is self._peers[index]:
                pump.video = False

    async def _close(self) -> None:
        for peer, pump in self._media:
            await pump.stop()
            peer.close()
            await peer.transport.wait_closed()
        for guest in self.guests:
            await guest.close()
        if self._session is not None:
            await self._session.close()
