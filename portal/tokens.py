"""Activation tokens and links.

An invitation gets a random seed, `secrets.token_urlsafe(32)` (256 bits),
kept in its outbox row only until the email is sent. The token in the link is
HMAC-SHA256(key, seed), the key derived from the server's API secret, so:

- the database never holds a usable token: invitations keep only SHA-256(token),
  and the seed alone (say, in a stolen backup) does not give the token;
- every send attempt of one message, also after a restart, carries the same
  token and link, so a duplicate email is byte-for-byte the same message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping

KEY_LABEL = b"visitroom portal activation token v1"
LINK_PATH = "/portal/activate"


def new_seed() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the store keeps of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def activation_link(base_url: str, token: str) -> str:
    """The link always starts with the configured base URL; the token rides in the fragment,
    which browsers never send to a server or put in a Referer."""
    return f"{base_url.rstrip('/')}{LINK_PATH}#token={token}"


class TokenMaker:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the token key must be at least 32 bytes")
        self._key = key

    @classmethod
    def from_api_keys(cls, api_keys: Mapping[str, str]) -> TokenMaker:
        """Derived from the API secret of the lowest API key: stable across restarts."""
        secret = api_keys[min(api_keys)]
        return cls(hmac.new(secret.encode(), KEY_LABEL, hashlib.sha256).digest())

    def token(self, seed: str) -> str:
        digest = hmac.new(self._key, seed.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def hash_for_seed(self, seed: str) -> str:
        return token_hash(self.token(seed))
