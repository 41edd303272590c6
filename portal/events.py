"""What the portal tells the server about its patients, for integrators (webhooks).

The portal stands on common/ alone, so it reports through this callback; the
composition root (signalling/app.py) wires it to the webhook outbox. Events
carry the patient id only: never a name, an email or a token.
"""

from __future__ import annotations

from typing import Protocol

INVITATION_SENT = "portal_invitation_sent"  # the invitation email was accepted by SMTP
ACCOUNT_ACTIVATED = "portal_account_activated"
OPTED_OUT = "portal_opted_out"


class PortalEvents(Protocol):
    def __call__(self, kind: str, patient_id: str) -> None: ...


def ignore(kind: str, patient_id: str) -> None:
    """Nobody listens (the portal alone, as in its tests)."""
