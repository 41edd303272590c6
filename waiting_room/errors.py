"""Domain errors carrying the error codes of docs/protocol.md."""

from __future__ import annotations

from collections.abc import Mapping

UNAUTHORIZED = "unauthorized"
FORBIDDEN = "forbidden"
NOT_ADMITTED = "not_admitted"
BAD_REQUEST = "bad_request"
NOT_FOUND = "not_found"
ROOM_FULL = "room_full"
OUTSIDE_JOIN_WINDOW = "outside_join_window"
CONFLICT = "conflict"
RATE_LIMITED = "rate_limited"
UNAVAILABLE = "unavailable"
ENDED = "ended"
LOBBY_FULL = "lobby_full"
KNOCK_REFUSED = "knock_refused"


class RoomError(Exception):
    """An illegal command. Nothing changed; `code` goes to the client as is."""

    def __init__(
        self, code: str, message: str, details: Mapping[str, object] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: Mapping[str, object] = details or {}
