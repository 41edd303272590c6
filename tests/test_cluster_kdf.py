"""Keys derived from the cluster secret: RFC 5869 HKDF, one key per purpose."""

from __future__ import annotations

import pytest

from cluster.kdf import PURPOSES, check_cluster_secret, derive, hkdf_sha256
from sfu.relay.crypto import pair_key
from tests.conftest import CLUSTER_SECRET


def test_hkdf_matches_rfc_5869_test_case_1() -> None:
    okm = hkdf_sha256(
        bytes.fromhex("0b" * 22),
        bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"),
        42,
        bytes.fromhex("000102030405060708090a0b0c"),
    )
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_hkdf_matches_rfc_5869_test_case_3_without_salt_or_info() -> None:
    okm = hkdf_sha256(bytes.fromhex("0b" * 22), b"", 42)
    assert okm.hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


def test_every_purpose_gets_its_own_key() -> None:
    keys = {purpose: derive(CLUSTER_SECRET, purpose) for purpose in (*PURPOSES, "audit")}
    assert len(set(keys.values())) == len(keys)
    assert all(len(key) == 32 for key in keys.values())
    assert CLUSTER_SECRET.encode() not in b"".join(keys.values())
    assert derive(CLUSTER_SECRET, "hop") == derive(CLUSTER_SECRET, "hop"), "deterministic"
    assert derive("d" * 48, "hop") != keys["hop"]


def test_the_relay_keys_come_from_the_cluster_kdf() -> None:
    relay_key = pair_key(CLUSTER_SECRET, 1, 2)
    assert relay_key != pair_key("d" * 48, 1, 2)
    assert relay_key != derive(CLUSTER_SECRET, "rpc")[:30]


def test_a_short_cluster_secret_or_a_bad_purpose_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        check_cluster_secret("short")
    check_cluster_secret("x" * 32)
    for purpose in ("", "a|b"):
        with pytest.raises(ValueError):
            derive(CLUSTER_SECRET, purpose)
