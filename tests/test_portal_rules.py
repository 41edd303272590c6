"""The portal's pure parts: validation, rules, statuses, tokens, backoff, mail, settings."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.config import ConfigError, RateLimit
from portal import validate
from portal.cli import mask
from portal.config import PortalConfig
from portal.errors import PortalError
from portal.mail import invitation_email, lifetime
from portal.migrations import MIGRATIONS, migrate
from portal.model import InvitationKind, InvitationState, StatusFacts, status_json
from portal.outbox import MAX_BACKOFF_S, backoff
from portal.rules import InviteFacts, TokenFacts, activation_problem, invitation_address
from portal.smtp import SmtpSettings
from portal.tokens import TokenMaker, activation_link, new_seed, token_hash
from signalling.app import create_app
from tests.conftest import make_config

ANN = validate.Email("ann@example.com", "ann@example.com")
NOON_2026_03_01 = 1772366400.0  # 2026-03-01T12:00:00Z
OUT = {"open_invitation": True, "any_invitation": True}  # an invitation is out


def facts(**changes: Any) -> StatusFacts:
    values: dict[str, Any] = {
        "opted_out": False, "open_invitation": False, "any_invitation": False,
        "first_sent_at": None, "registered_at": None,
        "last_login_at": None, "last_reinvited_at": None, "account_email": None,
        "delivery": None,
    }  # fmt: skip
    return StatusFacts(**{**values, **changes})


def test_a_status_before_any_invitation_is_null_and_never() -> None:
    assert status_json(facts(), UTC) == {
        "opted_out": False,
        "activated_on": None,
        "registered_on": None,
        "last_login_on": "Never",
        "last_reinvited_on": "Never",
        "account_email": None,
        "can_invite": True,
        "can_reinvite": False,
    }


def test_an_invitation_voided_by_an_opt_out_is_not_pending() -> None:
    voided = facts(opted_out=True, any_invitation=True, first_sent_at=NOON_2026_03_01)
    status = status_json(voided, UTC)
    assert (status["activated_on"], status["registered_on"]) == ("2026-03-01", None)
    assert (status["can_invite"], status["can_reinvite"]) == (False, False)
    cleared = status_json(facts(any_invitation=True, first_sent_at=NOON_2026_03_01), UTC)
    assert (cleared["registered_on"], cleared["can_invite"], cleared["can_reinvite"]) == (
        None, True, True,
    )  # fmt: skip
    done = status_json(facts(any_invitation=True, registered_at=NOON_2026_03_01), UTC)
    assert (done["can_invite"], done["can_reinvite"]) == (False, False)


def test_a_status_is_pending_while_invited_then_dated() -> None:
    assert status_json(facts(**OUT), UTC)["activated_on"] == "Pending"
    assert status_json(facts(**OUT), UTC)["registered_on"] == "Pending"
    sent = status_json(facts(**OUT, first_sent_at=NOON_2026_03_01), UTC)
    assert (sent["activated_on"], sent["registered_on"]) == ("2026-03-01", "Pending")
    done = status_json(
        facts(**OUT, first_sent_at=NOON_2026_03_01, registered_at=NOON_2026_03_01,
              last_login_at=NOON_2026_03_01, last_reinvited_at=NOON_2026_03_01,
              account_email="ann@example.com"),
        UTC,
    )  # fmt: skip
    assert done["registered_on"] == done["last_login_on"] == done["last_reinvited_on"]
    assert done["account_email"] == "ann@example.com"


def test_status_dates_are_days_in_the_practices_time_zone() -> None:
    late_evening_in_la = 1772348400.0  # 2026-03-01T07:00:00Z = 2026-02-28 23:00 in LA
    status = status_json(
        facts(**OUT, first_sent_at=late_evening_in_la), ZoneInfo("America/Los_Angeles")
    )
    assert status["activated_on"] == "2026-02-28"


def invite_facts(**changes: Any) -> InviteFacts:
    values: dict[str, Any] = {
        "opted_out": False, "registered": False, "has_open_invitation": False,
        "has_any_invitation": False, "profile_email": ANN,
    }  # fmt: skip
    return InviteFacts(**{**values, **changes})


@pytest.mark.parametrize(
    ("changes", "kind", "code"),
    [
        ({"registered": True, "opted_out": True}, InvitationKind.INVITE, "already_registered"),
        ({"opted_out": True}, InvitationKind.REINVITE, "opted_out"),
        ({"profile_email": None}, InvitationKind.INVITE, "email_required"),
        ({"has_open_invitation": True, "has_any_invitation": True}, InvitationKind.INVITE,
         "bad_request"),
        ({}, InvitationKind.REINVITE, "bad_request"),
    ],
)  # fmt: skip
def test_invitation_refusals_carry_their_codes(
    changes: dict[str, Any], kind: InvitationKind, code: str
) -> None:
    with pytest.raises(PortalError) as refused:
        invitation_address(invite_facts(**changes), kind, None)
    assert refused.value.code == code


def test_an_email_on_the_request_wins_over_the_profile() -> None:
    other = validate.email("other@example.com")
    assert invitation_address(invite_facts(), InvitationKind.INVITE, other) == other
    assert invitation_address(invite_facts(), InvitationKind.INVITE, None) == ANN
    no_profile = invite_facts(profile_email=None, has_any_invitation=True)
    assert invitation_address(no_profile, InvitationKind.REINVITE, other) == other


@pytest.mark.parametrize(
    ("token", "now", "problem"),
    [
        (None, 0.0, "unknown"),
        (TokenFacts("pt", InvitationState.USED, 100.0, True), 0.0, "used"),
        (TokenFacts("pt", InvitationState.SUPERSEDED, 100.0, False), 0.0, "superseded"),
        (TokenFacts("pt", InvitationState.CANCELLED, 100.0, False), 0.0, "cancelled"),
        (TokenFacts("pt", InvitationState.OPEN, 100.0, True), 0.0, "registered"),
        (TokenFacts("pt", InvitationState.OPEN, 100.0, False), 100.0, "expired"),
        (TokenFacts("pt", InvitationState.OPEN, None, False), 0.0, "expired"),
        (TokenFacts("pt", InvitationState.OPEN, 100.0, False), 99.9, None),
    ],
)
def test_why_a_token_cannot_activate(token: TokenFacts | None, now: float, problem: str) -> None:
    assert activation_problem(token, now) == problem


def test_tokens_are_256_bit_hmacs_of_their_seed_and_stored_as_sha256() -> None:
    seed = new_seed()
    assert len(seed) == 43 and seed != new_seed()
    maker = TokenMaker.from_api_keys({"k1": "a" * 40, "k0": "b" * 40})
    token = maker.token(seed)
    assert len(token) == 43 and token == maker.token(seed)  # every resend: the same link
    assert token != TokenMaker.from_api_keys({"k1": "a" * 40}).token(seed)
    assert maker.hash_for_seed(seed) == hashlib.sha256(token.encode()).hexdigest()
    assert token_hash(token) == maker.hash_for_seed(seed) and seed not in token
    assert activation_link("https://clinic.example/", token) == (
        f"https://clinic.example/portal/activate#token={token}"
    )
    with pytest.raises(ValueError):
        TokenMaker(b"short")


def test_backoff_doubles_up_to_a_cap_with_jitter() -> None:
    assert backoff(1, 10.0, lambda: 0.5) == 10.0
    assert backoff(2, 10.0, lambda: 0.5) == 20.0
    assert backoff(4, 10.0, lambda: 0.5) == 80.0
    assert backoff(40, 10.0, lambda: 0.5) == MAX_BACKOFF_S
    assert backoff(3, 10.0, lambda: 0.0) == pytest.approx(32.0)
    assert backoff(3, 10.0, lambda: 1.0) == pytest.approx(48.0)


def test_recipients_are_masked_for_the_outbox_listing() -> None:
    assert mask("ann.lee@example.com") == "a***@e***.com"
    assert mask("x@localhost") == "x***@l***"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(7 * 86400, "7 days"), (86400, "1 day"), (7200, "2 hours"), (90, "1 minute"), (5, "1 minute")],
)
def test_the_link_lifetime_reads_naturally(seconds: float, text: str) -> None:
    assert lifetime(seconds) == text


def test_the_email_escapes_what_it_quotes_and_is_stable_across_attempts() -> None:
    def build() -> Any:
        return invitation_email(
            sender="visitroom@clinic.example", recipient="ann@example.com",
            first_name="<b>Ann</b>", practice="Smith & Jones",
            link="https://x/portal/activate#token=t", message_id="<portal.1@clinic.example>",
            created_at=NOON_2026_03_01, valid_for_s=7 * 86400,
        )  # fmt: skip

    first, again = build(), build()
    assert first.as_bytes() == again.as_bytes()
    html = first.get_body(("html",)).get_content()
    assert "&lt;b&gt;Ann&lt;/b&gt;" in html and "Smith &amp; Jones" in html
    assert first["Subject"] == "Your patient portal invitation from Smith & Jones"
    assert first["Date"] == "Sun, 01 Mar 2026 12:00:00 +0000"


@given(st.text(max_size=120))
def test_name_validation_returns_clean_text_or_a_400(text: str) -> None:
    try:
        clean = validate.name(text, "first_name")
    except PortalError as exc:
        assert exc.code == "bad_request" and exc.status == 400
        return
    assert 1 <= len(clean) <= validate.MAX_NAME and clean == clean.strip()
    assert all(ch.isprintable() for ch in clean)


@given(st.one_of(st.text(max_size=300), st.emails()))
def test_email_validation_returns_an_ascii_address_or_a_400(text: str) -> None:
    try:
        address = validate.email(text)
    except PortalError as exc:
        assert exc.code == "bad_request"
        return
    assert address.address.isascii() and "\n" not in address.address and "\r" not in address.address
    assert address.key == address.address.lower() and len(address.address) <= 254


@given(st.text(max_size=120))
def test_search_queries_are_a_name_prefix_a_date_or_a_400(text: str) -> None:
    try:
        query = validate.search(text)
    except PortalError as exc:
        assert exc.code == "bad_request"
        return
    assert (query.name_prefix is None) != (query.date_of_birth is None)
    if query.date_of_birth:
        date.fromisoformat(query.date_of_birth)


def test_smtp_urls_are_parsed_and_credentials_stay_out_of_them() -> None:
    plain = SmtpSettings.from_config(PortalConfig(smtp_url="smtp://mail.example.net:587"))
    assert plain is not None and not plain.local
    assert (plain.scheme, plain.host, plain.port) == ("smtp", "mail.example.net", 587)
    tls = SmtpSettings.from_config(PortalConfig(smtp_url="smtps://127.0.0.1"))
    assert tls is not None and tls.port == 465 and tls.local
    assert SmtpSettings.from_config(PortalConfig()) is None
    for bad in (
        "http://mail.example.net",
        "smtp://user:pw@mail.example.net",
        "smtp://",
        "smtp://h:x",
    ):
        with pytest.raises(ConfigError):
            SmtpSettings.from_config(PortalConfig(smtp_url=bad))


def test_portal_settings_come_from_the_environment() -> None:
    config = PortalConfig.from_env(
        {
            "VISITROOM_SMTP_URL": "smtp://127.0.0.1:2525",
            "VISITROOM_SMTP_USERNAME": "mailer",
            "VISITROOM_SMTP_PASSWORD": "hunter2-hunter2",
            "VISITROOM_SMTP_FROM": "portal@clinic.example",
            "VISITROOM_PORTAL_INVITE_TTL": "2d",
            "VISITROOM_PORTAL_RETRY_BASE": "15s",
            "VISITROOM_PORTAL_TIMEZONE": "America/Chicago",
            "VISITROOM_PORTAL_PRACTICES": '{"p1": "Lakeside Family Medicine"}',
            "VISITROOM_PORTAL_INVITE_RATE_LIMIT": "50/3600",
        }
    )
    assert (config.smtp_username, config.smtp_password) == ("mailer", "hunter2-hunter2")
    assert config.invite_ttl_s == 2 * 86400 and config.retry_base_s == 15
    assert config.practices == {"p1": "Lakeside Family Medicine"}
    assert config.invite_rate_limit == RateLimit(50, 3600)
    assert "hunter2" not in repr(config)
    for env in ({"VISITROOM_PORTAL_PRACTICES": "[1]"}, {"VISITROOM_PORTAL_INVITE_TTL": "soon"},
                {"VISITROOM_PORTAL_INVITE_TTL": "0"}):  # fmt: skip
        with pytest.raises(ConfigError):
            PortalConfig.from_env(env)


@pytest.mark.parametrize(
    "overrides",
    [{"timezone": "Mars/Olympus"}, {"smtp_url": "ftp://x"}, {"smtp_from": "not mail"}],
)
def test_a_bad_portal_setting_stops_the_start(tmp_path: Path, overrides: dict[str, Any]) -> None:
    config = make_config(tmp_path)
    with pytest.raises(ConfigError):
        create_app(config, portal=PortalConfig(data_dir=config.data_dir, **overrides))


def test_migrations_run_once_and_refuse_a_newer_schema(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "p.sqlite3", isolation_level=None)
    assert migrate(db) == len(MIGRATIONS) == migrate(db)
    assert db.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == len(MIGRATIONS)
    db.execute("INSERT INTO schema_version VALUES (99)")
    with pytest.raises(RuntimeError, match="newer"):
        migrate(db)
