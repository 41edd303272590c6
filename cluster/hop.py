"""Authenticated hops between nodes: the edge node vouches for the client address.

A node proxying a client's WebSocket to the room's owner adds who the client
is (its address, for per-address limits) and an HMAC over it with the hop
key (derived from the cluster secret, `cluster.kdf`), so the owner trusts
that and nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HOP_HEADER = "X-Visitroom-Hop"
FORWARDED_HEADER = "X-Visitroom-Forwarded-For"
MAX_SKEW_S = 30.0


def _mac(key: bytes, node_id: str, at: int, path: str, client: str) -> str:
    message = f"{node_id}|{at}|{path}|{client}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign(key: bytes, node_id: str, path: str, client: str, now: float | None = None) -> str:
    at = int(time.time() if now is None else now)
    return f"{node_id}:{at}:{_mac(key, node_id, at, path, client)}"


def verify(key: bytes, header: str, path: str, client: str, now: float | None = None) -> bool:
    try:
        node_id, at_text, mac = header.split(":", 2)
        at = int(at_text)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - at) > MAX_SKEW_S:
        return False
    return hmac.compare_digest(mac, _mac(key, node_id, at, path, client))
