"""Staff sign-in in a real browser: email and password (and a TOTP code), the session
cookie, CSRF, sign-out, the idle timeout, a password reset through a real SMTP server,
a provider offered to host from the patient link, the practice admin's Users screen,
and every control of these screens inside the viewport on a laptop and on a phone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from staff import totp
from tests.conftest import token
from tests.layout import unusable_controls
from tests.loop_thread import LoopThread
from tests.portal_support import Mailbox
from tests.servers import ROOT
from tests.web_support import Pages, WebServer, web_server

pytestmark = pytest.mark.browser

PASSWORD = "a long staff password"
USERS = {  # email: (practice, role, display name)
    "ana@clinic.test": ("p1", "provider", "Dr. Ana Smith"),
    "otto@clinic.test": ("p1", "provider", "Dr. Otto Two"),
    "carl@clinic.test": ("p1", "provider", "Dr. Carl Reset"),
    "dave@clinic.test": ("p1", "provider", "Dr. Dave Later"),
    "fd@clinic.test": ("p1", "front_desk", "Fran Desk"),
    "boss@clinic.test": ("p1", "practice_admin", "Pat Admin"),
    "bob@other.test": ("p2", "provider", "Dr. Bob Other"),
}
PRACTICES = {"p1": "Smith Family Clinic", "p2": "Other Clinic"}
SLOW = 30000  # ms: steps that hash a password (argon2id, 64 MiB) on a loaded machine


def cli(data_dir: Path, *args: str, stdin: str | None = None) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "signalling", *args, "--data-dir", str(data_dir)],
        cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def seed(server: WebServer, only: tuple[str, ...] = ()) -> None:
    """Practices and users (all, or `only` these) through the real CLI, the password on
    standard input."""
    data = server.process.data_dir
    for practice, name in PRACTICES.items():
        cli(data, "practice", "create", "--id", practice, "--name", name)
    for email, (practice, role, name) in USERS.items():
        if only and email not in only:
            continue
        cli(data, "user", "add", "--practice", practice, "--email", email, "--name", name,
            "--role", role, "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip


class MailThread:
    """A real SMTP server (aiosmtpd) whose loop runs in a thread of its own."""

    def __init__(self) -> None:
        self.loop = LoopThread()
        self.box: Mailbox = self.loop.run(self._start())

    async def _start(self) -> Mailbox:
        box = Mailbox()
        box.start()
        return box

    def wait_for(self, address: str, count: int = 1) -> str:
        """The newest link in the `count`-th mail to `address`."""

        async def arrived() -> str:
            async with asyncio.timeout(30):
                while len(self.box.to(address)) < count:
                    await self.box.wait_for(len(self.box.mails) + 1)
            text = self.box.to(address)[count - 1].text
            return next(word for word in text.split() if "#reset=" in word)

        link: str = self.loop.run(arrived())
        return link

    def stop(self) -> None:
        self.box.stop()
        self.loop.stop()


@pytest.fixture(scope="module")
def mail() -> Iterator[MailThread]:
    running = MailThread()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, mail: MailThread) -> Iterator[WebServer]:
    env: dict[str, str | None] = {"VISITROOM_SMTP_URL": mail.box.url}
    with web_server(tmp_path_factory.mktemp("staff-web"), env) as running:
        seed(running)
        yield running


@pytest.fixture(autouse=True)
def signed_out(browser: BrowserContext) -> None:
    """Each test starts without a session (the browser is shared by the module)."""
    browser.clear_cookies()


def visit(site: WebServer, practice: str, starts_in: timedelta = timedelta(minutes=-5)) -> str:
    start = datetime.now(UTC) + starts_in
    body = {
        "room_id": f"{practice}-" + uuid.uuid4().hex[:8],
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=60)).isoformat(),
        "practice": practice,
    }
    status, created = site.rest("POST", "/v1/rooms", body)
    assert status == 201, created
    room_id: str = created["room_id"]
    return room_id


def sign_in(page: Page, site: WebServer, email: str, password: str = PASSWORD) -> None:
    page.goto(f"{site.url}/dashboard")
    page.get_by_test_id("signin-email").fill(email)
    page.get_by_test_id("signin-password").fill(password)
    page.get_by_test_id("btn-signin").click()


def signed_in(page: Page) -> None:
    """Signing in checks an argon2id hash (64 MiB): slow on a loaded machine."""
    expect(page.get_by_test_id("screen-dashboard")).to_be_visible(timeout=SLOW)


def dashboard_as(pages: Pages, site: WebServer, email: str) -> Page:
    """A new page with the dashboard, signed in as `email`."""
    dash = pages.new("dashboard")
    sign_in(dash, site, email)
    signed_in(dash)
    return dash


def audit_rows(site: WebServer, action: str, count: int = 1) -> list[dict[str, Any]]:
    """The server's audit rows of `action` (it writes in batches: wait for `count`)."""
    path = site.process.data_dir / "audit.sqlite3"
    deadline = time.monotonic() + 10
    while True:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = db.execute(
                "SELECT actor, subject, outcome, details FROM audit WHERE action = ?", (action,)
            ).fetchall()
        found = [{"actor": a, "subject": s, "outcome": o, **json.loads(d)} for a, s, o, d in rows]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)  # polling a file another process writes: there is no event to wait on


def forgive(pages: Pages, status: int) -> None:
    """Chromium logs a refused fetch as a console error; those the test caused are expected."""
    pages.errors[:] = [e for e in pages.errors if str(status) not in e]


def test_a_provider_signs_in_sees_their_practice_only_and_hosts_under_their_own_name(
    pages: Pages, site: WebServer
) -> None:
    mine, theirs = visit(site, "p1"), visit(site, "p2")
    dash = dashboard_as(pages, site, "ana@clinic.test")
    expect(dash.get_by_test_id("dash-user")).to_have_text("Dr. Ana Smith · Provider")
    expect(dash.get_by_test_id("dash-practice")).to_have_text("Practice: Smith Family Clinic")
    today = dash.get_by_test_id("visits-today")
    item = today.get_by_test_id("visit-item").filter(has_text=mine)
    expect(item.get_by_test_id("btn-join-visit")).to_be_visible()
    expect(today.get_by_test_id("visit-item").filter(has_text=theirs)).to_have_count(0)
    [cookie] = [c for c in dash.context.cookies() if c["name"] == "vr_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/"
    assert dash.evaluate("document.cookie") == ""  # the page cannot read it
    assert dash.evaluate("sessionStorage.length") == 0  # no token kept anywhere

    with dash.context.expect_page() as popup:
        item.get_by_test_id("btn-join-visit").click()
    host = popup.value
    pages.watch(host, "host")
    host.get_by_test_id("btn-skip-test").click()
    host.get_by_test_id("btn-join").click()
    expect(host.get_by_test_id("screen-room")).to_be_visible()
    self_tile = host.get_by_test_id("video-grid").locator("[data-kind=self]")
    expect(self_tile.get_by_test_id("tile-name")).to_contain_text("Dr. Ana Smith")
    assert not [url for url in pages.requests if "eyJ" in url]  # no JWT in any URL
    _, audit = site.rest("GET", f"/v1/rooms/{mine}/audit")
    hello = [e for e in audit["entries"] if e["action"] == "host_token"]
    assert hello and hello[0]["actor"].startswith("staff:u_")

    dash.get_by_test_id("btn-signout").click()
    expect(dash.get_by_test_id("screen-signin")).to_be_visible()
    assert [c for c in dash.context.cookies() if c["name"] == "vr_session"] == []
    dash.reload()
    expect(dash.get_by_test_id("screen-signin")).to_be_visible()
    assert audit_rows(site, "staff_sign_out")[0]["outcome"] == "ok"


def test_a_wrong_password_is_refused_and_audited(pages: Pages, site: WebServer) -> None:
    dash = pages.new("dashboard")
    sign_in(dash, site, "dave@clinic.test", "not the password at all")
    expect(dash.get_by_test_id("signin-error")).to_have_text(
        "The email or password is not right.", timeout=SLOW
    )
    expect(dash.get_by_test_id("screen-dashboard")).to_have_count(0)
    rows = [r for r in audit_rows(site, "staff_sign_in") if r["outcome"] == "unauthorized"]
    assert rows and rows[-1]["reason"] == "password"
    assert "dave@clinic.test" not in json.dumps(rows)
    forgive(pages, 401)


def test_two_step_sign_in_is_set_up_on_the_security_screen_then_asked_for(
    pages: Pages, site: WebServer
) -> None:
    dash = pages.new("dashboard")
    sign_in(dash, site, "otto@clinic.test")
    dash.get_by_test_id("btn-security").click()
    expect(dash.get_by_test_id("totp-status")).to_contain_text("off")
    dash.get_by_test_id("btn-totp-setup").click()
    secret = dash.get_by_test_id("totp-secret").inner_text()
    expect(dash.get_by_test_id("totp-uri")).to_contain_text("otpauth://totp/")
    dash.get_by_test_id("totp-code").fill("000000")
    dash.get_by_test_id("btn-totp-confirm").click()
    expect(dash.get_by_test_id("totp-error")).to_contain_text("not right")
    dash.get_by_test_id("totp-code").fill(totp.code_at(secret, time.time()))
    dash.get_by_test_id("btn-totp-confirm").click()
    expect(dash.get_by_test_id("totp-status")).to_contain_text("on")
    dash.get_by_test_id("btn-signout").click()

    sign_in(dash, site, "otto@clinic.test")
    expect(dash.get_by_test_id("signin-code")).to_be_visible(timeout=SLOW)
    expect(dash.get_by_test_id("screen-dashboard")).to_have_count(0)
    dash.get_by_test_id("signin-code").fill(totp.code_at(secret, time.time() + 30))
    dash.get_by_test_id("btn-signin").click()
    signed_in(dash)
    enabled = audit_rows(site, "staff_totp_enable", 2)
    assert [r["outcome"] for r in enabled] == ["refused", "ok"]
    assert secret not in json.dumps(audit_rows(site, "staff_sign_in"))
    forgive(pages, 400)
    forgive(pages, 401)


def test_a_change_without_the_csrf_header_is_refused_and_audited(
    pages: Pages, site: WebServer
) -> None:
    dash = dashboard_as(pages, site, "ana@clinic.test")
    body = {"starts_at": "2030-01-01T10:00:00Z", "ends_at": "2030-01-01T10:30:00Z"}
    status = dash.evaluate(
        """async (body) => (await fetch('/v1/rooms', {method: 'POST', credentials: 'same-origin',
            headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)})).status""",
        body,
    )
    assert status == 403
    refused = [r for r in audit_rows(site, "api") if r.get("reason") == "csrf"]
    assert refused and refused[-1]["actor"].startswith("staff:u_")
    assert refused[-1]["check"] == "token"
    forgive(pages, 403)


def test_a_provider_of_another_practice_gets_neither_the_visit_nor_the_host_offer(
    pages: Pages, site: WebServer
) -> None:
    room = visit(site, "p1")
    dash = dashboard_as(pages, site, "bob@other.test")
    expect(dash.get_by_test_id("visit-item").filter(has_text=room)).to_have_count(0)
    status = dash.evaluate(
        """async (room) => {
            const me = await (await fetch('/v1/staff/session')).json();
            const r = await fetch(`/v1/rooms/${room}/host-token`, {method: 'POST',
                headers: {'X-CSRF-Token': me.csrf_token}});
            return r.status;
        }""",
        room,
    )
    assert status == 403
    guest = pages.new("patient link")
    guest.goto(f"{site.url}/r/{room}")
    expect(guest.get_by_test_id("input-name")).to_be_visible()  # the guest flow
    expect(guest.get_by_test_id("screen-host-offer")).to_have_count(0)
    forgive(pages, 403)


def test_a_provider_opening_the_patient_link_is_offered_to_join_as_host(
    pages: Pages, site: WebServer
) -> None:
    room = visit(site, "p1")
    dash = dashboard_as(pages, site, "ana@clinic.test")

    maybe = pages.new("patient link, as a guest")
    maybe.goto(f"{site.url}/r/{room}")
    expect(maybe.get_by_test_id("host-offer-text")).to_contain_text("Dr. Ana Smith")
    maybe.get_by_test_id("btn-continue-as-guest").click()
    expect(maybe.get_by_test_id("input-name")).to_be_visible()

    link = pages.new("patient link")
    link.goto(f"{site.url}/r/{room}")
    link.get_by_test_id("btn-join-as-host").click()
    link.wait_for_url(f"{site.url}/host/{room}")
    link.get_by_test_id("btn-skip-test").click()
    link.get_by_test_id("btn-join").click()
    expect(link.get_by_test_id("screen-room")).to_be_visible()
    self_tile = link.get_by_test_id("video-grid").locator("[data-kind=self]")
    expect(self_tile.get_by_test_id("tile-name")).to_contain_text("Dr. Ana Smith")

    # A stranger's browser (no session) gets the guest flow on the same link.
    dash.get_by_test_id("btn-signout").click()
    expect(dash.get_by_test_id("screen-signin")).to_be_visible()
    stranger = pages.new("stranger")
    stranger.goto(f"{site.url}/r/{room}")
    expect(stranger.get_by_test_id("input-name")).to_be_visible()
    expect(stranger.get_by_test_id("screen-host-offer")).to_have_count(0)


def test_a_signed_in_provider_opening_the_host_page_is_offered_to_join(
    pages: Pages, site: WebServer
) -> None:
    room = visit(site, "p1")
    dashboard_as(pages, site, "ana@clinic.test")
    host = pages.new("host page")
    host.goto(f"{site.url}/host/{room}")
    expect(host.get_by_test_id("btn-continue-as-guest")).to_have_count(0)
    host.get_by_test_id("btn-join-as-host").click()
    host.get_by_test_id("btn-skip-test").click()
    host.get_by_test_id("btn-join").click()
    expect(host.get_by_test_id("screen-room")).to_be_visible()


def test_a_password_reset_link_arrives_by_mail_and_sets_a_new_password(
    pages: Pages, site: WebServer, mail: MailThread
) -> None:
    dash = pages.new("dashboard")
    dash.goto(f"{site.url}/dashboard")
    dash.get_by_test_id("btn-forgot").click()
    dash.get_by_test_id("forgot-email").fill("carl@clinic.test")
    dash.get_by_test_id("btn-forgot-send").click()
    expect(dash.get_by_test_id("forgot-sent")).to_be_visible()
    link = mail.wait_for("carl@clinic.test")
    assert link.startswith(f"{site.url}/dashboard#reset=")
    dash.goto(link)  # the same tab: only the fragment changes
    expect(dash).not_to_have_url(re.compile("#reset"))  # scrubbed from the address bar
    dash.get_by_test_id("reset-password").fill("my brand new password")
    dash.get_by_test_id("reset-again").fill("my brand new password")
    dash.get_by_test_id("btn-reset").click()
    expect(dash.get_by_test_id("signin-notice")).to_contain_text(
        "new password is set", timeout=SLOW
    )
    sign_in(dash, site, "carl@clinic.test", "my brand new password")
    signed_in(dash)
    dash.goto(link)  # once only
    dash.get_by_test_id("reset-password").fill("another new password")
    dash.get_by_test_id("reset-again").fill("another new password")
    dash.get_by_test_id("btn-reset").click()
    expect(dash.get_by_test_id("reset-error")).to_contain_text(
        "expired or was used already", timeout=SLOW
    )
    forgive(pages, 400)


def test_a_practice_admin_adds_a_user_changes_a_role_and_disables_a_user(
    pages: Pages, site: WebServer, mail: MailThread
) -> None:
    dash = pages.new("dashboard")
    sign_in(dash, site, "boss@clinic.test")
    expect(dash.get_by_test_id("no-host-hint")).to_be_visible()  # admins do not host
    dash.get_by_test_id("btn-users").click()
    rows = dash.get_by_test_id("user-row")
    expect(rows.filter(has_text="bob@other.test")).to_have_count(0)  # another practice's
    dash.get_by_test_id("user-add-email").fill("nina@clinic.test")
    dash.get_by_test_id("user-add-name").fill("Nina New")
    dash.get_by_test_id("user-add-role").select_option("front_desk")
    dash.get_by_test_id("btn-user-add").click()
    expect(dash.get_by_test_id("users-message")).to_contain_text("Nina New was added")
    assert mail.wait_for("nina@clinic.test").startswith(f"{site.url}/dashboard#reset=")
    nina = rows.filter(has_text="nina@clinic.test")
    expect(nina.get_by_test_id("user-role")).to_have_value("front_desk")
    nina.get_by_test_id("user-role").select_option("provider")
    expect(dash.get_by_test_id("users-message")).to_have_text("Nina New is now Provider.")

    dave = rows.filter(has_text="dave@clinic.test")
    dave.get_by_test_id("btn-user-disable").click()
    expect(dave.get_by_test_id("user-state")).to_have_text("Disabled")
    expect(
        rows.filter(has_text="boss@clinic.test").get_by_test_id("btn-user-disable")
    ).to_have_count(0)
    changes = audit_rows(site, "staff_role_change")
    assert [(r["from"], r["to"]) for r in changes] == [("front_desk", "provider")]
    assert audit_rows(site, "staff_user_disable")[0]["actor"].startswith("staff:u_")

    other = pages.new("dave")
    other.context.clear_cookies()
    sign_in(other, site, "dave@clinic.test")
    expect(other.get_by_test_id("signin-error")).to_be_visible(timeout=SLOW)
    forgive(pages, 401)


def test_an_idle_session_ends_and_the_dashboard_asks_to_sign_in_again(
    browser: BrowserContext, tmp_path: Path
) -> None:
    env: dict[str, str | None] = {"VISITROOM_STAFF_IDLE_TIMEOUT": "3s"}
    with web_server(tmp_path, env) as short:
        seed(short, only=("ana@clinic.test",))
        opened = Pages(browser, short)
        try:
            dash = opened.new("dashboard")
            sign_in(dash, short, "ana@clinic.test")
            signed_in(dash)
            # The list refreshes every 1.5 s on its own; that is not the user at work.
            expect(dash.get_by_test_id("signin-error")).to_have_text(
                "Your session has ended. Please sign in again.", timeout=15000
            )
            ended = audit_rows(short, "staff_session_end")
            assert ended and ended[0]["outcome"] == "idle"
        finally:
            opened.close()


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)])
def test_every_control_of_the_staff_screens_lies_inside_the_viewport(
    pages: Pages, site: WebServer, width: int, height: int
) -> None:
    room = visit(site, "p1")
    page = pages.new("layout")
    page.set_viewport_size({"width": width, "height": height})
    screens: list[tuple[str, str]] = []

    def check(name: str) -> None:
        screens.append((name, ",".join(unusable_controls(page, page_may_scroll=True))))

    page.goto(f"{site.url}/dashboard")
    page.get_by_test_id("token-signin-toggle").click()
    check("sign-in")
    page.get_by_test_id("btn-forgot").click()
    check("forgot")
    sign_in(page, site, "boss@clinic.test")
    signed_in(page)
    check("dashboard")
    page.get_by_test_id("btn-users").click()
    expect(page.get_by_test_id("user-row").first).to_be_visible()
    check("users")
    page.get_by_test_id("btn-back").click()
    page.get_by_test_id("btn-signout").click()
    sign_in(page, site, "fd@clinic.test")
    expect(page.get_by_test_id("btn-join-visit").first).to_be_visible(timeout=SLOW)
    check("dashboard, front desk")
    page.get_by_test_id("btn-security").click()
    page.get_by_test_id("btn-totp-setup").click()
    expect(page.get_by_test_id("totp-uri")).to_be_visible()
    check("security")
    page.get_by_test_id("btn-signout").click()
    sign_in(page, site, "ana@clinic.test")
    signed_in(page)
    page.goto(f"{site.url}/r/{room}")
    expect(page.get_by_test_id("screen-host-offer")).to_be_visible()
    check("host offer")
    outside = [s for s in screens if s[1]]
    assert outside == [], outside


def test_front_desk_signed_in_finds_a_patient_and_a_provider_gets_no_patient_search(
    pages: Pages, site: WebServer
) -> None:
    """The Patient Portal screens work with a staff session (no pasted token): front desk
    (portal:staff for its practice) searches and opens a patient; a provider has no
    portal access and no search box."""
    portal = token("*", "fd-seed", "host", admin=True, practice="p1", scope="portal:staff")
    body = {"first_name": "Quincy", "last_name": "Sessionfound", "date_of_birth": "1980-02-03"}
    status, created = site.rest("POST", "/v1/portal/patients", body, tok=portal)
    assert status == 201, created
    dash = dashboard_as(pages, site, "fd@clinic.test")
    dash.get_by_test_id("patient-search-input").fill("Sessionf")
    dash.get_by_test_id("patient-search-result").filter(has_text="Sessionfound").click()
    expect(dash.get_by_test_id("screen-patient")).to_be_visible()
    dash.get_by_test_id("tab-portal").click()
    expect(dash.get_by_test_id("portal-status")).to_be_visible()

    dash.close()
    pages.context.clear_cookies()  # one browser: the provider signs in afresh
    provider = dashboard_as(pages, site, "ana@clinic.test")
    expect(provider.get_by_test_id("visits-today")).to_be_visible()
    expect(provider.get_by_test_id("patient-search-input")).to_have_count(0)
