"""Dispatcher: claim a batch -> build each message -> send over a pool of connections -> record each result.

One producer claims deliveries and builds their messages into a bounded queue (memory stays flat whatever
the list size); one worker per SMTP connection sends and records. Stopping (Ctrl-C, relay unreachable)
lets in-flight messages finish and be recorded, and gives every claimed-but-unsent delivery back.
"""
from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.engine import Engine

from mailer import ledger
from mailer.errors import TransportError
from mailer.ledger import Claimed, Result
from mailer.message import MessageBuilder, Outgoing, Recipient
from mailer.models import DeliveryStatus
from mailer.transport import RateLimiter, SmtpReply

OUTCOME_STATUS = {"sent": DeliveryStatus.SENT, "bounced": DeliveryStatus.BOUNCED, "deferred": DeliveryStatus.DEFERRED}


class Sender(Protocol):
    """What the dispatcher needs of an SMTP connection (mailer.transport.SmtpConnection is the real one)."""

    async def send(self, envelope_from: str, recipient: str, data: bytes) -> SmtpReply: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class DispatchOptions:
    batch_size: int = 200
    lease_seconds: int = 600
    max_attempts: int = 5
    retry_backoff: Sequence[int] = (300, 900, 3600, 14400)
    rate: float = 0.0


@dataclass
class RunSummary:
    counts: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    uncertain_from_earlier: int = 0
    released: int = 0
    error: str | None = None

    @property
    def attempted(self) -> int:
        return sum(v for k, v in self.counts.items() if k != DeliveryStatus.SKIPPED)


_Job = tuple[Claimed, Outgoing]


class Dispatcher:
    def __init__(
        self,
        engine: Engine,
        campaign_id: int,
        builder: MessageBuilder,
        senders: Sequence[Sender],
        options: DispatchOptions,
        *,
        on_result: Callable[[DeliveryStatus], None] | None = None,
    ) -> None:
        self.engine = engine
        self.campaign_id = campaign_id
        self.builder = builder
        self.senders = list(senders)
        self.options = options
        self.on_result = on_result or (lambda status: None)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.summary = RunSummary()
        self._limiter = RateLimiter(options.rate)
        self._unsent: dict[int, Claimed] = {}  # claimed, not yet handed to SMTP: released on stop
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Finish the messages in flight, then stop; the rest stays queued for the next run."""
        self._stopping.set()

    async def run(self) -> RunSummary:
        started = time.monotonic()
        self.summary.uncertain_from_earlier = ledger.expire_leases(self.engine, self.campaign_id)
        ledger.mark_started(self.engine, self.campaign_id)
        queue: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=4 * len(self.senders))
        producer = asyncio.create_task(self._produce(queue))
        workers = [asyncio.create_task(self._work(sender, queue)) for sender in self.senders]
        try:
            await asyncio.wait(workers)
        finally:
            # Normal end, relay failure or Ctrl-C (CancelledError): let workers finish what they hold.
            self._stopping.set()
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
            while not queue.empty():
                queue.get_nowait()
            for _ in workers:
                queue.put_nowait(None)
            await asyncio.gather(*workers, return_exceptions=True)
            await asyncio.gather(*(s.close() for s in self.senders), return_exceptions=True)
            self.summary.released = ledger.release(self.engine, list(self._unsent), self.owner)
            self._unsent.clear()
            ledger.finish_if_done(self.engine, self.campaign_id)
            self.summary.elapsed = time.monotonic() - started
        for task in (producer, *workers):
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]  # a bug or a database failure: not to be hidden
        return self.summary

    async def _produce(self, queue: asyncio.Queue[_Job | None]) -> None:
        opts = self.options
        while not self._stopping.is_set():
            batch = ledger.claim_batch(self.engine, self.campaign_id, self.owner, opts.batch_size, opts.lease_seconds)
            if not batch:
                break
            for claimed in batch:
                self._unsent[claimed.delivery_id] = claimed
            for claimed in batch:
                if not claimed.still_subscribed:
                    self._unsent.pop(claimed.delivery_id, None)
                    self._record(claimed, Result(DeliveryStatus.SKIPPED, None, "no longer subscribed"))
                    continue
                outgoing = self.builder.build(
                    Recipient(claimed.email, claimed.name, claimed.subscriber_id, claimed.token_version, claimed.delivery_id)
                )
                await queue.put((claimed, outgoing))
        for _ in self.senders:
            await queue.put(None)

    async def _work(self, sender: Sender, queue: asyncio.Queue[_Job | None]) -> None:
        while True:
            job = await queue.get()
            if job is None or self._stopping.is_set():
                return
            claimed, outgoing = job
            await self._limiter.wait()
            try:
                reply = await sender.send(outgoing.envelope_from, outgoing.recipient, outgoing.data)
            except TransportError as exc:
                # The relay cannot be reached or refuses our login (after the connection's own retries):
                # stop the run; this job and all others not yet sent go back to the queue.
                self.summary.error = self.summary.error or str(exc)
                self._stopping.set()
                return
            self._unsent.pop(claimed.delivery_id, None)
            self._record(claimed, Result(OUTCOME_STATUS[reply.outcome], reply.code, reply.text))

    def _record(self, claimed: Claimed, result: Result) -> None:
        opts = self.options
        status = ledger.record_result(
            self.engine, claimed, self.campaign_id, self.owner, result,
            max_attempts=opts.max_attempts, backoff=opts.retry_backoff,
        )
        self.summary.counts[status] += 1
        self.on_result(status)
