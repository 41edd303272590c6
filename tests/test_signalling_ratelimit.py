"""Knock limits without sockets: per address for anonymous knocks, per identity for tokens,
and a much larger per-address ceiling over both."""

from __future__ import annotations

import pytest

from common.config import ConfigError, RateLimit
from signalling.config import from_env
from signalling.knocks import KnockLimits
from waiting_room.clock import FakeClock

NAT = "203.0.113.7"


def limits(clock: FakeClock, ceiling: RateLimit | None = None) -> KnockLimits:
    return KnockLimits(RateLimit(20, 10.0), RateLimit(5, 10.0), ceiling, clock)


def test_anonymous_knocks_from_one_address_do_not_lock_out_a_token_holder() -> None:
    knocks = limits(FakeClock())
    assert all(knocks.allow(NAT, None, "visit-1") for _ in range(20))
    assert not knocks.allow(NAT, None, "visit-1")
    assert knocks.allow(NAT, "patient-1", "visit-1")


def test_one_identity_is_limited_on_its_own_and_others_behind_it_still_knock() -> None:
    knocks = limits(FakeClock())
    assert all(knocks.allow(NAT, "attacker", "visit-1") for _ in range(5))
    assert not knocks.allow(NAT, "attacker", "visit-1")
    assert knocks.allow(NAT, "patient-1", "visit-1")
    assert knocks.allow(NAT, None, "visit-1")


def test_refused_knocks_do_not_use_up_the_address_ceiling() -> None:
    knocks = limits(FakeClock(), ceiling=RateLimit(10, 10.0))
    for _ in range(100):
        knocks.allow(NAT, "attacker", "visit-1")
    assert knocks.allow(NAT, "patient-1", "visit-1")


def test_the_address_ceiling_bounds_many_identities_from_one_address() -> None:
    knocks = limits(FakeClock(), ceiling=RateLimit(10, 10.0))
    assert all(knocks.allow(NAT, f"id-{n}", "visit-1") for n in range(10))
    assert not knocks.allow(NAT, "id-late", "visit-1")
    assert knocks.allow("198.51.100.1", "id-late", "visit-1")
    assert knocks.allow(NAT, "id-late", "visit-2")


def test_the_ceiling_defaults_to_ten_times_the_anonymous_limit() -> None:
    knocks = limits(FakeClock())
    assert all(knocks.allow(NAT, f"id-{n}", "visit-1") for n in range(200))
    assert not knocks.allow(NAT, "id-late", "visit-1")


def test_limits_reset_after_their_window() -> None:
    clock = FakeClock()
    knocks = limits(clock)
    for _ in range(5):
        knocks.allow(NAT, "pat", "visit-1")
    assert not knocks.allow(NAT, "pat", "visit-1")
    clock.advance(10)
    assert knocks.allow(NAT, "pat", "visit-1")


def test_zero_disables_each_limit() -> None:
    off = RateLimit(0, 1.0)
    knocks = KnockLimits(off, off, None, FakeClock())
    assert all(knocks.allow(NAT, None, "visit-1") for _ in range(500))
    assert all(knocks.allow(NAT, "pat", "visit-1") for _ in range(500))


def test_the_knock_limits_and_the_lobby_factor_come_from_the_environment() -> None:
    config = from_env(
        {
            "VISITROOM_KNOCK_IDENTITY_RATE_LIMIT": "3/60",
            "VISITROOM_KNOCK_ADDRESS_RATE_LIMIT": "500/10",
            "VISITROOM_LOBBY_CAP_FACTOR": "1.5",
        }
    )
    assert config.knock_identity_rate_limit == RateLimit(3, 60.0)
    assert config.knock_address_rate_limit == RateLimit(500, 10.0)
    assert config.lobby_cap_factor == 1.5
    defaults = from_env({})
    assert defaults.knock_identity_rate_limit == RateLimit(5, 10.0)
    assert defaults.knock_address_rate_limit is None and defaults.lobby_cap_factor == 2.0


@pytest.mark.parametrize(
    "env",
    [
        {"VISITROOM_LOBBY_CAP_FACTOR": "0"},
        {"VISITROOM_LOBBY_CAP_FACTOR": "lots"},
        {"VISITROOM_KNOCK_IDENTITY_RATE_LIMIT": "5 per minute"},
    ],
)
def test_bad_knock_settings_are_refused_with_a_clear_message(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        from_env(env)
