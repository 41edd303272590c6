"""Which practice a patient belongs to: the portal's answer, for a room's `patient_id`."""

from __future__ import annotations

from typing import Protocol

from portal.validate import PATIENT_ID  # one format for the portal's patient ids


class PatientDirectory(Protocol):
    """The portal, handed in by the composition root (signalling/app.py)."""

    async def practice_of(self, patient_id: str) -> str | None:
        """The patient's practice, or None when the portal has no such patient."""
        ...


def valid_patient_id(value: object) -> bool:
    return isinstance(value, str) and bool(PATIENT_ID.match(value))
