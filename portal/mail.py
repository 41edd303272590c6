"""The invitation email: plain text with an HTML alternative, and nothing more than needed.

It names the practice and greets the patient by first name; it holds no other
health information. The Date and Message-ID come from the outbox row, so every
attempt at one message is the same message and a duplicate can be recognised.
"""

from __future__ import annotations

import hashlib
import html
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

GENERIC_PRACTICE = "your healthcare provider"

TEXT = """\
Hello {first_name},

{practice} has invited you to the patient portal.

To activate your account, open this link and choose a password:

{link}

The link works once and expires in {lifetime}. If you did not expect this
email, you can ignore it; no account is created until the link is used.
"""

HTML = """\
<!doctype html>
<html><body style="font-family:sans-serif">
<p>Hello {first_name},</p>
<p>{practice} has invited you to the patient portal.</p>
<p><a href="{link}">Activate your account</a> and choose a password.</p>
<p>The link works once and expires in {lifetime}. If you did not expect this
email, you can ignore it; no account is created until the link is used.</p>
</body></html>
"""


VISIT_TEXT = """\
Hello {first_name},

{practice} has scheduled a video visit with you on {when}.

At the time of your visit, open this link to join:

{link}

You will wait in a waiting room until your provider lets you in.
"""

VISIT_HTML = """\
<!doctype html>
<html><body style="font-family:sans-serif">
<p>Hello {first_name},</p>
<p>{practice} has scheduled a video visit with you on {when}.</p>
<p>At the time of your visit, <a href="{link}">open this link to join</a>:<br>{link}</p>
<p>You will wait in a waiting room until your provider lets you in.</p>
</body></html>
"""


def lifetime(seconds: float) -> str:
    """'7 days', '1 day', '12 hours', '30 minutes': the largest unit that fits."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return "1 minute"


def _message(
    sender: str, recipient: str, subject: str, message_id: str, created_at: float
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.fromtimestamp(created_at, UTC))
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    return message


def _fill(message: EmailMessage, text: str, html_text: str, values: dict[str, str]) -> None:
    message.set_content(text.format(**values))
    escaped = {k: html.escape(str(v), quote=True) for k, v in values.items()}
    message.add_alternative(html_text.format(**escaped), subtype="html")
    # A fixed boundary keeps every attempt at this message byte-for-byte the same.
    message_id = str(message["Message-ID"])
    message.set_boundary("portal-" + hashlib.sha256(message_id.encode()).hexdigest()[:32])


def visit_email(
    *,
    sender: str,
    recipient: str,
    first_name: str,
    practice: str | None,
    link: str,
    when: str,
    message_id: str,
    created_at: float,
) -> EmailMessage:
    """The patient link of a scheduled visit: the practice, the time and the link, no more."""
    name = practice or GENERIC_PRACTICE
    message = _message(sender, recipient, f"Your video visit with {name}", message_id, created_at)
    values = {"first_name": first_name, "practice": name, "link": link, "when": when}
    _fill(message, VISIT_TEXT, VISIT_HTML, values)
    return message


def invitation_email(
    *,
    sender: str,
    recipient: str,
    first_name: str,
    practice: str | None,
    link: str,
    message_id: str,
    created_at: float,
    valid_for_s: float,
) -> EmailMessage:
    name = practice or GENERIC_PRACTICE
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = f"Your patient portal invitation from {name}"
    message["Date"] = format_datetime(datetime.fromtimestamp(created_at, UTC))
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    values = {
        "first_name": first_name,
        "practice": name,
        "link": link,
        "lifetime": lifetime(valid_for_s),
    }
    message.set_content(TEXT.format(**values))
    escaped = {k: html.escape(str(v), quote=True) for k, v in values.items()}
    message.add_alternative(HTML.format(**escaped), subtype="html")
    # A fixed boundary keeps every attempt at this message byte-for-byte the same.
    message.set_boundary("portal-" + hashlib.sha256(message_id.encode()).hexdigest()[:32])
    return message
