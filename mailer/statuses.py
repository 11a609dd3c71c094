"""Campaign and delivery statuses: plain values, importable without the ORM (reports read them on a fast path)."""
from __future__ import annotations

from enum import StrEnum


class CampaignStatus(StrEnum):
    SENDING = "sending"  # has deliveries still queued, in flight or deferred
    DONE = "done"  # every delivery has a final status


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"  # claimed by a worker under a lease
    SENT = "sent"
    DEFERRED = "deferred"  # 4xx or lost connection: retried after a backoff
    BOUNCED = "bounced"  # 5xx at SMTP time
    FAILED = "failed"  # deferred too many times
    SKIPPED = "skipped"  # subscriber no longer active when the delivery was claimed
    UNCERTAIN = "uncertain"  # lease ran out: may or may not have been sent; not resent automatically


FINAL_STATUSES = (
    DeliveryStatus.SENT,
    DeliveryStatus.BOUNCED,
    DeliveryStatus.FAILED,
    DeliveryStatus.SKIPPED,
    DeliveryStatus.UNCERTAIN,
)
