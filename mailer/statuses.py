"""Campaign and delivery statuses: plain values, importable without the ORM (reports read them on a fast path)."""
from __future__ import annotations

from enum import StrEnum


class CampaignStatus(StrEnum):
    SCHEDULED = "scheduled"  # waits for its time (`mailer send --at`), then workers start it
    SENDING = "sending"  # has deliveries still queued, in flight or deferred
    PAUSED = "paused"  # an operator (or the failure-rate limit) stopped it; resume sends the rest
    CANCELLED = "cancelled"  # an operator stopped it for good: what was not sent never will be
    DONE = "done"  # every delivery has a final status


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"  # claimed by a worker under a lease
    SENT = "sent"
    DEFERRED = "deferred"  # 4xx or lost connection: retried after a backoff
    BOUNCED = "bounced"  # 5xx at SMTP time
    FAILED = "failed"  # deferred too many times
    SKIPPED = "skipped"  # subscriber no longer active when the delivery was claimed
    UNCERTAIN = "uncertain"  # the line went after the end of DATA: may have been sent; not resent automatically
    CANCELLED = "cancelled"  # its campaign was cancelled before it was sent


FINAL_STATUSES = (
    DeliveryStatus.SENT,
    DeliveryStatus.BOUNCED,
    DeliveryStatus.FAILED,
    DeliveryStatus.SKIPPED,
    DeliveryStatus.UNCERTAIN,
    DeliveryStatus.CANCELLED,
)
