"""Wire codecs for the two WebSocket subprotocols: strict JSON and bounded msgpack."""

from __future__ import annotations

import json
import math
from typing import Any, Protocol

import msgpack

JSON_PROTOCOL = "visitroom.v1.json"
MSGPACK_PROTOCOL = "visitroom.v1.msgpack"
SUBPROTOCOLS = (JSON_PROTOCOL, MSGPACK_PROTOCOL)
MAX_DEPTH = 16
MAX_CONTAINER = 1024


class DecodeError(ValueError):
    """A frame that is not one well-formed message object."""


class Codec(Protocol):
    name: str
    binary: bool

    def decode(self, frame: str | bytes) -> dict[str, Any]: ...

    def encode(self, message: dict[str, Any]) -> str | bytes: ...


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DecodeError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise DecodeError(f"{name} is not valid JSON")


def _check_shape(value: Any, depth: int = 0) -> None:
    """Bound nesting and sizes; refuse non-finite floats."""
    if depth > MAX_DEPTH:
        raise DecodeError("message nested too deeply")
    if isinstance(value, dict):
        if len(value) > MAX_CONTAINER:
            raise DecodeError("message has too many keys")
        for key, item in value.items():
            if not isinstance(key, str):
                raise DecodeError("message keys must be strings")
            _check_shape(item, depth + 1)
    elif isinstance(value, list):
        if len(value) > MAX_CONTAINER:
            raise DecodeError("message has a list that is too long")
        for item in value:
            _check_shape(item, depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise DecodeError("numbers must be finite")


def _as_message(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DecodeError("a message must be an object")
    _check_shape(value)
    return value


class JsonCodec:
    name = JSON_PROTOCOL
    binary = False

    def decode(self, frame: str | bytes) -> dict[str, Any]:
        if isinstance(frame, bytes):
            raise DecodeError("this subprotocol takes text frames")
        try:
            value = json.loads(frame, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
        except RecursionError:
            raise DecodeError("message nested too deeply") from None
        except json.JSONDecodeError as exc:
            raise DecodeError(f"invalid JSON: {exc.msg}") from None
        return _as_message(value)

    def encode(self, message: dict[str, Any]) -> str:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class MsgpackCodec:
    name = MSGPACK_PROTOCOL
    binary = True

    def __init__(self, max_frame: int = 64 * 1024) -> None:
        self._max_frame = max_frame

    def decode(self, frame: str | bytes) -> dict[str, Any]:
        if isinstance(frame, str):
            raise DecodeError("this subprotocol takes binary frames")
        unpacker = msgpack.Unpacker(
            raw=False,
            strict_map_key=True,
            max_buffer_size=self._max_frame,
            max_str_len=self._max_frame,
            max_bin_len=self._max_frame,
            max_array_len=MAX_CONTAINER,
            max_map_len=MAX_CONTAINER,
            max_ext_len=0,
        )
        try:
            unpacker.feed(frame)
            value = unpacker.unpack()
            extra = unpacker.tell() != len(frame)
        except msgpack.OutOfData:
            raise DecodeError("truncated msgpack") from None
        except (ValueError, msgpack.UnpackException, RecursionError) as exc:
            raise DecodeError(f"invalid msgpack: {type(exc).__name__}") from None
        if extra:
            raise DecodeError("one msgpack map per frame")
        return _as_message(value)

    def encode(self, message: dict[str, Any]) -> bytes:
        return msgpack.packb(message, use_bin_type=True)  # type: ignore[no-any-return]


def codec_for(subprotocol: str | None, max_frame: int) -> Codec:
    if subprotocol == MSGPACK_PROTOCOL:
        return MsgpackCodec(max_frame)
    return JsonCodec()
