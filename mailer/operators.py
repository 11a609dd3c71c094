"""Use cases of operators: accounts (Argon2 hashes), a campaign's figures for charts, the bounce log,
subscriber search with each person's history, and CSV exports of deliveries and bounces."""
from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from io import StringIO
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_
from sqlmodel import col, select

from mailer.core import Core
from mailer.figures import CampaignFigures, campaign_figures
from mailer.errors import MailerError, NotFound
from mailer.models import AdminUser, BounceEvent, Campaign, Delivery, Notice
from subscribers.models import MailingList, Subscriber, SubscriberEvent, Subscription
from subscribers.models import utcnow

if TYPE_CHECKING:
    from argon2 import PasswordHasher

MIN_PASSWORD_LENGTH = 12


@cache
def _hasher() -> "PasswordHasher":
    from argon2 import PasswordHasher

    return PasswordHasher()


@dataclass(frozen=True)
class BounceLine:
    created_at: datetime
    campaign_id: int | None
    email: str
    kind: str
    source: str
    smtp_code: int | None
    reason: str


@dataclass(frozen=True)
class HistoryLine:
    at: datetime
    what: str
    detail: str


class Operators(Core):
    # ---- accounts ------------------------------------------------------------------------------------

    def add_admin_user(self, username: str, password: str) -> bool:
        """Create an operator, or set a new password for an existing one. True if created."""
        username = username.strip()
        if not username or any(c.isspace() for c in username):
            raise MailerError("the username must be one word")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise MailerError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters long")
        with self.session() as session:
            user = session.exec(select(AdminUser).where(AdminUser.username == username)).first()
            created = user is None
            user = user or AdminUser(username=username, password_hash="")
            user.password_hash = _hasher().hash(password)
            user.session_epoch += 1  # a new password ends the sessions opened with the old one
            session.add(user)
        return created

    def authenticate(self, username: str, password: str) -> int | None:
        """Check a login: the operator's session epoch (to keep in the session), or None. An unknown user
        costs the same hash as a known one (no timing difference)."""
        with self.session() as session:
            user = session.exec(select(AdminUser).where(AdminUser.username == username.strip())).first()
            stored = user.password_hash if user else _dummy_hash()
            from argon2.exceptions import InvalidHashError, VerificationError

            try:
                _hasher().verify(stored, password)
            except (VerificationError, InvalidHashError):
                return None
            if user is None:
                return None
            if _hasher().check_needs_rehash(user.password_hash):
                user.password_hash = _hasher().hash(password)
            user.last_login_at = utcnow()
            session.add(user)
            return user.session_epoch

    def session_valid(self, username: str, epoch: object) -> bool:
        """Is a session opened at this epoch still valid (no logout, no new password since)?"""
        with self.session() as session:
            user = session.exec(select(AdminUser).where(AdminUser.username == username)).first()
            return user is not None and user.session_epoch == epoch

    def end_sessions(self, username: str) -> None:
        """Logout: every session of this operator ends, including copies of the cookie."""
        with self.session() as session:
            user = session.exec(select(AdminUser).where(AdminUser.username == username)).first()
            if user is not None:
                user.session_epoch += 1
                session.add(user)

    # ---- campaigns -----------------------------------------------------------------------------------

    def campaign_figures(self, campaign_id: int, *, top_domains: int = 8) -> CampaignFigures:
        self.campaign(campaign_id)
        with self.session() as session:
            rows = session.exec(
                select(Delivery.email, Delivery.status, Delivery.updated_at).where(Delivery.campaign_id == campaign_id)
            ).all()
        return campaign_figures(rows, top_domains=top_domains)

    def bounce_log(self, *, campaign_id: int | None = None, limit: int = 200, offset: int = 0) -> list[BounceLine]:
        query = (
            select(BounceEvent, Subscriber.email)
            .join(Subscriber, col(Subscriber.id) == BounceEvent.subscriber_id, isouter=True)
            .order_by(col(BounceEvent.id).desc())
            .offset(offset)
            .limit(limit)
        )
        if campaign_id is not None:
            query = query.where(BounceEvent.campaign_id == campaign_id)
        with self.session() as session:
            return [
                BounceLine(b.created_at, b.campaign_id, email or "", b.kind, b.source, b.smtp_code, b.reason)
                for b, email in session.exec(query)
            ]

    # ---- subscribers ---------------------------------------------------------------------------------

    def search_subscribers(self, text: str, *, limit: int = 50) -> list[Subscriber]:
        text = text.strip().lower()
        if not text:
            return []
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self.session() as session:
            return list(session.exec(
                select(Subscriber)
                .where(or_(func.lower(Subscriber.email).like(pattern, escape="\\"), func.lower(Subscriber.name).like(pattern, escape="\\")))
                .order_by(Subscriber.email)
                .limit(limit)
            ))

    def subscriber(self, subscriber_id: int) -> Subscriber:
        with self.session() as session:
            found = session.get(Subscriber, subscriber_id)
        if found is None:
            raise NotFound(f"no subscriber {subscriber_id}")
        return found

    def subscriber_history(self, subscriber_id: int) -> list[HistoryLine]:
        """Everything on record about one person, newest first: lists, choices, deliveries, bounces."""
        subscriber = self.subscriber(subscriber_id)
        lines = [HistoryLine(subscriber.created_at, "created", subscriber.consent_source)]
        with self.session() as session:
            names = {m.id: m.name for m in session.exec(select(MailingList))}
            campaigns = {c.id: f"{c.newsletter} {c.issue}" for c in session.exec(select(Campaign))}
            for m in session.exec(select(Subscription).where(Subscription.subscriber_id == subscriber_id)):
                lines.append(HistoryLine(m.created_at, "joined list", names.get(m.list_id, str(m.list_id))))
            for e in session.exec(select(SubscriberEvent).where(SubscriberEvent.subscriber_id == subscriber_id)):
                where = " ".join(filter(None, [names.get(e.list_id or 0, ""), f"from campaign {campaigns.get(e.campaign_id, e.campaign_id)}" if e.campaign_id else ""]))
                lines.append(HistoryLine(e.created_at, f"{e.kind} ({e.method})", " ".join(filter(None, [where, e.detail]))))
            for d in session.exec(select(Delivery).where(Delivery.subscriber_id == subscriber_id)):
                reply = f"{d.smtp_code or ''} {d.smtp_reply or ''}".strip()
                lines.append(HistoryLine(d.updated_at, f"delivery {d.status}", f"{campaigns.get(d.campaign_id, d.campaign_id)}: {reply}"))
            for b in session.exec(select(BounceEvent).where(BounceEvent.subscriber_id == subscriber_id)):
                lines.append(HistoryLine(b.created_at, f"{b.kind} bounce ({b.source})", f"{b.smtp_code or ''} {b.reason}".strip()))
            for n in session.exec(select(Notice).where(Notice.email == subscriber.email)):
                lines.append(HistoryLine(n.created_at, f"notice {n.kind} ({n.status})", f"{n.smtp_code or ''} {n.smtp_reply}".strip()))
        return sorted(lines, key=lambda line: line.at, reverse=True)

    # ---- exports -------------------------------------------------------------------------------------

    def deliveries_csv(self, campaign_id: int) -> Iterator[str]:
        """Every delivery of a campaign as CSV lines, read from the database as they are written out."""
        self.campaign(campaign_id)  # NotFound before the first line
        columns = (Delivery.email, Delivery.status, Delivery.attempts, Delivery.smtp_code, Delivery.smtp_reply,
                   Delivery.sent_at, Delivery.updated_at)
        query = select(*columns).where(Delivery.campaign_id == campaign_id).order_by(col(Delivery.id))
        return self._csv(["email", "status", "attempts", "smtp_code", "smtp_reply", "sent_at", "updated_at"], query)

    def bounces_csv(self, campaign_id: int | None = None) -> Iterator[str]:
        """Every bounce (of one campaign, or all) as CSV lines, newest first."""
        query = (
            select(BounceEvent.created_at, BounceEvent.campaign_id, Subscriber.email, BounceEvent.kind, BounceEvent.source,
                   BounceEvent.smtp_code, BounceEvent.reason)
            .join(Subscriber, col(Subscriber.id) == BounceEvent.subscriber_id, isouter=True)
            .order_by(col(BounceEvent.id).desc())
        )
        if campaign_id is not None:
            query = query.where(BounceEvent.campaign_id == campaign_id)
        return self._csv(["created_at", "campaign_id", "email", "kind", "source", "smtp_code", "reason"], query)

    def _csv(self, header: list[str], query: Any) -> Iterator[str]:
        with self.session() as session:
            yield from _csv_rows(header, session.exec(query.execution_options(yield_per=1000)))


def _csv_rows(header: list[str], rows: Iterable[Sequence[object]]) -> Iterator[str]:
    """CSV lines, one at a time, every cell's spreadsheet formula neutralised."""
    from subscribers.csvio import neutralise_formula

    buffer = StringIO()
    writer = csv.writer(buffer)
    for row in chain([header], rows):
        writer.writerow([neutralise_formula(_cell(v)) for v in row])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


@cache
def _dummy_hash() -> str:
    return _hasher().hash("a password nobody has")
