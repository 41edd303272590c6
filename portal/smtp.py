"""Sending one email over SMTP with smtplib, on a dedicated thread.

`smtp://host:port` uses STARTTLS when the server offers it, and insists on it
for any host that is not on this machine; `smtps://host:port` is TLS from the
first byte. Credentials come from VISITROOM_SMTP_USERNAME/PASSWORD and are never
sent over plain text. Errors are reduced to a class name and SMTP code: smtplib's
messages can carry addresses, which must not reach logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import smtplib
import ssl
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import urlsplit

from common.config import ConfigError
from portal.config import PortalConfig

DEFAULT_PORTS = {"smtp": 25, "smtps": 465}


class SendError(Exception):
    """A failed attempt. `permanent`: the server refused for good (5xx), do not retry."""

    def __init__(self, summary: str, permanent: bool = False) -> None:
        super().__init__(summary)
        self.summary = summary
        self.permanent = permanent


class Transport(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Return once the server accepted the message (250 after DATA); else SendError."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SmtpSettings:
    scheme: str
    host: str
    port: int
    timeout_s: float = 30.0
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def local(self) -> bool:
        """A server on this machine: mail to it never crosses a network."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @classmethod
    def from_config(cls, config: PortalConfig) -> SmtpSettings | None:
        """None when no SMTP server is configured (messages then wait in the outbox)."""
        if not config.smtp_url:
            return None
        url = urlsplit(config.smtp_url)
        if url.scheme not in DEFAULT_PORTS or not url.hostname:
            raise ConfigError("VISITROOM_SMTP_URL must look like smtp://host:port or smtps://host")
        if url.username or url.password:
            raise ConfigError(
                "put SMTP credentials in VISITROOM_SMTP_USERNAME and VISITROOM_SMTP_PASSWORD,"
                " not in the URL"
            )
        try:
            port = url.port or DEFAULT_PORTS[url.scheme]
        except ValueError:
            raise ConfigError("VISITROOM_SMTP_URL has a bad port") from None
        return cls(
            url.scheme,
            url.hostname,
            port,
            config.smtp_timeout_s,
            config.smtp_username,
            config.smtp_password,
        )

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.local:
            # A relay on this machine often has a self-signed certificate, and the
            # traffic never leaves the host: encrypt, but do not insist on a chain.
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def _summary(exc: BaseException) -> str:
    code = getattr(exc, "smtp_code", None)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = sorted({answer[0] for answer in exc.recipients.values()})
        code = codes[0] if codes else None
    if isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException):
        code = exc.errno
    return f"{type(exc).__name__}" + (f" {code}" if code is not None else "")


def _permanent(exc: BaseException) -> bool:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(answer[0] >= 500 for answer in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return False  # configuration: fix the credentials and it goes through
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code >= 500
    return False


class SmtpTransport:
    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="portal-smtp")

    async def send(self, message: EmailMessage) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._send_blocking, message)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _send_blocking(self, message: EmailMessage) -> None:
        try:
            client = self._connect()
            try:
                client.send_message(message)
            finally:
                # Once DATA got its 250 the message is the server's: a failing QUIT
                # must not turn that into an error (and a resend).
                with contextlib.suppress(smtplib.SMTPException, OSError):
                    client.quit()
                client.close()
        except SendError:
            raise
        except (smtplib.SMTPException, OSError) as exc:
            raise SendError(_summary(exc), _permanent(exc)) from None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        client: smtplib.SMTP
        if s.scheme == "smtps":
            client = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_s, context=s.tls_context())
        else:
            client = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
        try:
            self._secure_and_login(client)
        except BaseException:
            client.close()
            raise
        return client

    def _secure_and_login(self, client: smtplib.SMTP) -> None:
        s = self.settings
        client.ehlo()
        encrypted = s.scheme == "smtps"
        if not encrypted and client.has_extn("starttls"):
            client.starttls(context=s.tls_context())
            client.ehlo()
            encrypted = True
        if not encrypted and not s.local:
            raise SendError("STARTTLS not offered by a remote server")
        if s.username:
            client.login(s.username, s.password or "")
