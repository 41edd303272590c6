"""The provider dashboard in a real browser: sign in with an admin token (the integrators'
way, under "Sign in with an API token"), schedule, list, copy the patient link, and join
as host in a new window. Staff sign-in with email and password: tests/test_web_staff.py."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from tests.conftest import admin_token, token
from tests.web_support import TIMEZONE, Pages, WebServer, token_sign_in

pytestmark = pytest.mark.browser


def test_sign_in_schedule_list_copy_and_join(pages: Pages, site: WebServer) -> None:
    admin = admin_token()
    dash = pages.new("dashboard")
    dash.goto(f"{site.url}/dashboard")
    token_sign_in(dash, admin)
    expect(dash.get_by_test_id("screen-dashboard")).to_be_visible()
    assert admin not in dash.url
    assert dash.evaluate("sessionStorage.getItem('visitroom.adminToken')") == admin

    # Schedule a visit that started five minutes ago, in the browser's local time,
    # but today: just after midnight, five minutes ago was yesterday's list.
    room = "dash-" + uuid.uuid4().hex[:8]
    now = datetime.now(ZoneInfo(TIMEZONE)).replace(second=0, microsecond=0)
    start = max(now - timedelta(minutes=5), now.replace(hour=0, minute=0))
    end = min(start + timedelta(minutes=30), start.replace(hour=23, minute=59))
    dash.get_by_test_id("schedule-date").fill(start.strftime("%Y-%m-%d"))
    dash.get_by_test_id("schedule-start").fill(start.strftime("%H:%M"))
    dash.get_by_test_id("schedule-end").fill(end.strftime("%H:%M"))
    dash.get_by_test_id("schedule-room-id").fill(room)
    dash.get_by_test_id("btn-schedule").click()
    expect(dash.get_by_test_id("schedule-success")).to_contain_text(f"/r/{room}")
    _, record = site.rest("GET", f"/v1/rooms/{room}")
    assert datetime.fromisoformat(record["starts_at"].replace("Z", "+00:00")) == start

    later = site.schedule(starts_in=timedelta(days=3))
    today = dash.get_by_test_id("visits-today")
    item = today.get_by_test_id("visit-item").filter(has_text=room)
    expect(item.get_by_test_id("visit-time")).to_have_text(f"{start:%H:%M}\N{EN DASH}{end:%H:%M}")
    expect(item.get_by_test_id("patient-link")).to_have_value(f"{site.url}/r/{room}")
    expect(item.get_by_test_id("btn-join-visit")).to_be_visible()
    upcoming = dash.get_by_test_id("visits-upcoming").get_by_test_id("visit-item")
    dash.reload()  # the list refreshes on its own every 30 s; a reload shows `later` now
    expect(dash.get_by_test_id("screen-dashboard")).to_be_visible()
    expect(upcoming.filter(has_text=later)).to_be_visible()
    expect(upcoming.filter(has_text=later).get_by_test_id("btn-join-visit")).to_have_count(0)

    item.get_by_test_id("btn-copy-link").click()
    expect(dash.get_by_test_id("announcer")).to_have_text("Patient link copied.")

    # Join opens the host page in a new window; the token arrives by postMessage.
    with dash.context.expect_page() as popup:
        item.get_by_test_id("btn-join-visit").click()
    host = popup.value
    pages.watch(host, "host")
    expect(host.get_by_test_id("screen-precall")).to_be_visible()
    host.get_by_test_id("btn-skip-test").click()
    host.get_by_test_id("btn-join").click()
    expect(host.get_by_test_id("screen-room")).to_be_visible()
    assert host.url == f"{site.url}/host/{room}"
    assert not [url for url in pages.requests if "eyJ" in url]  # no JWT in any URL

    # A reload of the host window resumes the session the tab kept: straight back in.
    self_tile = host.get_by_test_id("video-grid").locator("[data-kind=self]")
    host_id = self_tile.get_attribute("data-participant-id")
    host.reload()
    expect(host.get_by_test_id("screen-room")).to_be_visible()
    expect(self_tile).to_have_attribute("data-participant-id", host_id or "")
    # Without it, the page asks the dashboard again for a fresh token; the new
    # connection takes the host's place (the same participant).
    host.evaluate("sessionStorage.clear()")
    host.reload()
    host.get_by_test_id("btn-skip-test").click()
    host.get_by_test_id("btn-join").click()
    expect(host.get_by_test_id("screen-room")).to_be_visible()
    expect(self_tile).to_have_attribute("data-participant-id", host_id or "")

    dash.get_by_test_id("btn-signout").click()
    expect(dash.get_by_test_id("screen-signin")).to_be_visible()
    assert dash.evaluate("sessionStorage.getItem('visitroom.adminToken')") is None


def test_a_token_that_is_not_an_admin_token_is_refused(pages: Pages, site: WebServer) -> None:
    dash = pages.new("dashboard")
    dash.goto(f"{site.url}/dashboard")
    token_sign_in(dash, token("visit-1", "dr-x", "host", "Dr X"))
    expect(dash.get_by_test_id("signin-error")).to_have_text("That token was not accepted.")
    expect(dash.get_by_test_id("screen-dashboard")).to_have_count(0)
    pages.errors[:] = [e for e in pages.errors if "401" not in e]  # the refused sign-in


def test_the_host_page_without_a_token_says_where_to_get_one(pages: Pages, site: WebServer) -> None:
    room = site.schedule()
    host = pages.new("host")
    host.goto(f"{site.url}/host/{room}")
    expect(host.get_by_test_id("screen-error")).to_contain_text(
        "Open this visit from your dashboard"
    )


def test_a_second_join_click_focuses_the_open_host_window(pages: Pages, site: WebServer) -> None:
    """Join again for a visit whose host window is open (even after the dashboard itself
    was reloaded) brings that window forward; it never reloads it out of the call."""
    room = site.schedule()
    dash = pages.new("dashboard")
    dash.goto(f"{site.url}/dashboard")
    token_sign_in(dash, admin_token())
    join = dash.get_by_test_id("visit-item").filter(has_text=room).get_by_test_id("btn-join-visit")
    with dash.context.expect_page() as popup:
        join.click()
    host = popup.value
    pages.watch(host, "host")
    sockets: list[str] = []
    host.on("websocket", lambda ws: sockets.append(ws.url))
    host.get_by_test_id("btn-skip-test").click()
    host.get_by_test_id("btn-join").click()
    expect(host.get_by_test_id("screen-room")).to_be_visible()
    host.evaluate("window.stillHere = 'yes'")
    count = len(dash.context.pages)

    for reload_dashboard in (False, True):
        if reload_dashboard:
            dash.reload()
        join.click()
        expect(dash.get_by_test_id("announcer")).to_have_text(
            f"The visit {room} is already open in another window."
        )
        assert len(dash.context.pages) == count, "no second host window"
        assert host.evaluate("window.stillHere") == "yes", "the host window was not reloaded"
        expect(host.get_by_test_id("screen-room")).to_be_visible()
        assert len(sockets) == 1


def test_a_portal_front_desk_token_cannot_sign_in_to_the_dashboard(
    pages: Pages, site: WebServer
) -> None:
    front_desk = token("*", "frontdesk-1", "host", admin=True, practice="p1")  # portal:staff
    dash = pages.new("dashboard")
    dash.goto(f"{site.url}/dashboard")
    token_sign_in(dash, front_desk)
    expect(dash.get_by_test_id("signin-error")).to_contain_text("needs the rooms:admin scope")
    expect(dash.get_by_test_id("screen-dashboard")).to_have_count(0)
    pages.errors[:] = [e for e in pages.errors if "403" not in e]  # the refused sign-in


def test_a_practice_sees_its_own_visits_and_joins_only_with_rooms_host(
    pages: Pages, site: WebServer
) -> None:
    p1_admin = token("*", "admin-p1", "host", admin=True, practice="p1", scope="rooms:admin")
    front_desk = token("*", "frontdesk-1", "host", admin=True, practice="p1")  # portal:staff
    patient = {"first_name": "Quill", "last_name": "Onfile", "date_of_birth": "1970-01-02"}
    status, created = site.rest("POST", "/v1/portal/patients", patient, tok=front_desk)
    assert status == 201, created
    body = {**visit_body(), "patient_id": created["patient_id"]}
    status, mine = site.rest("POST", "/v1/rooms", body, tok=p1_admin)
    assert status == 201, mine
    other = site.schedule()  # the operator's, in no practice
    dash = pages.new("dashboard")
    dash.goto(f"{site.url}/dashboard")
    token_sign_in(dash, p1_admin)
    expect(dash.get_by_test_id("dash-practice")).to_have_text("Practice: p1")
    today = dash.get_by_test_id("visits-today")
    item = today.get_by_test_id("visit-item").filter(has_text=mine["room_id"])
    expect(item.get_by_test_id("patient-link")).to_be_visible()
    expect(today.get_by_test_id("visit-item").filter(has_text=other)).to_have_count(0)
    expect(item.get_by_test_id("btn-join-visit")).to_have_count(0)  # no rooms:host
    expect(dash.get_by_test_id("no-host-hint")).to_be_visible()
    # Without portal access the list says only that the visit has a patient, never who.
    expect(item.get_by_test_id("visit-patient")).to_have_text("Patient on file")
    assert "Onfile" not in dash.content()


def visit_body() -> dict[str, str]:
    start = datetime.now(ZoneInfo("UTC")) - timedelta(minutes=5)
    return {
        "room_id": "p1-" + uuid.uuid4().hex[:8],
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=30)).isoformat(),
    }


def test_the_host_page_with_a_portal_token_says_it_cannot_open_the_visit(
    pages: Pages, site: WebServer
) -> None:
    room = site.schedule()
    front_desk = token(room, "frontdesk-1", "host", admin=True, practice="p1")  # portal:staff
    host = pages.new("host")
    host.goto(f"{site.url}/host/{room}#token={front_desk}")
    host.get_by_test_id("btn-skip-test").click()
    host.get_by_test_id("btn-join").click()
    expect(host.get_by_test_id("screen-error")).to_contain_text("can't open this visit")
    _, audit = site.rest("GET", f"/v1/rooms/{room}/audit")
    refused = [e for e in audit["entries"] if e["actor"] == "frontdesk-1"]
    assert [(e["action"], e["outcome"]) for e in refused] == [("hello", "forbidden")]
