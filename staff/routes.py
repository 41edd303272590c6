"""Staff sign-in over HTTP: sessions in a cookie, CSRF on every change (docs/operations.md).

Routes (JSON; errors as {"error": {"code", "message"}}):

- POST /v1/staff/sign-in {email, password, code?}: the cookie and the CSRF token;
  401 `totp_required` when a code is needed, 429 `throttled` with Retry-After;
- GET /v1/staff/session: who is signed in and the CSRF token (`user` null when nobody);
- POST /v1/staff/sign-out;
- POST /v1/staff/totp/setup, /totp/confirm {code} (409 `totp_enabled` while a second
  factor is on: it is turned off first), /totp/disable {code} (429 `throttled`);
- GET, POST /v1/staff/users; PATCH /v1/staff/users/{user_id} {role?, disabled?}
  (practice admins, their own practice; at least one field, no others);
- POST /v1/staff/password-reset {email} (always 202), /password-reset/complete
  {token, password}.

The middleware resolves the session cookie of every /v1/ request and leaves a
common.session.SignedIn on it, so the rooms and portal APIs take a session
wherever they take a token (common.api.grant).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from common.api import BAD_REQUEST, FORBIDDEN, NO_STORE, api_error, json_body, session_grant
from common.audit import AuditEntry
from common.keys import CLIENT_ADDRESS
from common.session import SIGNED_IN, SignedIn, signed_in
from staff.roles import Role, User, grant_for
from staff.service import Refused, StaffService
from staff.sessions import Session, cookie_attributes, cookie_name
from staff.store import StaffError

STAFF = web.AppKey("staff", StaffService)
CURRENT = web.RequestKey("visitroom_staff_current", tuple)  # (Session, User)
# Set by the dashboard's periodic refresh: such a request does not count as activity.
BACKGROUND_HEADER = "X-Visitroom-Background"


def reply(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=NO_STORE)


def error(status: int, code: str, message: str) -> web.Response:
    return reply({"error": {"code": code, "message": message}}, status)


REFUSED_STATUS = {"throttled": 429, "totp_enabled": 409, "bad_code": 400}
PATCHABLE = ("role", "disabled")


def refused(exc: Refused) -> web.Response:
    """A service refusal (audited there): 401 unless its code says otherwise; Retry-After
    when throttled."""
    response = error(REFUSED_STATUS.get(exc.code, 401), exc.code, exc.message)
    if exc.retry_after_s:
        response.headers["Retry-After"] = str(math.ceil(exc.retry_after_s))
    return response


def audit(
    request: web.Request, action: str, outcome: str, actor: str | None, reason: str,
    subject: str | None = None,
) -> None:  # fmt: skip
    entry = AuditEntry(action, outcome, None, actor, subject, {"reason": reason})
    request.app[STAFF].audit.record(entry)


def text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise api_error(web.HTTPBadRequest, BAD_REQUEST, f"`{name}` must be a string")
    return value


def address(request: web.Request) -> str:
    client = request.config_dict.get(CLIENT_ADDRESS)
    return (client(request) if client else request.remote) or "unknown"


def origins(request: web.Request, service: StaffService) -> frozenset[str]:
    return frozenset({service.config.origin, f"{request.scheme}://{request.host}"})


def secure(service: StaffService) -> bool:
    return service.config.tls


# --- the session on each request ----------------------------------------------------------


@web.middleware
async def session_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    service = request.config_dict[STAFF]
    session_id = request.cookies.get(cookie_name(secure(service)))
    if session_id and request.path.startswith("/v1/") and not request.path.endswith("/ws"):
        touch = request.headers.get(BACKGROUND_HEADER) != "1"
        found = await service.resume(session_id, touch)
        if found is not None:
            session, user = found
            request[CURRENT] = (session, user)
            request[SIGNED_IN] = SignedIn(
                grant_for(user, session.expires_at), user.user_id, user.role.value,
                session.csrf_token, origins(request, service),
            )  # fmt: skip
    return await handler(request)


def current(request: web.Request, action: str) -> tuple[Session, User]:
    """The signed-in user of a staff route (401 without one); changes need the CSRF token."""
    who = signed_in(request)
    if who is None or CURRENT not in request:
        audit(request, action, "unauthorized", None, "session")
        raise api_error(web.HTTPUnauthorized, "unauthorized", "please sign in")
    session_grant(request, (), None, action)
    session, user = request[CURRENT]
    return session, user


def session_json(service: StaffService, user: User, session: Session, practice: str | None) -> Any:
    return {
        "user": user.public(),
        "practice_name": practice,
        "csrf_token": session.csrf_token,
        "scopes": sorted(grant_for(user, session.expires_at).scopes),
        "idle_timeout_s": service.config.idle_timeout_s,
        "expires_at": session.expires_at,
        "offered_host": user.offered_host,
    }


# --- sign-in and out ----------------------------------------------------------------------


def check_origin(request: web.Request, service: StaffService, action: str) -> None:
    """Sign-in and reset requests come from this server's own pages only."""
    if request.headers.get("Origin") not in origins(request, service):
        audit(request, action, FORBIDDEN, None, "origin")
        raise api_error(web.HTTPForbidden, "forbidden", "requests must come from this site")


async def sign_in(request: web.Request) -> web.Response:
    service = request.app[STAFF]
    check_origin(request, service, "staff_sign_in")
    body = await json_body(request)
    code = text(body, "code") if body.get("code") is not None else None
    try:
        started = await service.sign_in(
            text(body, "email"), text(body, "password"), code, address(request)
        )
    except Refused as exc:
        return refused(exc)
    if CURRENT in request:  # this browser's older session ends: one cookie, one session
        old, old_user = request[CURRENT]
        await service.sign_out(old, old_user)
    practice = await service.store.practice_name(started.user.practice)
    response = reply(session_json(service, started.user, started.session, practice))
    attributes = cookie_attributes(secure(service), service.config.session_lifetime_s)
    response.set_cookie(cookie_name(secure(service)), started.session_id, **attributes)  # type: ignore[arg-type]
    return response


async def session_info(request: web.Request) -> web.Response:
    """200 either way, so a page asking "am I signed in?" logs no error: `user` null if not."""
    service = request.app[STAFF]
    if CURRENT not in request:
        return reply({"user": None})
    session, user = current(request, "staff_session")
    practice = await service.store.practice_name(user.practice)
    return reply(session_json(service, user, session, practice))


async def sign_out(request: web.Request) -> web.Response:
    service = request.app[STAFF]
    session, user = current(request, "staff_sign_out")
    await service.sign_out(session, user)
    response = web.Response(status=204, headers=NO_STORE)
    response.del_cookie(cookie_name(secure(service)), path="/")
    return response


# --- second factor ------------------------------------------------------------------------


async def totp_setup(request: web.Request) -> web.Response:
    _, user = current(request, "staff_totp")
    try:
        secret, uri = await request.app[STAFF].totp_begin(user)
    except Refused as exc:
        return refused(exc)
    return reply({"secret": secret, "uri": uri})


async def totp_confirm(request: web.Request) -> web.Response:
    _, user = current(request, "staff_totp")
    code = text(await json_body(request), "code")
    try:
        await request.app[STAFF].totp_confirm(user, code)
    except Refused as exc:
        return refused(exc)
    return reply({"totp": True})


async def totp_disable(request: web.Request) -> web.Response:
    _, user = current(request, "staff_totp")
    code = text(await json_body(request), "code")
    try:
        await request.app[STAFF].totp_disable(user, code, address(request))
    except Refused as exc:
        return refused(exc)
    return reply({"totp": False})


# --- users of a practice ------------------------------------------------------------------


def admin(request: web.Request, action: str) -> User:
    _, user = current(request, action)
    if not user.manages_users:
        audit(request, action, FORBIDDEN, user.identity, "role")
        raise api_error(web.HTTPForbidden, "forbidden", "only a practice admin manages users")
    return user


async def list_users(request: web.Request) -> web.Response:
    user = admin(request, "staff_users")
    users = await request.app[STAFF].store.users(user.practice)
    return reply({"users": [u.public() for u in users]})


async def add_user(request: web.Request) -> web.Response:
    actor = admin(request, "staff_user_add")
    body = await json_body(request)
    try:
        user = await request.app[STAFF].add_user(
            actor.identity, actor.practice, body.get("email"), body.get("display_name"),
            body.get("role"),
        )  # fmt: skip
    except StaffError as exc:
        return error(400, BAD_REQUEST, str(exc))
    return reply(user.public(), 201)


async def change_user(request: web.Request) -> web.Response:
    action = "staff_user_change"
    actor = admin(request, action)
    service = request.app[STAFF]
    target = await service.store.user(request.match_info["user_id"])
    if target is None or target.practice != actor.practice:
        subject, reason = (None, "unknown") if target is None else (target.identity, "practice")
        audit(request, action, "not_found", actor.identity, reason, subject)
        return error(404, "not_found", "no such user")
    body = await json_body(request)
    disabled = body.get("disabled")
    try:
        unknown = sorted(set(body) - set(PATCHABLE))
        if unknown or (body.get("role") is None and disabled is None):
            raise StaffError("give `role` or `disabled` (and nothing else) to change a user")
        role = Role.parse(body["role"]) if body.get("role") is not None else None
        if disabled is not None and not isinstance(disabled, bool):
            raise StaffError("`disabled` must be true or false")
        changed = await service.change_user(actor, target, role, disabled)
    except (StaffError, ValueError) as exc:
        audit(request, action, BAD_REQUEST, actor.identity, "input", target.identity)
        return error(400, BAD_REQUEST, str(exc))
    return reply(changed.public())


# --- password links -----------------------------------------------------------------------


async def request_reset(request: web.Request) -> web.Response:
    service = request.app[STAFF]
    check_origin(request, service, "staff_reset_request")
    email = text(await json_body(request), "email")
    await service.request_reset(email, address(request))
    return reply({"queued": True}, 202)


async def complete_reset(request: web.Request) -> web.Response:
    service = request.app[STAFF]
    check_origin(request, service, "staff_reset")
    body = await json_body(request)
    try:
        ok = await service.complete_reset(text(body, "token"), body.get("password"))
    except StaffError as exc:
        return error(400, BAD_REQUEST, str(exc))
    if not ok:
        return error(400, "link_invalid", "this link has expired or was used already")
    return reply({"reset": True})


def add_routes(app: web.Application) -> None:
    add = app.router
    add.add_post("/v1/staff/sign-in", sign_in)
    add.add_get("/v1/staff/session", session_info)
    add.add_post("/v1/staff/sign-out", sign_out)
    add.add_post("/v1/staff/totp/setup", totp_setup)
    add.add_post("/v1/staff/totp/confirm", totp_confirm)
    add.add_post("/v1/staff/totp/disable", totp_disable)
    add.add_get("/v1/staff/users", list_users)
    add.add_post("/v1/staff/users", add_user)
    add.add_patch("/v1/staff/users/{user_id}", change_user)
    add.add_post("/v1/staff/password-reset", request_reset)
    add.add_post("/v1/staff/password-reset/complete", complete_reset)
