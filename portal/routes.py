"""The portal's HTTP handlers (docs/portal.md, docs/portal-openapi.yaml) and its routes.

portal.app builds the sub-application that serves them and mounts it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from common.api import MAX_BODY, grant, refuse
from common.audit import AuditEntry
from common.codec import DecodeError, JsonCodec
from common.keys import AUDIT, CLIENT_ADDRESS
from common.scopes import PORTAL_STAFF
from portal.access import Staff, is_portal_token, staff_of
from portal.errors import BAD_REQUEST, PortalError
from portal.keys import PORTAL, SETTINGS
from portal.model import InvitationKind

log = logging.getLogger(__name__)

PATIENT = "/patients/{patient_id}"
NO_STORE = {"Cache-Control": "no-store"}
SESSION_COOKIE = "visitroom_patient"  # the patient's portal session (HttpOnly, SameSite=Strict)

Handler = Callable[[web.Request], Awaitable[web.Response]]


# --- HTTP plumbing ------------------------------------------------------------------------


def reply(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=NO_STORE)


def error_reply(exc: PortalError) -> web.Response:
    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if not exc.retry_after:
        return reply({"error": error}, exc.status)
    seconds = math.ceil(exc.retry_after)
    response = reply({"error": {**error, "retry_after": seconds}}, exc.status)
    response.headers["Retry-After"] = str(seconds)
    return response


def api(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except PortalError as exc:
            return error_reply(exc)

    return wrapped


async def body_of(request: web.Request) -> dict[str, Any]:
    """A strict JSON object: bounded size, no duplicate keys, no NaN."""
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise PortalError(BAD_REQUEST, "body too large", 413)
    try:
        return JsonCodec().decode(raw.decode("utf-8") if raw else "{}")
    except (DecodeError, UnicodeDecodeError):
        raise PortalError(BAD_REQUEST, "the body must be one JSON object") from None


def staff(request: web.Request) -> Staff:
    """The caller, from a portal token (401 `unauthorized` / 403 `forbidden`, audited)."""
    who = grant(request, action="portal_api")
    if not is_portal_token(who):  # a rooms token never reaches patients
        refuse(request, who, None, "portal_api", "this token lacks a portal scope", PORTAL_STAFF)
    try:
        return staff_of(who)
    except PortalError:
        request.app[AUDIT].record(AuditEntry("portal_api", "unauthorized", actor=who.identity))
        raise


def remote(request: web.Request) -> str:
    """The client's address as the server that mounts us judges it (trusted proxies)."""
    client_address = request.config_dict.get(CLIENT_ADDRESS)
    if client_address is None:  # served on its own: the peer address only
        return request.remote or "unknown"
    return client_address(request) or "unknown"


# --- handlers ---------------------------------------------------------------------------------


@api
async def create_patient(request: web.Request) -> web.Response:
    who, body = staff(request), await body_of(request)
    patient = await request.app[PORTAL].create_patient(who, body)
    return reply(patient.to_json(), 201)


@api
async def search_patients(request: web.Request) -> web.Response:
    found = await request.app[PORTAL].search(staff(request), request.query.get("q"))
    return reply({"patients": [patient.to_json() for patient in found]})


@api
async def get_patient(request: web.Request) -> web.Response:
    who = staff(request)
    return reply(await request.app[PORTAL].patient(who, request.match_info["patient_id"]))


@api
async def patch_patient(request: web.Request) -> web.Response:
    who, body = staff(request), await body_of(request)
    patient_id = request.match_info["patient_id"]
    return reply((await request.app[PORTAL].update_patient(who, patient_id, body)).to_json())


def inviting(kind: InvitationKind) -> Handler:
    @api
    async def handle(request: web.Request) -> web.Response:
        who, body = staff(request), await body_of(request)
        patient_id = request.match_info["patient_id"]
        return reply(await request.app[PORTAL].invite(who, patient_id, body, kind), 202)

    return handle


@api
async def put_opt_out(request: web.Request) -> web.Response:
    who, body = staff(request), await body_of(request)
    patient_id = request.match_info["patient_id"]
    return reply(await request.app[PORTAL].set_opt_out(who, patient_id, body))


@api
async def get_status(request: web.Request) -> web.Response:
    who = staff(request)
    return reply(await request.app[PORTAL].status(who, request.match_info["patient_id"]))


@api
async def put_account_email(request: web.Request) -> web.Response:
    who, body = staff(request), await body_of(request)
    patient_id = request.match_info["patient_id"]
    return reply(await request.app[PORTAL].change_account_email(who, patient_id, body))


@api
async def activate(request: web.Request) -> web.Response:
    body = await body_of(request)
    return reply(await request.app[PORTAL].activate(remote(request), body))


@api
async def check_activation(request: web.Request) -> web.Response:
    body = await body_of(request)
    return reply(await request.app[PORTAL].activation_check(remote(request), body))


@api
async def login(request: web.Request) -> web.Response:
    # JSON only: a form on another site cannot send it without a CORS preflight, so it
    # cannot sign a visitor's browser in to someone else's portal account (login CSRF).
    if request.content_type != "application/json":
        raise PortalError(BAD_REQUEST, "send the sign-in as application/json", 415)
    body = await body_of(request)
    result = await request.app[PORTAL].login(remote(request), body)
    response = reply(result.body)
    secure = request.secure or request.app[SETTINGS].base_url.startswith("https:")
    response.set_cookie(
        SESSION_COOKIE, result.session, path="/", httponly=True, samesite="Strict", secure=secure
    )
    return response


@api
async def get_session(request: web.Request) -> web.Response:
    session = request.cookies.get(SESSION_COOKIE)
    return reply(await request.app[PORTAL].patient_session(session))


@api
async def delete_session(request: web.Request) -> web.Response:
    await request.app[PORTAL].end_patient_session(request.cookies.get(SESSION_COOKIE))
    response = reply({"signed_out": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


@api
async def get_caller(request: web.Request) -> web.Response:
    """What the staff screens may show: any verified admin token may ask (`portal: false`
    for a rooms-only token, so the dashboard simply leaves the portal screens out)."""
    who = grant(request, action="portal_api")
    if not is_portal_token(who):
        return reply({"portal": False, "identity": who.identity, "practice": who.practice,
                      "practice_name": None, "support": False})  # fmt: skip
    return reply({"portal": True, **request.app[PORTAL].caller(staff(request))})


@api
async def post_visit_email(request: web.Request) -> web.Response:
    who, body = staff(request), await body_of(request)
    patient_id = request.match_info["patient_id"]
    return reply(await request.app[PORTAL].email_visit(who, patient_id, body), 202)


def add_routes(app: web.Application) -> None:
    """The API's routes, relative to the portal's mount point (portal.app.PREFIX)."""
    add = app.router
    add.add_post("/patients", create_patient)
    add.add_get("/patients", search_patients)
    add.add_get(PATIENT, get_patient)
    add.add_patch(PATIENT, patch_patient)
    add.add_post(PATIENT + "/invite", inviting(InvitationKind.INVITE))
    add.add_post(PATIENT + "/reinvite", inviting(InvitationKind.REINVITE))
    add.add_put(PATIENT + "/opt-out", put_opt_out)
    add.add_get(PATIENT + "/status", get_status)
    add.add_put(PATIENT + "/account-email", put_account_email)
    add.add_post(PATIENT + "/visit-email", post_visit_email)
    add.add_get("/caller", get_caller)
    add.add_post("/activate", activate)
    add.add_post("/activate/check", check_activation)
    add.add_post("/login", login)
    add.add_get("/session", get_session)
    add.add_delete("/session", delete_session)
