"""The bounce policy, pure: one bad day suppresses nobody; a hard bounce naming the address suppresses at once."""
from __future__ import annotations

from datetime import date, timedelta

from mailer.policy import BouncePolicy, BounceScore, decide

DAY = date(2026, 12, 1)
POLICY = BouncePolicy()


def test_a_hard_bounce_suppresses_at_once() -> None:
    decision = decide(POLICY, BounceScore(), "hard", "mailbox-unknown", DAY)
    assert decision.suppress and decision.score.last_day == DAY


def test_soft_bounces_count_once_a_day_so_one_bad_day_suppresses_nobody() -> None:
    score = BounceScore()
    for _ in range(50):  # a relay that bounced a whole batch fifty times in one day
        decision = decide(POLICY, score, "soft", "mailbox-full", DAY)
        score = decision.score
        assert not decision.suppress
    assert score.score == 0.5


def test_soft_bounces_on_ten_days_in_a_row_reach_the_threshold() -> None:
    score, suppressed_on = BounceScore(), None
    for n in range(12):
        decision = decide(POLICY, score, "soft", "mailbox-full", DAY + timedelta(days=n))
        score = decision.score
        if decision.suppress and suppressed_on is None:
            suppressed_on = n
    assert suppressed_on == 9  # 10 x 0.5 = 5.0


def test_the_score_starts_again_after_a_week_without_bounces() -> None:
    stale = BounceScore(4.5, DAY)
    decision = decide(POLICY, stale, "soft", "mailbox-full", DAY + timedelta(days=8))
    assert not decision.suppress and decision.score.score == 0.5
    fresh = decide(POLICY, stale, "soft", "mailbox-full", DAY + timedelta(days=7))
    assert fresh.suppress  # within the week it still counts


def test_blocks_of_the_message_or_sender_are_not_counted_unless_asked() -> None:
    for reason in ("spam-block", "policy-block", "rate-limited", "greylisted", "message-too-large", "connection"):
        decision = decide(POLICY, BounceScore(4.5, DAY - timedelta(days=1)), "soft", reason, DAY)
        assert not decision.suppress and decision.score == BounceScore(4.5, DAY - timedelta(days=1)), reason
    counted = decide(BouncePolicy(count_blocks=True), BounceScore(4.5, DAY - timedelta(days=1)), "soft", "spam-block", DAY)
    assert counted.suppress


def test_hard_bounces_can_be_scored_instead() -> None:
    policy = BouncePolicy(hard_suppresses=False, threshold=2.0)
    first = decide(policy, BounceScore(), "hard", "mailbox-unknown", DAY)
    assert not first.suppress and first.score.score == 1.0
    assert decide(policy, first.score, "hard", "mailbox-unknown", DAY + timedelta(days=1)).suppress


def test_a_hard_refusal_that_does_not_name_the_address_is_scored_not_suppressing() -> None:
    """'554 5.7.0 header error' reads as hard but is about the message: one bad campaign must not
    suppress every recipient at once."""
    decision = decide(POLICY, BounceScore(), "hard", "other", DAY)
    assert not decision.suppress and decision.score.score == POLICY.hard_weight
