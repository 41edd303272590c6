"""The outbox sender: delivers invitation emails written by the store, one at a time.

Guarantees (docs/portal.md, The outbox):

- An invitation and its message are committed in one transaction before any
  send, so an SMTP outage or a restart loses nothing: the row waits, and
  failed attempts are retried with exponential backoff.
- Before each attempt the row is claimed (`sending`) and committed; right after
  the server's 250 for DATA it is marked `sent`, so a message the server
  accepted is not sent again.
- Only one sender works on a data directory at a time (an flock on
  `portal-outbox.lock`, released by the OS when its process dies). So a row
  still `sending` when a sender takes the lock was left by a crash mid-send.
  Such rows go back to `pending` and are sent again: at-least-once. The one case
  that produces a duplicate is a crash between the server's 250 and our commit;
  the resend is the same message (same Message-ID, Date and link), so mail
  systems and people can recognise it. The alternative, at-most-once, would
  silently drop every invitation that was interrupted before the 250, which is
  by far the likelier crash: a patient who never gets a link is worse than one
  who gets the same link twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from common.clock import Clock
from common.datadir import make_private_dir
from portal.smtp import SendError, Transport
from portal.store import INVITATION, Claimed, OutboxStore
from portal.tokens import TokenMaker

log = logging.getLogger(__name__)

LOCK_FILE = "portal-outbox.lock"
LOCK_RETRY_S = 2.0
MAX_BACKOFF_S = 3600.0
MAX_ATTEMPTS = 25

Compose = Callable[[Claimed, str], EmailMessage]  # (claimed row, token) -> email
Delivered = Callable[[Claimed, str], None]  # (claimed row, outcome) -> None, e.g. audit


def backoff(attempts: int, base_s: float, rand: Callable[[], float] = random.random) -> float:
    """Seconds before attempt `attempts + 1`: base * 2^(attempts-1), capped, +-20% jitter."""
    delay: float = min(base_s * 2.0 ** max(attempts - 1, 0), MAX_BACKOFF_S)
    return delay * (0.8 + 0.4 * rand())


class SenderLock:
    """An exclusive, non-blocking flock on a file in the data dir."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        make_private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


@dataclass
class SendCounts:
    sent: int = 0
    retrying: int = 0
    failed: int = 0


class OutboxSender:
    def __init__(
        self,
        store: OutboxStore,
        transport: Transport,
        tokens: TokenMaker,
        compose: Compose,
        *,
        lock: SenderLock,
        clock: Clock,
        link_ttl_s: float,
        retry_base_s: float,
        delivered: Delivered | None = None,
    ) -> None:
        self._store = store
        self._transport = transport
        self._tokens = tokens
        self._compose = compose
        self._lock = lock
        self._clock = clock
        self._ttl = link_ttl_s
        self._retry_base = retry_base_s
        self._delivered = delivered
        self._owner = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._wake = asyncio.Event()
        self._stopping = False

    def close(self) -> None:
        self._transport.close()
        self._lock.release()

    def wake(self) -> None:
        """A new message was committed: look now rather than at the next due time."""
        self._wake.set()

    async def take_lock(self) -> bool:
        """Become the data dir's sender; rows left `sending` by a dead one are requeued."""
        if not self._lock.acquire():
            return False
        orphans = await self._store.requeue_orphans(self._clock())
        if orphans:
            log.warning(
                "requeued %d outbox message(s) interrupted mid-send; they are sent again"
                " with the same Message-ID (at-least-once)",
                orphans,
            )
        return True

    async def run(self) -> None:
        """Send until `stop()` (a background task)."""
        try:
            while not self._stopping and not await self.take_lock():
                self._wake.clear()
                await self._sleep(LOCK_RETRY_S)
            while not self._stopping:
                self._wake.clear()
                await self._sleep(await self._step())
        finally:
            self._lock.release()

    async def _step(self) -> float | None:
        """Send one due message; the seconds to wait before the next look (None: until woken)."""
        try:
            if await self.send_one() is not None:
                return 0.0
            due = await self._store.next_due()
        except Exception:
            # e.g. a full disk: keep the task alive and look again later
            log.exception("the outbox sender hit an error; retrying")
            return self._retry_base
        return None if due is None else max(due - self._clock(), 0.0)

    async def stop(self, task: asyncio.Task[None], grace_s: float) -> None:
        """Let an attempt in flight finish and be recorded, then end `task` (run()).

        Cancelling mid-attempt would leave the row `sending` while smtplib's thread
        may still complete the send: the next start would then send it again.
        """
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(task, grace_s)
        except TimeoutError:
            log.warning("the outbox sender did not stop within %.0f s", grace_s)
        finally:
            self.close()

    async def send_due(self) -> SendCounts:
        """One pass over every message due now (for `visitroom portal send-pending`)."""
        counts = SendCounts()
        while (outcome := await self.send_one()) is not None:
            setattr(counts, outcome, getattr(counts, outcome) + 1)
        return counts

    async def send_one(self) -> str | None:
        """Claim and attempt the next due message: 'sent', 'retrying', 'failed' or None."""
        now = self._clock()
        claimed = await self._store.claim_next(
            now, self._owner, self._tokens.hash_for_seed, now + self._ttl
        )
        if claimed is None:
            return None
        outcome = await self._attempt(claimed)
        if self._delivered is not None and outcome != "retrying":
            self._delivered(claimed, outcome)
        return outcome

    async def _attempt(self, claimed: Claimed) -> str:
        try:
            token = self._tokens.token(claimed.token_seed) if claimed.kind == INVITATION else ""
            message = self._compose(claimed, token)
            await self._transport.send(message)
        except SendError as exc:
            return await self._failed(claimed, exc)
        except Exception as exc:
            log.exception("outbox message %d could not be built", claimed.message_id)
            return await self._failed(claimed, SendError(type(exc).__name__, permanent=True))
        await self._store.mark_sent(claimed.message_id, self._owner, self._clock())
        log.info("outbox message %d sent (attempt %d)", claimed.message_id, claimed.attempts)
        return "sent"

    async def _failed(self, claimed: Claimed, exc: SendError) -> str:
        if exc.permanent or claimed.attempts >= MAX_ATTEMPTS:
            await self._store.mark_failed(claimed.message_id, self._owner, exc.summary)
            log.error(
                "outbox message %d failed for good after %d attempt(s): %s",
                claimed.message_id,
                claimed.attempts,
                exc.summary,
            )
            return "failed"
        delay = backoff(claimed.attempts, self._retry_base)
        await self._store.mark_retry(
            claimed.message_id, self._owner, self._clock() + delay, exc.summary
        )
        log.warning(
            "outbox message %d attempt %d failed (%s); retrying in %.1f s",
            claimed.message_id,
            claimed.attempts,
            exc.summary,
            delay,
        )
        return "retrying"

    async def _sleep(self, seconds: float | None) -> None:
        if seconds == 0.0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
