"""Which practice a patient belongs to: the portal's answer, for a room's `patient_id`."""

from __future__ import annotations

import re
from typing import Protocol

PATIENT_ID = re.compile(r"^pt_[0-9a-f]{16}$")  # the portal's patient ids (portal.validate)


class PatientDirectory(Protocol):
    """The portal, handed in by the composition root (signalling/app.py)."""

    async def practice_of(self, patient_id: str) -> str | None:
        """The patient's practice, or None when the portal has no such patient."""
        ...


def valid_patient_id(value: object) -> bool:
    return isinstance(value, str) and bool(PATIENT_ID.match(value))
