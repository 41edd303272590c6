"""Check a webhook delivery: `X-Visitroom-Signature: sha256=<hex HMAC-SHA256 of the raw
body>` compared in constant time, and `X-Visitroom-Timestamp` (seconds) within a window.

Check the raw bytes before parsing them, then drop an event `id` already handled
(deliveries are at least once). The signature covers the body only, not the
timestamp header: the window limits how late a delivery is accepted, the event id
is what makes a replay harmless.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from common.webhooksig import (
    DEFAULT_TOLERANCE_S,
    PREFIX,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    sign,
    verify,
)

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "PREFIX",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "SignatureError",
    "sign",
    "sign_webhook",
    "verify",
    "verify_webhook",
]

# The signing rule is the server's own (common/webhooksig.py); the SDK adds the
# header lookup and the parsing.
sign_webhook = sign


def verify_webhook(
    secret: str | bytes,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> dict[str, Any]:
    """The event of a delivery whose headers check out (SignatureError otherwise).

    `headers` is the request's (any mapping with case-insensitive lookup, such
    as aiohttp's or Starlette's, or a plain dict with these exact names).
    """
    signature, timestamp = headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER)
    verify(secret, body, signature, timestamp, now=now, tolerance_s=tolerance_s)
    try:
        event: Any = json.loads(body)
    except ValueError:
        raise SignatureError("the body is not JSON") from None
    if not isinstance(event, dict):
        raise SignatureError("the body is not a JSON object")
    return event
