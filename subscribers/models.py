"""Tables of the subscriber store: subscribers, lists, subscriptions, subscriber events."""
from __future__ import annotations

from datetime import date, datetime, timezone

from sqlalchemy import Text
from sqlmodel import Column, Field, SQLModel, UniqueConstraint

from subscribers.statuses import EventKind, SubscriberStatus, SubscriptionStatus  # noqa: F401  (re-exported)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Subscriber(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(unique=True, index=True, max_length=320)  # normalised, lower case
    name: str = ""
    language: str = "it"
    status: str = Field(default=SubscriberStatus.ACTIVE, index=True)
    consent_source: str = ""  # e.g. "import:contacts.csv", "form", "admin"
    consent_at: datetime | None = None
    consent_text: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))  # what they agreed to
    token_version: int = 0  # bump to revoke every link sent to this subscriber
    bounce_score: float = Field(default=0.0, sa_column_kwargs={"server_default": "0"})  # mailer.policy's score
    bounce_day: date | None = None  # the last day a bounce was counted towards the score
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class MailingList(SQLModel, table=True):
    __tablename__ = "mailing_list"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    title: str = ""
    language: str = "it"
    created_at: datetime = Field(default_factory=utcnow)


class Subscription(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("list_id", "subscriber_id"),)
    id: int | None = Field(default=None, primary_key=True)
    list_id: int = Field(foreign_key="mailing_list.id", index=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True)
    status: str = Field(default=SubscriptionStatus.ACTIVE)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class SubscriberEvent(SQLModel, table=True):
    """Every unsubscribe, confirmation and preference change: how, when, and from which campaign's link."""

    __tablename__ = "subscriber_event"
    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True)
    list_id: int | None = Field(default=None, foreign_key="mailing_list.id")
    campaign_id: int | None = Field(default=None, index=True)
    kind: str = Field(default=EventKind.UNSUBSCRIBED, index=True)
    method: str  # one-click, page, form, admin, mailto, complaint, bounce, web
    detail: str = ""  # e.g. the preferences chosen
    created_at: datetime = Field(default_factory=utcnow)
