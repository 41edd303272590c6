"""Staff sign-in over HTTP: sessions in a cookie, CSRF on every change (docs/operations.md).

Routes (JSON; errors as {"error": {"code", "message"}}):

- POST /v1/staff/sign-in {email, password, code?}: the cookie and the CSRF token;
  401 `totp_required` when a code is needed, 429 `throttled` with Retry-After;
- GET /v1/staff/session: who is signed in and the CSRF token (`user` null when nobody);
- POST /v1/staff/sign-out;
- POST /v1/staff/totp/setup, /totp/confirm {code}, /totp/disable {code};
- GET, POST /v1/staff/users; PATCH /v1/staff/users/{user_id} {role?, disabled?}
  (practice admins, their own practice);
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

from common.api import BAD_REQUEST, api_error, json_body, session_grant
from common.keys import CLIENT_ADDRESS
from common.session import SIGNED_IN, SignedIn, signed_in
from staff.roles import Role, User, grant_for
from staff.service import SignInError, StaffService
from staff.sessions import Session, cookie_attributes, cookie_name
from staff.store import StaffError

STAFF = web.AppKey("staff", StaffService)
CURRENT = web.RequestKey("visitroom_staff_current", tuple)  # (Session, User)
NO_STORE = {"Cache-Control": "no-store"}
# Set by the dashboard's periodic refresh: such a request does not count as activity.
BACKGROUND_HEADER = "X-Visitroom-Background"


def reply(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=NO_STORE)


def error(status: int, code: str, message: str) -> web.Response:
    return reply({"error": {"code": code, "message": message}}, status)


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


def check_origin(request: web.Request, service: StaffService) -> None:
    """Sign-in and reset requests come from this server's own pages only."""
    if request.headers.get("Origin") not in origins(request, service):
        raise api_error(web.HTTPForbidden, "forbidden", "requests must come from this site")


async def sign_in(request: web.Request) -> web.Response:
    service = request.app[STAFF]
    check_origin(request, service)
    body = await json_body(request)
    code = body.get("code")
    try:
        started = await service.sign_in(
            text(body, "email"), text(body, "password"),
            code if isinstance(code, str) else None, address(request),
        )  # fmt: skip
    except SignInError as exc:
        status = 429 if exc.code == "throttled" else 401
        response = error(status, exc.code, exc.message)
        if exc.retry_after_s:
            response.headers["Retry-After"] = str(math.ceil(exc.retry_after_s))
        return response
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
    secret, uri = await request.app[STAFF].totp_begin(user)
    return reply({"secret": secret, "uri": uri})


async def totp_confirm(request: web.Request) -> web.Response:
    _, user = current(request, "staff_totp")
    code = text(await json_body(request), "code")
    if not await request.app[STAFF].totp_confirm(user, code):
        return error(400, "bad_code", "that code is not right: check the app's clock and retry")
    return reply({"totp": True})


async def totp_disable(request: web.Request) -> web.Response:
    _, user = current(request, "staff_totp")
    code = text(await json_body(request), "code")
    if not await request.app[STAFF].totp_disable(user, code, address(request)):
        return error(400, "bad_code", "that code is not right (or was used already)")
    return reply({"totp": False})


# --- users of a practice ------------------------------------------------------------------


def admin(request: web.Request, action: str) -> User:
    _, user = current(request, action)
    if not user.manages_users:
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
    actor = admin(request, "staff_user_change")
    service = request.app[STAFF]
    target = await service.store.user(request.match_info["user_id"])
    if target is None or target.practice != actor.practice:
        return error(404, "not_found", "no such user")
    body = await json_body(request)
    disabled = body.get("disabled")
    try:
        role = Role.parse(body["role"]) if "role" in body else None
        if disabled is not None and not isinstance(disabled, bool):
            raise StaffError("`disabled` must be true or false")
        changed = await service.change_user(actor, target, role, disabled)
    except (StaffError, ValueError) as exc:
        return error(400, BAD_REQUEST, str(exc))
    return reply(changed.public())


# --- password links -----------------------------------------------------------------------


async def request_reset(request: web.Request) -> web.Response:
    service = request.app[STAFF]
    check_origin(request, service)
    email = text(await json_body(request), "email")
    await service.request_reset(email, address(request))
    return reply({"queued": True}, 202)


async def complete_reset(request: web.Request) -> web.Response:
    service = request.app[STAFF]
    check_origin(request, service)
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
