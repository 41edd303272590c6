"""Login throttling: failed logins slow an account down, they never lock it.

Locking an account after N failures lets anyone who knows a patient's email
keep that patient out. Instead, after `free` failures each further try on the
account must wait a delay that doubles with every failure (1 s, 2 s, 4 s ...)
up to `cap_s`; the right password still works once the wait is over, and a
success clears the account. Per client address there is a hard limit on
failed logins across all accounts, so one address cannot guess widely.

A try that may go ahead is counted as a failure at once (and forgiven on
success), so parallel requests cannot all slip through one opening. Pure and
synchronous, with an injected clock.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from common.clock import Clock
from common.config import RateLimit

FREE_FAILURES = 3  # typos cost nothing
BASE_DELAY_S = 1.0
FORGET_S = 900.0  # an account quiet this long starts again from nothing
ADDRESS_LIMIT = RateLimit(10, 900.0)  # failed logins per client address


@dataclass
class _Account:
    failures: int = 0
    next_at: float = 0.0
    last_at: float = 0.0


class LoginThrottle:
    def __init__(
        self,
        clock: Clock,
        cap_s: float = 60.0,
        address_limit: RateLimit = ADDRESS_LIMIT,
        max_keys: int = 100_000,
    ) -> None:
        self._clock = clock
        self._cap_s = cap_s
        self._address_limit = address_limit
        self._max_keys = max_keys
        self._accounts: dict[str, _Account] = {}
        self._addresses: dict[str, collections.deque[float]] = {}

    def delay(self, failures: int) -> float:
        """The wait after the `failures`-th failure in a row."""
        if failures <= FREE_FAILURES:
            return 0.0
        return float(min(BASE_DELAY_S * 2.0 ** (failures - FREE_FAILURES - 1), self._cap_s))

    def begin(self, account: str, address: str) -> float:
        """0.0: the try may go ahead (and counts as failed until `succeeded`);
        else the seconds to wait first."""
        now = self._clock()
        wait = max(self._address_wait(address, now), self._account_wait(account, now))
        if wait > 0:
            return wait
        state = self._accounts.setdefault(account, _Account())
        state.failures += 1
        state.last_at = now
        state.next_at = now + self.delay(state.failures)
        if self._address_limit.count > 0:
            self._addresses.setdefault(address, collections.deque()).append(now)
        self._bound(now)
        return 0.0

    def succeeded(self, account: str, address: str) -> None:
        self._accounts.pop(account, None)
        hits = self._addresses.get(address)
        if hits:
            hits.pop()

    def _account_wait(self, account: str, now: float) -> float:
        state = self._accounts.get(account)
        if state is None:
            return 0.0
        if now - state.last_at >= FORGET_S:
            del self._accounts[account]
            return 0.0
        return max(state.next_at - now, 0.0)

    def _address_wait(self, address: str, now: float) -> float:
        limit = self._address_limit
        hits = self._addresses.get(address)
        if limit.count <= 0 or not hits:
            return 0.0
        while hits and now - hits[0] >= limit.seconds:
            hits.popleft()
        if len(hits) < limit.count:
            return 0.0
        return hits[0] + limit.seconds - now

    def _bound(self, now: float) -> None:
        """Forget quiet accounts and addresses; past `max_keys`, the oldest go first."""
        if len(self._accounts) + len(self._addresses) <= self._max_keys:
            return
        self._accounts = {k: s for k, s in self._accounts.items() if now - s.last_at < FORGET_S}
        window = self._address_limit.seconds
        self._addresses = {k: h for k, h in self._addresses.items() if h and now - h[-1] < window}
        while len(self._accounts) > self._max_keys // 2:
            del self._accounts[next(iter(self._accounts))]
        while len(self._addresses) > self._max_keys // 2:
            del self._addresses[next(iter(self._addresses))]
