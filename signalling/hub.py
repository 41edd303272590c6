"""Connections and delivery: one writer queue per socket, each message encoded once.

Fan-out never awaits a slow client: messages are queued per connection and a
writer task drains each queue.  A client that stops reading fills its queue
(`queue_limit` frames or `queue_bytes` bytes, whichever comes first) and is
disconnected with 1013 (it may resume), instead of delaying everyone else:
what it had queued is dropped at once, the close frame follows what is
already on its way, and if the client still has not read that after
`CLOSE_GRACE_S` its TCP connection is aborted (a client that never reads
would otherwise hold the socket, and what is buffered for it, for good).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from aiohttp import WSCloseCode, web

from common.codec import Codec

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN = 1013
CLOSE_GRACE_S = 5.0


class Connection:
    """One WebSocket: its codec, its outbound queue and, once known, its participant."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        codec: Codec,
        queue_limit: int,
        queue_bytes: int,
        transport: asyncio.Transport | None = None,
    ) -> None:
        self.ws = ws
        self.codec = codec
        self.participant_id: str | None = None
        self.room_id: str | None = None
        self._queue: collections.deque[str | bytes | None] = collections.deque()
        self._limit = queue_limit
        self._max_bytes = queue_bytes
        self._queued_bytes = 0  # frames in the queue (characters of a JSON frame)
        self._flight_bytes = 0  # the frame being written
        self._transport = transport
        self._wake = asyncio.Event()
        self._close_code: int | None = None
        self._close_reason = b""
        self.sent = 0
        self._writer = asyncio.create_task(self._write_loop(), name="ws-writer")

    @property
    def closing(self) -> bool:
        return self._close_code is not None

    def send(self, message: dict[str, Any]) -> None:
        self.send_frame(self.codec.encode(message))

    @property
    def queued_bytes(self) -> int:
        """What this socket holds in memory, not yet handed to the kernel."""
        return self._queued_bytes + self._flight_bytes

    def send_frame(self, frame: str | bytes) -> None:
        if self._close_code is not None:
            return
        held = self.queued_bytes
        if len(self._queue) >= self._limit or (held and held + len(frame) > self._max_bytes):
            self._overflow()
            return
        self._queue.append(frame)
        self._queued_bytes += len(frame)
        self._wake.set()

    def _overflow(self) -> None:
        """The client does not read: drop its queue, close with 1013, abort if it still won't."""
        log.warning(
            "closing a connection that does not read its messages (%d frames, %d bytes queued)",
            len(self._queue),
            self.queued_bytes,
        )
        self._queue.clear()
        self._queued_bytes = 0
        self.close(CLOSE_TRY_AGAIN)
        asyncio.get_running_loop().call_later(CLOSE_GRACE_S, self._give_up)

    def _give_up(self) -> None:
        if not self._writer.done() and self._transport is not None:
            log.info("aborting a connection that did not read its close frame either")
            self._transport.abort()

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Close after the frames queued so far are written (`reason`: the close frame's text)."""
        if self._close_code is None:
            self._close_code = code
            self._close_reason = reason.encode()[:120]
            self._queue.append(None)
            self._wake.set()

    async def closed(self) -> None:
        await asyncio.shield(self._writer)

    async def abort(self) -> None:
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer

    async def _write_loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    frame = self._queue.popleft()
                    if frame is None:
                        await self.ws.close(
                            code=self._close_code or CLOSE_NORMAL, message=self._close_reason
                        )
                        return
                    self._queued_bytes -= len(frame)
                    self._flight_bytes = len(frame)
                    await self._write(frame)
                    self._flight_bytes = 0
        except (ConnectionError, RuntimeError) as exc:
            log.debug("writer stopped: %s", exc)
            self._close_code = self._close_code or WSCloseCode.ABNORMAL_CLOSURE

    async def _write(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            await self.ws.send_bytes(frame)
        else:
            await self.ws.send_str(frame)
        self.sent += 1


class Hub:
    """Who is connected as which participant, and delivery to them."""

    def __init__(self) -> None:
        self._by_participant: dict[str, Connection] = {}
        self.messages_sent = 0

    def attach(self, participant_id: str, conn: Connection) -> Connection | None:
        """Bind a participant to a connection; returns the connection it replaced."""
        old = self._by_participant.get(participant_id)
        conn.participant_id = participant_id
        self._by_participant[participant_id] = conn
        return old if old is not conn else None

    def detach(self, conn: Connection) -> bool:
        """Forget a connection; False when its participant already moved to another one."""
        pid = conn.participant_id
        if pid is not None and self._by_participant.get(pid) is conn:
            del self._by_participant[pid]
            return True
        return False

    def get(self, participant_id: str) -> Connection | None:
        return self._by_participant.get(participant_id)

    def deliver(self, to: Iterable[str], message: dict[str, Any]) -> None:
        """Send one message to many participants, encoding it once per codec."""
        frames: dict[str, str | bytes] = {}
        for pid in to:
            conn = self._by_participant.get(pid)
            if conn is None:
                continue
            frame = frames.get(conn.codec.name)
            if frame is None:
                frame = frames[conn.codec.name] = conn.codec.encode(message)
            conn.send_frame(frame)
            self.messages_sent += 1

    def close(self, participant_id: str, code: int = CLOSE_NORMAL) -> None:
        conn = self._by_participant.pop(participant_id, None)
        if conn is not None:
            conn.close(code)

    def connections(self) -> list[Connection]:
        return list(self._by_participant.values())
