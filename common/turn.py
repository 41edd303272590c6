"""Short-lived TURN credentials in the TURN REST API scheme coturn implements.

coturn started with `use-auth-secret` and `static-auth-secret=SECRET` accepts a
username `EXPIRY:USER` (EXPIRY in Unix seconds) whose password is
base64(HMAC-SHA1(SECRET, username)), until EXPIRY. The server and coturn share
only SECRET; nothing is stored per participant, and a credential cannot be
stretched past its expiry without the secret.
(draft-uberti-behave-turn-rest-00; coturn's README.turnserver, "use-auth-secret")
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

MIN_SECRET_BYTES = 32
SCHEMES = ("turn:", "turns:")


class TurnConfigError(ValueError):
    """The TURN URLs or secret cannot be used."""


def check_turn(urls: Sequence[str], secret: str | None) -> None:
    """URLs must be turn:/turns: URLs, and come with a long enough shared secret."""
    for url in urls:
        if not url.startswith(SCHEMES):
            raise TurnConfigError(f"VISITROOM_TURN_URLS: {url!r} is not a turn: or turns: URL")
    if urls and secret is None:
        raise TurnConfigError(
            "VISITROOM_TURN_URLS needs VISITROOM_TURN_SECRET (coturn's static-auth-secret)"
        )
    if secret is not None and len(secret.encode()) < MIN_SECRET_BYTES:
        raise TurnConfigError(f"VISITROOM_TURN_SECRET must be at least {MIN_SECRET_BYTES} bytes")


def credentials(secret: str, user: str, expires_at: float) -> tuple[str, str]:
    """(username, password) valid until `expires_at` for `user` (no ':' kept in it)."""
    username = f"{int(expires_at)}:{user.replace(':', '_')}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_server(urls: Sequence[str], secret: str, user: str, expires_at: float) -> dict[str, object]:
    """One RTCIceServer object for a client: the TURN URLs with its own credential."""
    username, password = credentials(secret, user, expires_at)
    return {"urls": list(urls), "username": username, "credential": password}
