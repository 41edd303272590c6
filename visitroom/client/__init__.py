"""The Python server SDK: mint tokens, call the rooms REST API, verify webhooks.

    from visitroom.client import TokenMinter, VisitroomClient, verify_webhook

It stands on `common` alone (import-linter checks it): the server's own token
code signs the tokens, so the SDK mints exactly what the server verifies.
docs/tokens.md and docs/examples/integrator.py show it in use.
"""

from __future__ import annotations

from visitroom.client.api import ApiError, Unavailable, VisitroomClient
from visitroom.client.tokens import TokenMinter
from visitroom.client.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    sign_webhook,
    verify_webhook,
)

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "ApiError",
    "SignatureError",
    "TokenMinter",
    "Unavailable",
    "VisitroomClient",
    "sign_webhook",
    "verify_webhook",
]
