"""The ledger's report queries: a campaign's delivery report and the campaign history.

Plain SQL with ':name' placeholders, run by a mailer.reader.Reader on SQLite or PostgreSQL alike; the
models they fill and their renderings are in mailer.report.
"""
from __future__ import annotations

from datetime import datetime, timezone

from mailer.errors import NotFound
from mailer.reader import Reader
from mailer.report import STATUS_ORDER, BounceReason, CampaignLine, DomainBounces, EditionFigures, ReasonCount, Report
from mailer.statuses import CampaignStatus, DeliveryStatus
from subscribers.statuses import EventKind

CAMPAIGN = """
SELECT c.id, c.newsletter, c.issue, COALESCE(l.name, CAST(c.list_id AS VARCHAR)), c.subject, c.status,
       c.started_at, c.finished_at, c.sending_seconds, c.status_reason
FROM campaign AS c LEFT JOIN mailing_list AS l ON l.id = c.list_id
"""
COUNT_BY_STATUS = "SELECT status, COUNT(*) FROM delivery WHERE campaign_id = :cid GROUP BY status"
BOUNCED_BY_KIND = "SELECT kind, COUNT(DISTINCT delivery_id) FROM bounce_event WHERE campaign_id = :cid GROUP BY kind"
TOP_REASONS = """
SELECT kind, smtp_code, reason_group, COUNT(*) AS n FROM bounce_event WHERE campaign_id = :cid
GROUP BY kind, smtp_code, reason_group ORDER BY n DESC, smtp_code LIMIT :top
"""
UNSUBSCRIBED = "SELECT COUNT(*) FROM subscriber_event WHERE campaign_id = :cid AND kind = :kind"
COMPLAINED = "SELECT COUNT(DISTINCT subscriber_id) FROM subscriber_event WHERE campaign_id = :cid AND kind = :kind AND method = 'complaint'"
SUPPRESSED = "SELECT COUNT(DISTINCT subscriber_id) FROM subscriber_event WHERE campaign_id = :cid AND kind = :kind AND method = 'bounce'"
BY_REASON = """
SELECT source, kind, category, COUNT(DISTINCT delivery_id) AS n FROM bounce_event WHERE campaign_id = :cid
GROUP BY source, kind, category ORDER BY n DESC, source, kind, category
"""
BOUNCED_ADDRESSES = """
SELECT d.email, MIN(b.kind) FROM bounce_event AS b JOIN delivery AS d ON d.id = b.delivery_id
WHERE b.campaign_id = :cid GROUP BY d.id, d.email
"""
NEXT_RETRY = """
SELECT MIN(next_attempt_at) FROM delivery WHERE campaign_id = :cid AND status = :deferred AND next_attempt_at > :now
"""
BY_EDITION = "SELECT language, status, COUNT(*) FROM delivery WHERE campaign_id = :cid GROUP BY language, status"
BOUNCED_BY_EDITION = """
SELECT d.language, b.kind, COUNT(DISTINCT b.delivery_id) FROM bounce_event AS b JOIN delivery AS d ON d.id = b.delivery_id
WHERE b.campaign_id = :cid GROUP BY d.language, b.kind
"""
UNSUBSCRIBED_BY_EDITION = """
SELECT d.language, COUNT(*) FROM subscriber_event AS e
JOIN delivery AS d ON d.campaign_id = e.campaign_id AND d.subscriber_id = e.subscriber_id
WHERE e.campaign_id = :cid AND e.kind = :kind GROUP BY d.language
"""
HISTORY = """
SELECT c.id, c.newsletter, c.issue, l.name, c.status, c.started_at,
       COUNT(d.id),
       SUM(CASE WHEN d.status = :sent THEN 1 ELSE 0 END),
       SUM(CASE WHEN d.status = :bounced THEN 1 ELSE 0 END),
       SUM(CASE WHEN d.status = :deferred THEN 1 ELSE 0 END),
       SUM(CASE WHEN d.status = :failed THEN 1 ELSE 0 END),
       (SELECT COUNT(*) FROM subscriber_event AS e WHERE e.campaign_id = c.id AND e.kind = :unsubscribed)
FROM (SELECT * FROM campaign ORDER BY id DESC LIMIT :limit) AS c
JOIN mailing_list AS l ON l.id = c.list_id
LEFT JOIN delivery AS d ON d.campaign_id = c.id
GROUP BY c.id, c.newsletter, c.issue, l.name, c.status, c.started_at
ORDER BY c.id DESC
"""


def delivery_report(db: Reader, selector: str | None = None, *, top: int = 5) -> Report:
    """The report of a campaign chosen by id, by issue id (its newest campaign), or the newest of all."""
    if selector is None:
        found = db.rows(CAMPAIGN + "ORDER BY c.id DESC LIMIT 1")
    elif selector.isdigit():
        found = db.rows(CAMPAIGN + "WHERE c.id = :id", id=int(selector))
    else:
        found = db.rows(CAMPAIGN + "WHERE c.issue = :issue ORDER BY c.id DESC LIMIT 1", issue=selector)
    if not found:
        raise NotFound("no campaign yet" if selector is None else f"no campaign {selector!r}")
    cid, newsletter, issue, list_name, subject, status, started, finished, seconds, status_reason = found[0]
    counts = {s: 0 for s in STATUS_ORDER} | dict(db.rows(COUNT_BY_STATUS, cid=cid))
    kinds: dict[str, int] = dict(db.rows(BOUNCED_BY_KIND, cid=cid))
    reasons = [BounceReason(*row) for row in db.rows(TOP_REASONS, cid=cid, top=top)]
    duration = seconds or None  # summed over the runs: reruns days apart do not dilute the rate
    waiting = status != CampaignStatus.DONE and not (counts["queued"] or counts["sending"]) and counts["deferred"] > 0
    return Report(
        campaign_id=cid,
        newsletter=newsletter,
        issue=issue,
        list_name=list_name,
        subject=subject,
        status=status,
        status_reason=status_reason or "",
        total=sum(counts.values()),
        counts=counts,
        bounced_hard=kinds.get("hard", 0),
        bounced_soft=kinds.get("soft", 0),
        unsubscribed=db.value(UNSUBSCRIBED, cid=cid, kind=EventKind.UNSUBSCRIBED.value),
        complained=db.value(COMPLAINED, cid=cid, kind=EventKind.SUPPRESSED.value),
        suppressed=db.value(SUPPRESSED, cid=cid, kind=EventKind.SUPPRESSED.value),
        bounces_by_reason=[ReasonCount(source, kind, reason or "other", n) for source, kind, reason, n in db.rows(BY_REASON, cid=cid)],
        bounces_by_domain=bounces_by_domain(db.rows(BOUNCED_ADDRESSES, cid=cid)),
        started_at=db.time(started),
        finished_at=db.time(finished),
        duration_seconds=duration,
        rate_per_second=(counts[DeliveryStatus.SENT] / duration) if duration else None,
        top_reasons=reasons,
        retry_at=next_retry_at(db, cid) if waiting else None,
        editions=edition_figures(db, cid),
    )


def bounces_by_domain(rows: list[tuple[str, str]], top: int = 10) -> list[DomainBounces]:
    """Bounced deliveries by recipient domain, most first; a delivery that met a hard bounce counts as hard
    ('hard' sorts before 'soft', so MIN picks it)."""
    counts: dict[str, list[int]] = {}
    for address, kind in rows:
        pair = counts.setdefault(address.rpartition("@")[2], [0, 0])
        pair[0 if kind == "hard" else 1] += 1
    ordered = sorted(counts.items(), key=lambda kv: (-sum(kv[1]), kv[0]))[:top]
    return [DomainBounces(domain, hard, soft) for domain, (hard, soft) in ordered]


def edition_figures(db: Reader, campaign_id: int) -> dict[str, EditionFigures]:
    """The campaign's figures split by the language edition each delivery got."""
    counts: dict[str, dict[str, int]] = {}
    for language, status, n in db.rows(BY_EDITION, cid=campaign_id):
        counts.setdefault(language, {s: 0 for s in STATUS_ORDER})[status] = n
    bounced = {(language, kind): n for language, kind, n in db.rows(BOUNCED_BY_EDITION, cid=campaign_id)}
    left = dict(db.rows(UNSUBSCRIBED_BY_EDITION, cid=campaign_id, kind=EventKind.UNSUBSCRIBED.value))
    return {
        language: EditionFigures(figures, bounced.get((language, "hard"), 0), bounced.get((language, "soft"), 0), left.get(language, 0))
        for language, figures in counts.items()
    }


def next_retry_at(db: Reader, campaign_id: int) -> datetime | None:
    """When the campaign's next deferred delivery is due (None if none is in the future)."""
    now = db.time_param(datetime.now(timezone.utc))
    return db.time(db.value(NEXT_RETRY, cid=campaign_id, deferred=DeliveryStatus.DEFERRED.value, now=now))


def campaign_history(db: Reader, limit: int = 24) -> list[CampaignLine]:
    """The newest campaigns first, with their delivery counts."""
    statuses = {s: DeliveryStatus(s).value for s in ("sent", "bounced", "deferred", "failed")}
    rows = db.rows(HISTORY, limit=limit, unsubscribed=EventKind.UNSUBSCRIBED.value, **statuses)
    return [
        CampaignLine(cid, newsletter, issue, name, status, db.time(started), *(int(n or 0) for n in figures))
        for cid, newsletter, issue, name, status, started, *figures in rows
    ]
