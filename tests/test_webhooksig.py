"""Webhook signatures: HMAC-SHA256 hex of the raw body, checked in constant time with a
timestamp window (common/webhooksig.py, shared with the server SDK)."""

from __future__ import annotations

import pytest

from common import webhooksig
from common.webhooksig import SignatureError, headers, sign, verify

SECRET = "k" * 32
BODY = b'{"id":"evt_1","event":"room_started"}'
# openssl dgst -sha256 -hmac kkkk...(32) of BODY, computed outside Python
EXPECTED = "sha256=9835ee4b7d39a9d94682206e9e92ed9f1f26d649049fe96b6ad69bde45509448"


def test_the_signature_is_the_hex_hmac_sha256_of_the_raw_body() -> None:
    assert sign(SECRET, BODY) == EXPECTED
    assert sign(SECRET.encode(), BODY) == EXPECTED


def test_headers_carry_the_signature_and_the_time_in_seconds() -> None:
    assert headers(SECRET, BODY, 1_700_000_000.9) == {
        "X-Visitroom-Signature": EXPECTED,
        "X-Visitroom-Timestamp": "1700000000",
    }


def test_a_delivery_signed_with_the_secret_and_sent_now_verifies() -> None:
    verify(SECRET, BODY, EXPECTED, "1700000000", now=1_700_000_100.0)


@pytest.mark.parametrize(
    ("body", "signature", "timestamp", "why"),
    [
        (BODY + b" ", EXPECTED, "1700000000", "does not match"),
        (BODY, sign("x" * 32, BODY), "1700000000", "does not match"),
        (BODY, EXPECTED.removeprefix("sha256="), "1700000000", "sha256="),
        (BODY, None, "1700000000", "sha256="),
        (BODY, EXPECTED, "1699999000", "more than 300 s"),
        (BODY, EXPECTED, "1700001000", "more than 300 s"),
        (BODY, EXPECTED, "yesterday", "seconds"),
        (BODY, EXPECTED, None, "seconds"),
    ],
)
def test_a_changed_body_another_secret_or_an_old_timestamp_is_refused(
    body: bytes, signature: str | None, timestamp: str | None, why: str
) -> None:
    with pytest.raises(SignatureError, match=why):
        verify(SECRET, body, signature, timestamp, now=1_700_000_100.0)


def test_the_window_is_the_receivers_choice() -> None:
    verify(SECRET, BODY, EXPECTED, "1700000000", now=1_700_000_900.0, tolerance_s=1000)
    assert webhooksig.DEFAULT_TOLERANCE_S == 300
