"""The delivery ledger's named queries: campaigns, enqueue, claim, record, release.

Claiming is a status compare-and-set under a lease: a row moves queued/deferred -> sending only if it is
still queued/deferred, and each result is written (and committed) the moment the SMTP reply arrives.
On PostgreSQL the claim's subquery takes row locks with SKIP LOCKED, so several workers can share a campaign.
"""
from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, case, func, literal, select as core_select, text, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from mailer.bounce_log import Bounce, apply_policy, log_bounce, settle, soften
from mailer.errors import CampaignError
from mailer.models import _PENDING_SQL, Campaign, CampaignEdition, CampaignStatus, Delivery, DeliveryAttempt, DeliveryStatus, RateBucket
from mailer.rate_limits import Bucket
from subscribers.models import MailingList, Subscriber, Subscription, utcnow
from subscribers.store import active_members, active_membership

if TYPE_CHECKING:
    from mailer.policy import BouncePolicy
    from mailer.editions import Editions
    from mailer.issue import Issue


def find_campaign(session: Session, issue: Issue, mailing_list: MailingList) -> Campaign | None:
    return session.exec(
        select(Campaign).where(
            Campaign.newsletter == issue.newsletter, Campaign.issue == issue.issue, Campaign.list_id == mailing_list.id
        )
    ).first()


def open_campaign(
    session: Session, editions: Editions, mailing_list: MailingList, *, allow_changed: bool, at: datetime | None = None
) -> Campaign:
    """The campaign of this issue and list, created on first use, with its language editions on record, and
    set to sending (or, with `at`, scheduled for then). A changed issue file (any edition) is refused once
    mail has gone out, unless allowed: recipients of one campaign should get the same text. A paused or
    cancelled campaign is refused: resuming is the operator's explicit step (`mailer campaign resume`)."""
    campaign = _open_campaign(session, editions, mailing_list, allow_changed=allow_changed)
    assert campaign.id is not None
    refused = halted_campaign(campaign)
    if refused:
        raise CampaignError(refused)
    campaign.status = CampaignStatus.SCHEDULED if at is not None else CampaignStatus.SENDING
    campaign.scheduled_at = at
    session.add(campaign)
    kept = {e.language: e for e in session.exec(select(CampaignEdition).where(CampaignEdition.campaign_id == campaign.id))}
    for language, issue in editions.by_language.items():
        row = kept.get(language) or CampaignEdition(campaign_id=campaign.id, language=language, subject=issue.subject)
        row.subject, row.issue_path, row.issue_source = issue.subject, issue.path, issue.source
        session.add(row)
    session.commit()
    session.refresh(campaign)
    return campaign


def campaign_editions(session: Session, campaign_id: int) -> list[CampaignEdition]:
    """The language editions recorded for a campaign, as `send` opened it."""
    return list(session.exec(select(CampaignEdition).where(CampaignEdition.campaign_id == campaign_id)))


def halted_campaign(campaign: Campaign) -> str | None:
    """Why a send may not go on with this campaign (paused or cancelled), or None."""
    if campaign.status not in (CampaignStatus.PAUSED, CampaignStatus.CANCELLED):
        return None
    why = f" ({campaign.status_reason})" if campaign.status_reason else ""
    hint = f"run `mailer campaign resume {campaign.id}` first" if campaign.status == CampaignStatus.PAUSED else "nothing more is sent"
    return f"campaign {campaign.id} of issue {campaign.issue} is {campaign.status}{why}: {hint}"


def _open_campaign(session: Session, editions: Editions, mailing_list: MailingList, *, allow_changed: bool) -> Campaign:
    issue, source, digest = editions.primary, editions.primary.source, editions.digest
    campaign = find_campaign(session, issue, mailing_list)
    if campaign is None:
        assert mailing_list.id is not None
        campaign = Campaign(
            newsletter=issue.newsletter,
            issue=issue.issue,
            list_id=mailing_list.id,
            subject=issue.subject,
            issue_path=issue.path,
            issue_digest=digest,
            issue_source=source,
        )
        session.add(campaign)
        try:
            session.commit()
        except IntegrityError:  # another `send` of the same issue created it a moment ago: use theirs
            session.rollback()
            campaign = find_campaign(session, issue, mailing_list)
            if campaign is None:
                raise
            return _open_campaign(session, editions, mailing_list, allow_changed=allow_changed)
        session.refresh(campaign)
        return campaign
    if campaign.issue_digest != digest:
        what = issue.path if len(editions.by_language) == 1 else f"{issue.path} or another edition of issue {issue.issue}"
        if not allow_changed:
            raise CampaignError(
                f"{what} changed since campaign {campaign.id} began sending it to list "
                f"'{mailing_list.name}'; the rest of the list would get a different text. "
                "Pass --allow-changed to continue with the new text."
            )
        campaign.issue_digest, campaign.issue_source, campaign.subject = digest, source, issue.subject
    return campaign


D = Delivery.__table__.c  # type: ignore[attr-defined]
S = Subscriber.__table__.c  # type: ignore[attr-defined]
M = Subscription.__table__.c  # type: ignore[attr-defined]
C = Campaign.__table__.c  # type: ignore[attr-defined]
PENDING = (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED)
PENDING_CLAUSE = text(_PENDING_SQL)  # as the partial index ix_delivery_due is written, so the claim can walk it


def enqueue(engine: Engine, campaign: Campaign, languages: Sequence[str] = (), fallback: str = "") -> int:
    """One delivery per active subscriber of the campaign's list; running it again adds only newcomers.
    Each gets the edition in the subscriber's language if there is one (`languages`), else `fallback`'s."""
    now = utcnow()
    assert campaign.list_id is not None
    members = active_members(campaign.list_id).subquery()
    language = members.c.language
    edition = case((language.in_(list(languages)), language), else_=literal(fallback)) if languages else literal(fallback)
    recipients = core_select(
        literal(campaign.id), members.c.id, members.c.email, edition, literal(str(DeliveryStatus.QUEUED)), literal(0),
        literal(now, D.next_attempt_at.type), literal(now, D.created_at.type), literal(now, D.updated_at.type),
    ).where(true())  # SQLite reads INSERT ... SELECT ... ON CONFLICT only when the SELECT has a WHERE
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(Delivery.__table__)  # type: ignore[attr-defined]
        .from_select(
            ["campaign_id", "subscriber_id", "email", "language", "status", "attempts", "next_attempt_at", "created_at", "updated_at"],
            recipients,
        )
        .on_conflict_do_nothing(index_elements=["campaign_id", "subscriber_id"])
        .execution_options(preserve_rowcount=True)  # psycopg forgets it once SQLAlchemy closes the cursor
    )
    with engine.begin() as conn:
        added = max(conn.execute(statement).rowcount or 0, 0)
    if added >= 10_000 and engine.dialect.name == "postgresql":
        with engine.begin() as conn:  # fresh statistics (a sample: ~0.1 s), so the claim walks ix_delivery_due from its first batch
            conn.execute(text("ANALYZE delivery"))
    return added


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    subscriber_id: int
    email: str
    name: str
    token_version: int
    still_subscribed: bool
    language: str = ""  # the edition this delivery gets ('' for deliveries enqueued before editions)
    attempts: int = 1  # this attempt's number
    queued_at: datetime | None = None  # when the delivery was enqueued: retries stop at a maximum age from here


@dataclass(frozen=True)
class Expired:
    requeued: int  # claimed but never handed to SMTP: safe to send
    uncertain: int  # handed to SMTP, outcome unknown: not resent unless an operator asks


def expire_leases(engine: Engine, campaign_id: int, dead_owners: Sequence[str] = ()) -> Expired:
    """Settle rows left 'sending' by a crashed or killed worker, past their lease or held by an owner known
    to be dead: those it never handed to SMTP go back to the queue; those it did may have been delivered
    and become 'uncertain' (at most one per connection the dead run had open)."""
    now = utcnow()
    lapsed = D.lease_until < now
    if dead_owners:
        lapsed = lapsed | D.lease_owner.in_(list(dead_owners))
    stale = (D.campaign_id == campaign_id, D.status == DeliveryStatus.SENDING, lapsed)
    table = Delivery.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        requeued = conn.execute(
            update(table)
            .where(*stale, D.handed_at.is_(None))
            .values(status=DeliveryStatus.QUEUED, attempts=D.attempts - 1, lease_owner=None, lease_until=None, updated_at=now)
        )
        uncertain = conn.execute(
            update(table).where(*stale).values(status=DeliveryStatus.UNCERTAIN, lease_owner=None, updated_at=now)
        )
        return Expired(max(requeued.rowcount or 0, 0), max(uncertain.rowcount or 0, 0))


def mark_handed(engine: Engine, delivery_id: int, owner: str) -> bool:
    """Note that this delivery is about to go to SMTP. False if the lease was lost: then it must not be sent."""
    with engine.begin() as conn:
        return mark_handed_write(delivery_id, owner).run(conn)  # type: ignore[no-any-return]


def _held(id_param: str = "delivery_id") -> tuple[Any, ...]:
    """The row with this id, still 'sending' under this owner's lease (the guard of every write of a claim)."""
    return (D.id == bindparam(id_param), D.status == DeliveryStatus.SENDING, D.lease_owner == bindparam("owner"))


# The writes of every message, built once: a statement built per call costs more than running it.
_MARK_HANDED = update(Delivery.__table__).where(*_held()).values(handed_at=bindparam("now"))  # type: ignore[attr-defined]


@dataclass(frozen=True)
class RowWrite:
    """One UPDATE of one held row, as a statement and its parameters, so that a group commit can send many of
    the same statement in one executemany (mailer.threaded_ledger). `held` is the answer when the row was
    still held, `lost` when another run had settled its lease (nothing written)."""

    statement: Any
    params: dict[str, object]
    held: Any
    lost: Any

    def run(self, conn: Connection) -> Any:
        return self.held if conn.execute(self.statement, self.params).rowcount == 1 else self.lost


def mark_handed_write(delivery_id: int, owner: str) -> RowWrite:
    """mark_handed as a RowWrite, for a transaction of the caller's: True if the row was still held."""
    return RowWrite(_MARK_HANDED, {"delivery_id": delivery_id, "owner": owner, "now": utcnow()}, True, False)


def unhand(engine: Engine, delivery_id: int, owner: str) -> None:
    """Take back mark_handed: the relay could not be reached, so nothing of this delivery left us."""
    with engine.begin() as conn:
        conn.execute(
            update(Delivery.__table__)  # type: ignore[attr-defined]
            .where(D.id == delivery_id, D.status == DeliveryStatus.SENDING, D.lease_owner == owner)
            .values(handed_at=None)
        )


@functools.cache
def _claim_statements() -> tuple[Any, Any]:
    """The claim's two statements, built once (building and caching a statement per claim cost more than
    running it): move the first `size` due rows to 'sending' under the lease, then read what they need."""
    due = (
        core_select(D.id)
        .where(D.campaign_id == bindparam("campaign"), PENDING_CLAUSE, D.next_attempt_at <= bindparam("claimed_at"))
        .where(core_select(C.id).where(C.id == bindparam("campaign"), C.status == CampaignStatus.SENDING).exists())  # paused: nothing
        .order_by(D.id)
        .limit(bindparam("size"))
        .with_for_update(skip_locked=True)  # PostgreSQL: workers skip each other's rows; SQLite ignores it
        .scalar_subquery()
    )
    claim = (
        update(Delivery.__table__)  # type: ignore[attr-defined]
        .where(D.id.in_(due), D.status.in_(PENDING))
        .values(
            status=DeliveryStatus.SENDING,
            lease_owner=bindparam("claimer"),
            lease_until=bindparam("leased_until"),
            attempts=D.attempts + 1,
            handed_at=None,
            updated_at=bindparam("claimed_at"),
        )
        .returning(D.id)
    )
    details = (
        core_select(
            D.id, D.subscriber_id, D.email, S.name, S.token_version,
            active_membership(), D.language, D.attempts, D.created_at,
        )
        .select_from(
            Delivery.__table__.join(Campaign.__table__, C.id == D.campaign_id)  # type: ignore[attr-defined]
            .join(Subscriber.__table__, S.id == D.subscriber_id)  # type: ignore[attr-defined]
            .outerjoin(Subscription.__table__, and_(M.subscriber_id == D.subscriber_id, M.list_id == C.list_id))  # type: ignore[attr-defined]
        )
        .where(D.campaign_id == bindparam("campaign"), D.status == DeliveryStatus.SENDING, D.lease_owner == bindparam("claimer"))
        .order_by(D.id)
    )
    return claim, details


def claim_batch(engine: Engine, campaign_id: int, owner: str, size: int, lease_seconds: int) -> list[Claimed]:
    """Move up to `size` due deliveries to 'sending' under this owner's lease, and return them."""
    now = utcnow()
    claim, details = _claim_statements()
    params = {"campaign": campaign_id, "claimer": owner, "size": size, "claimed_at": now, "leased_until": now + timedelta(seconds=lease_seconds)}
    with engine.begin() as conn:
        ids = set(conn.execute(claim, params).scalars().all())
        if not ids:
            return []
        rows = conn.execute(details, params).all()
    return [Claimed(r[0], r[1], r[2], r[3] or "", r[4], bool(r[5]), r[6] or "", r[7], r[8]) for r in rows if r[0] in ids]


@dataclass(frozen=True)
class Result:
    """What happened to one delivery attempt, as mailer.bounces classified it."""

    status: DeliveryStatus  # sent, deferred, bounced, uncertain or skipped
    code: int | None = None
    reply: str = ""
    bounce: Bounce | None = None  # log this bounce event
    stage: str = ""  # the SMTP step reached (mailer.replies)
    retry_at: datetime | None = None  # for a deferral: when to try again; None: the retries are over, it failed
    relay: str = ""  # the relay that carried the attempt


@dataclass(frozen=True)
class Recorded:
    status: DeliveryStatus  # as stored (a deferral without a retry time is stored as failed)
    bounce_event: int | None = None  # the event written, for the dispatcher to settle or soften later


A = DeliveryAttempt.__table__  # type: ignore[attr-defined]


@functools.cache
def _result_statement(extra: tuple[str, ...]) -> Any:
    """The UPDATE that records a result (with next_attempt_at for a retry, sent_at for a success)."""
    columns = ("status", "smtp_code", "smtp_reply", "smtp_stage", "updated_at", *extra)
    return (
        update(Delivery.__table__)  # type: ignore[attr-defined]
        .where(*_held())
        .values(lease_owner=None, lease_until=None, **{c: bindparam(c) for c in columns})
    )


def _result_values(claimed: Claimed, owner: str, result: Result, now: datetime) -> tuple[DeliveryStatus, dict[str, object]]:
    """The status to store (a deferral with no retry time left is a failure) and the UPDATE's parameters."""
    status = result.status
    values: dict[str, object] = {
        "delivery_id": claimed.delivery_id, "owner": owner, "status": status, "smtp_code": result.code,
        "smtp_reply": result.reply[:1000], "smtp_stage": result.stage, "updated_at": now,
    }
    if status == DeliveryStatus.DEFERRED:
        if result.retry_at is None:
            status = values["status"] = DeliveryStatus.FAILED
        else:
            values["next_attempt_at"] = result.retry_at
    elif status == DeliveryStatus.SENT:
        values["sent_at"] = now
    return status, values


def plain_success_write(claimed: Claimed, owner: str, result: Result) -> RowWrite | None:
    """The whole record of a first-time success (no attempt row, no bounce) as one RowWrite, so that group
    commits write many at once; None for any other result, which record_result_on writes."""
    if result.status != DeliveryStatus.SENT or claimed.attempts > 1 or result.bounce:
        return None
    _, values = _result_values(claimed, owner, result, utcnow())
    return RowWrite(_result_statement(("sent_at",)), values, Recorded(DeliveryStatus.SENT), Recorded(DeliveryStatus.UNCERTAIN))


def record_result_on(
    conn: Connection, claimed: Claimed, campaign_id: int, owner: str, result: Result, *, policy: BouncePolicy
) -> Recorded:
    """Write one result within the caller's transaction. A row whose lease this owner lost is left alone
    (UNCERTAIN returned, nothing written). Every attempt but a first-time success also gets a
    delivery_attempt row, so each retry's reply stays on record. A delivery that fails for good after its
    retries is judged by the bounce policy here; 5xx bounces are judged later by the dispatcher
    (mailer.bounce_log.settle)."""
    plain = plain_success_write(claimed, owner, result)
    if plain is not None:
        return plain.run(conn)  # type: ignore[no-any-return]
    now = utcnow()
    status, values = _result_values(claimed, owner, result, now)
    updated = conn.execute(_result_statement(tuple(k for k in ("next_attempt_at", "sent_at") if k in values)), values)
    if updated.rowcount != 1:  # the first statement, so nothing of this result has been written
        return Recorded(DeliveryStatus.UNCERTAIN)
    conn.execute(A.insert().values(
        delivery_id=claimed.delivery_id, attempt=claimed.attempts, status=status, smtp_stage=result.stage,
        smtp_code=result.code, smtp_reply=result.reply[:1000], relay=result.relay, created_at=now,
    ))
    event = None
    if result.bounce:
        event = log_bounce(
            conn, result.bounce, delivery_id=claimed.delivery_id, campaign_id=campaign_id,
            subscriber_id=claimed.subscriber_id, now=now,
        )
        if status == DeliveryStatus.FAILED:
            apply_policy(conn, policy, claimed.subscriber_id, result.bounce.kind, result.bounce.reason, now, campaign_id)
    return Recorded(status, event)


def renew_leases(engine: Engine, owner: str, lease_seconds: int) -> int:
    """The owner's heartbeat: push back the lease of every delivery it holds. A dead owner stops renewing,
    so its claims expire within one lease (seconds), not after a long fixed lease."""
    with engine.begin() as conn:
        result = conn.execute(
            update(Delivery.__table__)  # type: ignore[attr-defined]
            .where(D.lease_owner == owner, D.status == DeliveryStatus.SENDING)
            .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
        )
        return max(result.rowcount or 0, 0)


def release_unsent(engine: Engine, owner: str) -> int:
    """Give back every delivery this owner claimed and never handed to SMTP (stop, Ctrl-C, relay unreachable).
    By owner rather than by a list of ids, so a claim whose answer never reached the dispatcher is given back too."""
    with engine.begin() as conn:
        result = conn.execute(
            update(Delivery.__table__)  # type: ignore[attr-defined]
            .where(D.lease_owner == owner, D.status == DeliveryStatus.SENDING, D.handed_at.is_(None))
            .values(status=DeliveryStatus.QUEUED, attempts=D.attempts - 1, lease_owner=None, lease_until=None)
        )
        return max(result.rowcount or 0, 0)


def has_delivered(engine: Engine, campaign_id: int) -> bool:
    """Has any message of this campaign been accepted by the relay (in any run)?"""
    with engine.connect() as conn:
        found = conn.execute(
            core_select(D.id).where(D.campaign_id == campaign_id, D.status == DeliveryStatus.SENT).limit(1)
        ).first()
        return found is not None


def mark_started(engine: Engine, campaign_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(Campaign.__table__).where(C.id == campaign_id, C.started_at.is_(None)).values(started_at=utcnow())  # type: ignore[attr-defined]
        )


def add_sending_time(engine: Engine, campaign_id: int, seconds: float) -> None:
    """Add one run's duration: a campaign's rate is messages per second of sending, not of calendar time."""
    with engine.begin() as conn:
        conn.execute(
            update(Campaign.__table__).where(C.id == campaign_id).values(sending_seconds=C.sending_seconds + seconds)  # type: ignore[attr-defined]
        )


def finish_if_done(engine: Engine, campaign_id: int) -> bool:
    """Mark the campaign done when no delivery is queued, in flight or waiting for a retry."""
    with engine.begin() as conn:
        pending = conn.execute(
            core_select(func.count()).where(
                D.campaign_id == campaign_id, D.status.in_((*PENDING, DeliveryStatus.SENDING))
            )
        ).scalar_one()
        if pending:
            return False
        last = conn.execute(core_select(func.max(D.updated_at)).where(D.campaign_id == campaign_id)).scalar_one()
        conn.execute(
            update(Campaign.__table__)  # type: ignore[attr-defined]
            .where(C.id == campaign_id, C.status.in_((CampaignStatus.SENDING, CampaignStatus.PAUSED)))
            .values(status=CampaignStatus.DONE, finished_at=last or utcnow(), status_reason="")
        )
        return True


def next_retry_at(engine: Engine, campaign_id: int) -> datetime | None:
    with engine.connect() as conn:
        return conn.execute(
            core_select(func.min(D.next_attempt_at)).where(
                D.campaign_id == campaign_id, D.status == DeliveryStatus.DEFERRED, D.next_attempt_at > utcnow()
            )
        ).scalar_one()


def count_not_enqueued(engine: Engine, campaign_id: int | None, list_id: int) -> int:
    """Active subscribers of the list without a delivery in the campaign (all of them if no campaign yet)."""
    members = active_members(list_id)
    if campaign_id is not None:
        members = members.where(
            ~core_select(D.id).where(D.campaign_id == campaign_id, D.subscriber_id == S.id).exists()
        )
    query = core_select(func.count()).select_from(members.subquery())
    with engine.connect() as conn:
        return conn.execute(query).scalar_one()


def count_by_status(engine: Engine, campaign_id: int) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            core_select(D.status, func.count()).where(D.campaign_id == campaign_id).group_by(D.status)
        ).all()
    return {status: n for status, n in rows}


def requeue_uncertain(engine: Engine, campaign_id: int) -> int:
    """An operator's decision: resend deliveries whose outcome was lost (some may then arrive twice)."""
    with engine.begin() as conn:
        result = conn.execute(
            update(Delivery.__table__)  # type: ignore[attr-defined]
            .where(D.campaign_id == campaign_id, D.status == DeliveryStatus.UNCERTAIN)
            .values(status=DeliveryStatus.QUEUED, next_attempt_at=utcnow(), updated_at=utcnow())
        )
        return max(result.rowcount or 0, 0)


def count_due(engine: Engine, campaign_id: int) -> int:
    """Deliveries a run would send now: queued, or deferred with their retry due."""
    with engine.connect() as conn:
        return conn.execute(
            core_select(func.count()).where(
                D.campaign_id == campaign_id, D.status.in_(PENDING), D.next_attempt_at <= utcnow()
            )
        ).scalar_one()


def settle_bounces(engine: Engine, policy: BouncePolicy, event_ids: Sequence[int]) -> int:
    """Judge the 5xx bounces held back since the relay last delivered (see mailer.bounce_log.settle)."""
    if not event_ids:
        return 0
    with engine.begin() as conn:
        return settle(conn, policy, list(event_ids), utcnow())


def requeue_refused(engine: Engine, delivery_ids: Sequence[int], event_ids: Sequence[int]) -> None:
    """Deliveries a relay refused wholesale go back to the queue; their bounce events become soft
    (kept as the record of what the relay said), and no address is judged by them."""
    if not delivery_ids:
        return
    with engine.begin() as conn:
        conn.execute(
            update(Delivery.__table__)  # type: ignore[attr-defined]
            .where(D.id.in_(list(delivery_ids)), D.status == DeliveryStatus.BOUNCED)
            .values(status=DeliveryStatus.QUEUED, attempts=D.attempts - 1, next_attempt_at=utcnow(), updated_at=utcnow())
        )
        soften(conn, list(event_ids))


def campaign_state(engine: Engine, campaign_id: int) -> tuple[str, str]:
    """The campaign's status and the reason given for it (why it was paused or cancelled)."""
    with engine.connect() as conn:
        row = conn.execute(core_select(C.status, C.status_reason).where(C.id == campaign_id)).one()
        return row[0], row[1] or ""


def pause(engine: Engine, campaign_id: int, reason: str) -> bool:
    """Stop claiming this campaign's deliveries, on every worker; in-flight messages finish and are recorded."""
    with engine.begin() as conn:
        result = conn.execute(
            update(Campaign.__table__)  # type: ignore[attr-defined]
            .where(C.id == campaign_id, C.status.in_((CampaignStatus.SENDING, CampaignStatus.SCHEDULED)))
            .values(status=CampaignStatus.PAUSED, status_reason=reason[:500])
        )
        return result.rowcount == 1


def resume(engine: Engine, campaign_id: int) -> bool:
    """Let workers claim a paused campaign's deliveries again."""
    with engine.begin() as conn:
        result = conn.execute(
            update(Campaign.__table__)  # type: ignore[attr-defined]
            .where(C.id == campaign_id, C.status == CampaignStatus.PAUSED)
            .values(status=CampaignStatus.SENDING, status_reason="")
        )
        return result.rowcount == 1


def cancel(engine: Engine, campaign_id: int, reason: str) -> int | None:
    """End the campaign for good: every delivery not yet handed to a worker becomes 'cancelled' (in-flight
    ones finish and are recorded). Returns how many were cancelled; None if it was already over."""
    now = utcnow()
    with engine.begin() as conn:
        changed = conn.execute(
            update(Campaign.__table__)  # type: ignore[attr-defined]
            .where(C.id == campaign_id, C.status.notin_((CampaignStatus.CANCELLED, CampaignStatus.DONE)))
            .values(status=CampaignStatus.CANCELLED, status_reason=reason[:500], finished_at=now)
        )
        if changed.rowcount != 1:
            return None
        cancelled = conn.execute(
            update(Delivery.__table__)  # type: ignore[attr-defined]
            .where(D.campaign_id == campaign_id, D.status.in_(PENDING))
            .values(status=DeliveryStatus.CANCELLED, smtp_reply=("campaign cancelled: " + reason if reason else "campaign cancelled")[:1000], updated_at=now)
        )
        return max(cancelled.rowcount or 0, 0)


def campaigns_to_work(engine: Engine) -> list[int]:
    """Campaigns a worker can work on now: sending with a delivery due, or scheduled for a time now past
    (the worker enqueues those first). Oldest first."""
    now = utcnow()
    due = core_select(D.id).where(D.campaign_id == C.id, D.status.in_(PENDING), D.next_attempt_at <= now).exists()
    with engine.connect() as conn:
        return list(conn.execute(
            core_select(C.id)
            .where(((C.status == CampaignStatus.SENDING) & due) | ((C.status == CampaignStatus.SCHEDULED) & (C.scheduled_at <= now)))
            .order_by(C.id)
        ).scalars())


def start_scheduled(engine: Engine, campaign_id: int) -> bool:
    """A scheduled campaign whose time has come becomes sending (once, whichever worker gets there first)."""
    with engine.begin() as conn:
        result = conn.execute(
            update(Campaign.__table__)  # type: ignore[attr-defined]
            .where(C.id == campaign_id, C.status == CampaignStatus.SCHEDULED, C.scheduled_at <= utcnow())
            .values(status=CampaignStatus.SENDING)
        )
        return result.rowcount == 1


def lease_owners(engine: Engine, campaign_id: int) -> list[str]:
    """Who holds leases on this campaign's deliveries now."""
    with engine.connect() as conn:
        return list(conn.execute(
            core_select(D.lease_owner).where(D.campaign_id == campaign_id, D.status == DeliveryStatus.SENDING).distinct()
        ).scalars())


R = RateBucket.__table__  # type: ignore[attr-defined]


def take_tokens(engine: Engine, buckets: Sequence[Bucket]) -> float:
    """Take one token from each bucket, or none: 0.0 when taken, else the seconds until all could give one.
    One transaction, so workers sharing the buckets (on any machine) take them one at a time."""
    now = time.time()
    postgres = engine.dialect.name == "postgresql"
    least, greatest = (func.least, func.greatest) if postgres else (func.min, func.max)
    waits: list[float] = []
    with engine.begin() as conn:
        for bucket in buckets:
            elapsed = greatest(literal(now) - R.c.updated, 0.0)
            refill = update(R).where(R.c.name == bucket.name).values(
                tokens=least(bucket.capacity, R.c.tokens + elapsed * bucket.rate), updated=greatest(R.c.updated, now),
            ).returning(R.c.tokens)
            tokens = conn.execute(refill).scalar()
            if tokens is None:  # the bucket's first use: it starts full (whichever worker creates it)
                dialect = postgresql if postgres else sqlite
                conn.execute(
                    dialect.insert(R).values(name=bucket.name, tokens=bucket.capacity, updated=now)
                    .on_conflict_do_nothing(index_elements=["name"])
                )
                tokens = conn.execute(refill).scalar_one()
            if tokens < 1:
                waits.append(bucket.wait_for(tokens))
        if waits:
            return max(waits)  # nothing taken (the refill stays: it is only time passing)
        for bucket in buckets:
            conn.execute(update(R).where(R.c.name == bucket.name).values(tokens=R.c.tokens - 1))
    return 0.0
