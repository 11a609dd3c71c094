"""A campaign's chart figures from its delivery rows (pure)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from mailer.figures import campaign_figures

T0 = datetime(2026, 5, 4, 9, 58, 30, tzinfo=timezone.utc)


def test_the_timeline_has_every_bucket_between_the_first_and_last_outcome() -> None:
    rows = [("a@x.org", "sent", T0), ("b@x.org", "bounced", T0 + timedelta(seconds=20)),
            ("c@y.org", "sent", T0 + timedelta(minutes=4)), ("d@y.org", "queued", T0 + timedelta(hours=5))]
    figures = campaign_figures(rows)
    assert figures.bucket == "minute"
    assert figures.timeline == [("09:58", {"sent": 1, "bounced": 1}), ("09:59", {}), ("10:00", {}), ("10:01", {}),
                                ("10:02", {"sent": 1})]  # the queued row has no outcome yet


def test_long_campaigns_use_hours_then_days() -> None:
    retried = [("a@x.org", "sent", T0), ("b@x.org", "deferred", T0 + timedelta(hours=20))]
    assert campaign_figures(retried).bucket == "hour" and len(campaign_figures(retried).timeline) == 21
    weeks = [("a@x.org", "sent", T0), ("b@x.org", "failed", T0 + timedelta(days=20))]
    figures = campaign_figures(weeks)
    assert figures.bucket == "day" and figures.timeline[0][0] == "2026-05-04" and len(figures.timeline) == 21


def test_domains_biggest_first_and_the_rest_together() -> None:
    rows = [(f"p{n}@d{n % 4}.org", "sent", T0) for n in range(10)] + [("z@tiny.org", "bounced", T0)]
    figures = campaign_figures(rows, top_domains=2)
    assert figures.domains == [("d0.org", {"sent": 3}), ("d1.org", {"sent": 3}), ("…", {"sent": 4, "bounced": 1})]


def test_no_rows_no_timeline() -> None:
    assert campaign_figures([]).timeline == [] and campaign_figures([]).domains == []
