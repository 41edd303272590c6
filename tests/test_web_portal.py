"""The Patient Portal screens in a real browser: the dashboard's patient search, the
patient's page (Profile and Patient Portal tabs), the patient's activation and sign-in
pages, and the schedule form emailing the visit link, with mail through a real SMTP
server (aiosmtpd) and every control inside the viewport on a desktop and a phone."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.conftest import token
from tests.layout import unusable_controls
from tests.loop_thread import LoopThread
from tests.portal_support import Mail, Mailbox
from tests.web_support import TIMEZONE, Pages, WebServer, token_sign_in, web_server

pytestmark = pytest.mark.browser

PRACTICE = "lakeside"
PRACTICE_NAME = "Lakeside Family Clinic"
STAFF_SCOPES = "rooms:admin rooms:host portal:staff"
PASSWORD = "a long passphrase 42"


class SyncMailbox:
    """The aiosmtpd Mailbox of tests/portal_support.py, driven from synchronous tests: its
    loop runs in a thread of its own."""

    def __init__(self) -> None:
        self.loop = LoopThread()
        self.box: Mailbox = self.loop.run(self._make())

    async def _make(self) -> Mailbox:
        return Mailbox()

    def start(self) -> None:
        self.box.start()

    def stop(self) -> None:
        self.box.stop()
        self.loop.stop()

    def wait_for(self, count: int) -> list[Mail]:
        mails: list[Mail] = self.loop.run(self.box.wait_for(count, 30.0), 40.0)
        return mails

    def nth_to(self, address: str, n: int = 1) -> Mail:
        """The `n`th mail to `address` (each test has addresses of its own), once it came."""
        total = len(self.box.mails)
        while len(self.box.to(address)) < n:
            total += 1
            self.wait_for(total)
        return self.box.to(address)[n - 1]


@pytest.fixture(scope="module")
def mailbox() -> Iterator[SyncMailbox]:
    box = SyncMailbox()
    box.start()
    yield box
    box.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, mailbox: SyncMailbox) -> Iterator[WebServer]:
    env: dict[str, str | None] = {
        "VISITROOM_SMTP_URL": mailbox.box.url,
        "VISITROOM_PORTAL_RETRY_BASE": "1s",
        "VISITROOM_PORTAL_PRACTICES": json.dumps({PRACTICE: PRACTICE_NAME}),
        "VISITROOM_PORTAL_PUBLIC_RATE_LIMIT": "0",
    }
    with web_server(tmp_path_factory.mktemp("portal-web"), env) as running:
        yield running


def staff_token(scope: str = STAFF_SCOPES, practice: str = PRACTICE) -> str:
    return token("*", "frontdesk-1", "host", admin=True, practice=practice, scope=scope)


def new_patient(site: WebServer, first: str, last: str, born: str, **extra: Any) -> str:
    practice = extra.pop("practice", PRACTICE)
    body = {"first_name": first, "last_name": last, "date_of_birth": born, **extra}
    code, created = site.rest(
        "POST", "/v1/portal/patients", body, tok=staff_token(practice=practice)
    )
    assert code == 201, created
    patient_id: str = created["patient_id"]
    return patient_id


def rest(site: WebServer, method: str, path: str, body: Any = None) -> dict[str, Any]:
    code, answer = site.rest(method, path, body, tok=staff_token())
    assert code < 300, answer
    return answer


NAMES = itertools.count()


def unique(prefix: str) -> str:
    """Names differ per test (the server is shared by the module): letters only."""
    return prefix + "abcdefghijklmnopqrstuvwxyz"[next(NAMES) % 26] * 2


def sign_in(
    pages: Pages, site: WebServer, label: str = "dashboard", tok: str | None = None
) -> Page:
    dash = pages.new(label)
    dash.goto(f"{site.url}/dashboard")
    token_sign_in(dash, tok or staff_token())
    expect(dash.get_by_test_id("screen-dashboard")).to_be_visible()
    expect(dash.get_by_test_id("patient-search-input")).to_be_visible()
    return dash


def search(page: Page, text: str) -> Locator:
    box = page.get_by_test_id("patient-search-input")
    box.fill("")
    box.press_sequentially(text, delay=30)
    return page.get_by_test_id("patient-search-results").get_by_test_id("patient-search-result")


def open_patient(page: Page, last: str, first: str) -> None:
    search(page, last).filter(has_text=f"{last}, {first}").click()
    expect(page.get_by_test_id("screen-patient")).to_be_visible()
    expect(page.get_by_test_id("patient-name")).to_have_text(f"{first} {last}")


def status_of(page: Page) -> dict[str, str]:
    names = ("opted-out", "activated-on", "registered-on", "last-login-on", "last-reinvited-on")
    return {name: page.get_by_test_id(f"status-{name}").inner_text() for name in names}


def us_today() -> str:
    return datetime.now(UTC).strftime("%m/%d/%Y")  # the portal's time zone is UTC here


def refresh_until(page: Page, testid: str, wanted: str) -> None:
    """Press "Refresh status" until the status field says `wanted` (mail is sent in the
    background)."""
    deadline = datetime.now(UTC) + timedelta(seconds=20)
    while page.get_by_test_id(testid).inner_text() != wanted:
        assert datetime.now(UTC) < deadline, page.get_by_test_id(testid).inner_text()
        page.get_by_test_id("btn-refresh-status").click()
        page.wait_for_timeout(200)


def test_search_by_name_and_by_date_of_birth_within_the_practice(
    pages: Pages, site: WebServer
) -> None:
    last = unique("Quist")
    new_patient(site, "Ann", last, "1980-02-03", email="ann.q@example.com")
    new_patient(site, "Bob", last, "1975-06-07")
    new_patient(site, "Ann", last, "1980-02-03", practice="other-practice")
    dash = sign_in(pages, site)
    results = search(dash, last[:3])
    expect(results).to_have_count(2)  # not the other practice's patient
    expect(results.first).to_contain_text(f"{last}, Ann")
    expect(results.first).to_contain_text("02/03/1980")
    search(dash, "02/0")
    expect(dash.get_by_test_id("patient-search-status")).to_contain_text("mm/dd/yyyy")
    by_birth = search(dash, "06/07/1975")
    expect(by_birth).to_have_count(1)
    expect(by_birth).to_contain_text(f"{last}, Bob")
    dash.get_by_test_id("patient-search-input").press("ArrowDown")
    dash.get_by_test_id("patient-search-input").press("Enter")
    expect(dash.get_by_test_id("patient-name")).to_have_text(f"Bob {last}")
    expect(dash.get_by_test_id("tab-profile")).to_have_attribute("aria-selected", "true")
    expect(dash.get_by_test_id("profile-first-name")).to_have_value("Bob")
    dash.get_by_test_id("btn-back-to-visits").click()
    expect(dash.get_by_test_id("screen-dashboard")).to_be_visible()
    assert not [url for url in pages.requests if "eyJ" in url]  # no token in any URL


def test_the_profile_tab_validates_and_saves(pages: Pages, site: WebServer) -> None:
    last = unique("Rowe")
    patient_id = new_patient(site, "Cara", last, "1990-01-02")
    dash = sign_in(pages, site)
    open_patient(dash, last, "Cara")
    result = dash.get_by_test_id("profile-result")
    dash.get_by_test_id("profile-first-name").fill("")
    dash.get_by_test_id("btn-save-profile").click()
    expect(result).to_have_text("First name is required.")
    expect(dash.get_by_test_id("profile-first-name")).to_have_attribute("aria-invalid", "true")
    dash.get_by_test_id("profile-first-name").fill("Carla")
    dash.get_by_test_id("profile-email").fill("not an email")
    dash.get_by_test_id("btn-save-profile").click()
    expect(result).to_have_text("Email is not a valid email address.")
    dash.get_by_test_id("profile-email").fill("carla@example.com")
    dash.get_by_test_id("profile-date-of-birth").fill("1990-01-03")
    dash.get_by_test_id("btn-save-profile").click()
    expect(result).to_have_text("Profile saved.")
    expect(dash.get_by_test_id("patient-name")).to_have_text(f"Carla {last}")
    saved = rest(site, "GET", f"/v1/portal/patients/{patient_id}")
    assert (saved["first_name"], saved["email"], saved["date_of_birth"]) == (
        "Carla", "carla@example.com", "1990-01-03",
    )  # fmt: skip
    dash.get_by_test_id("tab-portal").click()
    expect(dash.get_by_test_id("portal-email")).to_have_value("carla@example.com")


def test_an_empty_profile_email_sends_staff_to_the_profile_tab(
    pages: Pages, site: WebServer
) -> None:
    last = unique("Snow")
    new_patient(site, "Dee", last, "1985-03-04")
    dash = sign_in(pages, site)
    open_patient(dash, last, "Dee")
    dash.get_by_test_id("tab-portal").click()
    expect(dash.get_by_test_id("portal-email-missing")).to_contain_text(
        "Add it on the Profile tab first"
    )
    expect(dash.get_by_test_id("btn-invite")).to_be_disabled()
    expect(dash.get_by_test_id("btn-reinvite")).to_be_disabled()
    assert status_of(dash) == {
        "opted-out": "No",
        "activated-on": "—",
        "registered-on": "—",
        "last-login-on": "Never",
        "last-reinvited-on": "Never",
    }
    dash.get_by_test_id("btn-open-profile").click()
    expect(dash.get_by_test_id("panel-profile")).to_be_visible()


def test_invite_reinvite_to_a_one_off_address_then_activation_and_sign_in_update_the_status(
    pages: Pages, site: WebServer, mailbox: SyncMailbox
) -> None:
    last = unique("Tate")
    profile_email = f"eve.{last.lower()}@example.com"
    one_off = f"eve.work.{last.lower()}@example.com"
    patient_id = new_patient(site, "Eve", last, "1970-04-05", email=profile_email)
    dash = sign_in(pages, site)
    open_patient(dash, last, "Eve")
    dash.get_by_test_id("tab-portal").click()
    expect(dash.get_by_test_id("portal-email")).to_have_value(profile_email)
    expect(dash.get_by_test_id("portal-email-hint")).to_contain_text(
        "used for this invitation only"
    )
    expect(dash.get_by_test_id("btn-invite")).to_have_text("Activate Account")
    expect(dash.get_by_test_id("btn-invite")).to_be_enabled()
    expect(dash.get_by_test_id("btn-reinvite")).to_be_disabled()

    dash.get_by_test_id("btn-invite").click()
    expect(dash.get_by_test_id("portal-message")).to_have_text(
        f"Invitation sent to {profile_email}."
    )
    mailbox.nth_to(profile_email)
    refresh_until(dash, "status-activated-on", us_today())
    assert status_of(dash)["registered-on"] == "Pending"
    expect(dash.get_by_test_id("btn-invite")).to_be_disabled()
    expect(dash.get_by_test_id("btn-reinvite")).to_be_enabled()

    # Reinvite to an address typed for this invitation only: the profile keeps its email.
    dash.get_by_test_id("portal-email").fill(one_off)
    dash.get_by_test_id("btn-reinvite").click()
    expect(dash.get_by_test_id("portal-message")).to_contain_text(
        f"sent to {one_off} (for this invitation only; the profile email stays {profile_email})"
    )
    mail = mailbox.nth_to(one_off)
    assert rest(site, "GET", f"/v1/portal/patients/{patient_id}")["email"] == profile_email
    expect(dash.get_by_test_id("status-last-reinvited-on")).to_have_text(us_today())

    # The patient opens the link, activates, and is led to sign in.
    patient = pages.new("patient")
    patient.goto(mail.link)
    expect(patient.get_by_test_id("activate-practice")).to_have_text(PRACTICE_NAME)
    assert "token" not in patient.url
    patient.get_by_test_id("activate-password").fill(PASSWORD)
    patient.get_by_test_id("activate-confirm").fill(PASSWORD)
    patient.get_by_test_id("btn-activate").click()
    expect(patient.get_by_test_id("activate-message")).to_contain_text("is active")
    patient.get_by_test_id("link-signin").click()
    expect(patient).to_have_url(f"{site.url}/portal/signin")
    refresh_until(dash, "status-registered-on", us_today())
    assert status_of(dash)["last-login-on"] == "Never"
    patient.get_by_test_id("signin-email").fill(one_off)
    patient.get_by_test_id("signin-password").fill("not the password")
    patient.get_by_test_id("btn-patient-signin").click()
    expect(patient.get_by_test_id("signin-message")).to_have_text(
        "The email or password is not correct. Please check them and try again."
    )
    patient.get_by_test_id("signin-password").fill(PASSWORD)
    patient.get_by_test_id("btn-patient-signin").click()
    expect(patient.get_by_test_id("patient-hello")).to_have_text("Welcome, Eve. You are signed in.")
    expect(patient.get_by_test_id("patient-practice")).to_have_text(
        f"Your practice: {PRACTICE_NAME}"
    )
    patient.reload()  # the session cookie keeps the patient signed in
    expect(patient.get_by_test_id("patient-welcome")).to_be_visible()
    refresh_until(dash, "status-last-login-on", us_today())

    # An active account: its login email is shown; staff are sent to customer care.
    expect(dash.get_by_test_id("portal-account-email")).to_have_value(one_off)
    expect(dash.get_by_test_id("portal-contact-support")).to_contain_text("contact customer care")
    expect(dash.get_by_test_id("account-email-input")).to_have_count(0)
    expect(dash.get_by_test_id("btn-invite")).to_have_count(0)
    patient.get_by_test_id("btn-patient-signout").click()
    expect(patient.get_by_test_id("signin-message")).to_have_text("You are signed out.")
    pages.errors[:] = [e for e in pages.errors if "401" not in e]  # the wrong password


def test_support_users_see_the_change_login_email_action(
    pages: Pages, site: WebServer, mailbox: SyncMailbox
) -> None:
    last = unique("Ulm")
    address = f"fay.{last.lower()}@example.com"
    patient_id = new_patient(site, "Fay", last, "1966-05-06", email=address)
    rest(site, "POST", f"/v1/portal/patients/{patient_id}/invite", {})
    mail = mailbox.nth_to(address)
    code, _ = site.rest("POST", "/v1/portal/activate", {"token": mail.token, "password": PASSWORD})
    assert code == 200
    support = staff_token(scope="rooms:admin rooms:host portal:support")
    dash = sign_in(pages, site, "support", support)
    open_patient(dash, last, "Fay")
    dash.get_by_test_id("tab-portal").click()
    expect(dash.get_by_test_id("portal-contact-support")).to_have_count(0)
    moved = f"fay.new.{last.lower()}@example.com"
    dash.get_by_test_id("account-email-input").fill(moved)
    dash.get_by_test_id("btn-change-account-email").click()
    expect(dash.get_by_test_id("portal-message")).to_have_text(f"The login email is now {moved}.")
    expect(dash.get_by_test_id("portal-account-email")).to_have_value(moved)


def test_an_opt_out_voids_the_invitation_and_the_status_says_so(
    pages: Pages, site: WebServer, mailbox: SyncMailbox
) -> None:
    last = unique("Vale")
    address = f"gus.{last.lower()}@example.com"
    new_patient(site, "Gus", last, "1955-07-08", email=address)
    dash = sign_in(pages, site)
    open_patient(dash, last, "Gus")
    dash.get_by_test_id("tab-portal").click()
    dash.get_by_test_id("btn-invite").click()
    mailbox.nth_to(address)
    refresh_until(dash, "status-activated-on", us_today())
    opt_out = dash.get_by_test_id("portal-opt-out")
    expect(dash.locator("label[for=portal-opt-out]")).to_have_text(
        "Patient does not want to receive access to health information"
    )
    opt_out.check()
    expect(dash.get_by_test_id("status-opted-out")).to_have_text("Yes")
    assert status_of(dash)["registered-on"] == "—", "a voided invitation is not Pending"
    assert status_of(dash)["activated-on"] == us_today()
    expect(dash.get_by_test_id("btn-invite")).to_be_disabled()
    expect(dash.get_by_test_id("btn-reinvite")).to_be_disabled()
    expect(dash.get_by_test_id("portal-actions-hint")).to_contain_text("opted out")
    dash.get_by_test_id("portal-opt-out").uncheck()
    expect(dash.get_by_test_id("status-opted-out")).to_have_text("No")
    expect(dash.get_by_test_id("btn-reinvite")).to_be_enabled()


def test_activation_page_errors_and_a_second_link_in_the_same_tab(
    pages: Pages, site: WebServer, mailbox: SyncMailbox
) -> None:
    links = {}
    ids = {}
    for first in ("Hal", "Ivy"):
        last = unique("Wren")
        address = f"{first.lower()}.{last.lower()}@example.com"
        ids[first] = new_patient(site, first, last, "1988-08-09", email=address)
        rest(site, "POST", f"/v1/portal/patients/{ids[first]}/invite", {})
        links[first] = mailbox.nth_to(address).link
    page = pages.new("activate")
    page.goto(f"{site.url}/portal/activate")
    expect(page.get_by_test_id("activate-message")).to_have_text(
        "Open this page with the activation link from your invitation email."
    )
    page.goto(links["Hal"])
    expect(page.get_by_test_id("activate-practice")).to_have_text(PRACTICE_NAME)
    page.get_by_test_id("activate-password").fill("short")
    page.get_by_test_id("activate-confirm").fill("short")
    page.get_by_test_id("btn-activate").click()
    expect(page.get_by_test_id("activate-message")).to_have_text(
        "Choose a password of at least 12 characters."
    )
    page.get_by_test_id("activate-password").fill(PASSWORD)
    page.get_by_test_id("activate-confirm").fill(PASSWORD + "x")
    page.get_by_test_id("btn-activate").click()
    expect(page.get_by_test_id("activate-message")).to_contain_text("not the same")

    # A second link opened in the same tab (only the fragment changes): read afresh.
    page.evaluate("window.samePage = true")
    page.goto(links["Ivy"])
    assert page.evaluate("window.samePage") is True, "the browser did not load the page again"
    expect(page.get_by_test_id("activate-password")).to_have_value("")
    expect(page.get_by_test_id("activate-message")).to_have_text("")
    page.get_by_test_id("activate-password").fill(PASSWORD)
    page.get_by_test_id("activate-confirm").fill(PASSWORD)
    page.get_by_test_id("btn-activate").click()
    expect(page.get_by_test_id("link-signin")).to_be_visible()
    ivy = rest(site, "GET", f"/v1/portal/patients/{ids['Ivy']}/status")
    hal = rest(site, "GET", f"/v1/portal/patients/{ids['Hal']}/status")
    assert ivy["account_email"] is not None and hal["registered_on"] == "Pending"

    # A used link and an unknown one get the same plain-language answer, and no form.
    for link in (links["Ivy"], f"{site.url}/portal/activate#token=" + "A" * 43):
        page.goto(link)
        expect(page.get_by_test_id("activate-message")).to_have_text(
            "This activation link no longer works. It may have been used already, replaced"
            " by a newer invitation, or expired. Please ask your practice to send you a new"
            " invitation."
        )
        expect(page.get_by_test_id("activate-password")).to_be_hidden()
    assert not [url for url in pages.requests if "token" in url]
    pages.errors[:] = [e for e in pages.errors if "400" not in e]  # the refused links


def test_scheduling_a_visit_emails_the_patient_link_through_the_outbox(
    pages: Pages, site: WebServer, mailbox: SyncMailbox
) -> None:
    last = unique("Xu")
    address = f"jo.{last.lower()}@example.com"
    new_patient(site, "Jo", last, "1999-09-10", email=address)
    dash = sign_in(pages, site)
    room = "visit-" + last.lower()
    local = datetime.now(ZoneInfo(TIMEZONE)).replace(second=0, microsecond=0) + timedelta(hours=1)
    dash.get_by_test_id("schedule-date").fill(local.strftime("%Y-%m-%d"))
    dash.get_by_test_id("schedule-start").fill(local.strftime("%H:%M"))
    end = min(local + timedelta(minutes=30), local.replace(hour=23, minute=59))
    dash.get_by_test_id("schedule-end").fill(end.strftime("%H:%M"))
    dash.get_by_test_id("schedule-room-id").fill(room)
    picker = dash.get_by_test_id("schedule-patient-input")
    picker.press_sequentially("Zzyzx", delay=30)
    expect(dash.get_by_test_id("schedule-patient-status")).to_have_text(
        "No matching patients in your practice."
    )
    picker.press("Enter")  # Enter in the search never submits the schedule form
    expect(dash.get_by_test_id("schedule-success")).to_have_count(0)
    picker.fill("")
    picker.press_sequentially(last, delay=30)
    dash.get_by_test_id("schedule-patient-result").filter(has_text=f"{last}, Jo").click()
    expect(dash.get_by_test_id("schedule-patient-chosen")).to_contain_text(f"Jo {last}")
    expect(dash.get_by_test_id("schedule-email-patient")).to_be_checked()
    dash.get_by_test_id("btn-schedule").click()
    expect(dash.get_by_test_id("schedule-success")).to_contain_text(f"/r/{room}")
    expect(dash.get_by_test_id("schedule-email-result")).to_contain_text(f"on its way to Jo {last}")
    item = dash.locator(f'[data-testid="visit-item"][data-room-id="{room}"]')
    expect(item.get_by_test_id("visit-patient")).to_have_text(f"Jo {last}")
    named = [url for url in pages.requests if last.lower() in url.lower() and "?q=" not in url]
    assert not named  # the list's name comes in a body, never a URL (the search's q aside)
    mail = mailbox.nth_to(address)
    assert f"{site.url}/r/{room}" in mail.text
    assert "#" not in mail.text and "token" not in mail.text.lower()
    assert PRACTICE_NAME in str(mail.message["Subject"])


@pytest.mark.parametrize("size", [(1280, 800), (390, 844)], ids=["desktop", "phone"])
def test_every_control_is_inside_the_viewport(
    pages: Pages, site: WebServer, mailbox: SyncMailbox, size: tuple[int, int]
) -> None:
    last = unique("Yard")
    address = f"kim.{last.lower()}@example.com"
    patient_id = new_patient(site, "Kim", last, "1977-10-11", email=address)
    new_patient(site, "Lou", last, "1978-11-12")
    rest(site, "POST", f"/v1/portal/patients/{patient_id}/invite", {})
    link = mailbox.nth_to(address).link
    dash = sign_in(pages, site)
    dash.set_viewport_size({"width": size[0], "height": size[1]})
    assert unusable_controls(dash, page_may_scroll=True) == []
    expect(search(dash, last)).to_have_count(2)
    assert unusable_controls(dash, page_may_scroll=True) == []
    open_patient(dash, last, "Kim")
    assert unusable_controls(dash, page_may_scroll=True) == []
    dash.get_by_test_id("tab-portal").click()
    expect(dash.get_by_test_id("portal-status")).to_be_visible()
    assert unusable_controls(dash, page_may_scroll=True) == []
    for path in (link, f"{site.url}/portal/signin"):
        page = pages.new("patient")
        page.set_viewport_size({"width": size[0], "height": size[1]})
        page.goto(path)
        expect(page.locator("form")).to_be_visible()
        assert unusable_controls(page, page_may_scroll=True) == []
    shots = Path("artifacts") / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    dash.screenshot(path=str(shots / f"patient-portal-tab-{size[0]}.png"), full_page=True)
    assert re.match(r"^\d{2}/\d{2}/\d{4}$", us_today())
