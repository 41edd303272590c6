"""OpenID Connect sign-in against a real provider: Debian's glewlwyd, started by the test.

The browser's part (glewlwyd's login page) is done here over its login API, as
its own page does: sign in with a password, then continue the authorization
request (`g_continue`). tests/test_web_oidc.py drives the same flow in Chromium.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
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
from staff.oidc_routes import FLOW_COOKIE, RP
from staff.roles import Role
from staff.routes import STAFF
from staff.sessions import SECURE_COOKIE
from tests.glewlwyd import Client, Glewlwyd, Person
from tests.portal_support import BASE_URL
from tests.servers import free_port
from tests.staff_support import Staff, add_practice, add_user, staff_app
from tests.test_staff_api import audit_rows, schedule

CALLBACK = BASE_URL + "/auth/oidc/callback"
PASSWORD = "correct horse battery staple"
LABEL = "Clinic SSO"


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


@dataclass
class Rig:
    """The provider, its client registration, and a visitroom app (practices p1, p2) using it."""

    server: Glewlwyd
    registered: Client
    app: web.Application
    client: TestClient[Any, Any]

    def person(self, practice: str, role: str) -> Person:
        """A new account at the provider (unique: the provider outlives each test's app)."""
        name = "u" + uuid.uuid4().hex[:8]
        someone = Person(name, PASSWORD, f"{name}@clinic.test", f"Dr. {name}",
                         {"practice": practice, "visitroom_role": role})  # fmt: skip
        self.server.add_user(someone, self.registered)
        return someone

    async def start(self) -> tuple[str, str]:
        """GET /auth/oidc/start: the provider URL and the flow cookie."""
        response = await self.client.get("/auth/oidc/start?next=/dashboard", allow_redirects=False)
        assert response.status == 302, await response.text()
        flow = SimpleCookie(response.headers["Set-Cookie"])[FLOW_COOKIE]
        assert flow["httponly"] and flow["samesite"] == "Lax" and flow["secure"]
        return response.headers["Location"], flow.value

    async def provider_login(self, url: str, who: Person) -> dict[str, str]:
        """What glewlwyd's login page does: password sign-in, then continue; the callback's
        query."""
        assert url.startswith(self.server.issuer + "/auth?")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            body = {"username": who.username, "password": who.password}
            async with browser.post(self.server.base_url + "/api/auth/", json=body) as response:
                assert response.status == 200
            async with browser.get(url + "&g_continue", allow_redirects=False) as response:
                assert response.status == 302, await response.text()
                location = response.headers["Location"]
        assert location.startswith(CALLBACK + "?"), location
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}

    async def callback(
        self, query: dict[str, str], flow: str, session: str = ""
    ) -> aiohttp.ClientResponse:
        cookie = f"{FLOW_COOKIE}={flow}" + (f"; {SECURE_COOKIE}={session}" if session else "")
        return await self.client.get(
            "/auth/oidc/callback", params=query, headers={"Cookie": cookie},
            allow_redirects=False,
        )  # fmt: skip

    async def sign_in(self, who: Person, session: str = "") -> aiohttp.ClientResponse:
        url, flow = await self.start()
        return await self.callback(await self.provider_login(url, who), flow, session)

    async def user_of(self, session: str) -> Any:
        headers = {"Cookie": f"{SECURE_COOKIE}={session}"}
        return (await (await self.client.get("/v1/staff/session", headers=headers)).json())["user"]

    async def refusals(self) -> list[tuple[str, str | None, str | None]]:
        rows = await audit_rows(self.app, "staff_sign_in")
        return [(r["outcome"], r["actor"], r.get("reason")) for r in rows]


def session_of(response: aiohttp.ClientResponse) -> str:
    cookies: SimpleCookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie"):
        cookies.load(header)
    return cookies[SECURE_COOKIE].value


@pytest.fixture
async def rig(aiohttp_client: Any, tmp_path: Path, idp: tuple[Glewlwyd, Client]) -> Rig:
    server, registered = idp
    config = OidcConfig(server.issuer, registered.client_id, registered.secret, display_name=LABEL)
    app = staff_app(tmp_path, oidc=config)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    await add_practice(app, "p1")
    await add_practice(app, "p2")
    return Rig(server, registered, app, client)


async def test_a_provider_signs_in_through_glewlwyd_and_sees_only_their_practice(
    rig: Rig,
) -> None:
    who = rig.person("p1", "provider")
    user = await add_user(rig.app, "p1", who.email.upper(), Role.PROVIDER, name="Dr. Jones")
    info = await (await rig.client.get("/auth/oidc/info")).json()
    assert info == {"enabled": True, "label": LABEL, "start": "/auth/oidc/start"}
    url, flow = await rig.start()
    query = await rig.provider_login(url, who)
    response = await rig.callback(query, flow)
    assert response.status == 303, await response.text()
    assert response.headers["Location"] == "/dashboard"
    cookies: SimpleCookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie"):
        cookies.load(header)
    session = cookies[SECURE_COOKIE]
    assert session["httponly"] and session["secure"] and session["samesite"] == "Lax"
    assert cookies[FLOW_COOKIE].value == ""  # the flow is over
    cookie = {"Cookie": f"{SECURE_COOKIE}={session.value}"}
    data = await (await rig.client.get("/v1/staff/session", headers=cookie)).json()
    assert data["user"]["user_id"] == user.user_id and data["user"]["display_name"] == "Dr. Jones"
    staff = Staff(rig.client)
    mine, theirs = await schedule(staff, "p1"), await schedule(staff, "p2")
    listing = await (await rig.client.get("/v1/rooms", headers=cookie)).json()
    assert [room["room_id"] for room in listing["rooms"]] == [mine] != [theirs]
    rows = await audit_rows(rig.app, "staff_sign_in")
    assert [(r["outcome"], r["actor"], r["method"]) for r in rows] == [
        ("ok", user.identity, "oidc")
    ]
    everything = str(await rig.app[AUDIT].query(None, 0, 5000))
    assert query["code"] not in everything and session.value not in everything


async def test_signing_in_again_ends_the_browsers_older_session(rig: Rig) -> None:
    who = rig.person("p1", "provider")
    user = await add_user(rig.app, "p1", who.email, Role.PROVIDER)
    first = session_of(await rig.sign_in(who))
    assert (await rig.user_of(first))["user_id"] == user.user_id
    second = session_of(await rig.sign_in(who, session=first))
    assert second != first
    assert await rig.user_of(first) is None
    assert (await rig.user_of(second))["user_id"] == user.user_id
    assert [r["actor"] for r in await audit_rows(rig.app, "staff_sign_out")] == [user.identity]


async def test_a_callback_whose_state_does_not_match_is_refused(rig: Rig) -> None:
    who = rig.person("p1", "provider")
    await add_user(rig.app, "p1", who.email, Role.PROVIDER)
    url, _ = await rig.start()
    _, other_flow = await rig.start()  # another sign-in in the same browser, or an attacker's
    response = await rig.callback(await rig.provider_login(url, who), other_flow)
    assert response.status == 400
    assert "does not match" in await response.text()
    assert SECURE_COOKIE not in response.headers.get("Set-Cookie", "")
    assert await rig.refusals() == [("unauthorized", None, "state")]


async def test_a_user_of_another_practice_is_refused_with_a_page_and_an_audit_row(
    rig: Rig,
) -> None:
    who = rig.person("p2", "provider")  # the provider says p2 ...
    user = await add_user(rig.app, "p1", who.email, Role.PROVIDER)  # ... visitroom says p1
    response = await rig.sign_in(who)
    assert response.status == 403
    assert "another practice" in await response.text()
    assert SECURE_COOKIE not in response.headers.get("Set-Cookie", "")
    assert await rig.refusals() == [("unauthorized", user.identity, "practice")]


async def test_an_account_unknown_to_the_practice_or_disabled_is_refused(rig: Rig) -> None:
    stranger = rig.person("p1", "provider")
    response = await rig.sign_in(stranger)
    assert response.status == 403
    assert "ask your practice admin" in await response.text()
    assert await rig.app[STAFF].store.user_by_email(stranger.email) is None  # not provisioned
    gone = rig.person("p1", "provider")
    user = await add_user(rig.app, "p1", gone.email, Role.PROVIDER)
    await rig.app[STAFF].store.update_user(user.user_id, 0.0, disabled=1)
    response = await rig.sign_in(gone)
    assert response.status == 403
    assert "disabled" in await response.text()
    assert await rig.refusals() == [
        ("unauthorized", None, "unknown_user"),
        ("unauthorized", user.identity, "disabled"),
    ]


async def test_the_providers_role_claim_sets_the_users_role(rig: Rig) -> None:
    who = rig.person("p1", "front_desk")
    user = await add_user(rig.app, "p1", who.email, Role.PROVIDER)
    assert (await rig.sign_in(who)).status == 303
    changed = await rig.app[STAFF].store.user(user.user_id)
    assert changed is not None and changed.role is Role.FRONT_DESK
    rows = await audit_rows(rig.app, "staff_role_change")
    assert [(r["actor"], r["subject"], r["from"], r["to"]) for r in rows] == [
        ("oidc:" + rig.server.issuer, user.identity, "provider", "front_desk")
    ]


async def test_a_key_rotation_at_the_provider_is_picked_up_at_the_next_sign_in(
    rig: Rig,
) -> None:
    who = rig.person("p1", "provider")
    await add_user(rig.app, "p1", who.email, Role.PROVIDER)
    assert (await rig.sign_in(who)).status == 303  # the provider's keys are now cached
    kid = "rotated-" + uuid.uuid4().hex[:6]
    rig.server.rotate_key(kid)
    assert (await rig.sign_in(who)).status == 303  # an unknown kid: the JWKS is read again
    assert kid in {key["kid"] for key in rig.app[RP]._jwks["keys"]}
    assert [r[0] for r in await rig.refusals()] == ["ok", "ok"]


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


async def test_an_unreachable_provider_gets_a_page_saying_so_and_an_audit_row(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}/oidc"  # nothing listens there
    app = staff_app(tmp_path, oidc=OidcConfig(nobody, "visitroom", "a-secret"))
    client = await aiohttp_client(app)
    response = await client.get("/auth/oidc/start", allow_redirects=False)
    assert response.status == 502
    assert "cannot be reached" in await response.text()
    assert "Set-Cookie" not in response.headers
    rows = await audit_rows(app, "staff_sign_in")
    assert [(r["outcome"], r["reason"]) for r in rows] == [("unauthorized", "unreachable")]
