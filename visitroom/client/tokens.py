"""Mint access tokens with scopes, signed as the server verifies them (docs/tokens.md)."""

from __future__ import annotations

import time
from collections.abc import Iterable

from common.scopes import ADMIN_SCOPES, PORTAL_STAFF, ROOMS_ADMIN, ROOMS_HOST, parse, render
from common.tokens import mint

DEFAULT_TTL_S = 600.0  # ten minutes: long enough to say `hello` or make a few calls


class TokenMinter:
    """Signs tokens with one of the server's API keys (`VISITROOM_API_KEY`/`_SECRET`).

    Keep the secret on the backend: a token is minted per person and per
    visit, short-lived, and handed to a page by `postMessage`, never in a URL.
    """

    def __init__(self, api_key: str, api_secret: str) -> None:
        if not api_key or len(api_secret.encode()) < 32:
            raise ValueError("an API key id and its secret (at least 32 bytes) are needed")
        self.api_key = api_key
        self._secret = api_secret

    def __repr__(self) -> str:
        return f"TokenMinter(api_key={self.api_key!r})"  # never the secret

    def mint(
        self,
        *,
        identity: str,
        scopes: str | Iterable[str],
        room: str = "*",
        name: str | None = None,
        role: str | None = None,
        practice: str | None = None,
        ttl_s: float = DEFAULT_TTL_S,
        now: float | None = None,
    ) -> str:
        """A token for `identity` with exactly `scopes` (ValueError: a token that makes no sense).

        `role` defaults to host with `rooms:host`, else guest; a token with an
        admin scope (`rooms:admin`, `portal:staff`, `portal:support`) gets
        `admin: true`; `room="*"` (every room) only for such a token.
        """
        granted = parse(scopes if isinstance(scopes, str) else " ".join(scopes))
        role = role or ("host" if ROOMS_HOST in granted else "guest")
        if role == "host" and ROOMS_HOST not in granted:
            raise ValueError("a host token needs the rooms:host scope")
        if PORTAL_STAFF in granted and not practice:
            raise ValueError("the portal:staff scope needs a practice")
        admin = bool(granted & ADMIN_SCOPES)
        if room == "*" and not admin:
            raise ValueError("a token for every room ('*') must carry an admin scope")
        return mint(
            self.api_key,
            self._secret,
            room=room,
            identity=identity,
            name=name or identity,
            role=role,
            ttl_s=ttl_s,
            admin=admin,
            practice=practice,
            scope=render(granted),
            now=time.time() if now is None else now,
        )

    def admin(self, identity: str, practice: str | None = None, ttl_s: float = 300.0) -> str:
        """A rooms REST API token (`rooms:admin`), for one practice's rooms when given."""
        return self.mint(identity=identity, scopes=[ROOMS_ADMIN], practice=practice, ttl_s=ttl_s)
