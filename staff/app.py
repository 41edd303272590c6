"""The staff part's wiring: its store, hasher, mail sender and routes on the server's app.

`setup(app, config, smtp, audit, clock, passwords)` adds the session middleware and the
/v1/staff routes to the composition root's application and runs the database,
the password-link sender and the session sweeper in its cleanup context.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from email.message import EmailMessage

from aiohttp import web

from common.audit import AuditEntry, SqliteAuditLog
from common.clock import Clock
from common.sqlite_db import SqliteDatabase
from portal.app import sender_address
from portal.config import PortalConfig
from portal.outbox import OutboxSender, SenderLock
from portal.passwords import Passwords
from portal.smtp import SmtpSettings, SmtpTransport
from portal.store import Claimed
from staff.config import StaffConfig
from staff.mail import StaffOutbox, password_email, token_maker
from staff.oidc_routes import setup as setup_oidc
from staff.oidc_staff import ServiceSignIn
from staff.routes import STAFF, add_routes, session_middleware
from staff.service import StaffService
from staff.store import StaffStore, open_database

log = logging.getLogger(__name__)

LOCK_FILE = "staff-outbox.lock"
SWEEP_S = 3600.0
STOP_GRACE_S = 10.0


def build_sender(
    config: StaffConfig, smtp: PortalConfig, database: SqliteDatabase, clock: Clock,
    audit: SqliteAuditLog,
) -> OutboxSender | None:  # fmt: skip
    """The password-link sender over the portal's SMTP settings (None: links wait)."""
    settings = SmtpSettings.from_config(smtp)
    if settings is None:
        return None
    sender = sender_address(smtp)

    def compose(claimed: Claimed, token: str) -> EmailMessage:
        return password_email(
            claimed, token, sender=sender, base_url=config.base_url, valid_for_s=config.reset_ttl_s
        )

    def delivered(claimed: Claimed, outcome: str) -> None:
        audit.record(AuditEntry("staff_link_sent", outcome, subject="staff:" + claimed.patient_id))

    return OutboxSender(
        StaffOutbox(database), SmtpTransport(settings), token_maker(config.api_keys), compose,
        lock=SenderLock(config.data_dir / LOCK_FILE), clock=clock,
        link_ttl_s=config.reset_ttl_s, retry_base_s=smtp.retry_base_s, delivered=delivered,
    )  # fmt: skip


def setup(
    app: web.Application, config: StaffConfig, smtp: PortalConfig, audit: SqliteAuditLog,
    clock: Clock, passwords: Passwords,
) -> StaffService:  # fmt: skip
    """`passwords`: the portal's hasher (started and closed by the portal, before and
    after this part), so both share its two hashing threads and their memory bound."""
    database = open_database(config.data_dir)
    domain = sender_address(smtp).rpartition("@")[2]
    service = StaffService(config, StaffStore(database), passwords, audit, clock, domain)
    app[STAFF] = service
    app.middlewares.append(session_middleware)
    add_routes(app)
    setup_oidc(app, config.oidc, config.base_url, config.api_keys, ServiceSignIn(service),
               audit, clock)  # fmt: skip

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await database.start()
        sender = build_sender(config, smtp, database, clock, audit)
        tasks = [asyncio.create_task(_sweep(service), name="staff-sessions")]
        if sender is not None:
            service.on_queued.append(sender.wake)
            sending = asyncio.create_task(sender.run(), name="staff-outbox")
        yield
        if sender is not None:
            await sender.stop(sending, STOP_GRACE_S)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await database.close()

    app.cleanup_ctx.append(lifecycle)
    return service


async def _sweep(service: StaffService) -> None:
    """Drop sessions that are over, so the table holds live ones only."""
    while True:
        try:
            await service.store.prune_sessions(service.clock(), service.config.idle_timeout_s)
        except Exception:
            log.exception("staff session sweep failed")
        await asyncio.sleep(SWEEP_S)
