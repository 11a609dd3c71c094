"""When a deferred delivery is tried again: exponential backoff with jitter, up to a maximum age. Pure."""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RetryRule:
    backoff: tuple[int, ...] = (300, 900, 3600, 14400)  # seconds before attempt 2, 3, 4, 5; then doubling
    max_backoff: int = 21600  # the doubling stops here
    max_attempts: int = 30  # deferred this many times -> failed
    max_age: int = 3 * 86400  # a delivery still deferred this long after it was queued -> failed
    jitter: float = 0.2  # each wait is scattered by up to this fraction, so a relay's retries do not all come at once

    def wait(self, attempts: int, draw: Callable[[], float] = random.random) -> float:
        """Seconds to wait after the `attempts`-th attempt was deferred."""
        listed = self.backoff or (300,)
        if attempts <= len(listed):
            base = float(listed[max(attempts, 1) - 1])
        else:
            base = min(listed[-1] * 2.0 ** (attempts - len(listed)), max(self.max_backoff, listed[-1]))
        return base * (1 + self.jitter * (2 * draw() - 1))

    def next_attempt(
        self, attempts: int, queued_at: datetime, now: datetime, draw: Callable[[], float] = random.random
    ) -> datetime | None:
        """When to try again after a deferral, or None: out of attempts, or the retry would fall past the maximum age."""
        if attempts >= self.max_attempts:
            return None
        due = now + timedelta(seconds=self.wait(attempts, draw))
        if (due - queued_at).total_seconds() > self.max_age:
            return None
        return due

    def describe(self) -> str:
        hours = self.max_age / 3600
        return (
            f"deferred deliveries are retried after {', '.join(str(s) for s in self.backoff)} s, then doubling "
            f"up to {self.max_backoff} s (±{self.jitter:.0%}), for at most {self.max_attempts} attempts and "
            f"{hours:g} h; then they fail"
        )
