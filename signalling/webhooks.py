"""Webhook delivery: events go to a persisted outbox, then to every endpoint, in order per room.

- `emit` is what the executor (and the portal) call once a change is stored:
  it gives each event its id and time and appends it to a buffer. It never
  waits: a writer task commits buffered events to the outbox
  (webhook_store.py) in batches, and only committed events are sent.
- A dispatcher task sends the due deliveries, each in a task of its own with
  a timeout: at most one at a time per endpoint and room, so a room's events
  arrive in order (a later one waits while an earlier one is retried).
- 2xx ends a delivery; 410 disables the endpoint (audited); anything else,
  a timeout or a refused connection is retried with exponential backoff and
  jitter (about 1 s first, at most `retry_max_s` apart) until `give_up_s`
  after the event, when the delivery fails (`visitroom webhooks replay`).
- A stop leaves deliveries in flight pending: they are sent again on the
  next start (at least once; receivers dedupe by event id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import aiohttp
from yarl import URL

from common import webhooksig
from common.audit import AuditEntry, AuditLog, Detail
from signalling.webhook_config import WebhookSettings
from signalling.webhook_events import Hook, body, encode, new_id, portal_event
from signalling.webhook_store import Head, NewEvent, WebhookStore
from waiting_room.clock import Clock

log = logging.getLogger(__name__)

WEBHOOKS_FILE = "webhooks.sqlite3"
MAX_IN_FLIGHT = 32  # deliveries at once, over all endpoints and rooms
IDLE_POLL_S = 5.0  # how soon rows replayed by `visitroom webhooks replay` are seen
MIN_LOOK_S = 0.05  # looks at the outbox at most this often (a burst of answers: one look)
STATS_EVERY_S = 1.0
PRUNE_EVERY_S = 3600.0
KEEP_SENT_S = 7 * 86400.0
KEEP_FAILED_S = 30 * 86400.0
USER_AGENT = "visitroom-webhooks/1"


def backoff(attempts: int, base_s: float, max_s: float, rand: Callable[[], float]) -> float:
    """Seconds before the next try after `attempts` failed ones: base * 2^(attempts-1),
    at most `max_s`, of which the upper half is random (jitter)."""
    ceiling = min(max_s, base_s * 2.0 ** max(attempts - 1, 0))
    return ceiling / 2 + rand() * ceiling / 2


def origin(url: str) -> str:
    """An endpoint as logs and the audit trail name it: its origin (a path or a query
    may hold a receiver's secret)."""
    parsed = URL(url)
    return f"{parsed.scheme}://{parsed.host}:{parsed.port}"


@dataclass
class WebhookStats:
    delivered: int = 0  # deliveries a receiver accepted (2xx)
    failed_attempts: int = 0  # attempts that did not end in a 2xx
    failed: int = 0  # deliveries given up (past the give-up time, or a 410)
    pending: int = 0  # deliveries waiting (as of the last look)
    oldest_at: float | None = None  # when the oldest waiting event happened


class Webhooks:
    def __init__(
        self,
        settings: WebhookSettings,
        store: WebhookStore,
        clock: Clock,
        audit: AuditLog,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.stats = WebhookStats()
        self._store = store
        self._clock = clock
        self._audit = audit
        self._rand = rand
        self._buffer: list[NewEvent] = []
        self._buffered = asyncio.Event()
        self._wake = asyncio.Event()
        self._in_flight: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._done: set[tuple[int, str]] = set()  # attempts ended since the last look began
        self._tasks: list[asyncio.Task[None]] = []
        self._http: aiohttp.ClientSession | None = None
        self._stats_at = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.settings.urls)

    # --- producing events ---------------------------------------------------------------

    def emit(self, hooks: Iterable[Hook]) -> None:
        """Queue `hooks` (already stored changes) for delivery; never waits."""
        if not self.enabled:
            return
        now = self._clock()
        for hook in hooks:
            event_id = new_id()
            data = encode(body(hook, event_id, now))
            self._buffer.append(NewEvent(event_id, hook.event, hook.order_key, data, now))
        if self._buffer:
            self._buffered.set()

    def portal_event(self, kind: str, patient_id: str) -> None:
        """The portal's callback (portal/events.py): an invitation sent, an account
        activated, a patient opted out."""
        self.emit([portal_event(kind, patient_id)])

    def lag_s(self) -> float:
        oldest = [self.stats.oldest_at] if self.stats.oldest_at is not None else []
        if self._buffer:
            oldest.append(self._buffer[0].created_at)
        return max(0.0, self._clock() - min(oldest)) if oldest else 0.0

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if not self.enabled:
            return
        await self._store.start()
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=MAX_IN_FLIGHT), headers={"User-Agent": USER_AGENT}
        )
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="webhook-writer"),
            asyncio.create_task(self._dispatch_loop(), name="webhook-dispatcher"),
            asyncio.create_task(self._prune_loop(), name="webhook-prune"),
        ]
        log.info("webhooks to %s", ", ".join(origin(u) for u in self.settings.urls))

    async def stop(self) -> None:
        """Commit what is buffered; attempts in flight stay pending for the next start."""
        if not self.enabled:
            return
        tasks = [*self._tasks, *self._in_flight.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self._flush()
        except Exception:
            log.exception("webhook events could not be stored at stop: %d lost", len(self._buffer))
        if self._http is not None:
            await self._http.close()
        await self._store.close()

    # --- writing ------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            await self._buffered.wait()
            self._buffered.clear()
            try:
                await self._flush()
            except Exception:
                log.exception("could not store webhook events; retrying")
                await asyncio.sleep(1.0)
                self._buffered.set()

    async def _flush(self) -> None:
        batch = list(self._buffer)
        if not batch:
            return
        await self._store.add(batch, self.settings.urls, self.settings.give_up_s)
        del self._buffer[: len(batch)]
        self._wake.set()

    # --- sending ------------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while True:
            await asyncio.sleep(MIN_LOOK_S)
            self._wake.clear()
            try:
                wait = await self._dispatch()
            except Exception:
                log.exception("webhook dispatch failed; retrying")
                wait = 1.0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _dispatch(self) -> float:
        """Start every due delivery; the seconds until the next one is due."""
        self._done.clear()  # a head read before its attempt was recorded is out of date
        heads = [h for h in await self._store.heads() if h.endpoint in self.settings.urls]
        now = self._clock()
        await self._refresh_stats(heads, now)
        wait = IDLE_POLL_S
        for head in heads:
            key = (head.endpoint, head.order_key)
            if key in self._in_flight or (head.seq, head.endpoint) in self._done:
                continue
            if head.next_at > now:
                wait = min(wait, head.next_at - now)
                continue
            if len(self._in_flight) >= MAX_IN_FLIGHT:
                break
            self._in_flight[key] = asyncio.create_task(self._deliver(key, head))
        return wait

    async def _refresh_stats(self, heads: list[Head], now: float) -> None:
        self.stats.oldest_at = min((h.created_at for h in heads), default=None)
        if now - self._stats_at >= STATS_EVERY_S or not heads:
            self._stats_at = now
            self.stats.pending, _ = await self._store.oldest_pending()

    async def _deliver(self, key: tuple[str, str], head: Head) -> None:
        try:
            status, error = await self._post(head)
            await self._record(head, status, error)
        except Exception:
            log.exception("webhook delivery %s could not be recorded", head.event_id)
        finally:
            self._in_flight.pop(key, None)
            self._done.add((head.seq, head.endpoint))
            self._wake.set()

    async def _post(self, head: Head) -> tuple[int | None, str]:
        assert self._http is not None
        signed = webhooksig.headers(self.settings.secret, head.body, self._clock())
        headers = {"Content-Type": "application/json", **signed}
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        try:
            async with self._http.post(
                head.endpoint, data=head.body, headers=headers, timeout=timeout,
                allow_redirects=False,
            ) as response:  # fmt: skip
                return response.status, f"HTTP {response.status}"
        except TimeoutError:
            return None, f"no answer within {self.settings.timeout_s:g} s"
        except aiohttp.ClientError as exc:
            return None, type(exc).__name__

    async def _record(self, head: Head, status: int | None, error: str) -> None:
        now = self._clock()
        if status is not None and 200 <= status < 300:
            await self._store.mark_sent(head.seq, head.endpoint, now)
            self.stats.delivered += 1
            return
        self.stats.failed_attempts += 1
        if status == 410:
            await self._disable(head.endpoint, now)
            return
        if now >= head.give_up_at:
            await self._store.mark_failed(head.seq, head.endpoint, now, error)
            self._gave_up(head, error, now)
            return
        delay = backoff(head.attempts + 1, self.settings.retry_base_s, self.settings.retry_max_s,
                        self._rand)  # fmt: skip
        await self._store.mark_retry(
            head.seq, head.endpoint, min(now + delay, head.give_up_at), error
        )
        log.info("webhook %s to %s: %s; retrying in %.1f s", head.event_id,
                 origin(head.endpoint), error, delay)  # fmt: skip

    async def _disable(self, endpoint: str, now: float) -> None:
        count = await self._store.disable(endpoint, now, "410 Gone: endpoint disabled")
        self.stats.failed += count
        where = origin(endpoint)
        log.warning(
            "webhook endpoint %s answered 410 Gone: disabled, %d pending deliveries failed;"
            " `visitroom webhooks enable URL` takes it back",
            where,
            count,
        )
        details: dict[str, Detail] = {"endpoint": where, "failed": count}
        self._audit.record(AuditEntry("webhook_endpoint", "disabled", details=details, at=now))

    def _gave_up(self, head: Head, error: str, now: float) -> None:
        self.stats.failed += 1
        where = origin(head.endpoint)
        log.error("webhook %s to %s failed for good: %s", head.event_id, where, error)
        details = {"endpoint": where, "event_id": head.event_id, "error": error}
        self._audit.record(AuditEntry("webhook_delivery", "failed", details=details, at=now))

    async def _prune_loop(self) -> None:
        while True:
            now = self._clock()
            try:
                await self._store.prune(now - KEEP_SENT_S, now - KEEP_FAILED_S)
            except Exception:
                log.exception("webhook outbox prune failed")
            await asyncio.sleep(PRUNE_EVERY_S)
