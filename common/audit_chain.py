"""The audit trail's keyed hash chain: HMAC-SHA256 under a key kept outside the database.

Each row's `hash` is HMAC-SHA256(key, [seq, prev_hash, fields...]), so whoever
can write the file but does not hold the key cannot change, insert or remove a
row and recompute the chain. Rows written before the chain was keyed (plain
SHA-256, visitroom before issue 12) stay as they are: an *anchor* (a MAC'd
record in its own table) says where the keyed chain starts (`keyed_from`),
where the trail starts (`first_seq`, `first_prev`: moved by retention) and the
hash of the last unkeyed row (`legacy_tip`), so those rows cannot be changed
any more either, though nothing proves what they said before the upgrade.

Everything here is pure: rows in, a report out.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from common.config import ConfigError
from common.datadir import FILE_MODE, make_private_dir

KEY_FILE = "audit.key"
KEY_ENV = "VISITROOM_AUDIT_KEY"
MIN_KEY_BYTES = 32
KEYED = "keyed"  # anchor kinds: the keyed chain starts here
PRUNED = "pruned"  # retention removed the oldest rows

# (seq, at, room_id, actor, subject, action, outcome, node, details, prev_hash, hash)
Row = tuple[Any, ...]


class AuditKeyError(ConfigError):
    """No usable audit key, or not the key this trail was written with."""


@dataclass(frozen=True)
class AuditKey:
    secret: bytes = field(repr=False)

    @property
    def key_id(self) -> str:
        """Names the key without revealing it (to tell a wrong key from tampering)."""
        return hmac.new(self.secret, b"visitroom audit key id", hashlib.sha256).hexdigest()[:16]

    def mac(self, *parts: Any) -> str:
        blob = json.dumps(list(parts), separators=(",", ":"))
        return hmac.new(self.secret, blob.encode(), hashlib.sha256).hexdigest()

    def row_mac(self, seq: int, prev_hash: str, fields: tuple[Any, ...]) -> str:
        return self.mac("visitroom-audit-row-v2", seq, prev_hash, *fields)


def legacy_hash(prev_hash: str, fields: tuple[Any, ...]) -> str:
    """The unkeyed chain of earlier versions: SHA-256 over the previous hash and the fields."""
    blob = json.dumps([prev_hash, *fields], separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Anchor:
    anchor_id: int
    at: float
    kind: str
    keyed_from: int
    first_seq: int
    first_prev: str
    legacy_tip: str
    key_id: str
    mac: str = ""

    def parts(self) -> tuple[Any, ...]:
        return (
            "visitroom-audit-anchor-v2", self.anchor_id, self.at, self.kind, self.keyed_from,
            self.first_seq, self.first_prev, self.legacy_tip, self.key_id,
        )  # fmt: skip

    def signed(self, key: AuditKey) -> Anchor:
        return replace(self, mac=key.mac(*self.parts()))

    def valid(self, key: AuditKey) -> bool:
        return hmac.compare_digest(self.mac, key.mac(*self.parts()))

    def as_row(self) -> tuple[Any, ...]:
        return (
            self.anchor_id, self.at, self.kind, self.keyed_from, self.first_seq,
            self.first_prev, self.legacy_tip, self.key_id, self.mac,
        )  # fmt: skip


# --- the key ---------------------------------------------------------------------------


def key_from_text(text: str, where: str) -> AuditKey:
    if len(text.encode()) < MIN_KEY_BYTES:
        raise AuditKeyError(f"{where}: the audit key must be at least {MIN_KEY_BYTES} bytes")
    return AuditKey(text.encode())


def load_key(data_dir: Path, env_key: str | None) -> AuditKey | None:
    """VISITROOM_AUDIT_KEY, else `audit.key` in the data dir (0600), else None."""
    if env_key:
        return key_from_text(env_key, KEY_ENV)
    path = data_dir / KEY_FILE
    if not path.exists():
        return None
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise AuditKeyError(f"{path} must not be readable by others (chmod 600)")
    return key_from_text(path.read_text().strip(), str(path))


def load_or_create_key(data_dir: Path, env_key: str | None) -> tuple[AuditKey, Path | None]:
    """The key, generated into `audit.key` (0600) on first start; the path when created now."""
    found = load_key(data_dir, env_key)
    if found is not None:
        return found, None
    make_private_dir(data_dir)
    path = data_dir / KEY_FILE
    text = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    return AuditKey(text.encode()), path


# --- verification ----------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """The first thing wrong: `seq` is the audit row (or anchor, see `what`) it was found at."""

    seq: int
    what: str


@dataclass
class Report:
    rows: int = 0
    legacy: tuple[int, int] | None = None  # first and last unkeyed row still in the trail
    head: tuple[int, str] | None = None  # the last row and its hash
    problem: Problem | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None


def check_anchors(anchors: list[Anchor], key: AuditKey) -> Problem | None:
    for anchor in anchors:
        if anchor.key_id != key.key_id:
            return Problem(
                anchor.anchor_id,
                f"anchor {anchor.anchor_id} was written under audit key {anchor.key_id}, "
                f"but the key given is {key.key_id}: use the key this trail was written with",
            )
        if not anchor.valid(key):
            return Problem(anchor.anchor_id, f"anchor {anchor.anchor_id} was changed (bad MAC)")
    return None


class ChainCheck:
    """Walks the rows in seq order against the latest anchor; stops at the first problem."""

    def __init__(self, key: AuditKey, anchor: Anchor) -> None:
        self.key = key
        self.anchor = anchor
        self.report = Report()
        self._prev: tuple[int, str] | None = None

    def feed(self, row: Row) -> Problem | None:
        seq, *fields, prev_hash, digest = row
        problem = self._link(seq, prev_hash)
        problem = problem or self._contents(seq, tuple(fields), prev_hash, digest)
        if problem is None:
            self._note(seq, digest)
        return problem

    def _link(self, seq: int, prev_hash: str) -> Problem | None:
        if self._prev is None:
            start, start_prev = self.anchor.first_seq, self.anchor.first_prev
            if seq > start:
                return Problem(seq, f"rows {start}..{seq - 1} are missing (deleted)")
            if seq < start or prev_hash != start_prev:
                return Problem(seq, f"the trail should start at row {start}: rows were changed")
            return None
        last_seq, last_hash = self._prev
        if seq != last_seq + 1:
            return Problem(seq, f"rows {last_seq + 1}..{seq - 1} before it are missing (deleted)")
        if prev_hash != last_hash:
            return Problem(seq, f"its prev_hash does not match row {last_seq}")
        return None

    def _contents(
        self, seq: int, fields: tuple[Any, ...], prev_hash: str, digest: str
    ) -> Problem | None:
        if seq >= self.anchor.keyed_from:
            if not hmac.compare_digest(digest, self.key.row_mac(seq, prev_hash, fields)):
                return Problem(seq, "its MAC does not match: changed, or written without the key")
            return None
        if digest != legacy_hash(prev_hash, fields):
            return Problem(seq, "its (unkeyed) hash does not match its contents: changed")
        if seq == self.anchor.keyed_from - 1 and digest != self.anchor.legacy_tip:
            return Problem(seq, "the last unkeyed row is not the one the key anchored: changed")
        return None

    def _note(self, seq: int, digest: str) -> None:
        report = self.report
        report.rows += 1
        report.head = (seq, digest)
        if seq < self.anchor.keyed_from:
            first = report.legacy[0] if report.legacy else seq
            report.legacy = (first, seq)
        self._prev = (seq, digest)

    def finish(self, last_assigned: int) -> Problem | None:
        """After the last row: rows removed from the end leave SQLite's sequence behind."""
        last = self._prev[0] if self._prev else self.anchor.first_seq - 1
        if last_assigned > last:
            return Problem(last + 1, f"rows {last + 1}..{last_assigned} at the end are missing")
        return None


def verify_rows(
    key: AuditKey, anchors: list[Anchor], rows: Iterable[Row], last_assigned: int
) -> Report:
    """Check the whole trail: anchors, then every row in order, then its end."""
    problem = check_anchors(anchors, key)
    if problem is not None:
        return Report(problem=Problem(problem.seq, "(anchor) " + problem.what))
    if not anchors:
        first = next(iter(rows), None)
        if first is None:
            return Report()
        return Report(problem=Problem(first[0], "no anchor: the keyed chain's start was removed"))
    check = ChainCheck(key, anchors[-1])
    for row in rows:
        problem = check.feed(row)
        if problem is not None:
            check.report.problem = problem
            return check.report
    check.report.problem = check.finish(last_assigned)
    return check.report


def describe(report: Report) -> list[str]:
    """What `visitroom audit verify` prints."""
    lines = [f"{report.rows} rows checked"]
    if report.legacy:
        first, last = report.legacy
        lines.append(
            f"rows {first}..{last} are unkeyed (plain SHA-256, written before the key): "
            "anchored since the upgrade, but not provably unchanged before it"
        )
    if report.head:
        lines.append(f"last row {report.head[0]}, hash {report.head[1]}")
    if report.problem:
        lines.append(f"BAD: row {report.problem.seq}: {report.problem.what}")
    else:
        lines.append("the audit trail is intact")
    return lines


def env_key(env: Mapping[str, str]) -> str | None:
    return env.get(KEY_ENV) or None
