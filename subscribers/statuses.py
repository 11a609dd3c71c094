"""Subscriber and subscription statuses and subscriber event kinds: plain values, importable without the ORM."""
from __future__ import annotations

from enum import StrEnum


class SubscriberStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"


class EventKind(StrEnum):
    """What happened to a subscriber, as recorded in subscriber_event."""

    UNSUBSCRIBED = "unsubscribed"  # left a list (or all lists)
    CONFIRMED = "confirmed"  # confirmed a subscription (double opt-in), or came back through a confirmation
    PREFERENCES = "preferences"  # changed language or lists on the preferences page
    SUBSCRIBED = "subscribed"  # put on a list by an operator (`subscribers add`); imports record their source instead
    SUPPRESSED = "suppressed"  # no more mail: the bounce policy's decision (method bounce) or a complaint
    UNSUPPRESSED = "unsuppressed"  # an operator lifted a bounce or complaint suppression (`subscribers unsuppress`)
