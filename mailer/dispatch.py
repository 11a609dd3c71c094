"""Dispatcher: claim a batch -> build each message -> send over a pool of connections -> record each result.

One producer claims deliveries and builds their messages into a bounded queue (memory stays flat whatever
the list size); one worker per SMTP connection sends and records; a heartbeat renews the run's leases, so a
killed run's claims come back within one short lease. Stopping (stop(), a signal, a relay that refuses us)
lets in-flight messages finish and be recorded, and gives every claimed-but-unsent delivery back.

The dispatcher knows the ledger and the relay only through two small protocols (Ledger, Sender): no SQL,
no SMTP here, and every ledger call is awaited, so a slow database never stops the connections.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from mailer.bounces import classify
from mailer.errors import TransportError
from mailer.ledger import Claimed, Expired, Recorded, Result
from mailer.message import EditionBuilders, Outgoing, Recipient
from mailer.owners import owner_id
from mailer.retry import RetryRule
from mailer.statuses import CampaignStatus, DeliveryStatus
from mailer.replies import SmtpReply
from subscribers.models import utcnow

BUILD_AHEAD = 16  # messages built at once, ahead of the connections
BUILD_THREADS = 2  # threads that build DKIM-signed messages


class Ledger(Protocol):
    """What the dispatcher needs of one campaign's delivery ledger (mailer.threaded_ledger.ThreadedLedger is
    the real one). Each call is one transaction, awaited: the database work happens off the event loop."""

    async def expire_leases(self) -> Expired: ...
    async def mark_started(self) -> None: ...
    async def claim(self, owner: str, size: int, lease_seconds: int) -> list[Claimed]: ...
    async def mark_handed(self, delivery_id: int, owner: str) -> bool: ...
    async def unhand(self, delivery_id: int, owner: str) -> None: ...
    async def record(self, claimed: Claimed, owner: str, result: Result) -> Recorded: ...
    # a result and the next message's mark, committed in that order (together, or the result first)
    async def record_and_mark(self, claimed: Claimed, owner: str, result: Result, next_id: int) -> tuple[Recorded, bool]: ...
    async def renew(self, owner: str, lease_seconds: int) -> int: ...
    async def release_unsent(self, owner: str) -> int: ...
    async def has_delivered(self) -> bool: ...
    async def settle_bounces(self, event_ids: Sequence[int]) -> None: ...
    async def requeue_refused(self, delivery_ids: Sequence[int], event_ids: Sequence[int]) -> None: ...
    async def finish_if_done(self) -> bool: ...
    async def state(self) -> tuple[str, str]: ...  # the campaign's status and the reason for it
    async def pause(self, reason: str) -> None: ...


class Throttle(Protocol):
    """The relay's rate limits (mailer.threaded_ledger.SharedThrottle keeps them in the database)."""

    async def wait(self, recipient: str) -> None: ...


class Sender(Protocol):
    """What the dispatcher needs of an SMTP connection (mailer.transport.SmtpConnection is the real one)."""

    async def send(self, envelope_from: str, recipient: str, data: bytes) -> SmtpReply: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Lane:
    """One SMTP connection, with the name and rate limits of the relay it goes to."""

    sender: Sender
    relay: str = ""
    throttle: Throttle | None = None


@dataclass(frozen=True)
class DispatchOptions:
    batch_size: int = 100
    lease_seconds: int = 60  # renewed by the heartbeat every quarter of it; a dead run's claims expire after it
    retry: RetryRule = field(default_factory=RetryRule)
    max_rejections: int = 10  # this many 5xx in a row means the relay blocks us: stop
    control_interval: float = 1.0  # seconds between looks at the campaign's status (pause, cancel)
    pause_failure_rate: float = 0.0  # pause the campaign when this share of the last attempts failed (0: never)
    failure_window: int = 200  # ...out of this many


@dataclass
class RunSummary:
    counts: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    uncertain_from_earlier: int = 0  # a crashed run's messages that may have gone out
    requeued_from_earlier: int = 0  # a crashed run's claims that never reached SMTP
    released: int = 0  # claimed deliveries given back unsent
    stopped: bool = False  # stop() or a signal ended the run early
    halted: str = ""  # the campaign was paused or cancelled (by an operator or the failure rate): why
    error: str | None = None  # the relay refused us; the rest stays queued
    relays_lost: list[str] = field(default_factory=list)  # relays that failed while others carried the send on


_Job = tuple[Claimed, Outgoing]


class Dispatcher:
    def __init__(
        self,
        ledger: Ledger,
        builder: EditionBuilders,
        lanes: Sequence[Lane | Sender],
        options: DispatchOptions,
        *,
        on_result: Callable[[DeliveryStatus], None] | None = None,
    ) -> None:
        if not lanes:
            raise ValueError("the dispatcher needs at least one SMTP connection")
        self.ledger = ledger
        self.builder = builder
        self.lanes = [lane if isinstance(lane, Lane) else Lane(lane) for lane in lanes]
        self.senders = [lane.sender for lane in self.lanes]
        self.options = options
        self.on_result = on_result or (lambda status: None)
        self.owner = owner_id(self)
        self.summary = RunSummary()
        self._stopping = asyncio.Event()
        self._streak: list[tuple[int, int | None]] = []  # 5xx since the last delivery: (delivery, its bounce event)
        self._queue_size = 4 * len(self.senders)
        self._recent: deque[bool] = deque(maxlen=max(options.failure_window, 1))  # last attempts: failed or not
        self._recent_failed = 0  # how many of them failed
        self._relays_down: set[str] = set()
        self._handed_back: list[_Job] = []  # jobs a failed relay could not send, for the others
        self._busy = 0  # connections holding a job right now
        self.lease_seconds = max(options.lease_seconds, 4)
        self._build_threads = ThreadPoolExecutor(BUILD_THREADS, thread_name_prefix="build") if builder.signs else None

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
        expired = await self.ledger.expire_leases()
        self.summary.uncertain_from_earlier, self.summary.requeued_from_earlier = expired.uncertain, expired.requeued
        await self.ledger.mark_started()
        queue: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=self._queue_size)
        heartbeat = asyncio.create_task(self._heartbeat())
        producer = asyncio.create_task(self._produce(queue))
        workers = [asyncio.create_task(self._work(lane, queue)) for lane in self.lanes]
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
            if not self.summary.halted and not failed:  # the claims may have dried up because of a pause or cancel
                status, reason = await self.ledger.state()
                if status in (CampaignStatus.PAUSED, CampaignStatus.CANCELLED):
                    self.summary.halted = f"{status}" + (f": {reason}" if reason else "")
            if self.summary.halted or self.summary.stopped or self.summary.error or failed or not await self._relay_has_delivered():
                await self._return_streak()  # ended early, or nothing ever got through: nothing proves those bounces real
            else:
                await self._settle_streak()  # ran to the end, and this relay delivers this campaign: its last bounces are real
            heartbeat.cancel()
            if self._build_threads is not None:
                self._build_threads.shutdown(wait=True)
            await asyncio.gather(heartbeat, return_exceptions=True)
            # Every claim of this run not handed to SMTP goes back, by owner: also one whose answer a cancel cut off.
            self.summary.released = await self.ledger.release_unsent(self.owner)
            await self.ledger.finish_if_done()
            self.summary.elapsed = time.monotonic() - started
        for task in (producer, *workers):
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return self.summary

    async def _heartbeat(self) -> None:
        """Renew this run's leases while it works, so that only a dead run's claims ever expire; and watch the
        campaign's status, so a pause or cancel from any process stops this run within a second or so."""
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(self.options.control_interval)
            status, reason = await self.ledger.state()
            if status != CampaignStatus.SENDING:
                self.summary.halted = f"{status}" + (f": {reason}" if reason else "")
                self.stop()
                return
            if time.monotonic() - renewed >= self.lease_seconds / 4:
                await self.ledger.renew(self.owner, self.lease_seconds)
                renewed = time.monotonic()

    async def _produce(self, queue: asyncio.Queue[_Job | None]) -> None:
        opts = self.options
        while not self._stopping.is_set():
            batch = await self.ledger.claim(self.owner, opts.batch_size, self.lease_seconds)
            if not batch:
                break
            wanted = []
            for claimed in batch:
                if self._stopping.is_set():
                    return  # the rest of the batch is given back by release_unsent
                if not claimed.still_subscribed:
                    await self._record(claimed, Result(DeliveryStatus.SKIPPED, None, "no longer subscribed"))
                    continue
                wanted.append(claimed)
            for start in range(0, len(wanted), BUILD_AHEAD):
                chunk = wanted[start : start + BUILD_AHEAD]
                for claimed, outgoing in zip(chunk, await self._build(chunk)):
                    if self._stopping.is_set():
                        return
                    await queue.put((claimed, outgoing))
        for _ in self.senders:
            await queue.put(None)

    async def _build(self, chunk: list[Claimed]) -> list[Outgoing]:
        """The chunk's messages. Signed ones are built on threads: the RSA signature (about 0.25 ms) runs
        without Python's lock, beside the event loop and the connections it carries."""
        people = [
            (Recipient(c.email, c.name, c.subscriber_id, c.token_version, c.delivery_id), c.language) for c in chunk
        ]
        if self._build_threads is None or not people:
            return self._build_all(people)
        loop = asyncio.get_running_loop()
        share = -(-len(people) // BUILD_THREADS)  # one call per thread: each answer wakes the loop once
        parts = await asyncio.gather(*(
            loop.run_in_executor(self._build_threads, self._build_all, people[start : start + share])
            for start in range(0, len(people), share)
        ))
        return [outgoing for part in parts for outgoing in part]

    def _build_all(self, people: list[tuple[Recipient, str]]) -> list[Outgoing]:
        return [self.builder.build(recipient, language) for recipient, language in people]

    async def _work(self, lane: Lane, queue: asyncio.Queue[_Job | None]) -> None:
        """One connection's loop: mark a message handed, send it, record its reply. When the next message is
        already waiting (and no rate limit stands between them), its mark goes to the database with this
        one's result, in the same group commit: one commit to wait for per message instead of two, and the
        result of a message is still on record before the next one goes to SMTP."""
        sender = lane.sender
        failures_in_a_row = 0  # on this connection: each one waits longer before the next message
        last_call = False  # the producer is done: only jobs handed back by a failed relay are left
        marked: _Job | None = None  # the next job, already marked handed with the last result
        while True:
            if marked is not None:
                job: _Job | None = marked
            elif lane.relay in self._relays_down:
                return  # this relay failed on another of its connections: its jobs go to the others
            elif self._handed_back:
                job = self._handed_back.pop()
            elif last_call:
                if not self._busy:
                    return
                await asyncio.sleep(0.05)  # a connection still sending may yet hand a job back
                continue
            else:
                job = await queue.get()
                if job is None:
                    last_call = True
                    continue
            self._busy += 1
            try:
                claimed, outgoing = job
                if marked is not None:
                    marked = None
                    if self._stopping.is_set() or lane.relay in self._relays_down:
                        await self._give_back(job, lane)
                        return
                else:
                    if self._stopping.is_set():
                        return
                    if lane.throttle is not None:
                        await lane.throttle.wait(outgoing.recipient)
                    if self._stopping.is_set():
                        return  # stopped while waiting for our turn: the job goes back to the queue
                    if not await self.ledger.mark_handed(claimed.delivery_id, self.owner):
                        continue  # another run settled this lease: leave it alone
                try:
                    reply = await sender.send(outgoing.envelope_from, outgoing.recipient, outgoing.data)
                except TransportError as exc:
                    # The relay cannot be reached or refuses our login (after the connection's own retries):
                    # nothing left us. If another relay still works, the message waits for it; else the run
                    # stops and the delivery goes back with the rest of the run's claims.
                    if lane.relay not in self._relays_down:
                        self._relays_down.add(lane.relay)
                        self.summary.relays_lost.append(str(exc))
                    if self._relays_down >= {other.relay for other in self.lanes}:
                        self._fail(str(exc))
                    await self._give_back(job, lane)
                    return
                verdict = classify(reply)
                if verdict.stop_run or verdict.status is None:  # refused before the message: it goes back unsent
                    self._fail(f"the relay refused our sender {outgoing.envelope_from}: {reply.code} {reply.text}")
                    await self.ledger.unhand(claimed.delivery_id, self.owner)
                    return
                retry_at = None
                if verdict.status == DeliveryStatus.DEFERRED:
                    retry_at = self.options.retry.next_attempt(claimed.attempts, claimed.queued_at or utcnow(), utcnow())
                result = Result(
                    verdict.status, reply.code, reply.text, verdict.bounce_of(reply, claimed.email),
                    stage=reply.stage, retry_at=retry_at, relay=lane.relay,
                )
                following = None
                if lane.throttle is None and not self._stopping.is_set() and not last_call:
                    following, last_call = self._ready_job(queue)
                if following is None:
                    recorded = await self._record(claimed, result)
                else:
                    recorded, held = await self._record_and_mark(claimed, result, following[0])
                    marked = following if held else None  # not held: another run settled that lease
                # A 5xx is judged by the bounce policy only once a later message gets through: ten 5xx with no
                # delivery between them are more likely the relay's doing (quota, block, misconfiguration).
                if recorded.status == DeliveryStatus.BOUNCED:
                    self._streak.append((claimed.delivery_id, recorded.bounce_event))
                    if len(self._streak) >= self.options.max_rejections:
                        await self._trip(f"{reply.code} {reply.text}")
                        if marked is not None:
                            await self._give_back(marked, lane)
                        return
                elif verdict.status == DeliveryStatus.SENT:
                    await self._settle_streak()
                if await self._failure_rate_reached(recorded.status, reply):
                    if marked is not None:
                        await self._give_back(marked, lane)
                    return
                if verdict.status in (DeliveryStatus.DEFERRED, DeliveryStatus.UNCERTAIN):
                    failures_in_a_row += 1  # a burst of failures slows this connection down: 0.1 s, 0.2 s, ... up to 5 s
                    await asyncio.sleep(min(0.05 * 2**failures_in_a_row, 5.0))
                else:
                    failures_in_a_row = 0
            finally:
                self._busy -= 1

    def _ready_job(self, queue: asyncio.Queue[_Job | None]) -> tuple[_Job | None, bool]:
        """The next job if one is waiting now, and whether the producer is done."""
        if self._handed_back:
            return self._handed_back.pop(), False
        if queue.empty():
            return None, False
        job = queue.get_nowait()
        return job, job is None

    async def _give_back(self, job: _Job, lane: Lane) -> None:
        """A job marked handed that did not go out: unmark it; a working relay's connection takes it, or
        else it goes back to the queue with the run's other claims."""
        await self.ledger.unhand(job[0].delivery_id, self.owner)
        if lane.relay in self._relays_down and self._relays_down < {other.relay for other in self.lanes}:
            self._handed_back.append(job)

    async def _failure_rate_reached(self, status: DeliveryStatus, reply: SmtpReply) -> bool:
        """Keep the last attempts' outcomes; past the configured share of failures, pause the campaign, saying why."""
        limit = self.options.pause_failure_rate
        if limit <= 0:
            return False
        failed_now = status in (DeliveryStatus.DEFERRED, DeliveryStatus.UNCERTAIN, DeliveryStatus.FAILED)
        if len(self._recent) == self._recent.maxlen:
            self._recent_failed -= self._recent[0]  # the oldest outcome leaves the window
        self._recent.append(failed_now)
        self._recent_failed += failed_now
        failed = self._recent_failed
        if len(self._recent) < self.options.failure_window or failed < limit * len(self._recent) or self._stopping.is_set():
            return False
        reason = (
            f"{failed} of the last {len(self._recent)} attempts failed (limit {limit:.0%}); "
            f"last reply: {reply.code or 'no reply'} {reply.text}"
        )[:480]
        self.summary.halted = f"{CampaignStatus.PAUSED}: {reason}"
        await self.ledger.pause(reason)
        self.stop()
        return True

    async def _relay_has_delivered(self) -> bool:
        """Has any message of this campaign got through (in this run or an earlier one)?"""
        if not self._streak or self.summary.counts[DeliveryStatus.SENT]:
            return True
        return await self.ledger.has_delivered()

    async def _settle_streak(self) -> None:
        """The relay delivers: the bounces met since the last delivery were real; the policy judges them."""
        if self._streak:
            streak, self._streak = self._streak, []
            await self.ledger.settle_bounces([e for _, e in streak if e is not None])

    async def _return_streak(self) -> None:
        """The 5xx since the last delivery are unproven: back to the queue, addresses untouched."""
        if self._streak:
            streak, self._streak = self._streak, []
            await self.ledger.requeue_refused([d for d, _ in streak], [e for _, e in streak if e is not None])

    async def _trip(self, last_reply: str) -> None:
        """Too many 5xx in a row: stop, and give those deliveries back to the queue, addresses untouched."""
        count = len(self._streak)
        self._fail(f"the relay refused {count} messages in a row (last: {last_reply}); they stay queued")
        await self._return_streak()

    async def _record(self, claimed: Claimed, result: Result) -> Recorded:
        recorded = await self.ledger.record(claimed, self.owner, result)
        self._count(recorded)
        return recorded

    async def _record_and_mark(self, claimed: Claimed, result: Result, following: Claimed) -> tuple[Recorded, bool]:
        recorded, held = await self.ledger.record_and_mark(claimed, self.owner, result, following.delivery_id)
        self._count(recorded)
        return recorded, held

    def _count(self, recorded: Recorded) -> None:
        self.summary.counts[recorded.status] += 1
        self.on_result(recorded.status)
