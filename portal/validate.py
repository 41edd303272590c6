"""Input validation for the portal: pure functions that return clean values or raise 400.

Every value from a request passes through here before it touches the store,
so a bad request changes nothing.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Any

from email_validator import EmailNotValidError, validate_email

from portal.errors import bad_request

MAX_NAME = 100
MAX_EMAIL = 254
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
MAX_TOKEN = 128
MIN_QUERY = 2
EARLIEST_BIRTH = date(1900, 1, 1)
NAME_PUNCTUATION = frozenset(" '-.\u2019")
PATIENT_ID = re.compile(r"^pt_[0-9a-f]{16}$")
US_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
PROFILE_FIELDS = frozenset({"first_name", "last_name", "date_of_birth", "email"})


@dataclass(frozen=True)
class Email:
    """A valid address as it will be sent to, and its key for uniqueness (case-folded)."""

    address: str
    key: str


@dataclass(frozen=True)
class Query:
    """A patient search: by name prefix (first or last) or by exact date of birth."""

    name_prefix: str | None = None
    date_of_birth: str | None = None


def name_key(name: str) -> str:
    """The form names are searched by: case-folded, accents kept."""
    return unicodedata.normalize("NFC", name).casefold()


def name(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise bad_request(f"`{field}` must be a string")
    text = unicodedata.normalize("NFC", " ".join(value.split()))
    if not 1 <= len(text) <= MAX_NAME:
        raise bad_request(f"`{field}` must be 1-{MAX_NAME} characters")
    if not any(ch.isalpha() for ch in text):
        raise bad_request(f"`{field}` must contain a letter")
    for ch in text:
        if ch not in NAME_PUNCTUATION and unicodedata.category(ch)[0] not in "LM":
            raise bad_request(f"`{field}` may hold letters, spaces, apostrophes, hyphens, dots")
    return text


def date_of_birth(value: Any, today: date) -> str:
    if not isinstance(value, str) or not ISO_DATE.match(value):
        raise bad_request("`date_of_birth` must be a date YYYY-MM-DD")
    try:
        born = date.fromisoformat(value)
    except ValueError:
        raise bad_request("`date_of_birth` is not a real date") from None
    if not EARLIEST_BIRTH <= born <= today:
        raise bad_request("`date_of_birth` must be between 1900-01-01 and today")
    return born.isoformat()


def email(value: Any, field: str = "email") -> Email:
    if not isinstance(value, str) or not 3 <= len(value) <= MAX_EMAIL:
        raise bad_request(f"`{field}` must be an email address")
    try:
        checked = validate_email(value.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        raise bad_request(f"`{field}` is not a valid email address") from None
    address = checked.ascii_email or checked.normalized
    if len(address) > MAX_EMAIL:
        raise bad_request(f"`{field}` is too long")
    return Email(address, address.lower())


def optional_email(body: dict[str, Any], field: str = "email") -> Email | None:
    value = body.get(field)
    return None if value is None else email(value, field)


def password(value: Any) -> str:
    if not isinstance(value, str):
        raise bad_request("`password` must be a string")
    if len(value) < MIN_PASSWORD:
        raise bad_request(f"the password must be at least {MIN_PASSWORD} characters")
    if len(value.encode()) > MAX_PASSWORD:
        raise bad_request(f"the password must be at most {MAX_PASSWORD} bytes")
    return value


def flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise bad_request(f"`{field}` must be true or false")
    return value


def search(q: str | None) -> Query:
    text = " ".join((q or "").split())
    found = US_DATE.match(text)
    if found:
        month, day, year = (int(part) for part in found.groups())
        try:
            return Query(date_of_birth=date(year, month, day).isoformat())
        except ValueError:
            raise bad_request("`q`: that date of birth is not a real date") from None
    if not MIN_QUERY <= len(text) <= MAX_NAME:
        raise bad_request(
            f"`q` must be the first {MIN_QUERY} or more letters of a name, or a date mm/dd/yyyy"
        )
    return Query(name_prefix=name_key(name(text, "q")))


def patient_id(value: str) -> bool:
    return bool(PATIENT_ID.match(value))


def only_fields(body: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise bad_request(f"unknown field(s): {', '.join(unknown)}")
