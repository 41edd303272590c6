"""Portal errors: each has an error code of docs/portal-openapi.yaml and its HTTP status."""

from __future__ import annotations

EMAIL_REQUIRED = "email_required"
EMAIL_IN_USE = "email_in_use"
OPTED_OUT = "opted_out"
ALREADY_REGISTERED = "already_registered"
NOT_REGISTERED = "not_registered"
CONTACT_SUPPORT = "contact_support"
RATE_LIMITED = "rate_limited"
NOT_FOUND = "not_found"
BAD_REQUEST = "bad_request"
UNAUTHORIZED = "unauthorized"

HTTP_STATUS = {
    EMAIL_REQUIRED: 409,
    EMAIL_IN_USE: 409,
    OPTED_OUT: 409,
    ALREADY_REGISTERED: 409,
    NOT_REGISTERED: 409,
    CONTACT_SUPPORT: 403,
    RATE_LIMITED: 429,
    NOT_FOUND: 404,
    BAD_REQUEST: 400,
    UNAUTHORIZED: 401,
}

# The one answer for every activation token that cannot be used (unknown, used,
# superseded, expired): a caller learns nothing about which it was.
BAD_ACTIVATION = "this activation link is not valid; ask your practice for a new invitation"
BAD_LOGIN = "the email or password is not correct"


class PortalError(Exception):
    """A refused portal request. Nothing changed; `code` goes to the client as is."""

    def __init__(
        self, code: str, message: str, status: int | None = None, retry_after: float = 0.0
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or HTTP_STATUS.get(code, 400)
        self.retry_after = retry_after  # seconds; 0: not said


def bad_request(message: str) -> PortalError:
    return PortalError(BAD_REQUEST, message)
