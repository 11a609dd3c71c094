"""Dispatcher: claim a batch -> build each message -> send over a pool of connections -> record each result.

One producer claims deliveries and builds their messages into a bounded queue (memory stays flat whatever
the list size); one worker per SMTP connection sends and records. Stopping (stop(), a signal, a relay that
refuses us) lets in-flight messages finish and be recorded, and gives every claimed-but-unsent delivery back.
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
from mailer.bounces import classify
from mailer.errors import TransportError
from mailer.ledger import Claimed, Recorded, Result
from mailer.message import EditionBuilders, Outgoing, Recipient
from mailer.models import DeliveryStatus
from mailer.policy import BouncePolicy
from mailer.transport import RateLimiter, SmtpReply


class Sender(Protocol):
    """What the dispatcher needs of an SMTP connection (mailer.transport.SmtpConnection is the real one)."""

    async def send(self, envelope_from: str, recipient: str, data: bytes) -> SmtpReply: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class DispatchOptions:
    batch_size: int = 20
    lease_seconds: int = 600
    max_attempts: int = 5
    retry_backoff: Sequence[int] = (300, 900, 3600, 14400)
    rate: float = 0.0
    max_rejections: int = 10  # this many 5xx in a row means the relay blocks us: stop
    policy: BouncePolicy = field(default_factory=BouncePolicy)  # what a bounce does to an address


@dataclass
class RunSummary:
    counts: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    uncertain_from_earlier: int = 0  # a crashed run's messages that may have gone out
    requeued_from_earlier: int = 0  # a crashed run's claims that never reached SMTP
    released: int = 0  # claimed deliveries given back unsent
    stopped: bool = False  # stop() or a signal ended the run early
    error: str | None = None  # the relay refused us; the rest stays queued


_Job = tuple[Claimed, Outgoing]


class Dispatcher:
    def __init__(
        self,
        engine: Engine,
        campaign_id: int,
        builder: EditionBuilders,
        senders: Sequence[Sender],
        options: DispatchOptions,
        *,
        on_result: Callable[[DeliveryStatus], None] | None = None,
    ) -> None:
        if not senders:
            raise ValueError("the dispatcher needs at least one SMTP connection")
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
        self._streak: list[tuple[int, int | None]] = []  # 5xx since the last delivery: (delivery, its bounce event)
        self._queue_size = 4 * len(self.senders)
        if options.rate > 0:
            # A claimed row waits at most (batch + queue) sends; its lease must outlast that comfortably.
            wait = (options.batch_size + self._queue_size + len(self.senders)) / options.rate
            self.lease_seconds = max(options.lease_seconds, int(3 * wait))
        else:
            self.lease_seconds = options.lease_seconds

    def stop(self) -> None:
        """Finish the messages in flight, then stop; the rest stays queued for the next run."""
        if not self._stopping.is_set():
            self.summary.stopped = True
            self._stopping.set()

    def _fail(self, message: str) -> None:
        self.summary.error = self.summary.error or message
        self._stopping.set()

    async def run(self) -> RunSummary:
        started = time.monotonic()
        expired = ledger.expire_leases(self.engine, self.campaign_id)
        self.summary.uncertain_from_earlier, self.summary.requeued_from_earlier = expired.uncertain, expired.requeued
        ledger.mark_started(self.engine, self.campaign_id)
        queue: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=self._queue_size)
        producer = asyncio.create_task(self._produce(queue))
        workers = [asyncio.create_task(self._work(sender, queue)) for sender in self.senders]
        try:
            pending: set[asyncio.Task[None]] = {producer, *workers}
            while any(not w.done() for w in workers):
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if any(t.exception() for t in done if not t.cancelled()):
                    break  # a database failure or a bug: stop the others, then raise it below
        finally:
            # Normal end, stop, relay failure, error, or cancellation: let workers finish what they hold.
            self._stopping.set()
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
            while not queue.empty():
                queue.get_nowait()
            for _ in workers:
                queue.put_nowait(None)
            await asyncio.gather(*workers, return_exceptions=True)
            await asyncio.gather(*(s.close() for s in self.senders), return_exceptions=True)
            failed = any(t.done() and not t.cancelled() and t.exception() is not None for t in (producer, *workers))
            if self.summary.stopped or self.summary.error or failed or not self._relay_has_delivered():
                self._return_streak()  # ended early, or nothing ever got through: nothing proves those bounces real
            else:
                self._settle_streak()  # ran to the end, and this relay delivers this campaign: its last bounces are real
            self.summary.released = ledger.release(self.engine, list(self._unsent), self.owner)
            self._unsent.clear()
            ledger.finish_if_done(self.engine, self.campaign_id)
            self.summary.elapsed = time.monotonic() - started
        for task in (producer, *workers):
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return self.summary

    async def _produce(self, queue: asyncio.Queue[_Job | None]) -> None:
        opts = self.options
        while not self._stopping.is_set():
            batch = ledger.claim_batch(self.engine, self.campaign_id, self.owner, opts.batch_size, self.lease_seconds)
            if not batch:
                break
            for claimed in batch:
                self._unsent[claimed.delivery_id] = claimed
            for claimed in batch:
                if self._stopping.is_set():
                    return
                if not claimed.still_subscribed:
                    self._unsent.pop(claimed.delivery_id, None)
                    self._record(claimed, Result(DeliveryStatus.SKIPPED, None, "no longer subscribed"))
                    continue
                outgoing = self.builder.build(
                    Recipient(claimed.email, claimed.name, claimed.subscriber_id, claimed.token_version, claimed.delivery_id),
                    claimed.language,
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
            if self._stopping.is_set():
                return  # stopped while waiting for our turn: the job goes back to the queue
            if not ledger.mark_handed(self.engine, claimed.delivery_id, self.owner):
                self._unsent.pop(claimed.delivery_id, None)  # another run settled this lease: leave it alone
                continue
            try:
                reply = await sender.send(outgoing.envelope_from, outgoing.recipient, outgoing.data)
            except TransportError as exc:
                # The relay cannot be reached or refuses our login (after the connection's own retries).
                self._fail(str(exc))
                return
            verdict = classify(reply)
            if verdict.stop_run or verdict.status is None:
                self._fail(f"the relay refused our sender {outgoing.envelope_from}: {reply.code} {reply.text}")
                return
            self._unsent.pop(claimed.delivery_id, None)
            # A 5xx is judged by the bounce policy only once a later message gets through: ten 5xx with no
            # delivery between them are more likely the relay's doing (quota, block, misconfiguration).
            recorded = self._record(claimed, Result(verdict.status, reply.code, reply.text, verdict.bounce_of(reply, claimed.email)))
            if recorded.status == DeliveryStatus.BOUNCED:
                self._streak.append((claimed.delivery_id, recorded.bounce_event))
                if len(self._streak) >= self.options.max_rejections:
                    self._trip(f"{reply.code} {reply.text}")
                    return
            elif verdict.status == DeliveryStatus.SENT:
                self._settle_streak()

    def _relay_has_delivered(self) -> bool:
        """Has any message of this campaign got through (in this run or an earlier one)?"""
        if not self._streak or self.summary.counts[DeliveryStatus.SENT]:
            return True
        return ledger.count_by_status(self.engine, self.campaign_id).get(DeliveryStatus.SENT, 0) > 0

    def _settle_streak(self) -> None:
        """The relay delivers: the bounces met since the last delivery were real; the policy judges them."""
        ledger.settle_bounces(self.engine, self.options.policy, [e for _, e in self._streak if e is not None])
        self._streak.clear()

    def _return_streak(self) -> None:
        """The 5xx since the last delivery are unproven: back to the queue, addresses untouched."""
        ledger.requeue_refused(self.engine, [d for d, _ in self._streak], [e for _, e in self._streak if e is not None])
        self._streak.clear()

    def _trip(self, last_reply: str) -> None:
        """Too many 5xx in a row: stop, and give those deliveries back to the queue, addresses untouched."""
        count = len(self._streak)
        self._return_streak()
        self._fail(f"the relay refused {count} messages in a row (last: {last_reply}); they stay queued")

    def _record(self, claimed: Claimed, result: Result) -> Recorded:
        opts = self.options
        recorded = ledger.record_result(
            self.engine, claimed, self.campaign_id, self.owner, result,
            max_attempts=opts.max_attempts, backoff=opts.retry_backoff, policy=opts.policy,
        )
        self.summary.counts[recorded.status] += 1
        self.on_result(recorded.status)
        return recorded
