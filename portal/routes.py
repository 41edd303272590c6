"""The portal's HTTP routes (docs/protocol.md, Patient portal invites) and their lifecycle.

`create_portal(...)` builds the portal as an aiohttp sub-application with its
own settings (portal.config.PortalConfig); `mount(parent, portal)` adds it
under /v1/portal, the activation landing page at /portal/activate, and the
context that opens its database and runs the outbox sender. The composition
root (signalling.app.create_app) does both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import zoneinfo
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import tzinfo
from email.message import EmailMessage
from typing import Any

from aiohttp import web
from yarl import URL

from common.api import MAX_BODY, grant, refuse
from common.audit import AuditEntry, SqliteAuditLog
from common.clock import Clock
from common.codec import DecodeError, JsonCodec
from common.config import ConfigError
from common.keys import AUDIT, VERIFIER
from common.scopes import PORTAL_STAFF
from common.tokens import TokenVerifier
from portal.access import Staff, is_portal_token, staff_of
from portal.config import PortalConfig
from portal.errors import BAD_REQUEST, PortalError
from portal.mail import invitation_email
from portal.model import InvitationKind
from portal.outbox import LOCK_FILE, OutboxSender, SenderLock
from portal.page import landing_page
from portal.passwords import Passwords
from portal.service import PortalService
from portal.smtp import SmtpSettings, SmtpTransport
from portal.sqlite_db import SqliteDatabase
from portal.sqlite_outbox import SqliteOutbox
from portal.sqlite_store import SqlitePortalStore
from portal.store import Claimed
from portal.tokens import TokenMaker, activation_link
from portal.validate import email as valid_email

log = logging.getLogger(__name__)

PORTAL_FILE = "portal.sqlite3"
PREFIX = "/v1/portal"  # the API; the landing page a link opens is LANDING
LANDING = "/portal/activate"
PATIENT = "/patients/{patient_id}"
NO_STORE = {"Cache-Control": "no-store"}
STOP_GRACE_S = 10.0  # on shutdown, an SMTP attempt in flight may finish and be recorded

PORTAL = web.AppKey("portal", PortalService)
DATABASE = web.AppKey("portal_database", SqliteDatabase)
PASSWORDS = web.AppKey("portal_passwords", Passwords)
SETTINGS = web.AppKey("portal_settings", PortalConfig)
CLOCK: web.AppKey[Clock] = web.AppKey("portal_clock")
SUBAPP = web.AppKey("portal_app", web.Application)  # on the parent app: the portal

Handler = Callable[[web.Request], Awaitable[web.Response]]


def time_zone(config: PortalConfig) -> tzinfo:
    try:
        return zoneinfo.ZoneInfo(config.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown VISITROOM_PORTAL_TIMEZONE {config.timezone!r}") from None


def sender_address(config: PortalConfig) -> str:
    """VISITROOM_SMTP_FROM, or visitroom@ the public host name (localhost for an address)."""
    if config.smtp_from:
        try:
            return valid_email(config.smtp_from).address
        except PortalError:
            raise ConfigError("VISITROOM_SMTP_FROM is not a valid email address") from None
    host = URL(config.base_url).host or "localhost"
    named = any(c.isalpha() for c in host) and "." in host and ":" not in host
    return f"visitroom@{host if named else 'localhost'}"


def build_sender(
    config: PortalConfig,
    database: SqliteDatabase,
    clock: Clock,
    on_sent: Callable[[Claimed, str], None] | None = None,
) -> OutboxSender | None:
    """The outbox sender, or None when no SMTP server is configured (mail waits)."""
    settings = SmtpSettings.from_config(config)
    if settings is None:
        return None
    tokens = TokenMaker.from_api_keys(config.api_keys)
    sender = sender_address(config)

    def compose(claimed: Claimed, token: str) -> EmailMessage:
        return invitation_email(
            sender=sender,
            recipient=claimed.recipient,
            first_name=claimed.first_name,
            practice=config.practices.get(claimed.practice),
            link=activation_link(config.base_url, token),
            message_id=claimed.smtp_message_id,
            created_at=claimed.created_at,
            valid_for_s=config.invite_ttl_s,
        )

    return OutboxSender(
        SqliteOutbox(database),
        SmtpTransport(settings),
        tokens,
        compose,
        lock=SenderLock(config.data_dir / LOCK_FILE),
        clock=clock,
        link_ttl_s=config.invite_ttl_s,
        retry_base_s=config.retry_base_s,
        delivered=on_sent,
    )


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
    # The peer address only: X-Forwarded-For is whatever a client wants it to be.
    return request.remote or "unknown"


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
async def login(request: web.Request) -> web.Response:
    body = await body_of(request)
    return reply(await request.app[PORTAL].login(remote(request), body))


# --- wiring ---------------------------------------------------------------------------------


def create_portal(
    config: PortalConfig, audit: SqliteAuditLog, verifier: TokenVerifier, clock: Clock
) -> web.Application:
    """The portal as a sub-application; a bad setting raises ConfigError here, at start."""
    zone = time_zone(config)
    SmtpSettings.from_config(config)  # a bad URL stops the start, not the first send
    database = SqliteDatabase(config.data_dir / PORTAL_FILE)
    passwords = Passwords()
    domain = sender_address(config).rpartition("@")[2]
    app = web.Application()
    app[SETTINGS], app[CLOCK], app[AUDIT], app[VERIFIER] = config, clock, audit, verifier
    app[DATABASE] = database
    app[PASSWORDS] = passwords
    app[PORTAL] = PortalService(
        config, SqlitePortalStore(database), passwords, audit, clock, zone, domain
    )
    _routes(app)
    return app


def mount(parent: web.Application, portal: web.Application) -> None:
    """Serve `portal` from `parent`: the API under PREFIX, the landing page at LANDING.

    Its database and sender run in the parent's cleanup context, after the
    contexts added before (the audit trail) start and before they stop: aiohttp
    stops a sub-application's own contexts after its parent's, too late to
    record the last send.
    """
    parent[SUBAPP] = portal
    parent.add_subapp(PREFIX, portal)
    parent.router.add_get(LANDING, landing_page())

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        async with _running(portal):
            yield

    parent.cleanup_ctx.append(lifecycle)


def _routes(app: web.Application) -> None:
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
    add.add_post("/activate", activate)
    add.add_post("/login", login)


@contextlib.asynccontextmanager
async def _running(app: web.Application) -> AsyncIterator[None]:
    database, passwords = app[DATABASE], app[PASSWORDS]
    await database.start()
    await passwords.start()
    audit = app[AUDIT]

    def on_sent(claimed: Claimed, outcome: str) -> None:
        audit.record(AuditEntry("portal_invite_sent", outcome, subject=claimed.patient_id))

    sender = build_sender(app[SETTINGS], database, app[CLOCK], on_sent)
    task: asyncio.Task[None] | None = None
    if sender is not None:
        app[PORTAL].on_queued = sender.wake
        task = asyncio.create_task(sender.run(), name="portal-outbox")
    else:
        log.info("no VISITROOM_SMTP_URL: invitations wait in the outbox (visitroom portal outbox)")
    yield
    if sender is not None and task is not None:
        await sender.stop(task, STOP_GRACE_S)
    await database.close()
    passwords.close()
