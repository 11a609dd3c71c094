"""A campaign's figures for the report page's charts, computed from its delivery rows: pure, values in and out."""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailer.models import DeliveryStatus

IN_PROGRESS = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING)  # no outcome yet: not on the timeline
# (bucket name, its length, label format), the first whose buckets cover the campaign's span in <= 180
BUCKETS = (("minute", timedelta(minutes=1), "%H:%M"), ("hour", timedelta(hours=1), "%d/%m %H:00"),
           ("day", timedelta(days=1), "%Y-%m-%d"))
MAX_BUCKETS = 180


@dataclass(frozen=True)
class CampaignFigures:
    """Outcomes over time (every bucket from the first outcome to the last, empty ones included, so the
    axis is linear in time), deliveries by recipient domain (biggest first), and the bucket's name."""

    timeline: list[tuple[str, dict[str, int]]]
    domains: list[tuple[str, dict[str, int]]]
    bucket: str


def campaign_figures(rows: Iterable[tuple[str, str, datetime]], *, top_domains: int = 8) -> CampaignFigures:
    """rows: (address, status, time of the last change) of each delivery."""
    rows = list(rows)
    outcomes = [(status, at) for _, status, at in rows if status not in IN_PROGRESS]
    domains: dict[str, Counter[str]] = defaultdict(Counter)
    for email, status, _ in rows:
        domains[email.rpartition("@")[2]][status] += 1
    biggest = sorted(domains.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    if len(biggest) > top_domains:
        rest: Counter[str] = Counter()
        for _, counts in biggest[top_domains:]:
            rest.update(counts)
        biggest = biggest[:top_domains] + [("…", rest)]
    name, timeline = _timeline(outcomes)
    return CampaignFigures(timeline, [(d, dict(c)) for d, c in biggest], name)


def _timeline(outcomes: list[tuple[str, datetime]]) -> tuple[str, list[tuple[str, dict[str, int]]]]:
    if not outcomes:
        return "minute", []
    first, last = min(at for _, at in outcomes), max(at for _, at in outcomes)
    name, step, fmt = next((b for b in BUCKETS if (last - first) / b[1] < MAX_BUCKETS), BUCKETS[-1])
    start = _floor(first, step)
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    for status, at in outcomes:
        counts[int((at - start) / step)][status] += 1
    span = int((last - start) / step) + 1
    return name, [((start + n * step).strftime(fmt), dict(counts.get(n, {}))) for n in range(span)]


def _floor(moment: datetime, step: timedelta) -> datetime:
    if step >= timedelta(days=1):
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if step >= timedelta(hours=1):
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(second=0, microsecond=0)
