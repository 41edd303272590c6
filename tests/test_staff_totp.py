"""TOTP codes: the window either side of now, malformed codes, and no code twice."""

from __future__ import annotations

from staff import totp

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
NOW = 1_800_000_015.0  # mid-step
STEP = int(NOW // 30)


def test_a_code_of_now_or_one_step_either_side_is_accepted() -> None:
    for offset in (-1, 0, 1):
        code = totp.code_at(SECRET, NOW + offset * 30)
        assert totp.accept(SECRET, code, NOW, None) == STEP + offset


def test_a_code_two_steps_away_or_malformed_is_refused() -> None:
    assert totp.accept(SECRET, totp.code_at(SECRET, NOW - 60), NOW, None) is None
    assert totp.accept(SECRET, totp.code_at(SECRET, NOW + 60), NOW, None) is None
    for bad in ("", "12345", "1234567", "abcdef", "12 34 5x"):
        assert totp.accept(SECRET, bad, NOW, None) is None


def test_a_used_step_and_any_older_one_are_refused() -> None:
    code = totp.code_at(SECRET, NOW)
    assert totp.accept(SECRET, code, NOW, STEP) is None
    assert totp.accept(SECRET, totp.code_at(SECRET, NOW - 30), NOW, STEP) is None
    assert totp.accept(SECRET, totp.code_at(SECRET, NOW + 30), NOW, STEP) == STEP + 1


def test_spaces_in_a_typed_code_are_ignored() -> None:
    code = totp.code_at(SECRET, NOW)
    assert totp.accept(SECRET, f" {code[:3]} {code[3:]} ", NOW, None) == STEP


def test_the_uri_names_the_issuer_and_the_account() -> None:
    uri = totp.provisioning_uri(SECRET, "ana@clinic.test")
    assert uri.startswith("otpauth://totp/visitroom:ana%40clinic.test?")
    assert f"secret={SECRET}" in uri and "issuer=visitroom" in uri
