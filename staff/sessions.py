"""Sign-in sessions: opaque random ids, their lifetimes and cookies. Pure.

The cookie holds a random id (256 bits); the store keeps only its SHA-256, so
a copy of the database signs nobody in. A session ends at the first of: sign-out,
`idle_s` without a request, `lifetime_s` after sign-in, the user being disabled,
or a password reset.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

COOKIE = "vr_session"
SECURE_COOKIE = "__Host-vr_session"  # Secure, Path=/, no Domain: the browser enforces it
TOUCH_EVERY_S = 30.0  # last_seen_at is written at most this often (never past idle/4)


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def digest(session_id: str) -> str:
    """What the store keeps of a session id."""
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Session:
    digest: str
    user_id: str
    csrf_token: str
    created_at: float
    last_seen_at: float
    expires_at: float  # the absolute end


@dataclass(frozen=True)
class Lifetimes:
    idle_s: float
    lifetime_s: float

    def __post_init__(self) -> None:
        if self.idle_s <= 0 or self.lifetime_s <= 0:
            raise ValueError("session timeouts must be positive")

    def new(self, user_id: str, now: float) -> tuple[str, Session]:
        """A new session: the id for the cookie, and the record to store."""
        session_id = new_session_id()
        record = Session(
            digest(session_id), user_id, new_csrf_token(), now, now, now + self.lifetime_s
        )
        return session_id, record

    def ended(self, session: Session, now: float) -> str | None:
        """Why the session is over ("idle" or "lifetime"), or None while it lasts."""
        if now >= session.expires_at:
            return "lifetime"
        if now - session.last_seen_at >= self.idle_s:
            return "idle"
        return None

    def needs_touch(self, session: Session, now: float) -> bool:
        return now - session.last_seen_at >= min(TOUCH_EVERY_S, self.idle_s / 4)


def cookie_name(secure: bool) -> str:
    return SECURE_COOKIE if secure else COOKIE


def cookie_attributes(secure: bool, max_age_s: float | None) -> dict[str, object]:
    """HttpOnly, SameSite=Lax, Path=/; Secure when the site is served over TLS."""
    attributes: dict[str, object] = {"httponly": True, "samesite": "Lax", "path": "/"}
    if secure:
        attributes["secure"] = True
    if max_age_s is not None:
        attributes["max_age"] = int(max_age_s)
    return attributes
