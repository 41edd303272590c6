"""OpenID Connect staff sign-in in real Chromium, against a real glewlwyd (Debian 2.7.5):
the dashboard's "Sign in with ..." button, glewlwyd's own login page, and back to the
dashboard signed in, seeing only the practice's visits; a user of another practice is
refused with a page that says so."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Request, expect

from tests.glewlwyd import Client, Glewlwyd, Person
from tests.test_web_staff import cli
from tests.web_support import WebServer, snap, web_server

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple"
PRACTICES = {"p1": "Smith Family Clinic", "p2": "Other Clinic"}
LABEL = "Clinic SSO"
FORBIDDEN = "the server responded with a status of 403 (Forbidden)"


@dataclass
class Setup:
    site: WebServer
    idp: Glewlwyd
    client: Client
    visits: dict[str, str] = field(default_factory=dict)  # practice -> a visit of today


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    directory = tmp_path_factory.mktemp("oidc-web")
    idp = Glewlwyd(directory / "glewlwyd", host="127.0.0.2")  # another site, as in real life
    idp.start()
    try:
        idp.add_oidc_plugin()
        client = idp.add_client("http://127.0.0.1:9/placeholder")
        secret = directory / "oidc-client-secret"
        secret.write_text(client.secret + "\n")
        env: dict[str, str | None] = {
            "VISITROOM_OIDC_ISSUER": idp.issuer,
            "VISITROOM_OIDC_CLIENT_ID": client.client_id,
            "VISITROOM_OIDC_CLIENT_SECRET_FILE": str(secret),
            "VISITROOM_OIDC_DISPLAY_NAME": LABEL,
        }
        with web_server(directory, env) as site:
            client = idp.set_redirect_uri(client, site.url + "/auth/oidc/callback")
            for practice, name in PRACTICES.items():
                cli(site.process.data_dir, "practice", "create", "--id", practice, "--name", name)
            ready = Setup(site, idp, client)
            ready.visits = {p: schedule(site, p) for p in PRACTICES}
            yield ready
    finally:
        idp.stop()


def schedule(site: WebServer, practice: str) -> str:
    room_id = f"{practice}-" + uuid.uuid4().hex[:8]
    start = datetime.now(UTC) - timedelta(minutes=5)
    body = {
        "room_id": room_id, "practice": practice, "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=60)).isoformat(),
    }  # fmt: skip
    status, _ = site.rest("POST", "/v1/rooms", body)
    assert status == 201
    return room_id


def account(setup: Setup, idp_practice: str, practice: str, role: str = "provider") -> Person:
    """A user at the provider (claims: idp_practice, role) and in visitroom (practice)."""
    name = "u" + uuid.uuid4().hex[:8]
    who = Person(name, PASSWORD, f"{name}@clinic.test", f"Dr. {name.title()}",
                 {"practice": idp_practice, "visitroom_role": role})  # fmt: skip
    setup.idp.add_user(who, setup.client)
    cli(setup.site.process.data_dir, "user", "add", "--practice", practice, "--email",
        who.email, "--name", who.name, "--role", role, "--password-stdin",
        stdin="an unused long password\n")  # fmt: skip
    return who


@dataclass
class Watched:
    """Script errors of visitroom's pages, and requests that left both servers."""

    page: Page
    allowed: tuple[str, ...]
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        # glewlwyd's own page logs its 401 before sign-in: only visitroom's pages count
        if message.type == "error" and not message.location["url"].startswith(self.allowed[1]):
            self.errors.append(message.text)

    def request(self, request: Request) -> None:
        if not request.url.startswith(self.allowed):
            self.foreign.append(request.url)


@pytest.fixture
def watched(browser: BrowserContext, setup: Setup) -> Iterator[Watched]:
    browser.clear_cookies()  # each test signs in afresh, at visitroom and at the provider
    page = browser.new_page()
    seen = Watched(page, (setup.site.url + "/", setup.idp.base_url + "/"))
    page.on("console", seen.console)
    page.on("pageerror", lambda error: seen.errors.append(str(error)))
    page.on("request", seen.request)
    yield seen
    with contextlib.suppress(Exception):
        page.close()
    assert seen.errors == []
    assert seen.foreign == []


def sign_in_at_provider(page: Page, setup: Setup, who: Person) -> None:
    page.goto(setup.site.url + "/dashboard")
    button = page.get_by_test_id("btn-oidc-signin")
    expect(button).to_have_text(f"Sign in with {LABEL}")
    button.click()
    page.wait_for_url(setup.idp.base_url + "/login.html?*")
    page.locator("#username").fill(who.username)
    page.locator("#password").fill(who.password)
    page.locator("#loginbut").click()
    page.get_by_role("button", name="Continue").click()  # glewlwyd's "continue to the app"


def test_a_provider_signs_in_with_the_identity_provider_and_sees_their_practices_visits(
    setup: Setup, watched: Watched
) -> None:
    page = watched.page
    who = account(setup, "p1", "p1")
    sign_in_at_provider(page, setup, who)
    page.wait_for_url(setup.site.url + "/dashboard")
    expect(page.get_by_test_id("screen-dashboard")).to_be_visible()
    expect(page.get_by_test_id("dash-user")).to_contain_text(who.name)
    today = page.get_by_test_id("visits-today")
    expect(today.get_by_test_id("visit-room")).to_have_text([setup.visits["p1"]])
    assert page.get_by_test_id("btn-join-visit").count() == 1
    snap(page, "oidc-dashboard")
    cookies = {c["name"]: c for c in page.context.cookies(setup.site.url)}
    assert cookies["vr_session"]["httpOnly"] and cookies["vr_session"]["sameSite"] == "Lax"
    assert "vr_oidc" not in cookies  # the flow cookie is gone once signed in


def test_a_user_of_another_practice_is_refused_with_a_clear_page(
    setup: Setup, watched: Watched
) -> None:
    page = watched.page
    who = account(setup, "p2", "p1")  # the provider says p2, visitroom has them in p1
    sign_in_at_provider(page, setup, who)
    page.wait_for_url(setup.site.url + "/auth/oidc/callback?*")
    expect(page.get_by_test_id("oidc-error")).to_have_text(
        "your account belongs to another practice"
    )
    page.get_by_test_id("oidc-back").click()
    expect(page.get_by_test_id("screen-signin")).to_be_visible()  # not signed in
    assert "vr_session" not in {c["name"] for c in page.context.cookies(setup.site.url)}
    # the refusal page's own 403 is what Chromium logs, and nothing else
    assert watched.errors == [f"Failed to load resource: {FORBIDDEN}"]
    watched.errors.clear()


def test_the_sign_in_button_is_inside_the_viewport_on_a_phone(
    setup: Setup, watched: Watched
) -> None:
    page = watched.page
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        page.goto(setup.site.url + "/dashboard")
        button = page.get_by_test_id("btn-oidc-signin")
        expect(button).to_be_visible()
        button.scroll_into_view_if_needed()
        box = button.bounding_box()
        assert box is not None
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390
        snap(page, "oidc-signin-phone")
    finally:
        page.set_viewport_size({"width": 1280, "height": 800})


def test_the_client_secret_never_shows_in_the_servers_log(setup: Setup) -> None:
    assert setup.site.process.output()  # the log is there ...
    assert setup.client.secret not in setup.site.process.output()  # ... without the secret
    assert "/auth/oidc/callback?" not in setup.site.process.output()  # nor a code or state
