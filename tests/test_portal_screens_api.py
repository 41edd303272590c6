"""What the staff screens and the patient pages need from the portal: who the caller is,
visit-link emails through the outbox, the activation page's check, patient sessions, and
the schema migration that made room for them."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from common.keys import AUDIT
from portal.keys import DATABASE, SUBAPP
from portal.migrations import V1, migrate
from portal.sqlite_outbox import SqliteOutbox
from tests.conftest import token
from tests.portal_support import (  # noqa: F401  (the *_fixture names are fixtures)
    BASE_URL,
    PASSWORD,
    Mailbox,
    Portal,
    eventually,
    mailbox_fixture,
    portal_app_fixture,
    portal_fixture,
    server_with_portal,
    staff_headers,
    support_headers,
)
from waiting_room.clock import FakeClock


def rooms_headers(practice: str) -> dict[str, str]:
    tok = token("*", "dr-who", "host", admin=True, practice=practice, scope="rooms:admin")
    return {"Authorization": f"Bearer {tok}"}


async def schedule(portal: Portal, room_id: str, practice: str = "p1", hours: float = 1) -> None:
    start = datetime.now(UTC) + timedelta(hours=hours)
    body = {
        "room_id": room_id,
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=30)).isoformat(),
    }
    code, answer = await portal.call("POST", "/v1/rooms", body, headers=rooms_headers(practice))
    assert code == 201, answer


async def audit_actions(app: web.Application, action: str) -> list[dict[str, Any]]:
    entries = await app[AUDIT].query(None)
    return [e for e in entries if e["action"] == action]


async def test_the_caller_endpoint_says_who_is_signed_in_and_whether_they_are_support(
    portal: Portal,
) -> None:
    code, me = await portal.call("GET", "/v1/portal/caller")
    assert code == 200
    assert me == {
        "portal": True,
        "identity": "frontdesk-1",
        "practice": "p1",
        "practice_name": "your healthcare provider",
        "support": False,
    }
    code, me = await portal.call("GET", "/v1/portal/caller", headers=support_headers())
    assert code == 200 and me["support"] is True and me["practice"] is None
    assert (await portal.call("GET", "/v1/portal/caller", headers={}))[0] == 401
    code, me = await portal.call("GET", "/v1/portal/caller", headers=rooms_headers("p1"))
    assert code == 200 and me["portal"] is False  # the dashboard leaves the screens out


async def test_a_visit_link_is_emailed_through_the_outbox_without_a_token(
    portal: Portal, mailbox: Mailbox, portal_app: web.Application
) -> None:
    patient_id = await portal.create(email="ann@example.com")
    await schedule(portal, "visit-ann")
    path = f"/v1/portal/patients/{patient_id}/visit-email"
    code, body = await portal.call("POST", path, {"room_id": "visit-ann"})
    assert code == 202 and body == {"queued": True, "room_id": "visit-ann"}
    [mail] = await mailbox.wait_for(1)
    assert mail.recipients == ["ann@example.com"]
    assert f"{BASE_URL}/r/visit-ann" in mail.text
    assert "token" not in mail.text and "#" not in mail.text
    assert "Hello Ann" in mail.text and "video visit" in str(mail.message["Subject"])
    [queued] = await audit_actions(portal_app, "portal_visit_email")
    assert queued["outcome"] == "ok" and queued["subject"] == patient_id
    assert "ann@example.com" not in json.dumps(queued)
    sent = await eventually(lambda: audit_actions(portal_app, "portal_visit_email_sent"), bool)
    assert sent[0]["outcome"] == "sent"
    # The visit email is not an invitation: the portal status is untouched.
    assert (await portal.status(patient_id))["activated_on"] is None
    [row] = await SqliteOutbox(portal_app[SUBAPP][DATABASE]).list_outbox(10)  # the CLI's view
    assert (row.recipient, row.state.value) == ("ann@example.com", "sent")


async def test_a_visit_link_needs_a_visit_of_the_patients_practice_and_a_profile_email(
    portal: Portal, mailbox: Mailbox, portal_app: web.Application
) -> None:
    with_email = await portal.create(email="ann@example.com")
    without = await portal.create(first="Bo", last="Ng")
    await schedule(portal, "visit-other", practice="p2")
    await schedule(portal, "visit-p1")
    answers = [
        await portal.call("POST", f"/v1/portal/patients/{pid}/visit-email", {"room_id": room})
        for pid, room in (
            (with_email, "visit-other"),
            (with_email, "no-such-visit"),
            (without, "visit-p1"),
            (with_email, "bad room!"),
        )
    ]
    codes = [(code, body["error"]["code"]) for code, body in answers]
    assert codes == [
        (404, "not_found"),
        (404, "not_found"),
        (409, "email_required"),
        (400, "bad_request"),
    ]
    other = Portal(portal.client, practice="p2")
    path = f"/v1/portal/patients/{with_email}/visit-email"
    assert (await other.call("POST", path, {"room_id": "visit-other"}))[0] == 404
    refusals = [e["outcome"] for e in await audit_actions(portal_app, "portal_visit_email")]
    assert refusals == ["not_found", "not_found", "email_required"]
    assert mailbox.mails == []


async def test_the_activation_check_names_the_practice_of_a_usable_link_only(
    tmp_path: Path, aiohttp_client: Any, mailbox: Mailbox
) -> None:
    app = server_with_portal(tmp_path, mailbox, practices={"p1": "Lakeside Family Clinic"})
    portal = Portal(await aiohttp_client(app))
    patient_id = await portal.create(email="ann@example.com")
    assert (await portal.invite(patient_id))[0] == 202
    [mail] = await mailbox.wait_for(1)
    check = "/v1/portal/activate/check"
    code, body = await portal.call("POST", check, {"token": mail.token}, headers={})
    assert (code, body) == (200, {"valid": True, "practice_name": "Lakeside Family Clinic"})
    assert (await portal.activate(mail.token))[0] == 200
    used = await portal.call("POST", check, {"token": mail.token}, headers={})
    unknown = await portal.call("POST", check, {"token": "x" * 43}, headers={})
    assert used == unknown and used[0] == 400
    assert used[1]["error"]["code"] == "bad_request"


async def test_a_login_opens_a_patient_session_that_sign_out_ends(
    portal: Portal, mailbox: Mailbox
) -> None:
    patient_id = await portal.create(email="ann@example.com")
    assert (await portal.invite(patient_id))[0] == 202
    [mail] = await mailbox.wait_for(1)
    assert (await portal.activate(mail.token))[0] == 200
    assert await portal.call("GET", "/v1/portal/session", headers={}) == (
        200,
        {"signed_in": False},
    )
    response = await portal.client.post(
        "/v1/portal/login", json={"email": "ann@example.com", "password": PASSWORD}
    )
    assert response.status == 200
    cookie = response.headers["Set-Cookie"]
    assert "visitroom_patient=" in cookie and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie and "Secure" in cookie  # the base URL is https
    session = response.cookies["visitroom_patient"].value
    assert session not in json.dumps(await response.json())
    jar = {"Cookie": f"visitroom_patient={session}"}
    code, me = await portal.call("GET", "/v1/portal/session", headers=jar)
    assert code == 200 and me["signed_in"] is True and me["first_name"] == "Ann"
    assert me["practice_name"] == "your healthcare provider"
    assert (await portal.status(patient_id))["last_login_on"] == me["last_login_on"]
    assert (await portal.call("DELETE", "/v1/portal/session", headers=jar))[0] == 200
    assert (await portal.call("GET", "/v1/portal/session", headers=jar))[1] == {"signed_in": False}
    forged = {"Cookie": "visitroom_patient=" + "A" * 43}
    assert (await portal.call("GET", "/v1/portal/session", headers=forged))[1] == {
        "signed_in": False
    }


async def test_a_sign_in_from_a_form_of_another_site_is_refused(
    portal: Portal, mailbox: Mailbox
) -> None:
    patient_id = await portal.create(email="ann@example.com")
    assert (await portal.invite(patient_id))[0] == 202
    [mail] = await mailbox.wait_for(1)
    assert (await portal.activate(mail.token, PASSWORD + "="))[0] == 200
    # enctype="text/plain" with the field name '{"email":"ann@example.com","password":"...'
    # and the value '"}' posts valid JSON; it must not sign anyone in.
    forged = '{"email":"ann@example.com","password":"' + PASSWORD + '="}'
    response = await portal.client.post(
        "/v1/portal/login", data=forged, headers={"Content-Type": "text/plain"}
    )
    assert response.status == 415 and "Set-Cookie" not in response.headers
    assert (await portal.status(patient_id))["last_login_on"] == "Never"


async def test_staff_tokens_do_not_open_patient_sessions(portal: Portal) -> None:
    assert (await portal.call("GET", "/v1/portal/session", headers=staff_headers()))[1] == {
        "signed_in": False
    }


def test_schema_v2_keeps_the_outbox_of_a_v1_database(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "portal.sqlite3", isolation_level=None)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for statement in V1:
        db.execute(statement)
    db.execute("INSERT INTO schema_version VALUES (1)")
    db.execute(
        "INSERT INTO patients VALUES ('pt_0123456789abcdef','p1','Ann','Lee','ann','lee',"
        "'1980-02-03','ann@example.com','ann@example.com',0,NULL,1,1)"
    )
    db.execute(
        "INSERT INTO invitations (invitation_id, patient_id, kind, email, email_key, state,"
        " created_at, created_by) VALUES (7,'pt_0123456789abcdef','invite','ann@example.com',"
        "'ann@example.com','open',1,'fd')"
    )
    db.execute(
        "INSERT INTO outbox (message_id, invitation_id, smtp_message_id, state,"
        " next_attempt_at, token_seed, created_at) VALUES (3, 7, '<m@x>', 'pending', 1, 's', 1)"
    )
    assert migrate(db) == 2
    row = db.execute("SELECT message_id, kind, invitation_id, token_seed FROM outbox").fetchone()
    assert row == (3, "invitation", 7, "s")
    indexes = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"outbox_due", "patient_sessions_patient"} <= indexes


async def test_a_patient_session_ends_after_30_idle_minutes_and_use_keeps_it_alive(
    tmp_path: Path, aiohttp_client: Any, mailbox: Mailbox
) -> None:
    clock = FakeClock(time.time())
    portal = Portal(await aiohttp_client(server_with_portal(tmp_path, mailbox, clock=clock)))
    patient_id = await portal.create(email="ann@example.com")
    assert (await portal.invite(patient_id))[0] == 202
    [mail] = await mailbox.wait_for(1)
    assert (await portal.activate(mail.token))[0] == 200
    response = await portal.client.post(
        "/v1/portal/login", json={"email": "ann@example.com", "password": PASSWORD}
    )
    jar = {"Cookie": f"visitroom_patient={response.cookies['visitroom_patient'].value}"}

    async def signed_in() -> bool:
        answer = (await portal.call("GET", "/v1/portal/session", headers=jar))[1]
        return bool(answer["signed_in"])

    for _ in range(3):  # each use restarts the idle timer
        clock.advance(29 * 60)
        assert await signed_in()
    clock.advance(30 * 60 + 1)
    assert not await signed_in()
