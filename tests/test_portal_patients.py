"""Patient records over REST: create, find, read, edit; practices walled off; bad input 400."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from common.keys import AUDIT
from tests.conftest import token
from tests.portal_support import (  # noqa: F401  (the *_fixture names are fixtures)
    Mailbox,
    Portal,
    bearer,
    mailbox_fixture,
    portal_app_fixture,
    portal_fixture,
    support_headers,
)

PATIENTS = "/v1/portal/patients"


async def test_a_created_patient_can_be_read_back(portal: Portal) -> None:
    body = {"first_name": " José ", "last_name": "O'Brien-Smith", "date_of_birth": "1975-12-31",
            "email": "Jose@Example.COM"}  # fmt: skip
    code, created = await portal.call("POST", PATIENTS, body)
    assert code == 201
    assert created["patient_id"].startswith("pt_")
    assert (created["first_name"], created["last_name"]) == ("José", "O'Brien-Smith")
    assert created["email"] == "Jose@example.com" and created["practice"] == "p1"
    code, read = await portal.call("GET", f"{PATIENTS}/{created['patient_id']}")
    assert code == 200 and read == {**created, "invitation_delivery": None}


async def test_staff_find_patients_by_the_first_letters_of_either_name_or_by_birth_date(
    portal: Portal,
) -> None:
    ann = await portal.create("Ann", "Lee", "1980-02-03")
    anton = await portal.create("Anton", "Émile", "1991-07-04")
    bob = await portal.create("Bob", "Annesley", "1980-02-03")

    async def found(q: str) -> set[str]:
        code, body = await portal.call("GET", PATIENTS, params={"q": q})
        assert code == 200, body
        return {patient["patient_id"] for patient in body["patients"]}

    assert await found("an") == {ann, anton, bob}  # Ann, Anton, and Annesley
    assert await found("ANT") == {anton}
    assert await found("lee") == {ann}
    assert await found("émi") == {anton}
    assert await found("02/03/1980") == {ann, bob}
    assert await found("2/3/1980") == {ann, bob}
    assert await found("07/04/1991") == {anton}
    assert await found("zz") == set()


@pytest.mark.parametrize("q", ["", "a", "02/30/1980", "13/01/1980", "a%", "x" * 101, "1980"])
async def test_a_search_needs_two_letters_or_a_real_date(portal: Portal, q: str) -> None:
    code, body = await portal.call("GET", PATIENTS, params={"q": q})
    assert code == 400 and body["error"]["code"] == "bad_request"


async def test_staff_never_see_or_touch_another_practices_patients(
    portal: Portal, mailbox: Mailbox
) -> None:
    patient_id = await portal.create("Ann", "Lee", email="ann@example.com")
    other = Portal(portal.client, practice="p2")
    base = f"{PATIENTS}/{patient_id}"
    attempts: list[tuple[str, str, Any]] = [
        ("GET", base, None),
        ("PATCH", base, {"email": "x@example.com"}),
        ("POST", f"{base}/invite", {}),
        ("POST", f"{base}/reinvite", {}),
        ("PUT", f"{base}/opt-out", {"opted_out": True}),
        ("GET", f"{base}/status", None),
        ("PUT", f"{base}/account-email", {"email": "x@example.com"}),
    ]
    missing = await other.call("GET", f"{PATIENTS}/pt_0000000000000000")
    assert missing[0] == 404
    for method, path, body in attempts:
        assert await other.call(method, path, body) == missing, (method, path)
    code, listed = await other.call("GET", PATIENTS, params={"q": "ann"})
    assert code == 200 and listed["patients"] == []
    code, status = await portal.call("GET", f"{base}/status")
    assert status["opted_out"] is False and status["activated_on"] is None
    _, profile = await portal.call("GET", base)
    assert profile["email"] == "ann@example.com"
    assert mailbox.mails == []


async def test_support_may_read_any_practices_patient(portal: Portal) -> None:
    patient_id = await portal.create()
    code, profile = await portal.call("GET", f"{PATIENTS}/{patient_id}", headers=support_headers())
    assert code == 200 and profile["practice"] == "p1"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": f"Bearer {token(practice='p1')}"},  # not an admin token
        bearer(identity="x", practice=""),
        bearer(identity="x", practice="p" * 65),
        bearer(identity="x", scope="billing"),
    ],
)
async def test_staff_calls_need_an_admin_token_with_a_practice(
    portal: Portal, headers: dict[str, str]
) -> None:
    body = {"first_name": "Ann", "last_name": "Lee", "date_of_birth": "1980-02-03"}
    code, answer = await portal.call("POST", PATIENTS, body, headers=headers)
    assert code == 401 and answer["error"]["code"] == "unauthorized"
    code, _ = await portal.call("GET", PATIENTS, headers=headers, params={"q": "an"})
    assert code == 401


@pytest.mark.parametrize(
    "tok",
    [
        token("*", "rooms-1", "host", admin=True),  # rooms:admin rooms:host, the operator's
        token("*", "rooms-1", "host", admin=True, practice="p1", scope="rooms:admin rooms:host"),
        token("*", "rooms-1", "host", admin=True, scope=None),  # a plain admin token, no scope
    ],
)
async def test_a_rooms_token_cannot_reach_patients_and_is_audited(
    portal: Portal, portal_app: web.Application, tok: str
) -> None:
    patient_id = await portal.create()
    headers = {"Authorization": f"Bearer {tok}"}
    body = {"first_name": "Ann", "last_name": "Lee", "date_of_birth": "1980-02-03"}
    for method, path, payload in [
        ("POST", PATIENTS, body),
        ("GET", PATIENTS + "?q=an", None),
        ("GET", f"{PATIENTS}/{patient_id}", None),
        ("GET", f"{PATIENTS}/{patient_id}/status", None),
    ]:
        code, answer = await portal.call(method, path, payload, headers=headers)
        assert (code, answer["error"]["code"]) == (403, "forbidden"), (method, path)
    entries = await portal_app[AUDIT].query(None)
    refused = [e for e in entries if e["actor"] == "rooms-1"]
    assert [(e["action"], e["outcome"], e["needs"]) for e in refused] == [
        ("portal_api", "forbidden", "portal:staff")
    ] * 4


GOOD = {"first_name": "Ann", "last_name": "Lee", "date_of_birth": "1980-02-03"}


@pytest.mark.parametrize(
    "change",
    [
        {"first_name": ""},
        {"first_name": "   "},
        {"first_name": 7},
        {"first_name": None},
        {"last_name": "Lee<script>"},
        {"last_name": "Lee\nBcc: x@example.com"},
        {"last_name": "L" * 101},
        {"last_name": "1234"},
        {"date_of_birth": "02/03/1980"},
        {"date_of_birth": "1980-02-30"},
        {"date_of_birth": "1899-12-31"},
        {"date_of_birth": "2999-01-01"},
        {"date_of_birth": None},
        {"email": "not-an-email"},
        {"email": "ann@example.com\r\nBcc: x@example.com"},
        {"email": "a" * 250 + "@example.com"},
        {"email": ["ann@example.com"]},
        {"unknown": 1},
    ],
)
async def test_bad_patient_input_is_400_and_changes_nothing(
    portal: Portal, change: dict[str, Any]
) -> None:
    code, answer = await portal.call("POST", PATIENTS, {**GOOD, **change})
    assert code == 400 and answer["error"]["code"] == "bad_request"
    patient_id = await portal.create(email="ann@example.com")
    path = f"{PATIENTS}/{patient_id}"
    _, before = await portal.call("GET", path)
    code, answer = await portal.call("PATCH", path, change)
    assert code == 400 and answer["error"]["code"] == "bad_request"
    assert (await portal.call("GET", path))[1] == before
    code, answer = await portal.call("GET", PATIENTS, params={"q": "ann"})
    assert [p["patient_id"] for p in answer["patients"]] == [patient_id]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"first_name": "Ann", "first_name": "Bob", "last_name": "Lee", '
        b'"date_of_birth": "1980-02-03"}',
        b'{"first_name": NaN}',
        b"[1, 2]",
        b"not json",
        b"\xff\xfe",
    ],
)
async def test_bodies_must_be_one_strict_json_object(portal: Portal, raw: bytes) -> None:
    response = await portal.client.post(PATIENTS, data=raw, headers=portal.headers)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "bad_request"


async def test_an_oversized_body_is_refused(portal: Portal) -> None:
    huge = {**GOOD, "email": "a@example.com", "pad": "x" * 20_000}
    response = await portal.client.post(PATIENTS, json=huge, headers=portal.headers)
    assert response.status == 413


async def test_patch_edits_the_profile_and_can_remove_the_email(portal: Portal) -> None:
    patient_id = await portal.create(email="ann@example.com")
    path = f"{PATIENTS}/{patient_id}"
    code, updated = await portal.call(
        "PATCH", path, {"last_name": "Lee-Park", "date_of_birth": "1981-03-04"}
    )
    assert code == 200 and updated["last_name"] == "Lee-Park"
    assert updated["date_of_birth"] == "1981-03-04" and updated["email"] == "ann@example.com"
    code, updated = await portal.call("PATCH", path, {"email": None})
    assert code == 200 and updated["email"] is None
    code, _ = await portal.call("GET", PATIENTS, params={"q": "lee-"})
    assert code == 200
    assert (await portal.call("PATCH", path, {}))[0] == 400
    code, body = await portal.invite(patient_id)
    assert code == 409 and body["error"]["code"] == "email_required"


async def test_unknown_or_malformed_patient_ids_are_404(portal: Portal) -> None:
    for patient_id in ("pt_ffffffffffffffff", "PT_0000000000000000", "pt_1'%20OR%20'1'%3D'1"):
        code, body = await portal.call("GET", f"{PATIENTS}/{patient_id}/status")
        assert code == 404 and body["error"]["code"] == "not_found"
