"""The one place a bounce is written: its event, and what the bounce policy makes of the address.

Used inside the caller's transaction by the dispatcher's ledger (replies met during the SMTP session) and
by the inbox (bounce messages read later), so both are recorded and judged alike.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from mailer.bounce_meaning import Bounce, reason_group
from mailer.models import BounceEvent
from mailer.policy import BounceScore, BouncePolicy, Decision, decide
from subscribers import store
from subscribers.statuses import SubscriberStatus

E = BounceEvent.__table__.c  # type: ignore[attr-defined]


def log_bounce(
    conn: Connection, bounce: Bounce, *, delivery_id: int | None, campaign_id: int | None, subscriber_id: int | None,
    now: datetime, inbound_id: int | None = None,
) -> int:
    """Write the bounce event; returns its id. The policy is applied separately (apply_policy), because the
    dispatcher holds SMTP-time bounces back until the relay has shown it delivers."""
    return conn.execute(
        insert(BounceEvent.__table__).values(  # type: ignore[attr-defined]
            delivery_id=delivery_id, campaign_id=campaign_id, subscriber_id=subscriber_id, kind=bounce.kind,
            source=bounce.source, smtp_code=bounce.code, reason=clean(bounce.text, 1000), reason_group=clean(reason_group(bounce.text), 300),
            status=clean(bounce.status, 20), category=bounce.reason, recipient=clean(bounce.recipient, 320),
            reporting_mta=clean(bounce.reporting_mta, 255), inbound_id=inbound_id, created_at=now,
        ).returning(E.id)
    ).scalar_one()


def clean(text: str, limit: int) -> str:
    """Text from a message as a column can hold it: no NUL (PostgreSQL refuses it in text; a bounce message
    may carry one), at most `limit` characters."""
    return text.replace("\x00", "")[:limit]


def apply_policy(
    conn: Connection, policy: BouncePolicy, subscriber_id: int, kind: str, reason: str, now: datetime,
    campaign_id: int | None = None,
) -> Decision | None:
    """Score the bounce against the subscriber's record and suppress them if the policy says so."""
    record = store.bounce_record(conn, subscriber_id)
    if record is None:
        return None
    decision = decide(policy, BounceScore(*record), kind, reason, now.date())
    store.set_bounce_record(conn, subscriber_id, decision.score.score, decision.score.last_day)
    if decision.suppress:
        store.suppress(conn, subscriber_id, SubscriberStatus.BOUNCED, method="bounce", detail=decision.why, campaign_id=campaign_id)
    return decision


def settle(conn: Connection, policy: BouncePolicy, event_ids: list[int], now: datetime) -> int:
    """Apply the policy to SMTP-time bounce events held back until a later message got through (a relay
    that refuses everything must not burn the list). Returns how many subscribers were suppressed."""
    if not event_ids:
        return 0
    rows = conn.execute(
        select(E.subscriber_id, E.kind, E.category, E.campaign_id).where(E.id.in_(event_ids), E.subscriber_id.is_not(None)).order_by(E.id)
    ).all()
    suppressed = 0
    for subscriber_id, kind, category, campaign_id in rows:
        decision = apply_policy(conn, policy, subscriber_id, kind, category or "other", now, campaign_id)
        suppressed += bool(decision and decision.suppress)
    return suppressed


def soften(conn: Connection, event_ids: list[int]) -> None:
    """SMTP-time bounces a relay gave wholesale: kept on record as soft, judged by no policy."""
    conn.execute(update(BounceEvent.__table__).where(E.id.in_(event_ids)).values(kind="soft"))  # type: ignore[attr-defined]
