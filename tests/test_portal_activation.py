"""Activation links and logins: single use, expiry, identical answers and timing, rate limits."""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import argon2

from common.config import RateLimit
from common.keys import AUDIT
from portal.page import csp_hash
from signalling.app import create_app, portal_config
from tests.conftest import make_config
from tests.portal_support import (  # noqa: F401  (the *_fixture names are fixtures)
    BASE_URL,
    PASSWORD,
    Mailbox,
    Portal,
    mailbox_fixture,
    portal_app_fixture,
    portal_fixture,
    server_with_portal,
)
from waiting_room.clock import FakeClock

DAY = 86400.0
NO_LIMIT = RateLimit(0, 1.0)


async def clocked_portal(
    aiohttp_client: Any, tmp_path: Path, mailbox: Mailbox, **config: Any
) -> tuple[Portal, FakeClock, Any]:
    clock = FakeClock(time.time())
    app = server_with_portal(tmp_path, mailbox, clock, **config)
    return Portal(await aiohttp_client(app)), clock, app


async def timings(
    calls: Mapping[str, Callable[[], Awaitable[Any]]], rounds: int
) -> dict[str, float]:
    """Each kind's median time relative to its round's mean (1.0: no difference).

    Every round runs each kind once, in a random order, so the kinds share the
    machine's load of the moment; comparing within rounds cancels its drift.
    """
    for call in calls.values():  # warm up
        await call()
    ratios: dict[str, list[float]] = {kind: [] for kind in calls}
    for _ in range(rounds):
        took: dict[str, float] = {}
        for kind in random.sample(list(calls), len(calls)):
            started = time.perf_counter()
            await calls[kind]()
            took[kind] = time.perf_counter() - started
        mean = statistics.fmean(took.values())
        for kind, seconds in took.items():
            ratios[kind].append(seconds / mean)
    return {kind: statistics.median(values) for kind, values in ratios.items()}


def indistinguishable(relative: dict[str, float], tolerance: float = 0.2) -> bool:
    """Every kind within 20% of the round means; a path that skipped the argon2 work
    would take about 1% of the others' time (a ratio near 0.02)."""
    return all(abs(ratio - 1.0) <= tolerance for ratio in relative.values())


async def test_a_link_activates_once_and_then_answers_like_an_unknown_one(
    portal: Portal, mailbox: Mailbox
) -> None:
    patient_id = await portal.create(email="ann@example.com")
    assert (await portal.invite(patient_id))[0] == 202
    [mail] = await mailbox.wait_for(1)
    code, body = await portal.activate(mail.token)
    assert code == 200 and body["activated"] is True
    reused = await portal.activate(mail.token, "another long password")
    unknown = await portal.activate(secrets.token_urlsafe(32))
    assert reused == unknown and reused[0] == 400
    assert (await portal.login("ann@example.com"))[0] == 200
    assert (await portal.login("ann@example.com", "another long password"))[0] == 401


async def test_two_racing_activations_of_one_link_give_exactly_one_account(
    portal: Portal, mailbox: Mailbox
) -> None:
    patient_id = await portal.create(email="ann@example.com")
    assert (await portal.invite(patient_id))[0] == 202
    [mail] = await mailbox.wait_for(1)
    answers = await asyncio.gather(
        *(portal.activate(mail.token, f"password number {n}") for n in range(4))
    )
    assert sorted(code for code, _ in answers) == [200, 400, 400, 400]
    winner = next(n for n, (code, _) in enumerate(answers) if code == 200)
    assert (await portal.login("ann@example.com", f"password number {winner}"))[0] == 200


async def test_a_short_password_is_refused_and_the_link_still_works(
    portal: Portal, mailbox: Mailbox
) -> None:
    patient_id = await portal.create(email="ann@example.com")
    assert (await portal.invite(patient_id))[0] == 202
    [mail] = await mailbox.wait_for(1)
    code, body = await portal.activate(mail.token, "short")
    assert code == 400 and "12 characters" in body["error"]["message"]
    assert (await portal.activate(mail.token))[0] == 200


async def test_a_link_expires_after_the_configured_time(
    mailbox: Mailbox, aiohttp_client: Any, tmp_path: Path
) -> None:
    portal, clock, app = await clocked_portal(
        aiohttp_client, tmp_path, mailbox, invite_ttl_s=2 * DAY
    )
    patient_id = await portal.create(email="ann@example.com")
    assert (await portal.invite(patient_id))[0] == 202
    [mail] = await mailbox.wait_for(1)
    assert "expires in 2 days" in mail.text
    clock.advance(2 * DAY + 1)
    code, body = await portal.activate(mail.token)
    assert code == 400 and body == (await portal.activate("nope"))[1]
    assert (await portal.status(patient_id))["registered_on"] == "Pending"
    entries = await app[AUDIT].query(None)
    reasons = [e.get("reason") for e in entries if e["action"] == "portal_activate"]
    assert reasons == ["expired", "unknown"]
    assert (await portal.invite(patient_id, "reinvite"))[0] == 202
    [_, fresh] = await mailbox.wait_for(2)
    assert (await portal.activate(fresh.token))[0] == 200


async def test_unknown_used_and_expired_links_get_the_same_answer_in_the_same_time(
    mailbox: Mailbox, aiohttp_client: Any, tmp_path: Path
) -> None:
    portal, clock, _ = await clocked_portal(
        aiohttp_client, tmp_path, mailbox,
        public_rate_limit=NO_LIMIT, account_rate_limit=NO_LIMIT,
    )  # fmt: skip
    expired_patient = await portal.create(first="Exp", email="exp@example.com")
    assert (await portal.invite(expired_patient))[0] == 202
    [expired] = await mailbox.wait_for(1)
    clock.advance(8 * DAY)
    used_patient = await portal.create(first="Used", email="used@example.com")
    assert (await portal.invite(used_patient))[0] == 202
    [_, used] = await mailbox.wait_for(2)
    assert (await portal.activate(used.token))[0] == 200
    tokens = {"unknown": secrets.token_urlsafe(32), "used": used.token, "expired": expired.token}
    answers = {kind: await portal.activate(token) for kind, token in tokens.items()}
    assert answers["unknown"] == answers["used"] == answers["expired"]
    assert answers["unknown"][0] == 400
    calls = {kind: (lambda t=token: portal.activate(t)) for kind, token in tokens.items()}
    relative = await timings(calls, rounds=15)
    assert indistinguishable(relative), relative


async def test_unknown_emails_and_wrong_passwords_get_the_same_401_in_the_same_time(
    mailbox: Mailbox, aiohttp_client: Any, tmp_path: Path
) -> None:
    portal, _, _ = await clocked_portal(
        aiohttp_client, tmp_path, mailbox,
        public_rate_limit=NO_LIMIT, account_rate_limit=NO_LIMIT,
    )  # fmt: skip
    patient_id = await portal.create(email="ann@example.com")
    assert (await portal.invite(patient_id))[0] == 202
    [mail] = await mailbox.wait_for(1)
    assert (await portal.activate(mail.token))[0] == 200
    wrong = await portal.login("ann@example.com", "not the password")
    unknown = await portal.login("nobody@example.com", "not the password")
    malformed = await portal.login("not an address", "not the password")
    assert wrong == unknown == malformed and wrong[0] == 401
    assert wrong[1]["error"]["code"] == "unauthorized"
    calls = {
        "wrong": lambda: portal.login("ann@example.com", "not the password"),
        "unknown": lambda: portal.login("nobody@example.com", "not the password"),
    }
    relative = await timings(calls, rounds=15)
    assert indistinguishable(relative), relative


async def test_logins_are_tracked_by_day(
    mailbox: Mailbox, aiohttp_client: Any, tmp_path: Path
) -> None:
    portal, clock, app = await clocked_portal(aiohttp_client, tmp_path, mailbox)
    patient_id = await portal.create(email="ann@example.com")
    assert (await portal.invite(patient_id))[0] == 202
    [mail] = await mailbox.wait_for(1)
    assert (await portal.activate(mail.token))[0] == 200
    assert (await portal.status(patient_id))["last_login_on"] == "Never"
    code, body = await portal.login("ANN@example.com")
    assert code == 200
    first = (await portal.status(patient_id))["last_login_on"]
    assert first == body["last_login_on"] == time.strftime("%Y-%m-%d", time.gmtime(clock()))
    clock.advance(3 * DAY)
    assert (await portal.login("ann@example.com"))[0] == 200
    later = (await portal.status(patient_id))["last_login_on"]
    assert later == time.strftime("%Y-%m-%d", time.gmtime(clock())) and later > first
    logins = [e for e in await app[AUDIT].query(None) if e["action"] == "portal_login"]
    assert [(e["actor"], e["outcome"]) for e in logins] == [(patient_id, "ok")] * 2


async def test_activation_and_login_are_rate_limited_per_address_and_per_link(
    mailbox: Mailbox, aiohttp_client: Any, tmp_path: Path
) -> None:
    portal, _, _ = await clocked_portal(
        aiohttp_client, tmp_path, mailbox,
        public_rate_limit=RateLimit(8, 60), account_rate_limit=RateLimit(2, 60),
    )  # fmt: skip
    codes = [(await portal.login("ann@example.com", "wrong password!"))[0] for _ in range(3)]
    assert codes == [401, 401, 401]  # typos cost nothing; more failures slow the account
    assert (await portal.login("bob@example.com", "wrong password!"))[0] == 401
    codes = [(await portal.activate("guess-one"))[0] for _ in range(3)]
    assert codes == [400, 400, 429]  # the link's limit
    assert (await portal.activate("guess-two"))[0] == 400
    code, body = await portal.login("cy@example.com", "wrong password!")
    assert code == 429 and body["error"]["code"] == "rate_limited"  # the address's (8 in all)


async def login_from(portal: Portal, ip: str, email: str, password: str) -> tuple[int, Any]:
    """A login from another loopback address (all of 127.0.0.0/8 is this machine)."""
    connector = aiohttp.TCPConnector(local_addr=(ip, 0))
    body = {"email": email, "password": password}
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(portal.client.make_url("/v1/portal/login"), json=body) as response,
    ):
        return response.status, await response.json()


async def activated_ann(portal: Portal, mailbox: Mailbox) -> None:
    patient_id = await portal.create(email="ann@example.com")
    assert (await portal.invite(patient_id))[0] == 202
    [mail] = await mailbox.wait_for(1)
    assert (await portal.activate(mail.token))[0] == 200


async def test_wrong_passwords_from_eleven_addresses_slow_the_account_but_never_lock_it(
    mailbox: Mailbox, aiohttp_client: Any, tmp_path: Path
) -> None:
    portal, clock, app = await clocked_portal(aiohttp_client, tmp_path, mailbox)
    await activated_ann(portal, mailbox)
    waits = []
    for n in range(11):
        ip = f"127.0.0.{n + 2}"
        code, body = await login_from(portal, ip, "ann@example.com", "wrong password!")
        if code == 429:  # the account asks for a wait, and the attacker waits it out
            waits.append(body["error"]["retry_after"])
            clock.advance(waits[-1])
            code, body = await login_from(portal, ip, "ann@example.com", "wrong password!")
        assert code == 401, body
    assert waits == [1, 2, 4, 8, 16, 32, 60]  # doubling, capped at a minute
    code, body = await portal.login("ann@example.com")
    assert code == 429 and body["error"]["retry_after"] == 60  # slowed down, not locked out
    clock.advance(60)
    assert (await portal.login("ann@example.com"))[0] == 200  # the right password still works
    assert (await portal.login("ann@example.com", "wrong password!"))[0] == 401  # a fresh start
    logins = [e["outcome"] for e in await app[AUDIT].query(None) if e["action"] == "portal_login"]
    assert logins.count("rate_limited") == 8 and logins.count("unauthorized") == 12


async def test_parallel_wrong_passwords_cannot_share_one_opening(
    mailbox: Mailbox, aiohttp_client: Any, tmp_path: Path
) -> None:
    portal, _, _ = await clocked_portal(aiohttp_client, tmp_path, mailbox)
    tries = [portal.login("ann@example.com", "wrong password!") for _ in range(10)]
    codes = sorted(code for code, _ in await asyncio.gather(*tries))
    assert codes == [401] * 4 + [429] * 6  # three free failures, then one try a second


async def test_one_address_may_fail_only_so_often_across_accounts(
    mailbox: Mailbox, aiohttp_client: Any, tmp_path: Path
) -> None:
    portal, clock, _ = await clocked_portal(
        aiohttp_client, tmp_path, mailbox, login_address_limit=RateLimit(10, 900)
    )
    await activated_ann(portal, mailbox)
    ip = "127.0.0.7"
    for n in range(10):
        assert (await login_from(portal, ip, f"p{n}@example.com", "wrong password!"))[0] == 401
    code, body = await login_from(portal, ip, "p10@example.com", "wrong password!")
    assert code == 429 and 890 <= body["error"]["retry_after"] <= 900
    assert (await login_from(portal, ip, "ann@example.com", PASSWORD))[0] == 429  # hard
    assert (await portal.login("ann@example.com"))[0] == 200  # others are not held up
    clock.advance(900)
    assert (await login_from(portal, ip, "ann@example.com", PASSWORD))[0] == 200


async def test_behind_a_trusted_proxy_the_address_limit_counts_each_patient_apart(
    mailbox: Mailbox, aiohttp_client: Any, tmp_path: Path
) -> None:
    """Behind the documented reverse proxy every login comes from the proxy: the hard
    per-address limit must count the client (X-Forwarded-For), or 10 failures
    anywhere would lock every patient out."""
    config = make_config(tmp_path, public_base_url=BASE_URL, trusted_proxies=("127.0.0.1",))
    settings = replace(portal_config(config, {}), smtp_url=mailbox.url)
    portal = Portal(await aiohttp_client(create_app(config, portal=settings)))
    await activated_ann(portal, mailbox)
    url = portal.client.make_url("/v1/portal/login")

    async def login(client_ip: str, email: str, password: str) -> int:
        body = {"email": email, "password": password}
        headers = {"X-Forwarded-For": client_ip}
        async with portal.client.session.post(url, json=body, headers=headers) as response:
            return response.status

    for n in range(10):
        assert await login("198.51.100.7", f"p{n}@example.com", "wrong password!") == 401
    assert await login("198.51.100.7", "p10@example.com", "wrong password!") == 429
    assert await login("203.0.113.9", "ann@example.com", PASSWORD) == 200


async def test_argon2_runs_off_the_event_loop(portal: Portal, monkeypatch: Any) -> None:
    threads: list[int] = []
    real_verify = argon2.PasswordHasher.verify

    def verify_and_note_the_thread(self: Any, hash: str, password: str) -> Any:
        threads.append(threading.get_ident())
        return real_verify(self, hash, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", verify_and_note_the_thread)
    logins = [portal.login(f"p{n}@example.com", "some password!") for n in range(4)]
    assert [code for code, _ in await asyncio.gather(*logins)] == [401] * 4
    assert len(threads) == 4 and threading.get_ident() not in threads


async def test_the_landing_page_is_static_private_and_locked_down(portal: Portal) -> None:
    response = await portal.client.get("/portal/activate")
    assert response.status == 200
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    html = await response.text()
    for kind, body in re.findall(r"<(script|style)>(.*?)</\1>", html, re.DOTALL):
        assert f"{kind}-src {csp_hash(body)}" in csp
    # No external resources; its one link leads to the sign-in page on this origin.
    assert not re.search(r"src=|https?://|@import|url\(", html)
    assert re.findall(r'href="([^"]*)"', html) == ["/portal/signin"]
    assert "location.hash" in html and "/v1/portal/activate" in html


async def test_bad_activation_and_login_bodies_are_400(portal: Portal) -> None:
    for body in (
        {"token": "abc", "password": PASSWORD, "extra": 1},
        {"token": "abc"},
        {"password": 123456789012345, "token": "abc"},
    ):
        code, answer = await portal.call("POST", "/v1/portal/activate", body, headers={})
        assert code == 400 and answer["error"]["code"] == "bad_request"
    no_token = await portal.call("POST", "/v1/portal/activate", {"password": PASSWORD}, headers={})
    assert no_token == await portal.activate("unknown-token")
    code, _ = await portal.call(
        "POST", "/v1/portal/login", {"email": 5, "password": "x"}, headers={}
    )
    assert code == 400
