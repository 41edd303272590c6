"""Keys derived from the cluster secret, one per purpose (HKDF-SHA256, RFC 5869).

The cluster secret (``VISITROOM_CLUSTER_SECRET``) never signs anything
itself: each use gets its own key, so a key that leaks from one place (a
worker process, say) says nothing about the others, and the API keys that
sign tokens are separate altogether (rotating them leaves these untouched).

    derive(secret, "hop")    # node-to-node hops (cluster.hop)
    derive(secret, "rpc")    # worker RPC hello (sfu.workers.rpcauth)
    derive(secret, "relay")  # SRTP master keys of the relay (sfu.relay.crypto)

Any other module that needs a key of its own picks a new purpose name.
This module imports only the standard library, so every package may use it.
"""

from __future__ import annotations

import hashlib
import hmac

MIN_SECRET_BYTES = 32
KEY_BYTES = 32
SALT = b"visitroom cluster secret v1"
PURPOSES = ("hop", "rpc", "relay")
_HASH_BYTES = hashlib.sha256().digest_size


def hkdf_sha256(ikm: bytes, info: bytes, length: int = KEY_BYTES, salt: bytes = b"") -> bytes:
    """RFC 5869 extract-then-expand with SHA-256."""
    if not 0 < length <= 255 * _HASH_BYTES:
        raise ValueError("HKDF-SHA256 gives 1 to 8160 bytes")
    prk = hmac.new(salt or bytes(_HASH_BYTES), ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def check_cluster_secret(secret: str) -> None:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(
            f"the cluster secret must be at least {MIN_SECRET_BYTES} bytes; "
            "set VISITROOM_CLUSTER_SECRET to a long random value"
        )


def derive(secret: str, purpose: str, length: int = KEY_BYTES) -> bytes:
    """The key for one `purpose` (a short name such as ``"hop"``)."""
    if not purpose or "|" in purpose:
        raise ValueError("a purpose is a non-empty name without '|'")
    return hkdf_sha256(secret.encode(), f"visitroom|{purpose}".encode(), length, SALT)
