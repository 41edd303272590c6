"""Length-prefixed msgpack RPC between the signalling process and SFU workers.

A frame is a 4-byte big-endian body length followed by a msgpack array, in
the shape of msgpack-rpc:

* request       ``[0, msgid, method, params]`` (params: a list)
* response      ``[1, msgid, error, result]`` (error: None or ``[code, message]``)
* notification  ``[2, method, params]``

`FrameDecoder` is the pure part: bytes in, messages out.  A frame whose
body is not msgpack, or not one of the three shapes, is dropped and counted
(a request whose id could still be read is answered with a ``bad_request``
error); a frame longer than `MAX_FRAME` is skipped byte for byte without
being buffered.  The stream stays in step either way, so a bad frame never
ends the connection: a peer that writes garbage lengths only starves
itself, and the other side's heartbeat notices that.

`RpcConnection` is the asyncio shell.  `request()` and `notify()` write
their frame synchronously, before the caller's first suspension, so calls
issued in some order are sent, and carried out by the peer, in that order.
Requests are handled in arrival order (each handler starts as a task, and
tasks start in creation order); a handler's exception becomes the error
of its response and never reaches the connection.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import msgpack

logger = logging.getLogger(__name__)

MAX_FRAME = 4 * 1024 * 1024
REQUEST, RESPONSE, NOTIFY = 0, 1, 2
_LENGTH = struct.Struct("!I")


class RemoteError(Exception):
    """The peer answered a request with an error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Request:
    msgid: int
    method: str
    params: list[Any]


@dataclass(frozen=True)
class Response:
    msgid: int
    error: tuple[str, str] | None
    result: Any


@dataclass(frozen=True)
class Notification:
    method: str
    params: list[Any]


@dataclass(frozen=True)
class BadFrame:
    """A frame that was dropped; `msgid` when a request's id could be read."""

    reason: str
    msgid: int | None = None


Message = Request | Response | Notification | BadFrame


def frame(body: list[Any]) -> bytes:
    """One frame: the length prefix and the msgpack body."""
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    if len(packed) > MAX_FRAME:
        raise ValueError(f"an RPC frame of {len(packed)} bytes is over {MAX_FRAME}")
    return _LENGTH.pack(len(packed)) + packed


def request_frame(msgid: int, method: str, params: list[Any]) -> bytes:
    return frame([REQUEST, msgid, method, params])


def response_frame(msgid: int, error: tuple[str, str] | None, result: Any) -> bytes:
    return frame([RESPONSE, msgid, list(error) if error is not None else None, result])


def notify_frame(method: str, params: list[Any]) -> bytes:
    return frame([NOTIFY, method, params])


class FrameDecoder:
    """Splits a byte stream into messages (see module doc)."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self.bad_frames = 0
        self._buffer = bytearray()
        self._skip = 0

    def feed(self, data: bytes) -> list[Message]:
        if self._skip:
            skipped = min(self._skip, len(data))
            self._skip -= skipped
            data = data[skipped:]
        self._buffer += data
        messages: list[Message] = []
        while len(self._buffer) >= 4 and not self._skip:
            (length,) = _LENGTH.unpack_from(self._buffer)
            if length > self.max_frame:
                messages.append(self._bad(f"frame of {length} bytes is over {self.max_frame}"))
                dropped = min(len(self._buffer) - 4, length)
                self._skip = length - dropped
                del self._buffer[: 4 + dropped]
                continue
            if len(self._buffer) < 4 + length:
                break
            body = bytes(self._buffer[4 : 4 + length])
            del self._buffer[: 4 + length]
            messages.append(self._decode(body))
        return messages

    def _bad(self, reason: str, msgid: int | None = None) -> BadFrame:
        self.bad_frames += 1
        return BadFrame(reason, msgid)

    def _decode(self, body: bytes) -> Message:
        try:
            item = msgpack.unpackb(body, raw=False)
        except Exception as exc:  # msgpack raises several types for bad input
            return self._bad(f"not msgpack: {type(exc).__name__}")
        if not isinstance(item, list) or not item or not isinstance(item[0], int):
            return self._bad("not an RPC message")
        return _shape(item) or self._bad("malformed RPC message", _msgid_of(item))


def _msgid_of(item: list[Any]) -> int | None:
    if item[0] == REQUEST and len(item) > 1 and _is_int(item[1]):
        return int(item[1])
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shape(item: list[Any]) -> Message | None:
    kind = item[0]
    if kind == REQUEST and len(item) == 4:
        _, msgid, method, params = item
        if _is_int(msgid) and isinstance(method, str) and isinstance(params, list):
            return Request(msgid, method, params)
    elif kind == RESPONSE and len(item) == 4:
        _, msgid, error, result = item
        if _is_int(msgid) and (error is None or _is_error(error)):
            return Response(msgid, (str(error[0]), str(error[1])) if error else None, result)
    elif kind == NOTIFY and len(item) == 3:
        _, method, params = item
        if isinstance(method, str) and isinstance(params, list):
            return Notification(method, params)
    return None


def _is_error(error: Any) -> bool:
    return isinstance(error, list) and len(error) == 2 and all(isinstance(e, str) for e in error)


class RpcHandler(Protocol):
    """What an `RpcConnection` calls on its owner."""

    async def handle_request(self, method: str, params: list[Any]) -> Any:
        """The result of a request; raise `RemoteError` (or any error) to refuse it."""

    def handle_notification(self, method: str, params: list[Any]) -> None: ...

    def connection_lost(self) -> None: ...


# Maps a handler's exception to the (code, message) of the error response.
ErrorMapper = Callable[[BaseException], tuple[str, str]]


def default_errors(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, RemoteError):
        return exc.code, exc.message
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None)
    if isinstance(code, str) and isinstance(message, str):
        return code, message  # MediaError and the like carry their protocol code
    return "internal", f"{type(exc).__name__}: {exc}"


class RpcConnection(asyncio.Protocol):
    """One end of an RPC stream (see module doc)."""

    def __init__(
        self, handler: RpcHandler, name: str = "rpc", errors: ErrorMapper = default_errors
    ) -> None:
        self.handler = handler
        self.name = name
        self.decoder = FrameDecoder()
        self.closed = False
        self._errors = errors
        self._transport: asyncio.Transport | None = None
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def bad_frames(self) -> int:
        return self.decoder.bad_frames

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they behave as one.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        for message in self.decoder.feed(data):
            try:
                self._dispatch(message)
            except Exception:  # a handler bug must not end the stream
                logger.exception("%s: handling %r failed", self.name, message)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self.closed:
            return
        self.closed = True
        self._fail_pending()
        self.handler.connection_lost()

    # sending (synchronous: the frame is written before the caller suspends)

    def request(self, method: str, *params: Any) -> asyncio.Future[Any]:
        """Send a request now; the future resolves with the result or raises."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.closed or self._transport is None:
            future.set_exception(ConnectionError(f"{self.name}: connection closed"))
            return future
        self._next_id = (self._next_id + 1) & 0x7FFFFFFF
        self._pending[self._next_id] = future
        self._write(request_frame(self._next_id, method, list(params)))
        return future

    def notify(self, method: str, *params: Any) -> bool:
        """Send a notification now; False if the connection is closed."""
        if self.closed or self._transport is None:
            return False
        self._write(notify_frame(method, list(params)))
        return True

    def write_raw(self, data: bytes) -> None:
        """Bytes as they are (tests: malformed frames)."""
        if self._transport is not None:
            self._transport.write(data)

    def _write(self, data: bytes) -> None:
        assert self._transport is not None
        self._transport.write(data)

    def close(self) -> None:
        """Close the stream; pending requests fail. Idempotent."""
        if self._transport is not None:
            self._transport.close()
        if not self.closed:
            self.closed = True
            self._fail_pending()

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ConnectionError(f"{self.name}: connection lost"))

    # receiving

    def _dispatch(self, message: Message) -> None:
        match message:
            case Request(msgid, method, params):
                self._start(msgid, self.handler.handle_request(method, params))
            case Response(msgid, error, result):
                self._resolve(msgid, error, result)
            case Notification(method, params):
                self.handler.handle_notification(method, params)
            case BadFrame(reason, msgid):
                logger.warning("%s: dropped a bad frame: %s", self.name, reason)
                if msgid is not None and not self.closed:
                    self._write(response_frame(msgid, ("bad_request", reason), None))

    def _resolve(self, msgid: int, error: tuple[str, str] | None, result: Any) -> None:
        future = self._pending.pop(msgid, None)
        if future is None or future.done():
            return
        if error is not None:
            future.set_exception(RemoteError(*error))
        else:
            future.set_result(result)

    def _start(self, msgid: int, call: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(self._answer(msgid, call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, msgid: int, call: Awaitable[Any]) -> None:
        error: tuple[str, str] | None = None
        result: Any = None
        try:
            result = await call
        except Exception as exc:
            error = self._errors(exc)
            if error[0] == "internal":
                logger.exception("%s: request %d failed", self.name, msgid)
        if self.closed or self._transport is None:
            return
        try:
            self._write(response_frame(msgid, error, result))
        except (ValueError, TypeError) as exc:  # a result msgpack cannot carry
            self._write(response_frame(msgid, ("internal", str(exc)), None))

    async def drain_handlers(self) -> None:
        """Wait for the request handlers in progress."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
