"""The portal's use cases: what staff and patients may do, with rate limits and the audit trail.

Handlers in routes.py parse HTTP and call these; the store enforces the rules
that need a transaction. Audit entries hold identities only: the staff
identity as actor, the patient id as subject, never names, emails or tokens.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any

from common.audit import AuditEntry, AuditLog, Detail
from common.clock import Clock
from common.config import RateLimit
from common.ratelimit import WindowLimiter
from portal import events, validate
from portal.access import Staff, visible
from portal.config import PortalConfig
from portal.errors import (
    BAD_ACTIVATION,
    BAD_LOGIN,
    BAD_REQUEST,
    EMAIL_REQUIRED,
    NOT_FOUND,
    RATE_LIMITED,
    UNAUTHORIZED,
    PortalError,
    bad_request,
)
from portal.events import PortalEvents
from portal.mail import GENERIC_PRACTICE
from portal.model import (
    InvitationKind,
    InvitationRequest,
    NewPatient,
    Patient,
    ProfileChanges,
    day,
    status_json,
)
from portal.passwords import Passwords
from portal.store import PatientStore, Visit, VisitEmail, Visits
from portal.throttle import LoginThrottle
from portal.tokens import new_seed, token_hash

PUBLIC_FIELDS = {
    "activate": frozenset({"token", "password"}),
    "check": frozenset({"token"}),
    "login": frozenset({"email", "password"}),
}
EMAIL_FIELD = frozenset({"email"})
ROOM_FIELD = frozenset({"room_id"})
ROOM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")  # as signalling.rooms
PATIENT_SESSION_IDLE_S = 30 * 60.0  # a patient's session ends after 30 idle minutes


@dataclass(frozen=True)
class LoginResult:
    """The login's answer, and the new session's secret for the cookie (never in the body)."""

    body: dict[str, Any]
    session: str


class NoVisits:
    """Visits when the portal runs without the rooms: none is known."""

    def visit(self, room_id: str) -> Visit | None:
        return None


def limiter(limit: RateLimit, clock: Clock) -> WindowLimiter:
    return WindowLimiter(limit.count, limit.seconds, clock)


class PortalService:
    def __init__(
        self,
        config: PortalConfig,
        store: PatientStore,
        passwords: Passwords,
        audit: AuditLog,
        clock: Clock,
        zone: tzinfo,
        mail_domain: str,
        visits: Visits | None = None,
    ) -> None:
        self._store = store
        self._practices = config.practices
        self._visits = visits or NoVisits()
        self._passwords = passwords
        self._audit_log = audit
        self._clock = clock
        self._zone = zone
        self._mail_domain = mail_domain
        self.on_queued: Callable[[], None] = lambda: None
        self.events: PortalEvents = events.ignore  # webhooks (portal/events.py)
        self._public_limit = limiter(config.public_rate_limit, clock)
        self._account_limit = limiter(config.account_rate_limit, clock)
        self._invite_limit = limiter(config.invite_rate_limit, clock)
        self._logins = LoginThrottle(clock, config.login_delay_cap_s, config.login_address_limit)

    # --- staff ---------------------------------------------------------------------------

    async def create_patient(self, staff: Staff, body: dict[str, Any]) -> Patient:
        validate.only_fields(body, validate.PROFILE_FIELDS)
        new = NewPatient(
            practice=staff.home_practice(),
            first_name=validate.name(body.get("first_name"), "first_name"),
            last_name=validate.name(body.get("last_name"), "last_name"),
            date_of_birth=validate.date_of_birth(body.get("date_of_birth"), self._today()),
            email=validate.optional_email(body),
        )
        patient = await self._store.create_patient(new, self._clock())
        self._audit("portal_patient_create", "ok", staff.identity, patient.patient_id)
        return patient

    async def search(self, staff: Staff, q: str | None) -> list[Patient]:
        practice = staff.home_practice()
        found = await self._store.search(practice, validate.search(q), limit=50)
        self._audit("portal_patient_search", "ok", staff.identity, None, count=len(found))
        return found

    async def patient(self, staff: Staff, patient_id: str) -> dict[str, Any]:
        patient = await self._patient(staff, patient_id)
        facts = await self._store.status(patient.patient_id)
        self._audit("portal_patient_read", "ok", staff.identity, patient.patient_id)
        delivery = facts.delivery.value if facts.delivery else None
        return {**patient.to_json(), "invitation_delivery": delivery}

    async def update_patient(self, staff: Staff, patient_id: str, body: dict[str, Any]) -> Patient:
        validate.only_fields(body, validate.PROFILE_FIELDS)
        changes = self._changes(body)
        patient = await self._patient(staff, patient_id)
        updated = await self._store.update_patient(patient.patient_id, changes, self._clock())
        fields = ",".join(changes.fields)
        self._audit("portal_profile_update", "ok", staff.identity, patient_id, fields=fields)
        return updated

    async def invite(
        self, staff: Staff, patient_id: str, body: dict[str, Any], kind: InvitationKind
    ) -> dict[str, Any]:
        validate.only_fields(body, EMAIL_FIELD)
        given = validate.optional_email(body)
        patient = await self._patient(staff, patient_id)
        action = f"portal_{kind.value}"
        if not self._invite_limit.allow(patient.practice):
            self._audit(action, RATE_LIMITED, staff.identity, patient_id)
            raise PortalError(RATE_LIMITED, "too many invitations from this practice; try later")
        request = InvitationRequest(
            patient_id=patient.patient_id,
            kind=kind,
            email=given,
            token_seed=new_seed(),
            smtp_message_id=f"<portal.{secrets.token_hex(16)}@{self._mail_domain}>",
            at=self._clock(),
            actor=staff.identity,
        )
        await self._audited(action, staff.identity, patient_id, self._store.invite(request))
        address = "request" if given else "profile"
        self._audit(action, "ok", staff.identity, patient_id, address=address)
        self.on_queued()
        return await self.status(staff, patient_id, audited=False)

    async def set_opt_out(
        self, staff: Staff, patient_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        validate.only_fields(body, frozenset({"opted_out"}))
        opted_out = validate.flag(body.get("opted_out"), "opted_out")
        patient = await self._patient(staff, patient_id)
        await self._store.set_opt_out(patient.patient_id, opted_out, self._clock())
        self._audit("portal_opt_out", "ok", staff.identity, patient_id, opted_out=opted_out)
        if opted_out:
            self.events(events.OPTED_OUT, patient.patient_id)
        return await self.status(staff, patient_id, audited=False)

    async def status(self, staff: Staff, patient_id: str, audited: bool = True) -> dict[str, Any]:
        patient = await self._patient(staff, patient_id)
        facts = await self._store.status(patient.patient_id)
        if audited:
            self._audit("portal_status_read", "ok", staff.identity, patient_id)
        return status_json(facts, self._zone)

    async def change_account_email(
        self, staff: Staff, patient_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        validate.only_fields(body, EMAIL_FIELD)
        email = validate.email(body.get("email"))
        patient = await self._patient(staff, patient_id)
        action = "portal_account_email"
        if not staff.support:
            # Staff never may: without an account it is not_registered, with one contact_support.
            registered = (await self._store.status(patient.patient_id)).registered_at is not None
            refusal = staff.refusal_for_account_email(registered)
            self._audit(action, refusal.code, staff.identity, patient_id)
            raise refusal
        change = self._store.change_account_email(patient.patient_id, email, self._clock())
        await self._audited(action, staff.identity, patient_id, change)
        self._audit(action, "ok", staff.identity, patient_id, scope="support")
        return await self.status(staff, patient_id, audited=False)

    def caller(self, staff: Staff) -> dict[str, Any]:
        """Who the staff screens are signed in as (no audit entry: it reads no patient)."""
        practice_name = self.practice_name(staff.practice) if staff.practice else None
        return {
            "identity": staff.identity,
            "practice": staff.practice,
            "practice_name": practice_name,
            "support": staff.support,
        }

    async def email_visit(
        self, staff: Staff, patient_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Queue the patient link of a scheduled visit of the patient's practice to the
        patient's profile email, through the outbox."""
        validate.only_fields(body, ROOM_FIELD)
        room_id = body.get("room_id")
        if not isinstance(room_id, str) or not ROOM_ID.match(room_id):
            raise bad_request("`room_id`: 1-64 of A-Z a-z 0-9 _ . -")
        patient = await self._patient(staff, patient_id)
        action = "portal_visit_email"
        visit = self._visits.visit(room_id)
        refusal = self._visit_refusal(patient, visit)
        if refusal is not None:
            self._audit(action, refusal.code, staff.identity, patient_id)
            raise refusal
        assert visit is not None and patient.email is not None
        if not self._invite_limit.allow(patient.practice):
            self._audit(action, RATE_LIMITED, staff.identity, patient_id)
            raise PortalError(RATE_LIMITED, "too many emails from this practice; try later")
        email = VisitEmail(
            patient_id=patient.patient_id,
            recipient=patient.email,
            room_id=room_id,
            starts_at=visit.starts_at,
            smtp_message_id=f"<visit.{secrets.token_hex(16)}@{self._mail_domain}>",
            at=self._clock(),
        )
        await self._store.queue_visit_email(email)
        self._audit(action, "ok", staff.identity, patient_id, room=room_id)
        self.on_queued()
        return {"queued": True, "room_id": room_id}

    def _visit_refusal(self, patient: Patient, visit: Visit | None) -> PortalError | None:
        if visit is None or visit.practice != patient.practice:
            return PortalError(NOT_FOUND, "no such visit for this patient's practice")
        if visit.ends_at <= self._clock():
            return PortalError(BAD_REQUEST, "that visit is over", 409)
        if patient.email is None:
            return PortalError(
                EMAIL_REQUIRED, "add an email to the patient's profile first, then send the link"
            )
        return None

    def practice_name(self, practice: str) -> str:
        return self._practices.get(practice) or GENERIC_PRACTICE

    # --- patients (public) -----------------------------------------------------------------

    async def activation_check(self, remote: str, body: dict[str, Any]) -> dict[str, Any]:
        """What the activation page shows before a password is typed: whose link it is
        (the practice's name), or the same 400 as a failed activation."""
        validate.only_fields(body, PUBLIC_FIELDS["check"])
        self._limit(self._public_limit, ("address", remote))
        raw = body.get("token")
        token = raw if isinstance(raw, str) and len(raw) <= validate.MAX_TOKEN else ""
        practice, problem = await self._store.invitation_practice(token_hash(token), self._clock())
        if practice is None:
            self._audit("portal_activate_check", BAD_REQUEST, None, None, reason=problem)
            raise PortalError(BAD_REQUEST, BAD_ACTIVATION)
        return {"valid": True, "practice_name": self.practice_name(practice)}

    async def activate(self, remote: str, body: dict[str, Any]) -> dict[str, Any]:
        validate.only_fields(body, PUBLIC_FIELDS["activate"])
        self._limit(self._public_limit, ("address", remote))
        password = validate.password(body.get("password"))
        raw = body.get("token")
        token = raw if isinstance(raw, str) and len(raw) <= validate.MAX_TOKEN else ""
        hashed = token_hash(token)
        self._limit(self._account_limit, ("activate", hashed))
        # Every path hashes the password and looks the token up once: unknown, used and
        # expired tokens take the same time and get the same answer.
        password_hash = await self._passwords.hash(password)
        now = self._clock()
        outcome = await self._store.activate(hashed, password_hash, now)
        if outcome.problem is not None:
            self._audit(
                "portal_activate", BAD_REQUEST, None, outcome.patient_id, reason=outcome.problem
            )
            raise PortalError(BAD_REQUEST, BAD_ACTIVATION)
        self._audit("portal_activate", "ok", outcome.patient_id, outcome.patient_id)
        if outcome.patient_id is not None:
            self.events(events.ACCOUNT_ACTIVATED, outcome.patient_id)
        return {"activated": True, "registered_on": self._day(now)}

    async def login(self, remote: str, body: dict[str, Any]) -> LoginResult:
        validate.only_fields(body, PUBLIC_FIELDS["login"])
        self._limit(self._public_limit, ("address", remote))
        email, password = body.get("email"), body.get("password")
        if not isinstance(email, str) or not isinstance(password, str):
            raise bad_request("`email` and `password` must be strings")
        if len(email) > validate.MAX_EMAIL or len(password.encode()) > validate.MAX_PASSWORD:
            raise bad_request("`email` or `password` is too long")
        key = _login_key(email)
        slot = token_hash(key)  # the throttle keeps no email address in memory, only a hash
        wait = self._logins.begin(slot, remote)
        if wait > 0:
            self._audit("portal_login", RATE_LIMITED, None, None)
            raise PortalError(RATE_LIMITED, f"too many attempts; {_wait_text(wait)}", None, wait)
        account = await self._store.account_for_login(key)
        ok = await self._passwords.verify(account.password_hash if account else None, password)
        subject = account.patient_id if account else None
        if not ok or account is None:
            self._audit("portal_login", UNAUTHORIZED, None, subject)
            raise PortalError(UNAUTHORIZED, BAD_LOGIN)
        self._logins.succeeded(slot, remote)
        now = self._clock()
        await self._store.record_login(account.patient_id, now)
        session = secrets.token_urlsafe(32)
        await self._store.start_session(
            token_hash(session), account.patient_id, now, PATIENT_SESSION_IDLE_S
        )
        self._audit("portal_login", "ok", account.patient_id, account.patient_id)
        return LoginResult({"logged_in": True, "last_login_on": self._day(now)}, session)

    async def patient_session(self, session: str | None) -> dict[str, Any]:
        """The signed-in patient of a session cookie, or `signed_in: false` (no error: the
        sign-in page asks this on every load)."""
        found = None
        if session and len(session) <= validate.MAX_TOKEN:
            found = await self._store.session(
                token_hash(session), self._clock(), PATIENT_SESSION_IDLE_S
            )
        if found is None:
            return {"signed_in": False}
        return {
            "signed_in": True,
            "first_name": found.first_name,
            "practice_name": self.practice_name(found.practice),
            "last_login_on": self._day(found.last_login_at) if found.last_login_at else None,
        }

    async def end_patient_session(self, session: str | None) -> None:
        if session:
            await self._store.end_session(token_hash(session[: validate.MAX_TOKEN]))
            self._audit("portal_logout", "ok", None, None)

    # --- helpers -----------------------------------------------------------------------------

    async def practice_of(self, patient_id: str) -> str | None:
        """The patient's practice (None: no such patient): for a scheduled room's patient."""
        found = (
            await self._store.get_patient(patient_id) if validate.patient_id(patient_id) else None
        )
        return found.practice if found else None

    async def _patient(self, staff: Staff, patient_id: str) -> Patient:
        found = (
            await self._store.get_patient(patient_id) if validate.patient_id(patient_id) else None
        )
        return visible(staff, found)

    async def _audited(self, action: str, actor: str, subject: str, work: Awaitable[None]) -> None:
        """Await `work`; a refusal is audited with its code, then re-raised."""
        try:
            await work
        except PortalError as exc:
            self._audit(action, exc.code, actor, subject)
            raise

    def _changes(self, body: dict[str, Any]) -> ProfileChanges:
        if not body:
            raise bad_request("give at least one of: " + ", ".join(sorted(validate.PROFILE_FIELDS)))

        def named(field: str) -> str | None:
            return validate.name(body[field], field) if field in body else None

        born = body.get("date_of_birth", ...)
        return ProfileChanges(
            first_name=named("first_name"),
            last_name=named("last_name"),
            date_of_birth=None if born is ... else validate.date_of_birth(born, self._today()),
            email=validate.optional_email(body),
            remove_email="email" in body and body["email"] is None,
        )

    def _limit(self, window: WindowLimiter, key: tuple[str, str]) -> None:
        if not window.allow(key):
            raise PortalError(RATE_LIMITED, "too many attempts; wait a few minutes and try again")

    def _audit(
        self, action: str, outcome: str, actor: str | None, subject: str | None, **details: Detail
    ) -> None:
        self._audit_log.record(AuditEntry(action, outcome, None, actor, subject, details))

    def _today(self) -> date:
        return datetime.fromtimestamp(self._clock(), self._zone).date()

    def _day(self, at: float) -> str:
        return day(at, self._zone)


def _wait_text(seconds: float) -> str:
    whole = math.ceil(seconds)
    return f"try again in {whole} second{'s' if whole != 1 else ''}"


def _login_key(email: str) -> str:
    """The uniqueness key of a typed address; a malformed one simply matches no account."""
    try:
        return validate.email(email).key
    except PortalError:
        return email.strip().lower()
