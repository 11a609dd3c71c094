"""The bounce policy: what one bounce does to an address. Pure, and the same for a refusal met during the
SMTP session and for a bounce message read from the mailbox later.

The Mailman model: every address has a score. A hard bounce that names the address as the trouble (unknown
user, no such domain, disabled account) suppresses it at once. Otherwise a
bounce adds to the score (soft +0.5, hard +1), at most once a day, so one bad day (a relay that bounced a
whole batch) suppresses nobody; the score starts again from zero after `reset_days` without bounces; the
address is suppressed when the score reaches `threshold`. Blocks of the message or of our reputation
(spam filters, policy, rate limits, greylisting, size) say nothing about the address and are not counted
unless `count_blocks` is set.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from mailer.bounce_meaning import ABOUT_THE_ADDRESS

# The hard bounces that say the address itself does not work: only these suppress at once. A hard refusal
# for another reason (a 5.x.x with no telling words, a header error) is scored like any other bounce.
ADDRESS_REFUSED = {"mailbox-unknown", "domain-unknown", "account-disabled"}


@dataclass(frozen=True)
class BouncePolicy:
    hard_suppresses: bool = True  # a hard bounce naming the address (ADDRESS_REFUSED) suppresses at once
    soft_weight: float = 0.5
    hard_weight: float = 1.0  # counted when hard bounces do not suppress at once
    threshold: float = 5.0  # suppress at this score (Mailman's default)
    reset_days: int = 7  # this many days without a bounce: the score starts again
    count_blocks: bool = False  # spam, policy, rate and size refusals count towards the score too

    def describe(self) -> str:
        """One line for reports: the rules in force."""
        hard = ("a hard bounce naming the address suppresses it at once, other hard +" + f"{self.hard_weight:g}"
                if self.hard_suppresses else f"hard +{self.hard_weight:g}")
        blocks = "" if self.count_blocks else "; blocks of the message or sender are not counted"
        return (f"{hard}; soft +{self.soft_weight:g}, at most once a day; suppressed at {self.threshold:g}; "
                f"reset after {self.reset_days} days without bounces{blocks}")


@dataclass(frozen=True)
class BounceScore:
    """An address's bounce record: its score and the last day a bounce was counted."""

    score: float = 0.0
    last_day: date | None = None


@dataclass(frozen=True)
class Decision:
    score: BounceScore  # the record after this bounce
    suppress: bool
    why: str  # for the event on record and the report


def decide(policy: BouncePolicy, current: BounceScore, kind: str, reason: str, on: date) -> Decision:
    """What one bounce of this kind ('hard' or 'soft') and reason (mailer.bounce_meaning) does on this day."""
    if kind == "hard" and policy.hard_suppresses and reason in ADDRESS_REFUSED:
        return Decision(BounceScore(max(current.score, policy.threshold), on), True, f"hard bounce ({reason})")
    if reason not in ABOUT_THE_ADDRESS and not policy.count_blocks:
        return Decision(current, False, f"not counted: {reason} is about the message or sender, not the address")
    score = current.score
    if current.last_day is not None and (on - current.last_day).days > policy.reset_days:
        score = 0.0  # stale: the address has worked for a while
    elif current.last_day == on:
        return Decision(current, False, f"already counted today (score {score:g})")
    score += policy.hard_weight if kind == "hard" else policy.soft_weight
    suppress = score >= policy.threshold
    why = f"score {score:g} of {policy.threshold:g}" + (" reached" if suppress else "")
    return Decision(BounceScore(score, on), suppress, why)
