"""Who may not knock again: token identities a host rejected or removed in this visit.

Only a verified identity can be refused; an anonymous guest has nothing that
tells a second knock apart from a new person (the knock rate limit and the
lobby cap bound those). The list lasts for the visit: `end` clears it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

REJECTED = "rejected"
REMOVED = "removed"


@dataclass(frozen=True)
class Refusal:
    identity: str
    participant_id: str  # the id the person had when refused (what hosts saw)
    name: str
    reason: str  # REJECTED or REMOVED
    at: float

    def public(self) -> dict[str, str]:
        """As hosts see it: never the identity (a token `sub` may be an account id)."""
        return {"id": self.participant_id, "name": self.name, "reason": self.reason}


class Refusals:
    def __init__(self) -> None:
        self._by_identity: dict[str, Refusal] = {}

    def __contains__(self, identity: object) -> bool:
        return identity in self._by_identity

    def __len__(self) -> int:
        return len(self._by_identity)

    @property
    def entries(self) -> list[Refusal]:
        """In the order they were refused."""
        return list(self._by_identity.values())

    def add(self, refusal: Refusal) -> None:
        self._by_identity.pop(refusal.identity, None)
        self._by_identity[refusal.identity] = refusal

    def find(self, identity: str | None, participant_id: str | None) -> Refusal | None:
        if identity is not None:
            return self._by_identity.get(identity)
        return next((r for r in self.entries if r.participant_id == participant_id), None)

    def discard(self, identity: str) -> None:
        self._by_identity.pop(identity, None)

    def clear(self) -> None:
        self._by_identity.clear()

    def to_list(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.entries]

    @classmethod
    def from_list(cls, rows: list[dict[str, Any]]) -> Refusals:
        refusals = cls()
        for row in rows:
            refusals.add(Refusal(**row))
        return refusals
