"""What recipients choose for themselves: confirm a signup, change preferences, leave. Each is an event on record.

The caller commits (one transaction per choice); every function is safe to repeat.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from subscribers.errors import InvalidToken
from subscribers.models import (
    EventKind,
    MailingList,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from subscribers.tokens import Claim, Signup


def subscriber_for(session: Session, claim: Claim) -> Subscriber:
    """The subscriber a valid token names, unless their links were revoked (token version bumped) or they were erased."""
    subscriber = session.get(Subscriber, claim.subscriber_id)
    if subscriber is None or subscriber.token_version != claim.version:
        raise InvalidToken("this link is no longer valid")
    return subscriber


def memberships(session: Session, subscriber_id: int) -> dict[int, str]:
    """list id -> subscription status, for every list the subscriber was ever on."""
    rows = session.exec(select(Subscription).where(Subscription.subscriber_id == subscriber_id))
    return {m.list_id: m.status for m in rows}


def active_list_ids(session: Session, subscriber: Subscriber) -> set[int]:
    if subscriber.status != SubscriberStatus.ACTIVE:
        return set()
    assert subscriber.id is not None
    return {lid for lid, status in memberships(session, subscriber.id).items() if status == SubscriptionStatus.ACTIVE}


def confirm_signup(session: Session, signup: Signup, *, consent_text: str, method: str = "form") -> tuple[Subscriber, bool]:
    """Apply a confirmed signup: create the subscriber or bring them back (someone who had left, bounced or
    complained confirms anew), and put them on the requested lists. Returns (subscriber, changed)."""
    now = utcnow()
    subscriber = session.exec(select(Subscriber).where(Subscriber.email == signup.email)).first()
    if subscriber is None:
        subscriber = Subscriber(email=signup.email, name=signup.name, language=signup.language, created_at=now)
        session.add(subscriber)
        session.flush()
    assert subscriber.id is not None
    if active_list_ids(session, subscriber) >= set(signup.list_ids):
        return subscriber, False  # a second click on the same link: nothing to do, nothing recorded
    if signup.requested_at is not None and _left_since(session, subscriber, signup.requested_at):
        # They confirmed, then left: an old link (in a forwarded mail, a mailbox someone else reads) must
        # not bring them back. Coming back takes a new request and its own confirmation.
        raise InvalidToken("this confirmation link was already used")
    subscriber.status = SubscriberStatus.ACTIVE
    subscriber.name = signup.name or subscriber.name  # the confirmation page showed both to the address's owner
    subscriber.language = signup.language
    subscriber.consent_source, subscriber.consent_at, subscriber.consent_text = f"{method}:double-opt-in", now, consent_text
    subscriber.updated_at = now
    session.add(subscriber)
    _set_lists(session, subscriber.id, set(signup.list_ids), keep_others=True)
    for list_id in signup.list_ids:
        session.add(SubscriberEvent(subscriber_id=subscriber.id, list_id=list_id, kind=EventKind.CONFIRMED, method=method,
                                    detail=f"consent {signup.consent_version}"))
    session.flush()
    return subscriber, True


def _left_since(session: Session, subscriber: Subscriber, since: datetime) -> bool:
    """Did they leave, complain or bounce after `since`? Token times are whole seconds, so the second the
    link was signed in does not count."""
    since += timedelta(seconds=1)
    if subscriber.status in (SubscriberStatus.COMPLAINED, SubscriberStatus.BOUNCED) and subscriber.updated_at >= since:
        return True
    left = session.exec(
        select(SubscriberEvent.id).where(
            SubscriberEvent.subscriber_id == subscriber.id, SubscriberEvent.kind == EventKind.UNSUBSCRIBED,
            col(SubscriberEvent.created_at) >= since,
        )
    ).first()
    return left is not None


def set_preferences(
    session: Session, subscriber: Subscriber, *, language: str, list_ids: Sequence[int], offered: Sequence[MailingList],
    campaign_id: int | None = None,
) -> bool:
    """Language and lists kept on the preferences page; lists not kept are left (an unsubscribe event each).
    The link never expires and travels with every forwarded copy of an issue, so it can only keep or drop
    lists: joining one (again) takes a signup and its confirmation. Returns whether anything changed."""
    assert subscriber.id is not None
    before = active_list_ids(session, subscriber)
    chosen = set(list_ids) & {m.id for m in offered if m.id is not None} & before
    if subscriber.language == language and before == chosen:
        return False
    now = utcnow()
    subscriber.language, subscriber.updated_at = language, now
    session.add(subscriber)
    _set_lists(session, subscriber.id, chosen, keep_others=False)
    for list_id in sorted(before - chosen):
        session.add(SubscriberEvent(subscriber_id=subscriber.id, list_id=list_id, campaign_id=campaign_id,
                                    kind=EventKind.UNSUBSCRIBED, method="preferences"))
    names = ", ".join(sorted(m.name for m in offered if m.id in chosen)) or "none"
    session.add(SubscriberEvent(subscriber_id=subscriber.id, campaign_id=campaign_id, kind=EventKind.PREFERENCES,
                                method="page", detail=f"language {language}; lists: {names}"))
    session.flush()
    return True


def _set_lists(session: Session, subscriber_id: int, chosen: set[int], *, keep_others: bool) -> None:
    now = utcnow()
    existing = {m.list_id: m for m in session.exec(select(Subscription).where(Subscription.subscriber_id == subscriber_id))}
    for list_id in chosen - existing.keys():
        session.add(Subscription(list_id=list_id, subscriber_id=subscriber_id, created_at=now, updated_at=now))
    for list_id, membership in existing.items():
        wanted = SubscriptionStatus.ACTIVE if list_id in chosen else (None if keep_others else SubscriptionStatus.UNSUBSCRIBED)
        if wanted is not None and membership.status != wanted:
            membership.status, membership.updated_at = wanted, now
            session.add(membership)
