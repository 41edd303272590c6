"""Authentication of RPC connections between machines, with the cluster's shared secret.

Within a machine the pool and its workers talk over a socketpair nobody
else holds.  Across machines (``--redis``) a pool reaches another node's
worker over TCP, so the first message on such a connection must be a
``hello`` proving knowledge of the cluster secret (``VISITROOM_CLUSTER_SECRET``,
never an API secret), in the style of `cluster.hop`:

    hello [node_id, at, nonce, mac]   mac = HMAC-SHA256(key, "rpc|node|at|nonce")

The worker refuses a clock skew over `MAX_SKEW_S` and a nonce it has seen
(a replayed hello), and answers with its own proof,
``HMAC-SHA256(key, "rpc-ok|origin|nonce")``, so the pool knows it reached a
worker of the cluster too.  `key` is derived from the secret for this use
only.  Until a hello succeeds every other message is refused and the
connection closed.  The messages themselves are not encrypted: nothing on
this channel is secret (the relay keys are derived on each side, see
`sfu.relay.crypto`); run the cluster on a private network or a VPN all the
same.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from typing import Any

from cluster.kdf import derive

MAX_SKEW_S = 30.0
MAX_NONCES = 4096


def _mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def hello(secret: str, node_id: str, now: float | None = None) -> list[Any]:
    """The parameters of a ``hello`` request."""
    at = int(time.time() if now is None else now)
    nonce = secrets.token_hex(16)
    key = derive(secret, "rpc")
    return [node_id, at, nonce, _mac(key, f"rpc|{node_id}|{at}|{nonce}")]


def answer(secret: str, origin: int, nonce: str) -> str:
    return _mac(derive(secret, "rpc"), f"rpc-ok|{origin}|{nonce}")


def answer_ok(secret: str, origin: int, nonce: str, mac: object) -> bool:
    return isinstance(mac, str) and hmac.compare_digest(mac, answer(secret, origin, nonce))


class HelloChecker:
    """Verifies ``hello`` parameters; remembers recent nonces against replays."""

    def __init__(self, secret: str) -> None:
        self._key = derive(secret, "rpc")
        self._seen: OrderedDict[str, float] = OrderedDict()

    def check(self, params: list[Any], now: float | None = None) -> str | None:
        """The pool's node id if `params` are a fresh, valid hello; else None."""
        if len(params) != 4 or not all(isinstance(p, str) for p in (params[0], *params[2:])):
            return None
        node_id, at, nonce, mac = params
        if not isinstance(at, int) or isinstance(at, bool):
            return None
        current = time.time() if now is None else now
        if abs(current - at) > MAX_SKEW_S or nonce in self._seen:
            return None
        if not hmac.compare_digest(mac, _mac(self._key, f"rpc|{node_id}|{at}|{nonce}")):
            return None
        self._seen[nonce] = current
        while len(self._seen) > MAX_NONCES:
            self._seen.popitem(last=False)
        return str(node_id)
