"""Clients on bare sockets, for what a well-behaved client library will not do.

`RawWebSocket` does the WebSocket handshake by hand on a blocking socket
with a small receive buffer, sends frames, and then reads only when told to:
a client that stops reading.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from typing import Any

OP_TEXT, OP_CLOSE = 0x1, 0x8


class RawWebSocket:
    """A WebSocket client that reads only when asked (blocking; run it in a thread)."""

    def __init__(self, host: str, port: int, path: str, rcvbuf: int = 4096) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10.0)
        self.sock.connect((host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: visitroom.v1.json\r\n\r\n"
            ).encode()
        )
        self._buffer = b""
        head = self._read_until(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"no upgrade: {head[:80]!r}")

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self._buffer += chunk
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def send_json(self, message: dict[str, Any]) -> None:
        payload = json.dumps(message).encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        if len(payload) < 126:
            header = struct.pack("!BB", 0x80 | OP_TEXT, 0x80 | len(payload))
        else:
            header = struct.pack("!BBH", 0x80 | OP_TEXT, 0x80 | 126, len(payload))
        self.sock.sendall(header + mask + masked)

    def _exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed by the server")
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def read_frame(self) -> tuple[int, bytes]:
        """The next (opcode, payload) from the server (server frames are not masked)."""
        first, second = self._exactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._exactly(8))
        return first & 0x0F, self._exactly(length)

    def read_until_close(self) -> tuple[int, int]:
        """Read everything up to the close frame: (frames before it, its close code)."""
        frames = 0
        while True:
            opcode, payload = self.read_frame()
            if opcode == OP_CLOSE:
                return frames, struct.unpack("!H", payload[:2])[0]
            frames += 1

    def read_to_end(self) -> bytes:
        """Read until the server ends the connection (EOF or reset); what was read."""
        data = self._buffer
        try:
            while chunk := self.sock.recv(1 << 20):
                data += chunk
        except ConnectionResetError:
            pass
        return data

    def close(self) -> None:
        self.sock.close()
