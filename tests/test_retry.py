"""Pure rules of the send: when a deferral is retried (mailer.retry) and which buckets a message draws from
(mailer.rate_limits)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from mailer.rate_limits import RateLimits
from mailer.retry import RetryRule

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=timezone.utc)


def test_backoff_follows_the_list_then_doubles_up_to_its_ceiling() -> None:
    rule = RetryRule(backoff=(300, 900, 3600, 14400), max_backoff=21600, jitter=0.0)
    assert [rule.wait(n) for n in range(1, 8)] == [300, 900, 3600, 14400, 21600, 21600, 21600]


def test_jitter_scatters_each_wait_within_its_share() -> None:
    rule = RetryRule(backoff=(1000,), jitter=0.2)
    assert rule.wait(1, draw=lambda: 0.0) == 800 and rule.wait(1, draw=lambda: 1.0) == 1200
    assert rule.wait(1, draw=lambda: 0.5) == 1000


def test_retries_end_at_the_maximum_age_or_the_maximum_attempts() -> None:
    rule = RetryRule(backoff=(3600,), max_backoff=3600, max_attempts=100, max_age=3 * 86400, jitter=0.0)
    assert rule.next_attempt(1, T0, T0) == T0 + timedelta(hours=1)
    assert rule.next_attempt(70, T0, T0 + timedelta(hours=70)) == T0 + timedelta(hours=71)
    assert rule.next_attempt(72, T0, T0 + timedelta(hours=71, minutes=30)) is None  # would fall past 3 days
    assert RetryRule(max_attempts=5, jitter=0.0).next_attempt(5, T0, T0) is None


def test_a_message_draws_from_the_relays_buckets_and_its_domains() -> None:
    limits = RateLimits(per_second=20, per_hour=3600, per_domain_per_minute=120)
    buckets = {b.name: (b.rate, b.capacity) for b in limits.buckets("smtp://relay:587", "libero.it")}
    assert buckets == {
        "smtp://relay:587 per second": (20, 2),
        "smtp://relay:587 per hour": (1, 360),
        "smtp://relay:587 to libero.it per minute": (2, 12),
    }
    assert not RateLimits() and RateLimits(per_minute=1)
    assert limits.describe() == "20/s, 3600/h, 120/min to each domain"
