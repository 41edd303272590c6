"""Check a webhook delivery: `X-Visitroom-Signature: sha256=<hex HMAC-SHA256 of the raw
body>` compared in constant time, and `X-Visitroom-Timestamp` (seconds) within a window.

Check the raw bytes before parsing them, then drop an event `id` already handled
(deliveries are at least once). The signature covers the body only, not the
timestamp header: the window limits how late a delivery is accepted, the event id
is what makes a replay harmless.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

# -- The signing rule. The webhook sender's common/webhooksig.py (another branch) has
# -- the same names and behaviour; once both are merged, import these from there.
SIGNATURE_HEADER = "X-Visitroom-Signature"
TIMESTAMP_HEADER = "X-Visitroom-Timestamp"
PREFIX = "sha256="
DEFAULT_TOLERANCE_S = 300.0


class SignatureError(ValueError):
    """A delivery whose signature or timestamp does not check out; the message says which."""


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: str | bytes, body: bytes) -> str:
    """The `X-Visitroom-Signature` value of `body`: ``sha256=<hex HMAC-SHA256>``."""
    return PREFIX + hmac.new(_key(secret), body, hashlib.sha256).hexdigest()


def verify(
    secret: str | bytes,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    now: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> None:
    """Raise SignatureError unless `signature` is `body`'s (compared in constant time)
    and `timestamp` is within `tolerance_s` of `now` (default: the current time)."""
    if not signature or not signature.startswith(PREFIX):
        raise SignatureError(f"no {SIGNATURE_HEADER}: sha256=... header")
    if not hmac.compare_digest(sign(secret, body).encode(), signature.strip().encode()):
        raise SignatureError("the signature does not match the body")
    try:
        sent = int(timestamp or "")
    except ValueError:
        raise SignatureError(f"no {TIMESTAMP_HEADER} header in seconds") from None
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance_s:
        raise SignatureError(f"the timestamp is more than {tolerance_s:.0f} s away from now")


# -- The SDK's part.
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
