"""Invitations over a real SMTP server: links, reinvites, unique emails, opt-out, statuses."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiohttp import web

from common.keys import AUDIT
from tests.portal_support import (  # noqa: F401  (the *_fixture names are fixtures)
    BASE_URL,
    Mailbox,
    Portal,
    mailbox_fixture,
    portal_app_fixture,
    portal_fixture,
    support_headers,
)


def is_date(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-"


async def invited(portal: Portal, mailbox: Mailbox, **patient: Any) -> tuple[str, str]:
    """A patient invited at their profile email; returns (patient_id, activation token)."""
    patient_id = await portal.create(**patient)
    before = len(mailbox.mails)  # counted first: the mail may arrive before the 202
    code, _ = await portal.invite(patient_id)
    assert code == 202
    mails = await mailbox.wait_for(before + 1)
    return patient_id, mails[-1].token


async def test_an_invitation_email_arrives_with_a_link_on_the_configured_base_url(
    portal: Portal, mailbox: Mailbox
) -> None:
    patient_id = await portal.create(first="Ann", email="ann@example.com")
    code, status = await portal.invite(patient_id)
    assert code == 202
    assert status["activated_on"] == "Pending" and status["registered_on"] == "Pending"
    [mail] = await mailbox.wait_for(1)
    assert mail.recipients == ["ann@example.com"]
    assert mail.link.startswith(f"{BASE_URL}/portal/activate#token=")
    assert len(mail.token) >= 43  # 256 bits, base64url
    assert "Hello Ann" in mail.text
    assert mail.message["Message-ID"].startswith("<portal.")
    assert mail.message.get_body(("html",)) is not None
    status = await portal.wait_status(patient_id, "activated_on", is_date)
    assert status["registered_on"] == "Pending"


async def test_inviting_without_a_profile_email_asks_staff_to_add_one(
    portal: Portal, mailbox: Mailbox
) -> None:
    patient_id = await portal.create()
    code, body = await portal.invite(patient_id)
    assert code == 409 and body["error"]["code"] == "email_required"
    assert "profile" in body["error"]["message"]
    assert (await portal.status(patient_id))["activated_on"] is None
    assert mailbox.mails == []


async def test_an_email_given_on_the_invite_is_used_once_and_not_saved_to_the_profile(
    portal: Portal, mailbox: Mailbox
) -> None:
    patient_id = await portal.create(email="home@example.com")
    code, _ = await portal.invite(patient_id, email="Work@Example.com")
    assert code == 202
    [mail] = await mailbox.wait_for(1)
    assert mail.recipients == ["Work@example.com"]
    _, profile = await portal.call("GET", f"/v1/portal/patients/{patient_id}")
    assert profile["email"] == "home@example.com"


async def test_a_reinvite_to_another_email_kills_the_old_link_and_leaves_the_profile(
    portal: Portal, mailbox: Mailbox
) -> None:
    patient_id, old_token = await invited(portal, mailbox, email="old@example.com")
    await portal.wait_status(patient_id, "activated_on", is_date)
    code, status = await portal.invite(patient_id, "reinvite", email="new@example.com")
    assert code == 202 and is_date(status["last_reinvited_on"])
    mails = await mailbox.wait_for(2)
    assert mails[1].recipients == ["new@example.com"]
    assert mails[1].token != old_token
    _, profile = await portal.call("GET", f"/v1/portal/patients/{patient_id}")
    assert profile["email"] == "old@example.com"
    code, body = await portal.activate(old_token)
    assert code == 400 and body["error"]["code"] == "bad_request"
    assert (await portal.activate(mails[1].token))[0] == 200
    status = await portal.status(patient_id)
    assert status["account_email"] == "new@example.com"


async def test_a_reinvite_without_an_email_goes_to_the_profile_email(
    portal: Portal, mailbox: Mailbox
) -> None:
    patient_id, _ = await invited(portal, mailbox, email="typo@exmaple.com")
    path = f"/v1/portal/patients/{patient_id}"
    assert (await portal.call("PATCH", path, {"email": "fixed@example.com"}))[0] == 200
    assert (await portal.invite(patient_id, "reinvite"))[0] == 202
    mails = await mailbox.wait_for(2)
    assert mails[1].recipients == ["fixed@example.com"]


async def test_invite_and_reinvite_of_an_activated_account_are_already_registered(
    portal: Portal, mailbox: Mailbox
) -> None:
    patient_id, token = await invited(portal, mailbox, email="ann@example.com")
    assert (await portal.activate(token))[0] == 200
    for kind in ("invite", "reinvite"):
        code, body = await portal.invite(patient_id, kind, email="other@example.com")
        assert code == 409 and body["error"]["code"] == "already_registered"


async def test_a_second_invite_is_refused_and_a_reinvite_before_any_invite_too(
    portal: Portal, mailbox: Mailbox
) -> None:
    patient_id = await portal.create(email="ann@example.com")
    code, body = await portal.invite(patient_id, "reinvite")
    assert code == 409 and "use invite" in body["error"]["message"]
    assert (await portal.invite(patient_id))[0] == 202
    code, body = await portal.invite(patient_id)
    assert code == 409 and "use reinvite" in body["error"]["message"]
    assert len(await mailbox.wait_for(1)) == 1


@pytest.mark.parametrize("holder", ["pending_invitation", "account"])
async def test_an_email_held_by_another_patient_is_email_in_use(
    portal: Portal, mailbox: Mailbox, holder: str
) -> None:
    other = await portal.create(first="Bob")
    assert (await portal.invite(other, email="x@example.com"))[0] == 202
    [mail] = await mailbox.wait_for(1)
    if holder == "account":
        assert (await portal.activate(mail.token))[0] == 200
    other_practice = Portal(portal.client, practice="p2")
    patient_id = await other_practice.create(first="Cy", email="X@EXAMPLE.com")
    code, body = await other_practice.invite(patient_id)
    assert code == 409 and body["error"]["code"] == "email_in_use"
    code, body = await other_practice.invite(patient_id, email="x@example.com")
    assert body["error"]["code"] == "email_in_use"
    assert (await other_practice.status(patient_id))["activated_on"] is None


async def test_a_family_sharing_a_profile_email_is_invited_once_there_and_once_elsewhere(
    portal: Portal, mailbox: Mailbox
) -> None:
    mia = await portal.create(first="Mia", email="family@example.com")
    kit = await portal.create(first="Kit", email="Family@Example.com")
    assert (await portal.invite(mia))[0] == 202  # another patient's profile email holds nothing
    code, body = await portal.invite(kit)
    assert code == 409 and body["error"]["code"] == "email_in_use"  # one login per address
    assert "an `email` of their own" in body["error"]["message"]
    assert (await portal.invite(kit, email="kit@example.com"))[0] == 202  # a one-off address
    mails = await mailbox.wait_for(2)
    assert sorted(r for mail in mails for r in mail.recipients) == [
        "family@example.com", "kit@example.com",
    ]  # fmt: skip
    for mail in mails:
        assert (await portal.activate(mail.token))[0] == 200
    assert (await portal.login("family@example.com"))[0] == 200
    assert (await portal.login("kit@example.com"))[0] == 200
    code, kit_record = await portal.call("GET", f"/v1/portal/patients/{kit}")
    assert code == 200 and kit_record["email"] == "Family@example.com"  # the profile keeps it
    statuses = [await portal.status(patient_id) for patient_id in (mia, kit)]
    assert [s["account_email"] for s in statuses] == ["family@example.com", "kit@example.com"]


async def test_of_many_concurrent_invites_with_one_email_exactly_one_wins(
    portal: Portal, mailbox: Mailbox
) -> None:
    patients = [await portal.create(first=f"Kid{chr(65 + n)}") for n in range(8)]
    answers = await asyncio.gather(
        *(portal.invite(patient_id, email="family@example.com") for patient_id in patients)
    )
    codes = sorted(code for code, _ in answers)
    assert codes == [202] + [409] * 7
    assert {body["error"]["code"] for code, body in answers if code == 409} == {"email_in_use"}
    await mailbox.wait_for(1)
    statuses = [await portal.status(patient_id) for patient_id in patients]
    assert sum(status["activated_on"] is not None for status in statuses) == 1


async def test_opting_out_blocks_invites_until_it_is_cleared(
    portal: Portal, mailbox: Mailbox
) -> None:
    patient_id = await portal.create(email="ann@example.com")
    opt_out = f"/v1/portal/patients/{patient_id}/opt-out"
    code, status = await portal.call("PUT", opt_out, {"opted_out": True})
    assert code == 200 and status["opted_out"] is True
    for kind in ("invite", "reinvite"):
        code, body = await portal.invite(patient_id, kind)
        assert code == 409 and body["error"]["code"] == "opted_out"
    code, status = await portal.call("PUT", opt_out, {"opted_out": False})
    assert status["opted_out"] is False
    assert (await portal.invite(patient_id))[0] == 202
    assert len(await mailbox.wait_for(1)) == 1


async def test_opting_out_voids_an_unused_link(portal: Portal, mailbox: Mailbox) -> None:
    patient_id, token = await invited(portal, mailbox, email="ann@example.com")
    opt_out = f"/v1/portal/patients/{patient_id}/opt-out"
    assert (await portal.call("PUT", opt_out, {"opted_out": True}))[0] == 200
    assert (await portal.activate(token))[0] == 400


async def test_after_an_opt_out_a_voided_invitation_is_no_longer_pending_registration(
    portal: Portal, mailbox: Mailbox
) -> None:
    patient_id, _ = await invited(portal, mailbox, email="ann@example.com")
    sent = await portal.wait_status(patient_id, "activated_on", is_date)
    assert sent["registered_on"] == "Pending"
    opt_out = f"/v1/portal/patients/{patient_id}/opt-out"
    code, status = await portal.call("PUT", opt_out, {"opted_out": True})
    assert code == 200 and status["opted_out"] is True
    assert status["registered_on"] is None, "the voided link can no longer register anyone"
    assert status["activated_on"] == sent["activated_on"]  # the email was sent: that stays
    assert (status["can_invite"], status["can_reinvite"]) == (False, False)
    code, status = await portal.call("PUT", opt_out, {"opted_out": False})
    assert status["registered_on"] is None
    assert (status["can_invite"], status["can_reinvite"]) == (True, True)


async def test_every_status_field_moves_through_its_states(
    portal: Portal, mailbox: Mailbox
) -> None:
    patient_id = await portal.create(email="ann@example.com")
    assert await portal.status(patient_id) == {
        "opted_out": False,
        "activated_on": None,
        "registered_on": None,
        "last_login_on": "Never",
        "last_reinvited_on": "Never",
        "account_email": None,
        "can_invite": True,
        "can_reinvite": False,
    }
    mailbox.hold_next()  # the first attempt waits in the SMTP server: the email is in the outbox
    assert (await portal.invite(patient_id))[0] == 202
    await asyncio.wait_for(mailbox.held.wait(), 10)
    status = await portal.status(patient_id)
    assert (status["activated_on"], status["registered_on"]) == ("Pending", "Pending")
    mailbox.release()  # refused with 451: retried, then delivered
    [mail] = await mailbox.wait_for(1)
    status = await portal.wait_status(patient_id, "activated_on", is_date)
    assert status["registered_on"] == "Pending" and status["account_email"] is None
    assert (await portal.invite(patient_id, "reinvite"))[0] == 202
    [_, mail] = await mailbox.wait_for(2)
    status = await portal.status(patient_id)
    assert is_date(status["last_reinvited_on"]) and status["activated_on"] != "Pending"
    assert (await portal.activate(mail.token))[0] == 200
    status = await portal.status(patient_id)
    assert is_date(status["registered_on"]) and status["account_email"] == "ann@example.com"
    assert status["last_login_on"] == "Never"
    assert (await portal.login("ann@example.com"))[0] == 200
    assert is_date((await portal.status(patient_id))["last_login_on"])


async def test_forged_host_headers_do_not_change_the_link(portal: Portal, mailbox: Mailbox) -> None:
    patient_id = await portal.create(email="ann@example.com")
    forged = {
        **portal.headers,
        "Host": "evil.example",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "http",
        "Forwarded": "host=evil.example;proto=http",
    }
    code, _ = await portal.call("POST", f"/v1/portal/patients/{patient_id}/invite", {}, forged)
    assert code == 202
    [mail] = await mailbox.wait_for(1)
    assert mail.link.startswith(f"{BASE_URL}/portal/activate#token=")
    assert "evil" not in mail.message.as_string()


async def test_invites_are_rate_limited_per_practice(
    mailbox: Mailbox, aiohttp_client: Any, tmp_path: Any
) -> None:
    from common.config import RateLimit
    from tests.portal_support import server_with_portal

    app = server_with_portal(tmp_path, mailbox, invite_rate_limit=RateLimit(2, 3600))
    portal = Portal(await aiohttp_client(app))
    patients = [
        await portal.create(first=f"P{chr(97 + n)}", email=f"p{n}@example.com") for n in range(3)
    ]
    assert (await portal.invite(patients[0]))[0] == 202
    assert (await portal.invite(patients[1]))[0] == 202
    code, body = await portal.invite(patients[2])
    assert code == 429 and body["error"]["code"] == "rate_limited"
    other = Portal(portal.client, practice="p2")
    assert (await other.invite(await other.create(email="q@example.com")))[0] == 202


async def test_staff_cannot_change_an_activated_accounts_email_but_support_can(
    portal: Portal, mailbox: Mailbox, portal_app: web.Application
) -> None:
    patient_id, token = await invited(portal, mailbox, email="ann@example.com")
    path = f"/v1/portal/patients/{patient_id}/account-email"
    code, body = await portal.call("PUT", path, {"email": "ann2@example.com"})
    assert code == 409 and body["error"]["code"] == "not_registered"
    assert (await portal.activate(token))[0] == 200
    code, body = await portal.call("PUT", path, {"email": "ann2@example.com"})
    assert code == 403 and body["error"]["code"] == "contact_support"
    code, status = await portal.call("PUT", path, {"email": "ann2@example.com"}, support_headers())
    assert code == 200 and status["account_email"] == "ann2@example.com"
    assert (await portal.login("ann2@example.com"))[0] == 200
    assert (await portal.login("ann@example.com"))[0] == 401
    _, profile = await portal.call("GET", f"/v1/portal/patients/{patient_id}")
    assert profile["email"] == "ann@example.com"  # PATCH owns the profile email
    entries = await portal_app[AUDIT].query(None)
    changes = [e for e in entries if e["action"] == "portal_account_email"]
    assert [(e["actor"], e["subject"], e["outcome"]) for e in changes] == [
        ("frontdesk-1", patient_id, "not_registered"),
        ("frontdesk-1", patient_id, "contact_support"),
        ("support-1", patient_id, "ok"),
    ]


async def test_support_cannot_move_an_account_onto_another_patients_email(
    portal: Portal, mailbox: Mailbox
) -> None:
    patient_id, token = await invited(portal, mailbox, email="ann@example.com")
    assert (await portal.activate(token))[0] == 200
    await invited(portal, mailbox, first="Bob", email="bob@example.com")  # pending: held
    path = f"/v1/portal/patients/{patient_id}/account-email"
    code, body = await portal.call("PUT", path, {"email": "bob@example.com"}, support_headers())
    assert code == 409 and body["error"]["code"] == "email_in_use"
    await portal.create(first="Cy", email="family@example.com")  # a profile email holds nothing
    code, body = await portal.call("PUT", path, {"email": "family@example.com"}, support_headers())
    assert code == 200 and body["account_email"] == "family@example.com"


async def test_no_name_email_or_token_reaches_the_audit_trail_or_the_logs(
    portal: Portal, mailbox: Mailbox, portal_app: web.Application, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    patient_id, token = await invited(
        portal, mailbox, first="Zebulon", last="Quixote", email="zq@example.com"
    )
    assert (await portal.invite(patient_id, "reinvite", email="zq2@example.com"))[0] == 202
    [_, mail] = await mailbox.wait_for(2)
    assert (await portal.activate(token))[0] == 400
    assert (await portal.activate(mail.token))[0] == 200
    assert (await portal.login("zq2@example.com", "wrong password!!"))[0] == 401
    assert (await portal.login("zq2@example.com"))[0] == 200
    await portal.call("PATCH", f"/v1/portal/patients/{patient_id}", {"last_name": "Quincy"})
    await portal.call("GET", "/v1/portal/patients?q=zeb")
    entries = [e for e in await portal_app[AUDIT].query(None) if e["action"].startswith("portal")]
    actions = {e["action"] for e in entries}
    assert {"portal_invite", "portal_reinvite", "portal_invite_sent", "portal_activate"} <= actions
    assert {"portal_login", "portal_profile_update", "portal_patient_search"} <= actions
    assert all(e["room_id"] is None for e in entries)
    secrets = ["Zebulon", "Quixote", "Quincy", "zq@", "zq2@", "example.com", token, mail.token]
    # mail.log is the test's own SMTP server, which logs whole messages at DEBUG
    ours = [r for r in caplog.records if not r.name.startswith("mail.log")]
    assert any(r.name.startswith("portal") for r in ours)
    server_log = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in ours)
    for text in (str(entries), server_log):
        for secret in secrets:
            assert secret.lower() not in text.lower()
