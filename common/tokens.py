"""Access tokens: HS256 JWTs signed with an API secret (docs/protocol.md, Tokens and scopes)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"
ROLES = ("host", "guest")
REQUIRED = ("iss", "sub", "name", "room", "role", "exp", "iat")
DEFAULT_MAX_LIFETIME_S = 24 * 3600.0  # VISITROOM_TOKEN_MAX_LIFETIME_S
DEFAULT_LEEWAY_S = 2.0
MAX_LEEWAY_S = 2.0  # clock skew forgiven on exp/nbf/iat, never more


class TokenError(Exception):
    """A token was refused. The reason is for logs only; clients get `unauthorized`."""


@dataclass(frozen=True)
class Claims:
    """The verified identity of a token's bearer."""

    identity: str
    name: str
    room: str
    role: str
    admin: bool = False
    practice: str | None = None
    scope: str | None = None
    expires_at: float = 0.0

    @property
    def is_host(self) -> bool:
        return self.role == "host"

    def valid_for(self, room_id: str) -> bool:
        return self.room == room_id or (self.room == "*" and self.admin)


class TokenVerifier:
    """Verifies tokens against the server's key/secret pairs; never trusts the header's alg.

    Several keys may be valid at once (rotation): a token names its key in the
    header's ``kid`` or, without one, in ``iss``.  Every token must carry
    ``iat`` and ``exp`` no more than `max_lifetime_s` apart.
    """

    def __init__(
        self,
        keys: Mapping[str, str],
        leeway_s: float = DEFAULT_LEEWAY_S,
        max_lifetime_s: float = DEFAULT_MAX_LIFETIME_S,
    ) -> None:
        if not keys:
            raise ValueError("at least one API key/secret pair is needed")
        if not 0 <= leeway_s <= MAX_LEEWAY_S:
            raise ValueError(f"the clock leeway must be between 0 and {MAX_LEEWAY_S} s")
        if max_lifetime_s <= 0:
            raise ValueError("the maximum token lifetime must be positive")
        self._keys = dict(keys)
        self._leeway = leeway_s
        self._max_lifetime = max_lifetime_s

    def verify(self, token: object) -> Claims:
        if not isinstance(token, str) or not token or len(token) > 8192:
            raise TokenError("token missing or not a string")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise TokenError(f"malformed token: {type(exc).__name__}") from None
        if header.get("alg") != ALGORITHM:
            raise TokenError("algorithm not allowed")
        secret = self._keys.get(key_id(header, unverified))
        if secret is None:
            raise TokenError("unknown key")
        try:
            payload = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                issuer=str(unverified.get("iss")),
                leeway=self._leeway,
                options={"require": list(REQUIRED)},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {type(exc).__name__}") from None
        check_lifetime(payload, self._max_lifetime)
        return _claims(payload)

    def verify_for_room(self, token: object, room_id: str) -> Claims:
        claims = self.verify(token)
        if not claims.valid_for(room_id):
            raise TokenError("token is for another room")
        return claims

    def verify_admin(self, token: object) -> Claims:
        claims = self.verify(token)
        if not claims.admin:
            raise TokenError("not an admin token")
        return claims


def key_id(header: Mapping[str, Any], payload: Mapping[str, Any]) -> str:
    """Which API key signed a token: the header's ``kid``, else the ``iss`` claim."""
    kid = header.get("kid")
    return kid if isinstance(kid, str) and kid else str(payload.get("iss"))


def _time_claim(payload: Mapping[str, Any], name: str) -> float:
    value = payload.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TokenError(f"claim {name} must be a number")
    return float(value)


def check_lifetime(payload: Mapping[str, Any], max_lifetime_s: float) -> None:
    """Refuse a token meant to live longer than the server allows (`exp - iat`)."""
    if _time_claim(payload, "exp") - _time_claim(payload, "iat") > max_lifetime_s:
        raise TokenError("token lifetime (exp - iat) is over the server's maximum")


def _claims(payload: Mapping[str, Any]) -> Claims:
    for name in ("sub", "name", "room", "role"):
        if not isinstance(payload.get(name), str) or not payload[name]:
            raise TokenError(f"claim {name} must be a non-empty string")
    if payload["role"] not in ROLES:
        raise TokenError("role must be host or guest")
    admin = payload.get("admin", False)
    if not isinstance(admin, bool):
        raise TokenError("claim admin must be a boolean")
    if payload["room"] == "*" and not admin:
        raise TokenError("room '*' needs admin")
    practice = payload.get("practice")
    scope = payload.get("scope")
    if practice is not None and not isinstance(practice, str):
        raise TokenError("claim practice must be a string")
    if scope is not None and not isinstance(scope, str):
        raise TokenError("claim scope must be a string")
    return Claims(
        identity=payload["sub"],
        name=payload["name"],
        room=payload["room"],
        role=payload["role"],
        admin=admin,
        practice=practice,
        scope=scope,
        expires_at=float(payload["exp"]),
    )


def mint(
    api_key: str,
    secret: str,
    *,
    room: str,
    identity: str,
    name: str,
    role: str,
    ttl_s: float = 7200.0,
    admin: bool = False,
    practice: str | None = None,
    scope: str | None = None,
    now: float | None = None,
) -> str:
    """Sign a token (for the CLI, tests and scripts; front ends mint their own)."""
    if role not in ROLES:
        raise ValueError("role must be host or guest")
    issued = time.time() if now is None else now
    payload: dict[str, Any] = {
        "iss": api_key,
        "sub": identity,
        "name": name,
        "room": room,
        "role": role,
        "iat": int(issued),
        "nbf": int(issued) - 1,
        "exp": int(issued) + int(ttl_s),
    }
    if admin:
        payload["admin"] = True
    if practice is not None:
        payload["practice"] = practice
    if scope is not None:
        payload["scope"] = scope
    return jwt.encode(payload, secret, algorithm=ALGORITHM, headers={"kid": api_key})


def parse_ttl(text: str) -> float:
    """'90s', '15m', '2h', '7d' or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise ValueError(f"TTL must look like 90s, 15m, 2h or 7d, not {text!r}") from None
