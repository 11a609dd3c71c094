"""A relay's rate limits as token buckets: at most N messages per second, minute and hour, and optionally
per recipient domain. Pure: the buckets' state lives in the database (mailer.ledger.take_tokens), so every
worker on every machine draws from the same ones, and a restart does not refill them."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bucket:
    name: str  # e.g. 'smtp://relay.example:587 per minute'
    rate: float  # tokens added per second
    capacity: float  # the most it holds: the largest burst

    def wait_for(self, tokens: float) -> float:
        """Seconds until a bucket holding `tokens` holds one more."""
        return max(0.0, (1.0 - tokens) / self.rate)


@dataclass(frozen=True)
class RateLimits:
    per_second: float = 0.0  # 0: no limit
    per_minute: float = 0.0
    per_hour: float = 0.0
    per_domain_per_minute: float = 0.0  # to each recipient domain

    def __bool__(self) -> bool:
        return any((self.per_second, self.per_minute, self.per_hour, self.per_domain_per_minute))

    def buckets(self, relay: str, domain: str = "") -> list[Bucket]:
        """The buckets one message to `domain` through `relay` takes a token from. Each holds at most a tenth
        of its window's allowance (at least one), so a send that starts with full buckets keeps to its
        rate within a few per cent instead of bursting a whole window at once."""
        found = []
        for per, seconds, label in ((self.per_second, 1, "second"), (self.per_minute, 60, "minute"), (self.per_hour, 3600, "hour")):
            if per > 0:
                found.append(Bucket(f"{relay} per {label}", per / seconds, max(1.0, per / 10)))
        if self.per_domain_per_minute > 0 and domain:
            per = self.per_domain_per_minute
            found.append(Bucket(f"{relay} to {domain} per minute", per / 60, max(1.0, per / 10)))
        return found

    def describe(self) -> str:
        parts = [f"{n:g}/{unit}" for n, unit in ((self.per_second, "s"), (self.per_minute, "min"), (self.per_hour, "h")) if n]
        if self.per_domain_per_minute:
            parts.append(f"{self.per_domain_per_minute:g}/min to each domain")
        return ", ".join(parts) or "no limit"
