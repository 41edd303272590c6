"""Typed application keys for what every mounted part shares: the audit trail,
the admin-token verifier and who the client is (set by the composition root)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from common.audit import SqliteAuditLog
from common.tokens import TokenVerifier

AUDIT = web.AppKey("audit", SqliteAuditLog)
VERIFIER = web.AppKey("verifier", TokenVerifier)
# The client's address of a request: behind a trusted reverse proxy, the proxy's
# X-Forwarded-For hop (VISITROOM_TRUSTED_PROXIES); else the peer address.
CLIENT_ADDRESS = web.AppKey[Callable[[web.BaseRequest], str]]("client_address")
