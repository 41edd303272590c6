"""The admin API's HTTP edge, shared by the REST API and the portal: bearer tokens,
scope grants, audited refusals and JSON errors (docs/protocol.md, REST).

Each app that serves admin routes holds the audit trail and the token verifier
under common.keys.AUDIT and VERIFIER (a sub-application gets them from whoever
mounts it).
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from aiohttp import web

from common.audit import AuditEntry
from common.keys import AUDIT, VERIFIER
from common.scopes import Grant, ScopeError
from common.session import csrf_problem, signed_in
from common.tokens import Claims, TokenError

MAX_BODY = 16 * 1024  # bytes of a JSON request body
UNAUTHORIZED = "unauthorized"  # the protocol's error codes (docs/protocol.md)
BAD_REQUEST = "bad_request"
FORBIDDEN = "forbidden"


def api_error(status: type[web.HTTPException], code: str, message: str) -> web.HTTPException:
    body = json.dumps({"error": {"code": code, "message": message}})
    return status(text=body, content_type="application/json")


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body (at most MAX_BODY bytes); 400/413 `bad_request` otherwise."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise api_error(web.HTTPRequestEntityTooLarge, BAD_REQUEST, "body too large")
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise api_error(web.HTTPRequestEntityTooLarge, BAD_REQUEST, "body too large")
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise api_error(web.HTTPBadRequest, BAD_REQUEST, "the body must be JSON") from None
    if not isinstance(body, dict):
        raise api_error(web.HTTPBadRequest, BAD_REQUEST, "the body must be a JSON object")
    return body


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def admin_claims(request: web.Request, room_id: str | None = None) -> Claims:
    """The verified admin token of a request, valid for `room_id` when given."""
    try:
        claims = request.app[VERIFIER].verify_admin(bearer(request))
        if room_id is not None and not claims.valid_for(room_id):
            raise TokenError("admin token for another room")
    except TokenError:
        request.app[AUDIT].record(
            AuditEntry("api", UNAUTHORIZED, room_id=room_id, actor=None, subject=None)
        )
        raise api_error(
            web.HTTPUnauthorized, UNAUTHORIZED, "a valid admin token is required"
        ) from None
    return claims


def grant(
    request: web.Request, *needed: str, room_id: str | None = None, action: str = "api"
) -> Grant:
    """The verified admin token of a request, with every scope in `needed`.

    401 for a bad token or an unreadable scope claim, 403 `forbidden` for a
    missing scope; each refusal is audited as `action`. Without an
    `Authorization` header, a staff session (cookie) stands in for the token:
    see `authority`.
    """
    if bearer(request) is None and signed_in(request) is not None:
        return session_grant(request, needed, room_id, action)
    claims = admin_claims(request, room_id)
    try:
        found = Grant.of(claims)
    except ScopeError as exc:
        request.app[AUDIT].record(
            AuditEntry(action, UNAUTHORIZED, room_id, claims.identity, None, {"reason": "claim"})
        )
        raise api_error(web.HTTPUnauthorized, UNAUTHORIZED, str(exc)) from None
    missing = found.missing(*needed)
    if missing is not None:
        refuse(request, found, room_id, action, f"this token lacks the `{missing}` scope", missing)
    return found


def refuse(
    request: web.Request,
    who: Grant,
    room_id: str | None,
    action: str,
    message: str,
    needs: str | None = None,
) -> NoReturn:
    """403 `forbidden`, audited with the caller's identity (and the scope it lacks)."""
    details = {"reason": "scope", "needs": needs} if needs else {"reason": "practice"}
    request.app[AUDIT].record(AuditEntry(action, FORBIDDEN, room_id, who.identity, None, details))
    raise api_error(web.HTTPForbidden, FORBIDDEN, message)


def authority(request: web.Request, room_id: str | None = None, action: str = "api") -> Grant:
    """Who is asking: the bearer token's grant, else the signed-in staff session's.

    The one helper routes use; a session's state-changing request must pass the
    CSRF check (403 `forbidden`, audited, otherwise). 401 when there is neither.
    """
    return grant(request, room_id=room_id, action=action)


def session_grant(
    request: web.Request, needed: tuple[str, ...], room_id: str | None, action: str
) -> Grant:
    who = signed_in(request)
    assert who is not None
    found = who.grant
    problem = csrf_problem(request, who)
    if problem is not None:
        details = {"reason": "csrf", "check": problem}
        request.app[AUDIT].record(
            AuditEntry(action, FORBIDDEN, room_id, found.identity, None, details)
        )
        raise api_error(
            web.HTTPForbidden, FORBIDDEN, "this request lacks the session's CSRF token or origin"
        )
    if room_id is not None and not found.claims.valid_for(room_id):
        refuse(request, found, room_id, action, "this session cannot use that room")
    missing = found.missing(*needed)
    if missing is not None:
        refuse(request, found, room_id, action, f"your role lacks the `{missing}` scope", missing)
    return found
