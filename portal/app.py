"""The portal as an aiohttp sub-application, and its lifecycle.

`create_portal(...)` builds it with its own settings (portal.config.PortalConfig),
the audit trail and the token verifier it is given; `mount(parent, portal)`
serves it under /v1/portal, the activation landing page at /portal/activate,
and runs its database and outbox sender. The composition root
(signalling.app.create_app) does both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zoneinfo
from collections.abc import AsyncIterator, Callable
from datetime import datetime, tzinfo
from email.message import EmailMessage

from aiohttp import web
from yarl import URL

from common.audit import AuditEntry, SqliteAuditLog
from common.clock import Clock
from common.config import ConfigError
from common.keys import AUDIT, VERIFIER
from common.sqlite_db import SqliteDatabase
from common.tokens import TokenVerifier
from portal.config import PortalConfig
from portal.errors import PortalError
from portal.events import INVITATION_SENT, PortalEvents
from portal.events import ignore as ignore_events
from portal.keys import CLOCK, DATABASE, PASSWORDS, PORTAL, SETTINGS, SUBAPP
from portal.mail import invitation_email, visit_email
from portal.migrations import portal_database
from portal.outbox import LOCK_FILE, OutboxSender, SenderLock
from portal.page import PAGE, landing_page
from portal.passwords import Passwords
from portal.routes import add_routes
from portal.service import PortalService
from portal.smtp import SmtpSettings, SmtpTransport
from portal.sqlite_outbox import SqliteOutbox
from portal.sqlite_store import SqlitePortalStore
from portal.store import INVITATION, Claimed, Visits
from portal.tokens import TokenMaker, activation_link
from portal.validate import email as valid_email

log = logging.getLogger(__name__)

PORTAL_FILE = "portal.sqlite3"
PREFIX = "/v1/portal"  # the API; the landing page a link opens is LANDING
LANDING = "/portal/activate"
SIGN_IN = "/portal/signin"  # the patient's sign-in page
SIGN_IN_PAGE = PAGE.parent / "signin.html"
STOP_GRACE_S = 10.0  # on shutdown, an SMTP attempt in flight may finish and be recorded


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
    zone = time_zone(config)

    def compose(claimed: Claimed, token: str) -> EmailMessage:
        if claimed.kind != INVITATION:
            return visit_email(
                sender=sender,
                recipient=claimed.recipient,
                first_name=claimed.first_name,
                practice=config.practices.get(claimed.practice),
                link=f"{config.base_url.rstrip('/')}/r/{claimed.room_id}",
                when=visit_time(claimed.starts_at or claimed.created_at, zone),
                message_id=claimed.smtp_message_id,
                created_at=claimed.created_at,
            )
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


def visit_time(at: float, zone: tzinfo) -> str:
    """'Monday, March 2, 2026 at 9:30 AM (America/New_York)': the practice's time zone."""
    local = datetime.fromtimestamp(at, zone)
    hour = local.strftime("%I").lstrip("0")
    return f"{local:%A, %B} {local.day}, {local.year} at {hour}:{local:%M %p} ({zone})"


def create_portal(
    config: PortalConfig,
    audit: SqliteAuditLog,
    verifier: TokenVerifier,
    clock: Clock,
    visits: Visits | None = None,
    *,
    events: PortalEvents = ignore_events,
) -> web.Application:
    """The portal as a sub-application; a bad setting raises ConfigError here, at start.
    `events` hears of invitations sent, accounts activated and opt-outs (webhooks)."""
    zone = time_zone(config)
    SmtpSettings.from_config(config)  # a bad URL stops the start, not the first send
    database = portal_database(config.data_dir / PORTAL_FILE)
    passwords = Passwords()
    domain = sender_address(config).rpartition("@")[2]
    app = web.Application()
    app[SETTINGS], app[CLOCK], app[AUDIT], app[VERIFIER] = config, clock, audit, verifier
    app[DATABASE] = database
    app[PASSWORDS] = passwords
    app[PORTAL] = PortalService(
        config, SqlitePortalStore(database), passwords, audit, clock, zone, domain, visits
    )
    app[PORTAL].events = events
    add_routes(app)
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
    parent.router.add_get(SIGN_IN, landing_page(SIGN_IN_PAGE))

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        async with _running(portal):
            yield

    parent.cleanup_ctx.append(lifecycle)


@contextlib.asynccontextmanager
async def _running(app: web.Application) -> AsyncIterator[None]:
    database, passwords = app[DATABASE], app[PASSWORDS]
    await database.start()
    await passwords.start()
    audit = app[AUDIT]

    def on_sent(claimed: Claimed, outcome: str) -> None:
        action = "portal_invite_sent" if claimed.kind == INVITATION else "portal_visit_email_sent"
        audit.record(AuditEntry(action, outcome, subject=claimed.patient_id))
        if outcome == "sent" and claimed.kind == INVITATION:
            app[PORTAL].events(INVITATION_SENT, claimed.patient_id)

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
