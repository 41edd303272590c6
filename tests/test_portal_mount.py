"""The portal is a sub-application of its own: it serves from any aiohttp app
that hands it its settings, the audit trail and the token verifier."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from common.audit import SqliteAuditLog
from common.clock import wall_clock
from common.datadir import make_private_dir
from common.tokens import TokenVerifier
from portal.app import create_portal, mount
from portal.config import PortalConfig
from tests.conftest import API_KEY, API_SECRET
from tests.portal_support import Portal


def bare_app(data_dir: Path) -> tuple[web.Application, SqliteAuditLog]:
    """A plain aiohttp app with an audit trail and the portal: no signalling server."""
    make_private_dir(data_dir)
    audit = SqliteAuditLog(data_dir / "audit.sqlite3")

    async def audit_trail(_: web.Application) -> AsyncIterator[None]:
        await audit.start()
        yield
        await audit.close()

    app = web.Application()
    app.cleanup_ctx.append(audit_trail)
    settings = PortalConfig(data_dir=data_dir, api_keys={API_KEY: API_SECRET})
    verifier = TokenVerifier(settings.api_keys)
    mount(app, create_portal(settings, audit, verifier, wall_clock))
    return app, audit


async def test_the_portal_serves_its_urls_from_a_bare_app_and_audits_into_the_given_trail(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    app, audit = bare_app(tmp_path / "data")
    client = await aiohttp_client(app)
    portal = Portal(client)
    patient_id = await portal.create(email="ann@example.com")
    assert (await portal.invite(patient_id))[0] == 202  # no SMTP: it waits in the outbox
    assert (await portal.status(patient_id))["activated_on"] == "Pending"
    landing = await client.get("/portal/activate")
    assert landing.status == 200 and "text/html" in landing.headers["Content-Type"]
    refused = await client.get("/v1/portal/patients", params={"q": "Lee"})
    assert refused.status == 401
    actions = {(row["action"], row["outcome"]) for row in await audit.query(None)}
    assert {("portal_invite", "ok"), ("api", "unauthorized")} <= actions, actions
    assert (tmp_path / "data" / "portal.sqlite3").exists()


def test_importing_the_portal_loads_nothing_of_the_signalling_server() -> None:
    code = (
        "import sys, portal.app, portal.cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('signalling', 'sfu', 'cluster', 'waiting_room')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
