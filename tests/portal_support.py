"""Portal test support: a real SMTP server (aiosmtpd) on 127.0.0.1 and a REST helper."""

from __future__ import annotations

import asyncio
import email
import re
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from common.clock import Clock, wall_clock
from signalling.app import create_app, portal_config
from tests.conftest import make_config, token
from tests.servers import free_port, self_signed_cert

T = TypeVar("T")
BASE_URL = "https://portal.example.test"
LINK = re.compile(r"(https?://\S+?/portal/activate#token=([A-Za-z0-9_-]+))")
PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Mail:
    recipients: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        return str(part.get_content())

    @property
    def link(self) -> str:
        found = LINK.search(self.text)
        assert found, self.text
        return found.group(1)

    @property
    def token(self) -> str:
        return self.link.rpartition("#token=")[2]


class _TrackingSMTP(SMTP):
    """Counts open connections, so the test server stops only once every client is gone
    (a TLS transport torn down by a stopping loop warns later, at garbage collection)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._original_transport is None:  # not the second call that STARTTLS makes
            self.event_handler.opened()
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        self.event_handler.closed()


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _TrackingSMTP(self.handler, **self.SMTP_kwargs)


class Mailbox:
    """An aiosmtpd server in its own thread that keeps what it accepts.

    `hold_next()` makes the next DATA wait until `release()`, then answer 451
    without keeping the message (a server that never accepted it), or accept it.
    `refuse` holds recipients answered with 550 at RCPT.
    """

    def __init__(
        self,
        port: int | None = None,
        tls: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        auth: bool = False,
    ) -> None:
        self.port = port or free_port()
        self.mails: list[Mail] = []
        self.held_mails: list[Mail] = []
        self.refuse: set[str] = set()
        self.logins: list[str] = []
        self._loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()
        self.held = asyncio.Event()
        self._hold = False
        self._accept_held = False
        self._release = threading.Event()
        self._options: dict[str, Any] = {}
        if tls is not None and implicit_tls:
            # aiosmtpd only counts STARTTLS as TLS for AUTH; this connection is TLS throughout
            self._options.update(ssl_context=tls, auth_require_tls=False)
        elif tls is not None:
            self._options.update(tls_context=tls, require_starttls=True)
        if auth:
            self._options.update(auth_required=not implicit_tls, authenticator=self.authenticate)
        self._controller: Controller | None = None
        self._open = 0
        self._connections = threading.Condition()

    def opened(self) -> None:
        with self._connections:
            self._open += 1

    def closed(self) -> None:
        with self._connections:
            self._open -= 1
            self._connections.notify_all()

    @property
    def url(self) -> str:
        scheme = "smtps" if "ssl_context" in self._options else "smtp"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._controller = _Controller(
            self, hostname="127.0.0.1", port=self.port, ready_timeout=10, **self._options
        )
        self._controller.start()

    def stop(self) -> None:
        self._release.set()
        with self._connections:
            self._connections.wait_for(lambda: self._open == 0, timeout=10)
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def hold_next(self, accept: bool = False) -> None:
        """The next DATA waits for `release()`; then 250 if `accept`, else 451 (not kept)."""
        self._hold = True
        self._accept_held = accept
        self._release.clear()

    def release(self) -> None:
        self._release.set()

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[Mail]:
        async with asyncio.timeout(timeout):
            while len(self.mails) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.mails

    def to(self, address: str) -> list[Mail]:
        return [mail for mail in self.mails if address in mail.recipients]

    # --- aiosmtpd handler hooks (on the server's thread) ----------------------------------

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        parsed = email.message_from_bytes(envelope.original_content or b"", policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        mail = Mail(list(envelope.rcpt_tos), parsed)
        if self._hold:
            self._hold = False
            self.held_mails.append(mail)
            self._loop.call_soon_threadsafe(self.held.set)
            await asyncio.get_running_loop().run_in_executor(None, self._release.wait, 30)
            if not self._accept_held:
                return "451 4.3.0 not kept"
        self.mails.append(mail)
        self._loop.call_soon_threadsafe(self._arrived.set)
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password == b"smtp-secret"
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok, handled=False)


def tls_context(directory: Path) -> ssl.SSLContext:
    cert, key = self_signed_cert(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def eventually(
    probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], timeout: float = 10.0
) -> T:
    """Probe until `check` passes: for state a background task (the outbox sender) changes
    right after an event the test can see, such as the SMTP server's 250."""
    async with asyncio.timeout(timeout):
        while True:
            value = await probe()
            if check(value):
                return value
            await asyncio.sleep(0.02)


def bearer(**claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(room='*', role='host', admin=True, **claims)}"}


def staff_headers(practice: str = "p1", identity: str = "frontdesk-1") -> dict[str, str]:
    return bearer(identity=identity, practice=practice)


def support_headers() -> dict[str, str]:
    return bearer(identity="support-1", scope="portal:support")


def server_with_portal(
    tmp_path: Path, mailbox: Mailbox | None, clock: Clock = wall_clock, **portal: Any
) -> web.Application:
    """The server with its portal: mail to `mailbox` (None: it waits), quick retries;
    `portal`: PortalConfig fields to change."""
    config = make_config(tmp_path, public_base_url=BASE_URL)
    smtp = mailbox.url if mailbox else None
    settings = replace(portal_config(config, {}), retry_base_s=0.1, smtp_url=smtp)
    return create_app(config, portal=replace(settings, **portal), clock=clock)


# Test modules import these *_fixture names; tests ask for them by `name`.
@pytest.fixture(name="mailbox")
async def mailbox_fixture() -> AsyncIterator[Mailbox]:
    box = Mailbox()
    box.start()
    yield box
    box.stop()


@pytest.fixture(name="portal_app")
async def portal_app_fixture(tmp_path: Path, mailbox: Mailbox) -> web.Application:
    return server_with_portal(tmp_path, mailbox)


@pytest.fixture(name="portal")
async def portal_fixture(aiohttp_client: Any, portal_app: web.Application) -> Portal:
    return Portal(await aiohttp_client(portal_app))


class Portal:
    """REST calls of one practice's front desk against a test client."""

    def __init__(self, client: TestClient[Any, Any], practice: str = "p1") -> None:
        self.client = client
        self.headers = staff_headers(practice)

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        response = await self.client.request(
            method, path, json=body, headers=self.headers if headers is None else headers, **kwargs
        )
        return response.status, await response.json()

    async def create(
        self, first: str = "Ann", last: str = "Lee", born: str = "1980-02-03", **extra: Any
    ) -> str:
        body = {"first_name": first, "last_name": last, "date_of_birth": born, **extra}
        status, created = await self.call("POST", "/v1/portal/patients", body)
        assert status == 201, created
        patient_id: str = created["patient_id"]
        return patient_id

    async def invite(self, patient_id: str, kind: str = "invite", **body: Any) -> tuple[int, Any]:
        return await self.call("POST", f"/v1/portal/patients/{patient_id}/{kind}", body)

    async def status(self, patient_id: str) -> dict[str, Any]:
        code, body = await self.call("GET", f"/v1/portal/patients/{patient_id}/status")
        assert code == 200, body
        result: dict[str, Any] = body
        return result

    async def wait_status(
        self, patient_id: str, field: str, predicate: Callable[[Any], bool]
    ) -> dict[str, Any]:
        """The status once `predicate(status[field])` holds (delivery is in the background)."""
        return await eventually(lambda: self.status(patient_id), lambda s: predicate(s[field]))

    async def activate(self, token: str, password: str = PASSWORD) -> tuple[int, Any]:
        return await self.call(
            "POST", "/v1/portal/activate", {"token": token, "password": password}, headers={}
        )

    async def login(self, address: str, password: str = PASSWORD) -> tuple[int, Any]:
        return await self.call(
            "POST", "/v1/portal/login", {"email": address, "password": password}, headers={}
        )
