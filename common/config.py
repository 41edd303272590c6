"""Settings shared by every part: the error a bad setting raises, rate limits, durations."""

from __future__ import annotations

from dataclasses import dataclass

from common.tokens import parse_ttl


class ConfigError(Exception):
    """The configuration cannot be used; the message says why."""


@dataclass(frozen=True)
class RateLimit:
    """At most `count` events per `seconds`; count 0 disables the limit."""

    count: int
    seconds: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        text = text.strip()
        if text == "0":
            return cls(0, 1.0)
        count, _, seconds = text.partition("/")
        try:
            parsed = cls(int(count), float(seconds))
        except ValueError:
            raise ConfigError(f"rate limit must look like N/SECONDS or 0, not {text!r}") from None
        if parsed.count < 0 or parsed.seconds <= 0:
            raise ConfigError(f"rate limit must be positive: {text!r}")
        return parsed


def parse_duration(name: str, text: str) -> float:
    try:
        seconds = parse_ttl(text)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    if seconds <= 0:
        raise ConfigError(f"{name} must be positive")
    return seconds
