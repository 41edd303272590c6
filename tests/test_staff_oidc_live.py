"""OpenID Connect sign-in against a real provider: Debian's glewlwyd, started by the test.

The browser's part (glewlwyd's login page) is done here over its login API, as
its own page does: sign in with a password, then continue the authorization
request (`g_continue`). tests/test_web_oidc.py drives the same flow in Chromium.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from common.keys import AUDIT
from staff.oidc_config import OidcConfig
from staff.oidc_routes import FLOW_COOKIE
from staff.roles import Role
from staff.routes import STAFF
from staff.sessions import SECURE_COOKIE
from tests.glewlwyd import Client, Glewlwyd, Person
from tests.portal_support import BASE_URL
from tests.staff_support import Staff, add_practice, add_user, staff_app
from tests.test_staff_api import audit_rows, schedule

CALLBACK = BASE_URL + "/auth/oidc/callback"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Glewlwyd, Client]]:
    server = Glewlwyd(tmp_path_factory.mktemp("glewlwyd"))
    server.start()
    try:
        server.add_oidc_plugin()
        client = server.add_client(CALLBACK)
        yield server, client
    finally:
        server.stop()


def person(server: Glewlwyd, client: Client, practice: str, role: str) -> Person:
    """A new provider account (unique per test: the provider outlives each test's app)."""
    name = "u" + uuid.uuid4().hex[:8]
    someone = Person(name, PASSWORD, f"{name}@clinic.test", f"Dr. {name}",
                     {"practice": practice, "visitroom_role": role})  # fmt: skip
    server.add_user(someone, client)
    return someone


def oidc_app(tmp_path: Path, server: Glewlwyd, client: Client) -> web.Application:
    config = OidcConfig(server.issuer, client.client_id, client.secret, display_name="Clinic SSO")
    return staff_app(tmp_path, oidc=config)


async def started(aiohttp_client: Any, app: web.Application) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(app)
    await add_practice(app, "p1")
    await add_practice(app, "p2")
    return client


async def start(client: TestClient[Any, Any]) -> tuple[str, str]:
    """GET /auth/oidc/start: the provider URL and the flow cookie."""
    response = await client.get("/auth/oidc/start?next=/dashboard", allow_redirects=False)
    assert response.status == 302, await response.text()
    flow = SimpleCookie(response.headers["Set-Cookie"])[FLOW_COOKIE]
    assert flow["httponly"] and flow["samesite"] == "Lax" and flow["secure"]
    return response.headers["Location"], flow.value


async def provider_login(server: Glewlwyd, url: str, who: Person) -> dict[str, str]:
    """What glewlwyd's login page does: password sign-in, then continue; the callback query."""
    assert url.startswith(server.issuer + "/auth?")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        body = {"username": who.username, "password": who.password}
        async with browser.post(server.base_url + "/api/auth/", json=body) as response:
            assert response.status == 200
        async with browser.get(url + "&g_continue", allow_redirects=False) as response:
            assert response.status == 302, await response.text()
            location = response.headers["Location"]
    assert location.startswith(CALLBACK + "?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def callback(
    client: TestClient[Any, Any], query: dict[str, str], flow: str
) -> aiohttp.ClientResponse:
    return await client.get(
        "/auth/oidc/callback", params=query, headers={"Cookie": f"{FLOW_COOKIE}={flow}"},
        allow_redirects=False,
    )  # fmt: skip


async def session_of(client: TestClient[Any, Any], cookie: str) -> dict[str, Any]:
    response = await client.get("/v1/staff/session", headers={"Cookie": cookie})
    data: dict[str, Any] = await response.json()
    return data


async def test_a_provider_signs_in_through_glewlwyd_and_sees_only_their_practice(
    aiohttp_client: Any, tmp_path: Path, idp: tuple[Glewlwyd, Client]
) -> None:
    server, registered = idp
    app = oidc_app(tmp_path, server, registered)
    client = await started(aiohttp_client, app)
    who = person(server, registered, "p1", "provider")
    user = await add_user(app, "p1", who.email.upper(), Role.PROVIDER, name="Dr. Jones")
    info = await (await client.get("/auth/oidc/info")).json()
    assert info == {"enabled": True, "label": "Clinic SSO", "start": "/auth/oidc/start"}
    url, flow = await start(client)
    query = await provider_login(server, url, who)
    response = await callback(client, query, flow)
    assert response.status == 303, await response.text()
    assert response.headers["Location"] == "/dashboard"
    cookies = SimpleCookie(response.headers.getall("Set-Cookie")[0])
    for header in response.headers.getall("Set-Cookie")[1:]:
        cookies.load(header)
    session = cookies[SECURE_COOKIE]
    assert session["httponly"] and session["secure"] and session["samesite"] == "Lax"
    assert cookies[FLOW_COOKIE].value == ""  # the flow is over
    cookie = f"{SECURE_COOKIE}={session.value}"
    data = await session_of(client, cookie)
    assert data["user"]["user_id"] == user.user_id and data["user"]["display_name"] == "Dr. Jones"
    mine, theirs = await schedule_both(client)
    listing = await (await client.get("/v1/rooms", headers={"Cookie": cookie})).json()
    assert [room["room_id"] for room in listing["rooms"]] == [mine]
    assert theirs != mine
    rows = await audit_rows(app, "staff_sign_in")
    assert [(r["outcome"], r["actor"], r["method"]) for r in rows] == [
        ("ok", user.identity, "oidc")
    ]
    everything = str(await app[AUDIT].query(None, 0, 5000))
    assert query["code"] not in everything and session.value not in everything


async def schedule_both(client: TestClient[Any, Any]) -> tuple[str, str]:
    staff = Staff(client)
    return await schedule(staff, "p1"), await schedule(staff, "p2")


async def test_a_callback_whose_state_does_not_match_is_refused(
    aiohttp_client: Any, tmp_path: Path, idp: tuple[Glewlwyd, Client]
) -> None:
    server, registered = idp
    app = oidc_app(tmp_path, server, registered)
    client = await started(aiohttp_client, app)
    who = person(server, registered, "p1", "provider")
    await add_user(app, "p1", who.email, Role.PROVIDER)
    url, flow = await start(client)
    _, other_flow = await start(client)  # another sign-in in the same browser, or an attacker's
    query = await provider_login(server, url, who)
    response = await callback(client, query, other_flow)
    assert response.status == 400
    assert "does not match" in await response.text()
    assert SECURE_COOKIE not in response.headers.get("Set-Cookie", "")
    rows = await audit_rows(app, "staff_sign_in")
    assert [(r["outcome"], r["method"], r["reason"]) for r in rows] == [
        ("unauthorized", "oidc", "state")
    ]
    assert flow != other_flow


async def test_a_user_of_another_practice_is_refused_with_a_page_and_an_audit_row(
    aiohttp_client: Any, tmp_path: Path, idp: tuple[Glewlwyd, Client]
) -> None:
    server, registered = idp
    app = oidc_app(tmp_path, server, registered)
    client = await started(aiohttp_client, app)
    who = person(server, registered, "p2", "provider")  # the provider says p2 ...
    user = await add_user(app, "p1", who.email, Role.PROVIDER)  # ... visitroom says p1
    url, flow = await start(client)
    response = await callback(client, await provider_login(server, url, who), flow)
    assert response.status == 403
    assert "another practice" in await response.text()
    assert SECURE_COOKIE not in response.headers.get("Set-Cookie", "")
    rows = await audit_rows(app, "staff_sign_in")
    assert [(r["outcome"], r["actor"], r["reason"]) for r in rows] == [
        ("unauthorized", user.identity, "practice")
    ]


async def test_an_account_unknown_to_the_practice_or_disabled_is_refused(
    aiohttp_client: Any, tmp_path: Path, idp: tuple[Glewlwyd, Client]
) -> None:
    server, registered = idp
    app = oidc_app(tmp_path, server, registered)
    client = await started(aiohttp_client, app)
    stranger = person(server, registered, "p1", "provider")
    url, flow = await start(client)
    response = await callback(client, await provider_login(server, url, stranger), flow)
    assert response.status == 403
    assert "ask your practice admin" in await response.text()
    assert await app[STAFF].store.user_by_email(stranger.email) is None  # not provisioned
    gone = person(server, registered, "p1", "provider")
    user = await add_user(app, "p1", gone.email, Role.PROVIDER)
    await app[STAFF].store.update_user(user.user_id, 0.0, disabled=1)
    url, flow = await start(client)
    response = await callback(client, await provider_login(server, url, gone), flow)
    assert response.status == 403
    assert "disabled" in await response.text()
    rows = await audit_rows(app, "staff_sign_in")
    assert [r["reason"] for r in rows] == ["unknown_user", "disabled"]


async def test_the_providers_role_claim_sets_the_users_role(
    aiohttp_client: Any, tmp_path: Path, idp: tuple[Glewlwyd, Client]
) -> None:
    server, registered = idp
    app = oidc_app(tmp_path, server, registered)
    client = await started(aiohttp_client, app)
    who = person(server, registered, "p1", "front_desk")
    user = await add_user(app, "p1", who.email, Role.PROVIDER)
    url, flow = await start(client)
    response = await callback(client, await provider_login(server, url, who), flow)
    assert response.status == 303
    changed = await app[STAFF].store.user(user.user_id)
    assert changed is not None and changed.role is Role.FRONT_DESK
    rows = await audit_rows(app, "staff_role_change")
    assert [(r["actor"], r["subject"], r["from"], r["to"]) for r in rows] == [
        ("oidc:" + server.issuer, user.identity, "provider", "front_desk")
    ]


async def test_without_oidc_settings_the_button_is_off_and_the_flow_routes_absent(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await aiohttp_client(staff_app(tmp_path))
    response = await client.get("/auth/oidc/info")
    assert response.status == 200 and await response.json() == {"enabled": False}
    assert (await client.get("/auth/oidc/start", allow_redirects=False)).status == 404
    assert (await client.get("/auth/oidc/callback?code=c&state=s")).status == 404


def test_the_test_provider_is_a_real_glewlwyd(idp: tuple[Glewlwyd, Client]) -> None:
    server, _ = idp
    assert server.proc is not None and server.proc.poll() is None
    assert "Glewlwyd started" in server.output()
