"""The login throttle on its own: waits that double to a cap, forgetting, bounded memory."""

from __future__ import annotations

from common.config import RateLimit
from portal.throttle import FORGET_S, LoginThrottle
from waiting_room.clock import FakeClock

NO_ADDRESS_LIMIT = RateLimit(0, 1.0)


def fail_until_refused(throttle: LoginThrottle, account: str = "ann") -> float:
    while (wait := throttle.begin(account, "198.51.100.1")) == 0:
        pass
    return wait


def test_the_wait_doubles_after_three_free_failures_up_to_the_cap() -> None:
    clock = FakeClock(1000.0)
    throttle = LoginThrottle(clock, cap_s=10.0, address_limit=NO_ADDRESS_LIMIT)
    waits = []
    for _ in range(7):
        waits.append(fail_until_refused(throttle))
        clock.advance(waits[-1])
    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert throttle.begin("bob", "198.51.100.1") == 0  # other accounts are not held up


def test_a_success_or_a_quiet_quarter_hour_starts_an_account_afresh() -> None:
    clock = FakeClock(1000.0)
    throttle = LoginThrottle(clock, address_limit=NO_ADDRESS_LIMIT)
    clock.advance(fail_until_refused(throttle))
    assert throttle.begin("ann", "198.51.100.1") == 0
    throttle.succeeded("ann", "198.51.100.1")
    assert [throttle.begin("ann", "198.51.100.1") for _ in range(4)] == [0.0] * 4
    assert fail_until_refused(throttle) == 1.0
    clock.advance(FORGET_S)
    assert [throttle.begin("ann", "198.51.100.1") for _ in range(4)] == [0.0] * 4


def test_memory_stays_bounded_under_a_spray_of_emails_and_addresses() -> None:
    clock = FakeClock(1000.0)
    throttle = LoginThrottle(clock, max_keys=100)
    for n in range(1000):
        assert throttle.begin(f"user{n}", f"198.51.{n // 250}.{n % 250}") == 0
    assert len(throttle._accounts) + len(throttle._addresses) <= 100
    assert fail_until_refused(throttle, "ann") == 1.0  # still throttling
