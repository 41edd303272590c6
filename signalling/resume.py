"""The live resume tokens of this node, kept as digests (the tokens themselves are never kept).

In memory only; the coordinator keeps the durable copy (a file or the bus),
so a restart or a take-over can still find them (`Coordinator.find_resume`).
"""

from __future__ import annotations

import hashlib
import secrets


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ResumeTokens:
    def __init__(self) -> None:
        self._by_digest: dict[str, tuple[str, str]] = {}  # digest -> (room_id, participant_id)
        self._of: dict[str, str] = {}  # participant_id -> digest

    def issue(self, room_id: str, participant_id: str) -> tuple[str, str, str | None]:
        """A new token for a participant: (token, its digest, the digest it replaces)."""
        token = secrets.token_urlsafe(32)
        old = self.forget(participant_id)
        digest = digest_of(token)
        self._by_digest[digest] = (room_id, participant_id)
        self._of[participant_id] = digest
        return token, digest, old

    def find(self, room_id: str, digest: str) -> str | None:
        found = self._by_digest.get(digest)
        return found[1] if found is not None and found[0] == room_id else None

    def adopt(self, participant_id: str, digest: str) -> None:
        """A token found in durable storage: the next one issued replaces it there too."""
        self._of.setdefault(participant_id, digest)

    def forget(self, participant_id: str) -> str | None:
        """Drop a participant's token; its digest, if it had one."""
        digest = self._of.pop(participant_id, None)
        if digest is not None:
            self._by_digest.pop(digest, None)
        return digest

    def digests(self, room_id: str) -> dict[str, str]:
        """A room's live tokens (digest -> participant id), for writing back."""
        return {d: pid for d, (room, pid) in self._by_digest.items() if room == room_id}
