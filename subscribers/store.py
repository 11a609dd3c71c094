"""Named queries of the subscriber store. Every write goes through here."""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import ColumnElement, Select, and_, func, insert, select as select_, text, update
from sqlalchemy.engine import Connection
from sqlmodel import Session, col, select

from subscribers.errors import InvalidAddress, StoreError, UnknownList, UnknownSubscriber
from subscribers.models import (
    EventKind,
    MailingList,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    SubscriberEvent,
    utcnow,
)


def normalise_address(raw: str) -> str:
    """Validated, normalised address (no DNS lookup); the whole address lower-cased for uniqueness."""
    try:
        result = validate_email(raw.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(f"{raw.strip()!r} is not a valid e-mail address: {exc}") from None
    return (result.ascii_email or result.normalized).lower()


def clean_name(name: str) -> str:
    """One line of text: control characters and runs of whitespace collapse to single spaces."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in name).split())


def get_list(session: Session, name: str) -> MailingList:
    found = session.exec(select(MailingList).where(MailingList.name == name)).first()
    if found is None:
        known = ", ".join(session.exec(select(MailingList.name)).all()) or "none yet"
        raise UnknownList(f"no list named {name!r} (lists: {known})")
    return found


def get_or_create_list(session: Session, name: str, *, title: str = "", language: str = "it") -> MailingList:
    found = session.exec(select(MailingList).where(MailingList.name == name)).first()
    if found is not None:
        return found
    created = MailingList(name=name, title=title or name, language=language)
    session.add(created)
    session.flush()
    return created


def find_subscriber(session: Session, email: str) -> Subscriber:
    address = normalise_address(email)
    found = session.exec(select(Subscriber).where(Subscriber.email == address)).first()
    if found is None:
        raise UnknownSubscriber(f"{address} is not a subscriber")
    return found


@dataclass
class ImportCounts:
    added: int = 0  # new subscribers, or existing ones newly put on the list
    updated: int = 0  # already on the list: name/language filled in
    suppressed: int = 0  # unsubscribed, bounced or complained: left alone, not resubscribed


@dataclass(frozen=True)
class NewSubscriber:
    email: str  # already normalised
    name: str = ""
    language: str = "it"
    status: str = SubscriberStatus.ACTIVE  # an export's status column: left people stay left


def add_subscribers(
    session: Session,
    mailing_list: MailingList,
    people: Sequence[NewSubscriber],
    *,
    source: str,
    resubscribe: bool = False,
) -> ImportCounts:
    """Put people on a list in one transaction (the caller commits).

    Someone who unsubscribed or bounced is not put back unless `resubscribe` (an operator adding them
    by hand); an import never overrides a recipient's choice to leave. Rows whose status says they left
    (an export read back) are recorded as left, so they can never be mailed by mistake.
    """
    counts = ImportCounts()
    now = utcnow()
    assert mailing_list.id is not None
    existing: dict[str, Subscriber] = {}
    emails = [p.email for p in people]
    for start in range(0, len(emails), 500):
        chunk = emails[start : start + 500]
        for known in session.exec(select(Subscriber).where(col(Subscriber.email).in_(chunk))):
            existing[known.email] = known
    memberships = {
        s.subscriber_id: s
        for s in session.exec(select(Subscription).where(Subscription.list_id == mailing_list.id))
    } if existing else {}

    for person in people:
        sub = existing.get(person.email)
        is_new = sub is None
        if sub is None:
            sub = Subscriber(
                email=person.email,
                name=person.name,
                language=person.language or mailing_list.language,
                status=SubscriberStatus.ACTIVE,
                consent_source=source,
                consent_at=now,
            )
            session.add(sub)
            existing[person.email] = sub
            session.flush()
        if person.status != SubscriberStatus.ACTIVE:
            # A file saying someone left is recorded for people new to this list; for people already
            # on it the store's own, newer, state wins (an old export must not undo a re-subscription).
            if is_new or sub.id not in memberships:
                # For someone already in the store, a file's 'bounced' must not stop their other lists:
                # it only keeps them off this one.
                status = person.status if is_new else SubscriptionStatus.UNSUBSCRIBED
                _record_exit(session, sub, memberships, mailing_list.id, status, now)
                counts.suppressed += 1
            else:
                counts.updated += 1
            continue
        if not is_new:
            if sub.status != SubscriberStatus.ACTIVE and not resubscribe:
                counts.suppressed += 1
                continue
            sub.name = person.name or sub.name
            sub.language = person.language or sub.language
            if sub.status != SubscriberStatus.ACTIVE:
                sub.status, sub.consent_source, sub.consent_at = SubscriberStatus.ACTIVE, source, now
            sub.updated_at = now
            session.add(sub)
        membership = memberships.get(sub.id) if sub.id is not None else None
        if membership is None:
            assert sub.id is not None
            membership = Subscription(list_id=mailing_list.id, subscriber_id=sub.id)
            memberships[sub.id] = membership
            counts.added += 1
        elif membership.status == SubscriptionStatus.ACTIVE:
            counts.updated += 1
            continue
        elif resubscribe:
            membership.status, membership.updated_at = SubscriptionStatus.ACTIVE, now
            counts.added += 1
        else:
            counts.suppressed += 1
            continue
        session.add(membership)
    session.flush()
    return counts


def _record_exit(
    session: Session, sub: Subscriber, memberships: dict[int, Subscription], list_id: int, status: str, now: datetime
) -> None:
    """Remember that someone left: unsubscribed from this list, or bounced/complained everywhere."""
    assert sub.id is not None
    membership = memberships.get(sub.id)
    if membership is None:  # on the list, for the record, with the reason they get no mail
        membership = memberships[sub.id] = Subscription(list_id=list_id, subscriber_id=sub.id)
        session.add(membership)
    if status == SubscriptionStatus.UNSUBSCRIBED:
        membership.status, membership.updated_at = SubscriptionStatus.UNSUBSCRIBED, now
        session.add(membership)
    elif sub.status == SubscriberStatus.ACTIVE:
        sub.status, sub.updated_at = status, now
        session.add(sub)


def unsubscribe(
    session: Session,
    subscriber: Subscriber,
    mailing_list: MailingList | None,
    *,
    method: str,
    campaign_id: int | None = None,
) -> int:
    """End the subscription to one list (or every list); returns how many subscriptions ended."""
    query = select(Subscription).where(
        Subscription.subscriber_id == subscriber.id, Subscription.status == SubscriptionStatus.ACTIVE
    )
    if mailing_list is not None:
        query = query.where(Subscription.list_id == mailing_list.id)
    ended = 0
    now = utcnow()
    for membership in session.exec(query):
        membership.status, membership.updated_at = SubscriptionStatus.UNSUBSCRIBED, now
        session.add(membership)
        assert subscriber.id is not None
        session.add(
            SubscriberEvent(
                subscriber_id=subscriber.id, list_id=membership.list_id, campaign_id=campaign_id, method=method
            )
        )
        ended += 1
    session.flush()
    return ended


def suppress(
    conn: Connection, subscriber_id: int, status: SubscriberStatus, *, method: str, detail: str = "", campaign_id: int | None = None,
) -> bool:
    """Stop all mail to a subscriber (bounce policy, complaint), inside the caller's transaction, with an event
    on record. Their subscriptions are kept for the record. False if they were not active (nothing changed)."""
    table = Subscriber.__table__  # type: ignore[attr-defined]
    now = utcnow()
    changed = conn.execute(
        update(table)
        .where(table.c.id == subscriber_id, table.c.status == SubscriberStatus.ACTIVE)
        .values(status=status, updated_at=now)
    ).rowcount == 1
    if changed:
        conn.execute(
            insert(SubscriberEvent.__table__).values(  # type: ignore[attr-defined]
                subscriber_id=subscriber_id, campaign_id=campaign_id, kind=EventKind.SUPPRESSED, method=method,
                detail=detail[:500], created_at=now,
            )
        )
    return changed


def bounce_record(conn: Connection, subscriber_id: int) -> tuple[float, date | None] | None:
    """The subscriber's bounce score and the last day a bounce counted (None: no such subscriber)."""
    table = Subscriber.__table__  # type: ignore[attr-defined]
    row = conn.execute(select_(table.c.bounce_score, table.c.bounce_day).where(table.c.id == subscriber_id)).first()
    return (float(row[0] or 0.0), row[1]) if row else None


def set_bounce_record(conn: Connection, subscriber_id: int, score: float, day: date | None) -> None:
    table = Subscriber.__table__  # type: ignore[attr-defined]
    conn.execute(update(table).where(table.c.id == subscriber_id).values(bounce_score=score, bounce_day=day))


def find_subscriber_id(conn: Connection, email: str) -> int | None:
    """The id of the subscriber with this address (compared normalised), or None."""
    table = Subscriber.__table__  # type: ignore[attr-defined]
    return conn.execute(select_(table.c.id).where(table.c.email == email.strip().lower())).scalar()


SUPPRESSED = (SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED)


def unsuppress(session: Session, subscriber: Subscriber) -> str:
    """Mail may go to a suppressed subscriber again (their subscriptions are as they were); returns the
    status lifted. Anyone not suppressed is an error: there is nothing to lift."""
    previous = subscriber.status
    if previous not in SUPPRESSED:
        raise StoreError(f"{subscriber.email} is not suppressed (status: {previous})")
    subscriber.status, subscriber.updated_at = SubscriberStatus.ACTIVE, utcnow()
    subscriber.bounce_score, subscriber.bounce_day = 0.0, None  # a fresh start: old bounces no longer count
    session.add(subscriber)
    return previous


@dataclass(frozen=True)
class ListedSubscriber:
    email: str
    name: str
    language: str
    status: str  # the subscriber's status, or 'unsubscribed' from this list
    since: datetime


def list_members(session: Session, mailing_list: MailingList | None, status: str | None = None) -> Iterator[ListedSubscriber]:
    """Subscribers of a list (or everyone), in address order; status filters on the effective status."""
    if mailing_list is None:
        # Everyone: someone active in the store but on no list any more is, in effect, unsubscribed.
        on_a_list = (
            select(Subscription.subscriber_id)
            .where(Subscription.status == SubscriptionStatus.ACTIVE)
            .distinct()
        )
        rows = session.exec(
            select(Subscriber, col(Subscriber.id).in_(on_a_list)).order_by(Subscriber.email)
        )
        for s, subscribed in rows:
            effective = s.status if s.status != SubscriberStatus.ACTIVE or subscribed else SubscriptionStatus.UNSUBSCRIBED
            if status is None or effective == status:
                yield ListedSubscriber(s.email, s.name, s.language, effective, s.created_at)
        return
    query = (
        select(Subscriber, Subscription)
        .join(Subscription, col(Subscription.subscriber_id) == Subscriber.id)
        .where(Subscription.list_id == mailing_list.id)
        .order_by(Subscriber.email)
    )
    for s, m in session.exec(query):
        effective = s.status if s.status != SubscriberStatus.ACTIVE else m.status
        if status is None or effective == status:
            yield ListedSubscriber(s.email, s.name, s.language, effective, m.created_at)


def active_membership() -> ColumnElement[bool]:
    """True for a subscription that receives mail: the subscription and the subscriber both active.
    For queries that join Subscription and Subscriber themselves (the ledger's claim)."""
    return and_(Subscription.status == SubscriptionStatus.ACTIVE, Subscriber.status == SubscriberStatus.ACTIVE)  # type: ignore[arg-type]


def active_members(list_id: int) -> Select[tuple[int, str, str]]:
    """The one query of who receives a list's mail: (subscriber id, address, language) of each active
    member. A query to run, count or insert from (the ledger enqueues from it in one statement)."""
    subscription = Subscription.__table__  # type: ignore[attr-defined]
    subscriber = Subscriber.__table__  # type: ignore[attr-defined]
    return (
        select_(subscriber.c.id, subscriber.c.email, subscriber.c.language)
        .select_from(subscription.join(subscriber, subscriber.c.id == subscription.c.subscriber_id))
        .where(subscription.c.list_id == list_id, active_membership())
    )


def count_active(session: Session, mailing_list: MailingList) -> int:
    assert mailing_list.id is not None
    members = active_members(mailing_list.id).subquery()
    return session.exec(select(func.count()).select_from(members)).one()


# ---- streaming import: a staging table, then the same rules as add_subscribers in a few statements ------

MAX_PROBLEMS = 200  # listed in the error; the rest are counted


@dataclass
class Staged:
    rows: int = 0  # rows read (without blank ones)
    merged: int = 0  # rows that named an address an earlier row had named
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line, what is wrong), the first MAX_PROBLEMS
    more_problems: int = 0


_STAGE = (
    "INSERT INTO import_row (email, name, language, status, line) VALUES (:email, :name, :language, :status, :line) "
    "ON CONFLICT (email) DO UPDATE SET "  # two rows for one address: as csvio.merge_rows
    "name = CASE WHEN import_row.name <> '' THEN import_row.name ELSE excluded.name END, "
    "language = CASE WHEN import_row.language <> '' THEN import_row.language ELSE excluded.language END, "
    "status = CASE WHEN import_row.status <> 'active' THEN import_row.status ELSE excluded.status END"
)


def stage_import(session: Session, rows: Iterable[tuple[int, NewSubscriber | str]], chunk: int = 5000) -> Staged:
    """Write a file's rows into a temporary table of this transaction, a chunk at a time (memory stays flat),
    merging repeated addresses; problems are collected, not raised (the caller decides)."""
    conn = session.connection()
    postgres = conn.dialect.name == "postgresql"
    conn.execute(text(
        "CREATE TEMP TABLE IF NOT EXISTS import_row (email VARCHAR(320) PRIMARY KEY, name TEXT NOT NULL, "
        "language VARCHAR(8) NOT NULL, status VARCHAR(16) NOT NULL, line INTEGER NOT NULL, "
        "known_status VARCHAR(16), member_status VARCHAR(16))" + (" ON COMMIT DROP" if postgres else "")
    ))
    conn.execute(text("DELETE FROM import_row"))
    staged, batch = Staged(), []
    for line, found in rows:
        if isinstance(found, str):
            if len(staged.problems) < MAX_PROBLEMS:
                staged.problems.append((line, found))
            else:
                staged.more_problems += 1
            continue
        staged.rows += 1
        if staged.problems:
            continue  # nothing will be imported: only the problems are wanted now
        batch.append({"email": found.email, "name": found.name, "language": found.language, "status": found.status, "line": line})
        if len(batch) >= chunk:
            conn.execute(text(_STAGE), batch)
            batch = []
    if batch and not staged.problems:
        conn.execute(text(_STAGE), batch)
    if not staged.problems:
        staged.merged = staged.rows - conn.execute(text("SELECT count(*) FROM import_row")).scalar_one()
    return staged


def merge_staged(session: Session, mailing_list: MailingList, *, source: str, default_language: str) -> ImportCounts:
    """Put the staged people on the list with add_subscribers' rules, in set-based statements: nobody who
    left is put back, a row saying someone left is recorded as left, new people get the list's language."""
    assert mailing_list.id is not None
    conn = session.connection()
    now: object = utcnow()
    if conn.dialect.name == "sqlite":  # as SQLAlchemy writes timestamps there (UTC text, no offset)
        now = utcnow().astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    params = {"list": mailing_list.id, "now": now, "source": source, "default": default_language}
    conn.execute(text("UPDATE import_row SET language = :default WHERE language = ''"), params)
    conn.execute(text(
        "UPDATE import_row SET known_status = (SELECT s.status FROM subscriber s WHERE s.email = import_row.email), "
        "member_status = (SELECT m.status FROM subscription m JOIN subscriber s ON s.id = m.subscriber_id "
        "WHERE s.email = import_row.email AND m.list_id = :list)"
    ), params)
    counted = conn.execute(text(
        "SELECT "
        "sum(CASE WHEN status = 'active' AND (known_status IS NULL OR known_status = 'active') AND member_status IS NULL "
        "THEN 1 ELSE 0 END), "
        "sum(CASE WHEN (status <> 'active' AND known_status IS NOT NULL AND member_status IS NOT NULL) OR "
        "(status = 'active' AND known_status = 'active' AND member_status = 'active') THEN 1 ELSE 0 END) "
        "FROM import_row"
    )).one()
    total = conn.execute(text("SELECT count(*) FROM import_row")).scalar_one()
    counts = ImportCounts(added=counted[0] or 0, updated=counted[1] or 0)
    counts.suppressed = total - counts.added - counts.updated
    # Existing, active people named in an active row: the file fills in their name and language.
    conn.execute(text(
        "UPDATE subscriber SET name = CASE WHEN r.name <> '' THEN r.name ELSE subscriber.name END, "
        "language = r.language, updated_at = :now FROM import_row r "
        "WHERE subscriber.email = r.email AND r.status = 'active' AND subscriber.status = 'active'"
    ), params)
    # New people: active, unless the row says they bounced or complained (then that, for the record).
    conn.execute(text(
        "INSERT INTO subscriber (email, name, language, status, consent_source, consent_at, consent_text, "
        "token_version, bounce_score, created_at, updated_at) "
        "SELECT email, name, language, CASE WHEN status IN ('bounced', 'complained') THEN status ELSE 'active' END, "
        ":source, :now, '', 0, 0, :now, :now FROM import_row WHERE known_status IS NULL"
    ), params)
    # Their place on this list: active, or unsubscribed when the row says so (new people) or says they left.
    conn.execute(text(
        "INSERT INTO subscription (list_id, subscriber_id, status, created_at, updated_at) "
        "SELECT :list, s.id, CASE WHEN r.status = 'unsubscribed' OR (r.status <> 'active' AND r.known_status IS NOT NULL) "
        "THEN 'unsubscribed' ELSE 'active' END, :now, :now "
        "FROM import_row r JOIN subscriber s ON s.email = r.email "
        "WHERE r.member_status IS NULL AND (r.known_status IS NULL OR r.status <> 'active' OR r.known_status = 'active')"
    ), params)
    return counts
