"""The inbox's queries: inbound messages kept whole, and the deliveries a bounce or complaint is about.

Every function works inside the caller's transaction (one per inbound message), so a message's effects and
its record land together or not at all.
"""
from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from mailer.bounce_log import clean
from mailer.models import Delivery, InboundMessage
from mailer.statuses import DeliveryStatus

D = Delivery.__table__.c  # type: ignore[attr-defined]
I = InboundMessage.__table__.c  # type: ignore[attr-defined]
LATE_BOUNCE_FROM = (DeliveryStatus.SENT, DeliveryStatus.UNCERTAIN)  # a relay accepted it; the DSN says it failed


def digest_of(data: bytes) -> str:
    """The message's identity for idempotent intake: the same bytes whatever the line endings."""
    return hashlib.sha256(data.replace(b"\r\n", b"\n").rstrip(b"\n")).hexdigest()


def already_taken(conn: Connection, digest: str) -> tuple[int, str, str] | None:
    """(id, kind, outcome) of the inbound message with this digest, if it was processed before."""
    row = conn.execute(select(I.id, I.kind, I.outcome).where(I.digest == digest)).first()
    return (row[0], row[1], row[2]) if row else None


@dataclass(frozen=True)
class Inbound:
    digest: str
    mailbox: str
    message_id: str
    sender: str
    subject: str
    data: bytes


def keep(conn: Connection, inbound: Inbound, now: datetime) -> int:
    """Store the message (compressed) with a provisional kind; returns its id."""
    return conn.execute(
        insert(InboundMessage.__table__).values(  # type: ignore[attr-defined]
            digest=inbound.digest, message_id=clean(inbound.message_id, 255), mailbox=clean(inbound.mailbox, 255),
            sender=clean(inbound.sender, 320), subject=clean(inbound.subject, 500), kind="other", outcome="", needs_review=False,
            size=len(inbound.data), raw=zlib.compress(inbound.data, 6), received_at=now,
        ).returning(I.id)
    ).scalar_one()


def settle_inbound(conn: Connection, inbound_id: int, kind: str, outcome: str, needs_review: bool) -> None:
    conn.execute(
        update(InboundMessage.__table__).where(I.id == inbound_id)  # type: ignore[attr-defined]
        .values(kind=kind, outcome=clean(outcome, 1000), needs_review=needs_review)
    )


def raw_message(conn: Connection, inbound_id: int) -> bytes | None:
    data = conn.execute(select(I.raw).where(I.id == inbound_id)).scalar()
    return zlib.decompress(data) if data is not None else None


@dataclass(frozen=True)
class DeliveryRef:
    delivery_id: int
    campaign_id: int
    subscriber_id: int
    email: str


def delivery(conn: Connection, delivery_id: int) -> DeliveryRef | None:
    row = conn.execute(select(D.id, D.campaign_id, D.subscriber_id, D.email).where(D.id == delivery_id)).first()
    return DeliveryRef(*row) if row else None


def delivery_of(conn: Connection, campaign_id: int, subscriber_id: int) -> DeliveryRef | None:
    row = conn.execute(
        select(D.id, D.campaign_id, D.subscriber_id, D.email).where(D.campaign_id == campaign_id, D.subscriber_id == subscriber_id)
    ).first()
    return DeliveryRef(*row) if row else None


def latest_delivery(conn: Connection, subscriber_id: int) -> DeliveryRef | None:
    """The newest delivery to this subscriber that a relay took: what an untagged bounce is most likely about."""
    row = conn.execute(
        select(D.id, D.campaign_id, D.subscriber_id, D.email)
        .where(D.subscriber_id == subscriber_id, D.status.in_((*LATE_BOUNCE_FROM, DeliveryStatus.BOUNCED)))
        .order_by(D.id.desc()).limit(1)
    ).first()
    return DeliveryRef(*row) if row else None


def mark_bounced(conn: Connection, delivery_id: int, now: datetime) -> bool:
    """A delivery the relay took and a later DSN says failed is bounced after all."""
    return conn.execute(
        update(Delivery.__table__)  # type: ignore[attr-defined]
        .where(D.id == delivery_id, D.status.in_(LATE_BOUNCE_FROM))
        .values(status=DeliveryStatus.BOUNCED, updated_at=now)
    ).rowcount == 1


@dataclass(frozen=True)
class InboundLine:
    inbound_id: int
    received_at: datetime
    kind: str
    sender: str
    subject: str
    outcome: str
    needs_review: bool
    size: int


def inbound_lines(conn: Connection, *, review_only: bool, limit: int, offset: int = 0) -> list[InboundLine]:
    """The newest inbound messages first (only those waiting for review, if asked)."""
    query = select(I.id, I.received_at, I.kind, I.sender, I.subject, I.outcome, I.needs_review, I.size)
    if review_only:
        query = query.where(I.needs_review.is_(True))
    rows = conn.execute(query.order_by(I.id.desc()).limit(limit).offset(offset)).all()
    return [InboundLine(*row) for row in rows]
