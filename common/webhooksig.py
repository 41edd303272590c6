"""Webhook signatures: HMAC-SHA256 of the raw request body, hex, with a timestamp header.

The server signs each delivery (signalling/webhooks.py); receivers, and the
Python server SDK, check it with `verify`. The signature covers exactly the
bytes of the body as sent, so a receiver must check it before parsing the
JSON.  `X-Visitroom-Timestamp` says when this attempt was sent (seconds since
the epoch); a receiver refuses one outside its window, and refuses an event
id it has already handled (deliveries are at least once).
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Visitroom-Signature"
TIMESTAMP_HEADER = "X-Visitroom-Timestamp"
PREFIX = "sha256="
DEFAULT_TOLERANCE_S = 300.0


class SignatureError(ValueError):
    """A delivery whose signature or timestamp does not check out; the message says which."""


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: str | bytes, body: bytes) -> str:
    """The `X-Visitroom-Signature` value for `body`: ``sha256=<hex HMAC-SHA256>``."""
    return PREFIX + hmac.new(_key(secret), body, hashlib.sha256).hexdigest()


def headers(secret: str | bytes, body: bytes, timestamp: float) -> dict[str, str]:
    """The signature and timestamp headers of one delivery attempt of `body`."""
    return {SIGNATURE_HEADER: sign(secret, body), TIMESTAMP_HEADER: str(int(timestamp))}


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
