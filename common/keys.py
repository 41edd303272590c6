"""Typed application keys for what every mounted part shares: the audit trail and
the admin-token verifier (set by the composition root on each app it builds)."""

from __future__ import annotations

from aiohttp import web

from common.audit import SqliteAuditLog
from common.tokens import TokenVerifier

AUDIT = web.AppKey("audit", SqliteAuditLog)
VERIFIER = web.AppKey("verifier", TokenVerifier)
