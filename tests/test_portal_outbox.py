"""The outbox: SMTP outages, no SMTP at all, TLS and credentials, refusals, and restarts."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from common.keys import AUDIT
from portal.app import PORTAL_FILE
from portal.keys import DATABASE, SUBAPP
from portal.model import Delivery
from portal.sqlite_outbox import SqliteOutbox
from portal.store import OutboxRow
from signalling.keys import CONFIG
from tests.conftest import API_KEY, API_SECRET
from tests.portal_support import (  # noqa: F401  (the *_fixture names are fixtures)
    BASE_URL,
    Mailbox,
    Portal,
    eventually,
    mailbox_fixture,
    portal_app_fixture,
    server_with_portal,
    staff_headers,
    tls_context,
)
from tests.servers import ROOT, ServerProcess


def is_date(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 10 and value[4] == "-"


async def outbox_rows(app: web.Application) -> list[OutboxRow]:
    return await SqliteOutbox(app[SUBAPP][DATABASE]).list_outbox(100)


async def wait_rows(
    app: web.Application, check: Callable[[list[OutboxRow]], bool]
) -> list[OutboxRow]:
    return await eventually(lambda: outbox_rows(app), check)


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "signalling", "portal", *args,
        cwd=ROOT, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_an_invitation_waits_out_an_smtp_outage_and_arrives_once(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    down = Mailbox()  # its port is reserved but nothing listens yet
    app = server_with_portal(tmp_path, down)
    portal = Portal(await aiohttp_client(app))
    patient_id = await portal.create(email="ann@example.com")
    assert (await portal.invite(patient_id))[0] == 202
    rows = await wait_rows(
        app, lambda rows: rows[0].attempts >= 2 and rows[0].state is Delivery.PENDING
    )
    assert rows[0].last_error == "ConnectionRefusedError 111"
    assert (await portal.status(patient_id))["activated_on"] == "Pending"
    down.start()
    try:
        [mail] = await down.wait_for(1)
        await portal.wait_status(patient_id, "activated_on", is_date)
        other = await portal.create(first="Bob", email="bob@example.com")
        assert (await portal.invite(other))[0] == 202
        mails = await down.wait_for(2)
        assert [m.recipients for m in mails] == [["ann@example.com"], ["bob@example.com"]]
        assert (await portal.activate(mail.token))[0] == 200
        rows = await wait_rows(app, lambda rows: rows[0].state is Delivery.SENT)
        assert [row.state for row in rows] == [Delivery.SENT, Delivery.SENT]
    finally:
        await portal.client.close()  # the app stops before its SMTP server does
        down.stop()


async def test_without_smtp_invitations_wait_and_the_cli_lists_then_sends_them(
    mailbox: Mailbox, aiohttp_client: Any, tmp_path: Path
) -> None:
    app = server_with_portal(tmp_path, None)
    portal = Portal(await aiohttp_client(app))
    patient_id = await portal.create(email="ann@example.com")
    assert (await portal.invite(patient_id))[0] == 202
    assert (await portal.status(patient_id))["activated_on"] == "Pending"
    data_dir = str(app[CONFIG].data_dir)
    code, out, _ = await run_cli("outbox", "--data-dir", data_dir)
    assert code == 0 and "pending" in out and "a***@e***.com" in out
    assert "ann@example.com" not in out
    code, out, _ = await run_cli("outbox", "--data-dir", data_dir, "--show-addresses", "--json")
    [row] = [json.loads(line) for line in out.splitlines()]
    assert (row["recipient"], row["state"], row["attempts"], row["sent"]) == (
        "ann@example.com", "pending", 0, "-",
    )  # fmt: skip
    env = {
        "VISITROOM_SMTP_URL": mailbox.url,
        "VISITROOM_PUBLIC_BASE_URL": BASE_URL,
        "VISITROOM_API_KEY": API_KEY,
        "VISITROOM_API_SECRET": API_SECRET,
    }
    code, out, err = await run_cli("send-pending", "--data-dir", data_dir, env=env)
    assert code == 0, err
    assert "sent 1" in out
    [mail] = await mailbox.wait_for(1)
    assert mail.link.startswith(BASE_URL)
    assert is_date((await portal.status(patient_id))["activated_on"])
    assert (await portal.activate(mail.token))[0] == 200


async def test_send_pending_leaves_the_outbox_to_a_running_server(
    mailbox: Mailbox, portal_app: web.Application, aiohttp_client: Any
) -> None:
    await aiohttp_client(portal_app)  # started: its sender holds the outbox lock
    env = {"VISITROOM_SMTP_URL": mailbox.url, "VISITROOM_API_KEY": API_KEY,
           "VISITROOM_API_SECRET": API_SECRET}  # fmt: skip
    data_dir = str(portal_app[CONFIG].data_dir)
    code, _, err = await run_cli("send-pending", "--data-dir", data_dir, env=env)
    assert code == 1 and "already" in err


async def test_a_shutdown_lets_the_attempt_in_flight_finish_and_records_it(
    mailbox: Mailbox, aiohttp_client: Any, tmp_path: Path
) -> None:
    app = server_with_portal(tmp_path, mailbox)
    portal = Portal(await aiohttp_client(app))
    patient_id = await portal.create(email="ann@example.com")
    mailbox.hold_next(accept=True)
    assert (await portal.invite(patient_id))[0] == 202
    await asyncio.wait_for(mailbox.held.wait(), 10)
    closing = asyncio.create_task(portal.client.close())  # the app shuts down mid-send
    mailbox.release()
    await asyncio.wait_for(closing, 15)
    assert len(mailbox.mails) == 1
    with sqlite3.connect(app[CONFIG].data_dir / PORTAL_FILE) as db:
        rows = db.execute("SELECT state, attempts, token_seed FROM outbox").fetchall()
    assert rows == [("sent", 1, None)]  # not left `sending`, which a restart would resend


@pytest.mark.parametrize("implicit_tls", [False, True], ids=["starttls", "smtps"])
async def test_tls_and_credentials_from_the_environment(
    aiohttp_client: Any, tmp_path: Path, implicit_tls: bool
) -> None:
    box = Mailbox(tls=tls_context(tmp_path), implicit_tls=implicit_tls, auth=True)
    box.start()
    try:
        app = server_with_portal(
            tmp_path, box, smtp_username="clinic-mailer", smtp_password="smtp-secret"
        )
        portal = Portal(await aiohttp_client(app))
        patient_id = await portal.create(email="ann@example.com")
        assert (await portal.invite(patient_id))[0] == 202
        [mail] = await box.wait_for(1)
        assert mail.recipients == ["ann@example.com"] and box.logins == ["clinic-mailer"]
        await portal.client.close()  # the app stops before its SMTP server does
    finally:
        box.stop()


async def test_a_recipient_the_server_refuses_fails_for_good_and_a_reinvite_fixes_it(
    mailbox: Mailbox, aiohttp_client: Any, tmp_path: Path
) -> None:
    app = server_with_portal(tmp_path, mailbox)
    portal = Portal(await aiohttp_client(app))
    mailbox.refuse.add("gone@example.com")
    patient_id = await portal.create(email="gone@example.com")
    assert (await portal.invite(patient_id))[0] == 202
    rows = await wait_rows(app, lambda rows: rows[0].state is Delivery.FAILED)
    assert rows[0].attempts == 1 and rows[0].last_error == "SMTPRecipientsRefused 550"
    _, profile = await portal.call("GET", f"/v1/portal/patients/{patient_id}")
    assert profile["invitation_delivery"] == "failed"
    assert (await portal.status(patient_id))["activated_on"] == "Pending"
    assert (await portal.invite(patient_id, "reinvite", email="new@example.com"))[0] == 202
    [mail] = await mailbox.wait_for(1)
    assert mail.recipients == ["new@example.com"]

    async def deliveries() -> list[tuple[str, str]]:
        entries = await app[AUDIT].query(None)
        sent = [e for e in entries if e["action"] == "portal_invite_sent"]
        return [(e["subject"], e["outcome"]) for e in sent]

    assert await eventually(deliveries, lambda found: len(found) == 2) == [
        (patient_id, "failed"),
        (patient_id, "sent"),
    ]


# --- a real server process, killed and restarted ------------------------------------------------


class Remote:
    def __init__(self, session: aiohttp.ClientSession, server: ServerProcess) -> None:
        self.session, self.server = session, server

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        url = f"{self.server.url}{path}"
        async with self.session.request(method, url, json=body, headers=staff_headers()) as r:
            return r.status, await r.json()

    async def invite_new(self, first: str, address: str) -> str:
        body = {"first_name": first, "last_name": "Lee", "date_of_birth": "1980-02-03",
                "email": address}  # fmt: skip
        code, patient = await self.call("POST", "/v1/portal/patients", body)
        assert code == 201
        patient_id: str = patient["patient_id"]
        code, _ = await self.call("POST", f"/v1/portal/patients/{patient_id}/invite", {})
        assert code == 202
        return patient_id

    async def status(self, patient_id: str) -> dict[str, Any]:
        code, status = await self.call("GET", f"/v1/portal/patients/{patient_id}/status")
        assert code == 200
        result: dict[str, Any] = status
        return result


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def server_env(mailbox: Mailbox) -> dict[str, str | None]:
    return {
        "VISITROOM_API_KEY": API_KEY,
        "VISITROOM_API_SECRET": API_SECRET,
        "VISITROOM_SMTP_URL": mailbox.url,
        "VISITROOM_PUBLIC_BASE_URL": BASE_URL,
        "VISITROOM_PORTAL_RETRY_BASE": "0.2s",
        "VISITROOM_LOG_LEVEL": "DEBUG",
        "VISITROOM_WORKERS": "0",  # no media: the SFU in-process spares worker starts
    }


@pytest.mark.slow
async def test_a_restart_mid_send_delivers_exactly_once_and_a_sent_message_is_never_resent(
    tmp_path: Path, mailbox: Mailbox, session: aiohttp.ClientSession
) -> None:
    servers = [ServerProcess(tmp_path / "data", server_env(mailbox)) for _ in range(3)]
    try:
        await servers[0].start()
        mailbox.hold_next()
        first = await Remote(session, servers[0]).invite_new("Zebulon", "zeb@example.com")
        await asyncio.wait_for(mailbox.held.wait(), 10)
        servers[0].kill()  # SIGKILL while the SMTP server holds the DATA: never accepted
        mailbox.release()
        await servers[1].start()
        remote = Remote(session, servers[1])
        [mail] = await mailbox.wait_for(1)
        [held] = mailbox.held_mails
        assert mail.message["Message-ID"] == held.message["Message-ID"]
        assert mail.message.as_bytes() == held.message.as_bytes()  # the same link and all
        await eventually(lambda: remote.status(first), lambda s: is_date(s["activated_on"]))
        assert "requeued 1 outbox message" in servers[1].output()
        servers[1].kill()  # after the 250 and the commit: nothing left to resend
        await servers[2].start()
        remote = Remote(session, servers[2])
        second = await remote.invite_new("Yolanda", "yo@example.com")
        mails = await mailbox.wait_for(2)
        assert [m.recipients for m in mails] == [["zeb@example.com"], ["yo@example.com"]]
        await eventually(lambda: remote.status(second), lambda s: is_date(s["activated_on"]))
        assert "requeued" not in servers[2].output()
        logs = "".join(server.output() for server in servers)
        for secret in ("Zebulon", "Yolanda", "zeb@", "yo@", "example.com", mail.token):
            assert secret not in logs
    finally:
        for server in servers:
            server.kill()
