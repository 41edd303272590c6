"""Signed-in staff on a request: what a cookie session gives the REST edge (common.api).

The staff package resolves the session cookie before any handler runs (its
middleware) and leaves a `SignedIn` on the request; routes never read the cookie
themselves. A state-changing request (any method but GET, HEAD, OPTIONS) made on
a session must carry the session's CSRF token in the `X-CSRF-Token` header and
an `Origin` this server serves; `check_csrf` refuses it otherwise.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from aiohttp import web

from common.scopes import Grant

CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class SignedIn:
    """A verified staff session: its authority (the same Grant a token gives) and more."""

    grant: Grant
    user_id: str
    role: str  # provider, front_desk or practice_admin
    csrf_token: str
    origins: frozenset[str]  # the origins a state-changing request may come from


SIGNED_IN = web.RequestKey("visitroom_signed_in", SignedIn)


def signed_in(request: web.Request) -> SignedIn | None:
    return request.get(SIGNED_IN)


def csrf_problem(request: web.Request, who: SignedIn) -> str | None:
    """Why a request on this session is refused as a possible forgery, or None."""
    if request.method in SAFE_METHODS:
        return None
    if request.headers.get("Origin") not in who.origins:
        return "origin"
    sent = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent.encode(), who.csrf_token.encode()):
        return "token"
    return None
