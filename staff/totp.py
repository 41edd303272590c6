"""The optional second factor: TOTP (RFC 6238, 30 s steps, 6 digits). Pure but for pyotp.

A code is accepted for the current step or one step either side (clock drift),
and only for a step later than the last one accepted: the same code (or an
older one) never works twice.
"""

from __future__ import annotations

import hmac

import pyotp

STEP_S = 30
WINDOW = 1  # steps either side of now
ISSUER = "visitroom"


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, account: str, issuer: str = ISSUER) -> str:
    """The otpauth:// URI an authenticator app takes (typed in or as a QR code)."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def code_at(secret: str, at: float) -> str:
    return pyotp.TOTP(secret).at(int(at))


def accept(secret: str, code: str, now: float, last_step: int | None) -> int | None:
    """The step the code belongs to when it is valid and unused, else None."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now // STEP_S)
    for step in range(current - WINDOW, current + WINDOW + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(totp.at(step * STEP_S), code):
            return step
    return None
