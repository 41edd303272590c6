"""Staff sign-in over HTTP against the real app: cookies, CSRF, roles, TOTP, timeouts, resets."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from common.keys import AUDIT, VERIFIER
from staff import totp
from staff.roles import Role
from tests.conftest import admin_token, token
from tests.portal_support import Mailbox, mailbox_fixture  # noqa: F401  (a fixture)
from tests.staff_support import PASSWORD, Staff, add_practice, add_user, staff_app
from waiting_room.clock import FakeClock


async def audit_rows(app: web.Application, action: str) -> list[dict[str, Any]]:
    await app[AUDIT].flush()
    rows = await app[AUDIT].query(None, 0, 5000)
    return [r for r in rows if r["action"] == action]


def visit(practice: str | None = None) -> dict[str, Any]:
    start = datetime.now(UTC) - timedelta(minutes=5)
    body: dict[str, Any] = {
        "room_id": "v-" + uuid.uuid4().hex[:8],
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=30)).isoformat(),
    }
    if practice:
        body["practice"] = practice
    return body


async def alive(staff: Staff) -> bool:
    status, data = await staff.call("GET", "/v1/staff/session")
    assert status == 200
    return data["user"] is not None


async def started(aiohttp_client: Any, app: web.Application) -> Staff:
    client = await aiohttp_client(app)
    await add_practice(app, "p1")
    await add_practice(app, "p2")
    return Staff(client)


async def provider_session(aiohttp_client: Any, tmp_path: Path) -> tuple[web.Application, Staff]:
    """The app, and a signed-in provider of p1 (ana@clinic.test)."""
    app = staff_app(tmp_path)
    staff = await started(aiohttp_client, app)
    await add_user(app, "p1", "ana@clinic.test", Role.PROVIDER)
    assert (await staff.sign_in("ana@clinic.test"))[0] == 200
    return app, staff


async def schedule(staff: Staff, practice: str) -> str:
    response = await staff.client.post(
        "/v1/rooms", json=visit(practice), headers={"Authorization": f"Bearer {admin_token()}"}
    )
    assert response.status == 201
    room_id: str = (await response.json())["room_id"]
    return room_id


async def test_a_provider_signs_in_with_a_private_cookie_and_sees_only_their_practice(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    app = staff_app(tmp_path)
    staff = await started(aiohttp_client, app)
    await add_user(app, "p1", "ana@clinic.test", Role.PROVIDER)
    mine, theirs = await schedule(staff, "p1"), await schedule(staff, "p2")
    status, data = await staff.sign_in("Ana@Clinic.test")
    assert status == 200, data
    cookie = staff.set_cookie.lower()
    for attribute in ("httponly", "secure", "samesite=lax", "path=/"):
        assert attribute in cookie
    assert data["user"]["display_name"] == "Dr. Ana Smith"
    assert data["scopes"] == ["rooms:admin", "rooms:host"]
    assert staff.cookie not in str(await app[AUDIT].query(None, 0, 5000))
    status, listing = await staff.call("GET", "/v1/rooms", csrf=False, origin=None)
    assert status == 200
    assert [r["room_id"] for r in listing["rooms"]] == [mine]
    assert (await staff.call("GET", f"/v1/rooms/{theirs}", csrf=False))[0] == 403
    status, minted = await staff.call("POST", f"/v1/rooms/{mine}/host-token")
    assert status == 201
    host = app[VERIFIER].verify_for_room(minted["token"], mine)
    assert (host.name, host.role, host.practice) == ("Dr. Ana Smith", "host", "p1")
    assert host.identity.startswith("staff:u_")
    assert (await staff.call("POST", f"/v1/rooms/{theirs}/host-token"))[0] == 403
    before = Staff(staff.client, staff.cookie, staff.csrf)
    assert (await staff.sign_in("ana@clinic.test"))[0] == 200
    assert await alive(staff) and not await alive(before)  # one browser, one session


async def test_a_wrong_password_is_refused_and_audited_without_the_email(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    app = staff_app(tmp_path)
    staff = await started(aiohttp_client, app)
    await add_user(app, "p1", "ana@clinic.test", Role.PROVIDER)
    status, data = await staff.sign_in("ana@clinic.test", "not the password")
    assert (status, data["error"]["code"]) == (401, "unauthorized")
    status, data = await staff.sign_in("nobody@clinic.test")
    assert (status, data["error"]["code"]) == (401, "unauthorized")
    rows = await audit_rows(app, "staff_sign_in")
    assert [r["outcome"] for r in rows] == ["unauthorized", "unauthorized"]
    assert "ana@clinic.test" not in str(rows) and "not the password" not in str(rows)


async def test_a_change_without_the_csrf_token_or_from_another_origin_is_refused_and_audited(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    app, staff = await provider_session(aiohttp_client, tmp_path)
    body = visit()
    assert (await staff.call("POST", "/v1/rooms", body, csrf=False))[0] == 403
    assert (await staff.call("POST", "/v1/rooms", body, origin="https://evil.test"))[0] == 403
    assert (await staff.call("POST", "/v1/rooms", body, origin=None))[0] == 403
    staff.csrf, good = "x" * 43, staff.csrf
    assert (await staff.call("POST", "/v1/rooms", body))[0] == 403
    staff.csrf = good
    status, created = await staff.call("POST", "/v1/rooms", body)
    assert status == 201 and created["practice"] == "p1"
    refused = [r for r in await audit_rows(app, "api") if r["outcome"] == "forbidden"]
    assert [r["check"] for r in refused] == ["token", "origin", "origin", "token"]
    assert all(r["actor"].startswith("staff:") for r in refused)


async def test_the_bearer_token_path_is_unchanged_next_to_sessions(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    app = staff_app(tmp_path)
    staff = await started(aiohttp_client, app)
    bearer = {"Authorization": f"Bearer {admin_token()}"}
    response = await staff.client.post("/v1/rooms", json=visit(), headers=bearer)
    assert response.status == 201  # no cookie, no CSRF header, no Origin: a token is enough
    response = await staff.client.get("/v1/rooms")
    assert response.status == 401
    wrong = {"Authorization": f"Bearer {token('visit-1', 'x', 'guest')}"}
    assert (await staff.client.get("/v1/rooms", headers=wrong)).status == 401


async def test_a_second_factor_is_enrolled_then_needed_and_a_code_works_only_once(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    app, staff = await provider_session(aiohttp_client, tmp_path)
    status, setup = await staff.call("POST", "/v1/staff/totp/setup")
    assert status == 200 and setup["uri"].startswith("otpauth://totp/")
    assert (await staff.call("POST", "/v1/staff/totp/confirm", {"code": "000000"}))[0] == 400
    code = totp.code_at(setup["secret"], time.time())
    assert (await staff.call("POST", "/v1/staff/totp/confirm", {"code": code}))[0] == 200
    second = Staff(staff.client)
    status, data = await second.sign_in("ana@clinic.test")
    assert (status, data["error"]["code"]) == (401, "totp_required")
    status, data = await second.sign_in("ana@clinic.test", code=code)  # the enrolment's code
    assert (status, data["error"]["code"]) == (401, "unauthorized")
    later = totp.code_at(setup["secret"], time.time() + totp.STEP_S)
    assert (await second.sign_in("ana@clinic.test", code=later))[0] == 200
    assert (await Staff(staff.client).sign_in("ana@clinic.test", code=later))[0] == 401
    enabled = await audit_rows(app, "staff_totp_enable")
    assert [r["outcome"] for r in enabled] == ["refused", "ok"]
    wrong = [(await second.call("POST", "/v1/staff/totp/disable", {"code": "000000"}))[0]
             for _ in range(5)]  # fmt: skip
    assert wrong == [400] * 5
    right = totp.code_at(setup["secret"], time.time() + 2 * totp.STEP_S)
    assert (await second.call("POST", "/v1/staff/totp/disable", {"code": right}))[0] == 400
    disabled = await audit_rows(app, "staff_totp_disable")
    assert [r["outcome"] for r in disabled][-2:] == ["throttled", "throttled"]
    assert setup["secret"] not in str(await app[AUDIT].query(None, 0, 5000))


async def test_a_session_ends_when_idle_at_its_lifetime_and_at_sign_out(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    clock = FakeClock(time.time())
    app = staff_app(tmp_path, clock=clock, idle_timeout_s=60.0, session_lifetime_s=600.0)
    staff = await started(aiohttp_client, app)
    await add_user(app, "p1", "ana@clinic.test", Role.PROVIDER)
    await staff.sign_in("ana@clinic.test")
    for _ in range(3):  # used every 50 s: alive past the idle timeout
        clock.advance(50.0)
        assert await alive(staff)
    clock.advance(61.0)
    assert not await alive(staff)
    await staff.sign_in("ana@clinic.test")
    background = {**staff.headers(csrf=False), "X-Visitroom-Background": "1"}
    for _ in range(2):  # the dashboard's own refresh does not keep the session alive
        clock.advance(25.0)
        assert (await staff.client.get("/v1/rooms", headers=background)).status == 200
    clock.advance(15.0)  # 65 s after the last request that was the user's own
    assert not await alive(staff)
    await staff.sign_in("ana@clinic.test")
    alive_then = []
    for _ in range(12):
        clock.advance(50.0)
        alive_then.append(await alive(staff))
    assert alive_then == [True] * 11 + [False]  # 600 s after sign-in, however busy
    await staff.sign_in("ana@clinic.test")
    assert (await staff.call("POST", "/v1/staff/sign-out", csrf=False))[0] == 403
    assert (await staff.call("POST", "/v1/staff/sign-out"))[0] == 204
    assert not await alive(staff)
    ends = [r["outcome"] for r in await audit_rows(app, "staff_session_end")]
    assert ends == ["idle", "idle", "lifetime"]
    outs = await audit_rows(app, "staff_sign_out")
    assert [(r["outcome"], r.get("reason")) for r in outs] == [("forbidden", "csrf"), ("ok", None)]


async def test_a_password_reset_link_is_mailed_works_once_and_signs_out_everywhere(
    aiohttp_client: Any, tmp_path: Path, mailbox: Mailbox
) -> None:
    app = staff_app(tmp_path, mailbox)
    staff = await started(aiohttp_client, app)
    await add_user(app, "p1", "ana@clinic.test", Role.PROVIDER)
    await staff.sign_in("ana@clinic.test")
    origin = {"Origin": "https://portal.example.test"}
    for email in ("ana@clinic.test", "nobody@clinic.test"):
        response = await staff.client.post(
            "/v1/staff/password-reset", json={"email": email}, headers=origin
        )
        assert response.status == 202  # the same answer: nobody learns who has an account
    [mail] = await mailbox.wait_for(1)
    assert mail.recipients == ["ana@clinic.test"]
    link = next(w for w in mail.text.split() if "#reset=" in w)
    assert link.startswith("https://portal.example.test/dashboard#reset=")
    reset = link.rpartition("#reset=")[2]
    body = {"token": reset, "password": "a brand new password"}
    complete = "/v1/staff/password-reset/complete"
    response = await staff.client.post(complete, json=body, headers=origin)
    assert response.status == 200
    assert not await alive(staff)  # signed out everywhere
    response = await staff.client.post(complete, json=body, headers=origin)
    assert response.status == 400  # once only
    assert (await Staff(staff.client).sign_in("ana@clinic.test"))[0] == 401
    assert (await staff.sign_in("ana@clinic.test", "a brand new password"))[0] == 200
    rows = await audit_rows(app, "staff_reset")
    assert [(r["outcome"], r.get("reason")) for r in rows] == [
        ("ok", None),
        ("refused", "used"),
    ]
    assert reset not in str(await app[AUDIT].query(None, 0, 5000))


async def test_a_reset_link_expires(aiohttp_client: Any, tmp_path: Path, mailbox: Mailbox) -> None:
    clock = FakeClock(time.time())
    app = staff_app(tmp_path, mailbox, clock, reset_ttl_s=600.0)
    staff = await started(aiohttp_client, app)
    await add_user(app, "p1", "ana@clinic.test", Role.PROVIDER)
    origin = {"Origin": "https://portal.example.test"}
    await staff.client.post(
        "/v1/staff/password-reset", json={"email": "ana@clinic.test"}, headers=origin
    )
    [mail] = await mailbox.wait_for(1)
    clock.advance(601.0)
    reset = mail.text.split("#reset=")[1].split()[0]
    body = {"token": reset, "password": "a brand new password"}
    response = await staff.client.post(
        "/v1/staff/password-reset/complete", json=body, headers=origin
    )
    assert response.status == 400
    [row] = await audit_rows(app, "staff_reset")
    assert row["reason"] == "expired"


async def test_a_practice_admin_adds_disables_and_changes_roles_in_their_practice_only(
    aiohttp_client: Any, tmp_path: Path, mailbox: Mailbox
) -> None:
    app = staff_app(tmp_path, mailbox)
    staff = await started(aiohttp_client, app)
    await add_user(app, "p1", "boss@clinic.test", Role.PRACTICE_ADMIN, "Pat Admin")
    other = await add_user(app, "p2", "x@other.test", Role.PROVIDER)
    provider = Staff(staff.client)
    await add_user(app, "p1", "ana@clinic.test", Role.PROVIDER)
    await provider.sign_in("ana@clinic.test")
    assert (await provider.call("GET", "/v1/staff/users"))[0] == 403
    await staff.sign_in("boss@clinic.test")
    new = {"email": "fd@clinic.test", "display_name": "Front Desk", "role": "front_desk"}
    status, added = await staff.call("POST", "/v1/staff/users", new)
    assert status == 201 and added["role"] == "front_desk"
    [mail] = await mailbox.wait_for(1)  # the new user chooses a password by link
    assert mail.recipients == ["fd@clinic.test"] and "#reset=" in mail.text
    status, listing = await staff.call("GET", "/v1/staff/users")
    assert sorted(u["email"] for u in listing["users"]) == [
        "ana@clinic.test", "boss@clinic.test", "fd@clinic.test",
    ]  # fmt: skip
    path = f"/v1/staff/users/{added['user_id']}"
    assert (await staff.call("PATCH", path, {"role": "provider"}))[0] == 200
    ana = next(u for u in listing["users"] if u["email"] == "ana@clinic.test")
    status, disabled = await staff.call("PATCH", f"/v1/staff/users/{ana['user_id']}",
                                        {"disabled": True})  # fmt: skip
    assert status == 200 and disabled["disabled"] is True
    assert not await alive(provider)  # signed out
    assert (await Staff(staff.client).sign_in("ana@clinic.test"))[0] == 401
    assert (await staff.call("PATCH", f"/v1/staff/users/{other.user_id}", {"disabled": True}))[
        0
    ] == 404
    roles = await audit_rows(app, "staff_role_change")
    assert [(r["from"], r["to"]) for r in roles] == [("front_desk", "provider")]
    assert roles[0]["actor"].startswith("staff:") and roles[0]["subject"].startswith("staff:")


async def test_the_host_offer_says_yes_only_to_a_provider_of_the_visits_practice(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    app = staff_app(tmp_path)
    staff = await started(aiohttp_client, app)
    await add_user(app, "p1", "ana@clinic.test", Role.PROVIDER)
    await add_user(app, "p1", "fd@clinic.test", Role.FRONT_DESK, "Front Desk")
    mine, theirs = await schedule(staff, "p1"), await schedule(staff, "p2")
    anonymous = await staff.client.get(f"/v1/rooms/{mine}/host-offer")
    assert await anonymous.json() == {"host": False, "name": None}
    unknown = await staff.client.get("/v1/rooms/no-such-room/host-offer")
    assert await unknown.json() == {"host": False, "name": None}
    await staff.sign_in("ana@clinic.test")
    assert (await staff.call("GET", f"/v1/rooms/{mine}/host-offer"))[1] == {
        "host": True, "name": "Dr. Ana Smith",
    }  # fmt: skip
    assert (await staff.call("GET", f"/v1/rooms/{theirs}/host-offer"))[1]["host"] is False
    desk = Staff(staff.client)
    await desk.sign_in("fd@clinic.test")
    assert (await desk.call("GET", f"/v1/rooms/{mine}/host-offer"))[1]["host"] is False
    status, _ = await desk.call("POST", f"/v1/rooms/{mine}/host-token")
    assert status == 201  # front desk joins from the dashboard, as staff (host rights)


async def test_login_failures_slow_an_account_down(aiohttp_client: Any, tmp_path: Path) -> None:
    app = staff_app(tmp_path)
    staff = await started(aiohttp_client, app)
    await add_user(app, "p1", "ana@clinic.test", Role.PROVIDER)
    codes = [(await staff.sign_in("ana@clinic.test", "wrong"))[0] for _ in range(5)]
    assert codes[:4] == [401, 401, 401, 401] and codes[4] == 429
    assert (await staff.sign_in("ana@clinic.test", PASSWORD))[0] == 429  # the right one waits too


async def test_front_desk_reaches_the_portal_with_the_session_and_changes_need_the_token(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    app = staff_app(tmp_path)
    staff = await started(aiohttp_client, app)
    await add_user(app, "p1", "fd@clinic.test", Role.FRONT_DESK, "Fran Desk")
    await add_user(app, "p1", "ana@clinic.test", Role.PROVIDER)
    await staff.sign_in("fd@clinic.test")
    patient = {"first_name": "Pat", "last_name": "Doe", "date_of_birth": "1980-02-03"}
    status, _ = await staff.call("POST", "/v1/portal/patients", patient, csrf=False)
    assert status == 403
    status, created = await staff.call("POST", "/v1/portal/patients", patient)
    assert status == 201, created
    status, found = await staff.call("GET", "/v1/portal/patients?q=Pat", csrf=False, origin=None)
    assert status == 200 and [p["patient_id"] for p in found["patients"]] == [created["patient_id"]]
    provider = Staff(staff.client)
    await provider.sign_in("ana@clinic.test")  # a provider has no portal:staff scope
    assert (await provider.call("GET", "/v1/portal/patients?q=Pat"))[0] == 403
