"""Tables of the delivery ledger: campaigns, deliveries (one per campaign x subscriber), bounce events."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, LargeBinary, Text, text
from sqlmodel import Column, Field, SQLModel, UniqueConstraint

from mailer.statuses import FINAL_STATUSES, CampaignStatus, DeliveryStatus  # noqa: F401  (re-exported)
from subscribers.models import utcnow


class Campaign(SQLModel, table=True):
    """One send of one issue to one list."""

    __table_args__ = (UniqueConstraint("newsletter", "issue", "list_id"),)
    id: int | None = Field(default=None, primary_key=True)
    newsletter: str
    issue: str
    list_id: int = Field(foreign_key="mailing_list.id")
    subject: str
    issue_path: str = ""
    issue_digest: str = ""  # sha256 of the issue file when the campaign was created
    issue_source: str = Field(default="", sa_column=Column(Text))  # kept for the web archive and resumes
    status: str = Field(default=CampaignStatus.SENDING)
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    sending_seconds: float = Field(default=0.0, sa_column_kwargs={"server_default": "0"})  # summed over runs: the rate's divisor
    scheduled_at: datetime | None = None  # `mailer send --at`: workers start it then
    status_reason: str = Field(default="", sa_column_kwargs={"server_default": ""})  # why it is paused or cancelled


class CampaignEdition(SQLModel, table=True):
    """One language edition of a campaign's issue, as sent: what the archive shows in that language."""

    __tablename__ = "campaign_edition"
    __table_args__ = (UniqueConstraint("campaign_id", "language"),)
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    language: str
    subject: str
    issue_path: str = ""
    issue_source: str = Field(default="", sa_column=Column(Text))


_PENDING_SQL = "status IN ('queued', 'deferred')"  # written out: a partial index is used only for this very text


class Delivery(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("campaign_id", "subscriber_id"),
        Index("ix_delivery_claim", "campaign_id", "status", "next_attempt_at"),
        # The claim walks this in id order and stops after a batch: no sort of every due row, however long the queue.
        Index("ix_delivery_due", "campaign_id", "id", sqlite_where=text(_PENDING_SQL), postgresql_where=text(_PENDING_SQL)),
    )
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id")
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True)
    email: str  # the address used, as it was at enqueue time
    language: str = Field(default="", sa_column_kwargs={"server_default": ""})  # the edition it gets ('' before editions)
    status: str = Field(default=DeliveryStatus.QUEUED)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    lease_owner: str | None = None
    lease_until: datetime | None = None
    handed_at: datetime | None = None  # set just before MAIL FROM: after a crash, tells "maybe sent" from "never tried"
    smtp_stage: str = Field(default="", sa_column_kwargs={"server_default": ""})  # how far the last attempt got (mailer.replies)
    smtp_code: int | None = None
    smtp_reply: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None


class DeliveryAttempt(SQLModel, table=True):
    """An attempt that did not end in a first-time 250: each reply of a delivery's retries stays on record
    (the delivery row keeps only the last; a message accepted at its first attempt needs no row here)."""

    __tablename__ = "delivery_attempt"
    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(foreign_key="delivery.id", index=True)
    attempt: int
    status: str  # what the attempt made of the delivery: deferred, bounced, failed, uncertain, sent
    smtp_stage: str = ""  # the SMTP step the attempt reached (mailer.replies)
    smtp_code: int | None = None
    smtp_reply: str = ""
    relay: str = ""  # which configured relay carried it
    created_at: datetime = Field(default_factory=utcnow)


class RateBucket(SQLModel, table=True):
    """A token bucket of a relay's rate limit, shared by every worker and kept across restarts."""

    __tablename__ = "rate_bucket"
    name: str = Field(primary_key=True)  # e.g. 'relay:second', 'relay:domain:example.org'
    tokens: float = 0.0
    updated: float = 0.0  # Unix time of the last refill


class BounceEvent(SQLModel, table=True):
    __tablename__ = "bounce_event"
    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int | None = Field(default=None, foreign_key="delivery.id", index=True)
    campaign_id: int | None = Field(default=None, index=True)
    subscriber_id: int | None = Field(default=None, index=True)
    kind: str  # "hard" or "soft"
    source: str = "smtp"  # "smtp": a reply during our session; "dsn": a bounce message that came back later
    smtp_code: int | None = None
    reason: str = ""  # the server's text, as received
    reason_group: str = Field(default="", index=True)  # the text with addresses and ids blanked, for counting
    status: str = Field(default="", sa_column_kwargs={"server_default": ""})  # enhanced status code, e.g. 5.1.1
    category: str = Field(default="", sa_column_kwargs={"server_default": ""})  # mailer.bounce_meaning's reason
    recipient: str = Field(default="", sa_column_kwargs={"server_default": ""})  # the address the report names
    reporting_mta: str = Field(default="", sa_column_kwargs={"server_default": ""})
    inbound_id: int | None = Field(default=None, foreign_key="inbound_message.id", index=True)  # the message it came in
    created_at: datetime = Field(default_factory=utcnow)


class InboundMessage(SQLModel, table=True):
    """A message that arrived at the bounce or unsubscribe address, kept whole (compressed) for review.
    `digest` makes intake idempotent: the same message read twice is recognised and changes nothing."""

    __tablename__ = "inbound_message"
    id: int | None = Field(default=None, primary_key=True)
    digest: str = Field(unique=True, max_length=64)  # sha256 of the message with line endings normalised
    message_id: str = ""
    mailbox: str = ""  # where it was read (maildir, mbox or imap, without credentials)
    sender: str = ""
    subject: str = ""
    kind: str = Field(index=True)  # bounce, delayed, complaint, auto-reply, unsubscribe, other
    outcome: str = ""  # what intake did with it
    needs_review: bool = Field(default=False, index=True)  # nothing automatic was done: an operator should look
    size: int = 0
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # zlib-compressed original bytes
    received_at: datetime = Field(default_factory=utcnow, index=True)


class Notice(SQLModel, table=True):
    """A message the web app sends one person (a confirmation link, an unsubscribe link): on record,
    and the basis of the per-address limits of the public forms."""

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True)  # "confirm" or "unsubscribe-link"
    email: str = Field(index=True)
    subscriber_id: int | None = Field(default=None, index=True)
    message_id: str = ""
    status: str = "queued"  # queued, sent, failed
    smtp_code: int | None = None
    smtp_reply: str = ""
    created_at: datetime = Field(default_factory=utcnow, index=True)
    sent_at: datetime | None = None


class AdminUser(SQLModel, table=True):
    """An operator of the web app's /admin/ area; the password is kept only as an Argon2 hash."""

    __tablename__ = "admin_user"
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, index=True)
    password_hash: str
    session_epoch: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # bumped by logout and password change: ends every session
    created_at: datetime = Field(default_factory=utcnow)
    last_login_at: datetime | None = None
