"""Staff sign-in test support: practices and users written straight into the staff store,
and a client that signs in and carries the session cookie and CSRF token by hand
(the test client's cookie jar would not send a Secure cookie over plain HTTP)."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import argon2
from aiohttp import web
from aiohttp.test_utils import TestClient

from common.clock import Clock, wall_clock
from signalling.app import create_app, portal_config, staff_config
from staff.roles import Role, User
from staff.routes import STAFF
from staff.sessions import SECURE_COOKIE
from staff.store import StaffStore, new_user_id
from tests.conftest import make_config
from tests.portal_support import BASE_URL, Mailbox

ORIGIN = BASE_URL  # the public base URL's origin: where the dashboard is served from
PASSWORD = "a long staff password"
HASHER = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def staff_app(
    tmp_path: Path, mailbox: Mailbox | None = None, clock: Clock = wall_clock, **staff: Any
) -> web.Application:
    """The server with staff sign-in over TLS (per its https base URL), mail to `mailbox`."""
    config = make_config(tmp_path, public_base_url=BASE_URL)
    smtp = mailbox.url if mailbox else None
    portal = replace(portal_config(config, {}), retry_base_s=0.1, smtp_url=smtp)
    settings = replace(staff_config(config, {}), **staff)
    return create_app(config, portal=portal, staff=settings, clock=clock)


async def add_practice(app: web.Application, practice: str, name: str | None = None) -> None:
    await app[STAFF].store.create_practice(practice, name or f"Clinic {practice}", time.time())


async def add_user(
    app: web.Application, practice: str, email: str, role: Role, name: str = "Dr. Ana Smith",
    password: str | None = PASSWORD,
) -> User:  # fmt: skip
    user = User(new_user_id(), practice, email, name, role)
    store: StaffStore = app[STAFF].store
    await store.add_user(user, HASHER.hash(password) if password else None, time.time())
    return user


@dataclass
class Staff:
    """One browser's worth of session: the cookie and the CSRF token it was given."""

    client: TestClient[Any, Any]
    cookie: str = ""
    csrf: str = ""
    set_cookie: str = ""

    async def sign_in(
        self, email: str, password: str = PASSWORD, code: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"email": email, "password": password}
        if code is not None:
            body["code"] = code
        headers = {"Origin": ORIGIN}
        if self.cookie:  # a browser sends the cookie it has
            headers["Cookie"] = f"{SECURE_COOKIE}={self.cookie}"
        response = await self.client.post("/v1/staff/sign-in", json=body, headers=headers)
        data = await response.json()
        if response.status == 200:
            self.set_cookie = response.headers["Set-Cookie"]
            morsel = SimpleCookie(self.set_cookie)[SECURE_COOKIE]
            self.cookie = morsel.value
            self.csrf = data["csrf_token"]
        return response.status, data

    def headers(self, csrf: bool = True, origin: str | None = ORIGIN) -> dict[str, str]:
        headers = {"Cookie": f"{SECURE_COOKIE}={self.cookie}"}
        if csrf:
            headers["X-CSRF-Token"] = self.csrf
        if origin is not None:
            headers["Origin"] = origin
        return headers

    async def call(
        self, method: str, path: str, body: Any = None, *, csrf: bool = True,
        origin: str | None = ORIGIN,
    ) -> tuple[int, dict[str, Any]]:  # fmt: skip
        response = await self.client.request(
            method, path, json=body, headers=self.headers(csrf, origin)
        )
        data = await response.json() if response.status != 204 else {}
        return response.status, data
