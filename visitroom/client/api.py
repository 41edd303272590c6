"""An aiohttp client of the rooms REST API (docs/rooms-openapi.yaml, served at
`/v1/openapi.json`), with retries where they are safe.

Idempotent requests (GET, PUT, DELETE) are retried on a 5xx answer, a timeout or
a dropped connection, with exponential backoff and jitter; a POST only when the
connection could not be made at all (nothing was sent, so nothing was done twice).
A 4xx is never retried: it raises ApiError with the server's code and message.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
TokenSource = str | Callable[[], str]


class ApiError(Exception):
    """The server refused a request (4xx, or 5xx after the retries): its code and message."""

    def __init__(self, method: str, path: str, status: int, code: str, message: str) -> None:
        super().__init__(f"{method} {path}: {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class Unavailable(Exception):
    """The server could not be reached (or kept timing out) after every allowed attempt."""


class VisitroomClient:
    """`async with VisitroomClient(base_url, token) as api: await api.create_room(...)`.

    `token` is an admin token with `rooms:admin`, or a function returning one
    (e.g. ``lambda: minter.admin("ehr-backend")``: a fresh short-lived token
    for every request).
    """

    def __init__(
        self,
        base_url: str,
        token: TokenSource,
        *,
        retries: int = 3,
        backoff_s: float = 0.25,
        max_backoff_s: float = 5.0,
        timeout_s: float = 10.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if retries < 0 or backoff_s < 0 or max_backoff_s < backoff_s:
            raise ValueError("retries >= 0 and 0 <= backoff_s <= max_backoff_s")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.retries, self.backoff_s, self.max_backoff_s = retries, backoff_s, max_backoff_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> VisitroomClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    def _bearer(self) -> str:
        return self._token if isinstance(self._token, str) else self._token()

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Full jitter on an exponential step; a server's Retry-After (seconds) wins, capped."""
        delay = random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2**attempt))
        if retry_after is not None and retry_after.isdigit():
            delay = max(delay, float(retry_after))
        return min(delay, self.max_backoff_s)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        auth: bool = True,
    ) -> Any:
        """The JSON answer of one call, retried as the module says."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        method = method.upper()
        retryable = method in IDEMPOTENT
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            headers = {"Authorization": f"Bearer {self._bearer()}"} if auth else {}
            try:
                async with self._session.request(
                    method,
                    self.base_url + path,
                    json=json,
                    params=params,
                    headers=headers,
                    timeout=self._timeout,
                ) as response:
                    if response.status >= 500 and retryable and not last:
                        await asyncio.sleep(
                            self._delay(attempt, response.headers.get("Retry-After"))
                        )
                        continue
                    return await _answer(method, path, response)
            except aiohttp.ClientConnectorError as exc:  # not connected: nothing was sent
                if last:
                    raise Unavailable(f"{method} {path}: cannot connect: {exc}") from exc
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                if not retryable or last:
                    raise Unavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
            await asyncio.sleep(self._delay(attempt, None))
        raise AssertionError("unreachable")  # the last attempt returns or raises

    async def create_room(
        self,
        starts_at: datetime,
        ends_at: datetime,
        *,
        room_id: str | None = None,
        practice: str | None = None,
        max_participants: int | None = None,
        max_waiting: int | None = None,
        allow_reknock: bool | None = None,
    ) -> dict[str, Any]:
        """Schedule a visit (times must be timezone-aware). Not retried once sent."""
        if starts_at.tzinfo is None or ends_at.tzinfo is None:
            raise ValueError("starts_at and ends_at need a timezone (e.g. datetime.now(UTC))")
        body: dict[str, Any] = {"starts_at": starts_at.isoformat(), "ends_at": ends_at.isoformat()}
        optional = {
            "room_id": room_id,
            "practice": practice,
            "max_participants": max_participants,
            "max_waiting": max_waiting,
            "allow_reknock": allow_reknock,
        }
        body.update({name: value for name, value in optional.items() if value is not None})
        room: dict[str, Any] = await self.request("POST", "/v1/rooms", json=body)
        return room

    async def list_rooms(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> dict[str, Any]:
        params = {}
        if start is not None:
            params["from"] = start.isoformat()
        if end is not None:
            params["to"] = end.isoformat()
        listed: dict[str, Any] = await self.request("GET", "/v1/rooms", params=params)
        return listed

    async def get_room(self, room_id: str) -> dict[str, Any]:
        room: dict[str, Any] = await self.request("GET", _room(room_id))
        return room

    async def end_room(self, room_id: str) -> dict[str, Any]:
        ended: dict[str, Any] = await self.request("DELETE", _room(room_id))
        return ended

    async def room_audit(self, room_id: str, after: int = 0, limit: int = 1000) -> list[Any]:
        params = {"after": str(after), "limit": str(limit)}
        page: dict[str, Any] = await self.request("GET", _room(room_id) + "/audit", params=params)
        entries: list[Any] = page["entries"]
        return entries

    async def join_window(self, room_id: str) -> dict[str, Any]:
        window: dict[str, Any] = await self.request("GET", _room(room_id) + "/window", auth=False)
        return window

    async def host_token(self, room_id: str) -> dict[str, Any]:
        """A 10-minute host token for the caller (needs rooms:admin and rooms:host)."""
        minted: dict[str, Any] = await self.request("POST", _room(room_id) + "/host-token")
        return minted


def _room(room_id: str) -> str:
    return "/v1/rooms/" + quote(room_id, safe="")


async def _answer(method: str, path: str, response: aiohttp.ClientResponse) -> Any:
    """The JSON body of a 2xx answer; ApiError with the server's code for any other."""
    try:
        body = await response.json(content_type=None)
    except ValueError:
        body = None
    if response.status < 400:
        return body
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code, message = str(error.get("code", "error")), str(error.get("message", ""))
    else:
        code, message = "error", response.reason or "no error body"
    raise ApiError(method, path, response.status, code, message)
