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


def lifetime(seconds: float) -> str:
    """'7 days', '1 day', '12 hours', '30 minutes': the largest unit that fits."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return "1 minute"


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
