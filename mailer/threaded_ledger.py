"""The dispatcher's ledger (mailer.dispatch.Ledger) over SQL, with every query run on a thread of its own.

The dispatcher's event loop carries every SMTP connection; a commit that waits (SQLite busy with another
writer, a PostgreSQL round trip) must not freeze them all. Each call of one campaign's ledger runs, in
order, on one database thread: the loop awaits it while the connections carry on. A write that finds the
SQLite file locked by another process (a long `subscribers import`) is retried until it goes through, so
a claim is never abandoned because of someone else's transaction.

The two writes of every message (the mark before it goes to SMTP, its result after) are group-committed:
those that arrive while the thread is busy are written together in the next transaction. Each caller
still waits for its own commit, so nothing goes to SMTP unmarked, and a crash leaves at most the messages
in flight (one per connection) unrecorded.
"""
from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from mailer import driver_batch, ledger
from mailer.errors import DatabaseUnavailable
from mailer.ledger import Claimed, Expired, Recorded, Result, RowWrite
from mailer.owners import dead_here
from mailer.policy import BouncePolicy
from mailer.rate_limits import RateLimits

T = TypeVar("T")

LOCK_WAIT = 900.0  # give up on a locked database after this many seconds of retries (then the run stops)


def is_lock_conflict(exc: OperationalError) -> bool:
    """SQLite's 'database is locked' (past its busy timeout), PostgreSQL's deadlock or serialization failure."""
    text = str(exc.orig).lower()
    return "database is locked" in text or "deadlock detected" in text or "could not serialize" in text


def retry_locked(call: Callable[[], T], *, wait: float = LOCK_WAIT) -> T:
    """Run one ledger transaction, again and again while another writer holds the database."""
    deadline = time.monotonic() + wait
    pause = 0.05
    while True:
        try:
            return call()
        except OperationalError as exc:
            if not is_lock_conflict(exc) or time.monotonic() > deadline:
                if is_lock_conflict(exc):
                    raise DatabaseUnavailable(f"the database stayed locked for {wait:.0f} s: {exc.orig}") from None
                raise
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


def settle_dead_claims(engine: Engine, campaign_id: int) -> Expired:
    """Settle the claims of runs that died: past their lease, or at once when they ran on this host."""
    return ledger.expire_leases(engine, campaign_id, dead_here(ledger.lease_owners(engine, campaign_id)))


class _NotAllHeld(Exception):
    """A group's executemany touched fewer rows than it had writes."""


class ThreadedLedger:
    """One campaign's ledger; its calls are coroutines whose SQL runs in order on a single database thread."""

    def __init__(self, engine: Engine, campaign_id: int, policy: BouncePolicy) -> None:
        self.engine = engine
        self.campaign_id = campaign_id
        self.policy = policy
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ledger-{campaign_id}")
        self._lock = threading.Lock()
        self._grouped: list[tuple[Callable[[Connection], Any] | RowWrite, asyncio.Future[Any]]] = []
        self._flush_due = False
        self._conn: Connection | None = None  # the database thread's, for group commits
        self.commits = 0  # group commits made (for the benchmarks)
        self.grouped_writes = 0

    async def _in_group(self, write: Callable[[Connection], T] | RowWrite) -> T:
        """Run `write` in the next group commit and wait for that commit."""
        (result,) = await self._in_group_all([write])
        return result  # type: ignore[no-any-return]

    async def _in_group_all(self, writes: Sequence[Callable[[Connection], Any] | RowWrite]) -> list[Any]:
        """Run `writes`, in this order, in the same group commit, and wait for it."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in writes]
        with self._lock:
            self._grouped.extend(zip(writes, futures))
            schedule, self._flush_due = not self._flush_due, True
        if schedule:
            loop.run_in_executor(self._thread, self._flush, loop)
        await asyncio.wait(futures)  # a failed group fails every future in it alike
        return [future.result() for future in futures]

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the database thread: every write waiting, in one transaction; then each caller gets its answer."""
        with self._lock:
            batch, self._grouped, self._flush_due = self._grouped, [], False
        writes = [write for write, _ in batch]
        try:
            try:
                results = retry_locked(functools.partial(self._write_together, writes))
            except _NotAllHeld:  # some row's lease was settled by another run: find which, one write at a time
                results = retry_locked(functools.partial(self._write_one_by_one, writes))
        except BaseException as exc:  # noqa: BLE001: every caller of this group is told
            loop.call_soon_threadsafe(_fail_all, [f for _, f in batch], exc)
            return
        self.commits += 1
        self.grouped_writes += len(batch)
        loop.call_soon_threadsafe(_answer_all, [f for _, f in batch], results)

    def _write_together(self, writes: list[Callable[[Connection], Any] | RowWrite]) -> list[Any]:
        """One transaction: the RowWrites of each statement in one executemany, the other writes one by one.
        When a statement's rows were not all still held, _NotAllHeld rolls the whole transaction back."""
        results: list[Any] = [None] * len(writes)
        alike: dict[int, list[int]] = {}
        conn = self._connection()
        with conn.begin():
            for i, write in enumerate(writes):
                if isinstance(write, RowWrite):
                    alike.setdefault(id(write.statement), []).append(i)
                else:
                    results[i] = write(conn)
            for indexes in alike.values():
                rows = [writes[i] for i in indexes]
                if driver_batch.executemany(conn, rows[0].statement, [w.params for w in rows]) != len(rows):  # type: ignore[union-attr]
                    raise _NotAllHeld
                for i, row in zip(indexes, rows):
                    results[i] = row.held  # type: ignore[union-attr]
        return results

    def _write_one_by_one(self, writes: list[Callable[[Connection], Any] | RowWrite]) -> list[Any]:
        conn = self._connection()
        with conn.begin():
            return [write.run(conn) if isinstance(write, RowWrite) else write(conn) for write in writes]

    def _connection(self) -> Connection:
        """The database thread's own connection for group commits, kept for the run: taking one from the
        pool and handing it back (with its reset) for every group cost as much as the writes."""
        if self._conn is None or self._conn.closed:
            self._conn = self.engine.connect()
        return self._conn

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _run(self, function: Callable[..., T], *args: object, **kwargs: object) -> T:
        call = functools.partial(function, self.engine, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._thread, retry_locked, call)

    async def expire_leases(self) -> Expired:
        """Settle the claims of runs that died: past their lease, or at once when they ran on this host."""
        return await self._run(settle_dead_claims, self.campaign_id)

    async def state(self) -> tuple[str, str]:
        return await self._run(ledger.campaign_state, self.campaign_id)

    async def pause(self, reason: str) -> None:
        await self._run(ledger.pause, self.campaign_id, reason)

    async def mark_started(self) -> None:
        await self._run(ledger.mark_started, self.campaign_id)

    async def claim(self, owner: str, size: int, lease_seconds: int) -> list[Claimed]:
        return await self._run(ledger.claim_batch, self.campaign_id, owner, size, lease_seconds)

    async def mark_handed(self, delivery_id: int, owner: str) -> bool:
        return await self._in_group(ledger.mark_handed_write(delivery_id, owner))

    async def unhand(self, delivery_id: int, owner: str) -> None:
        await self._run(ledger.unhand, delivery_id, owner)

    async def record(self, claimed: Claimed, owner: str, result: Result) -> Recorded:
        return await self._in_group(self._result_write(claimed, owner, result))  # type: ignore[no-any-return]

    async def record_and_mark(self, claimed: Claimed, owner: str, result: Result, next_id: int) -> tuple[Recorded, bool]:
        """A message's result and the next message's mark, in one transaction: the result first."""
        recorded, held = await self._in_group_all([self._result_write(claimed, owner, result), ledger.mark_handed_write(next_id, owner)])
        return recorded, held

    def _result_write(self, claimed: Claimed, owner: str, result: Result) -> Callable[[Connection], Recorded] | RowWrite:
        plain = ledger.plain_success_write(claimed, owner, result)
        if plain is not None:
            return plain
        campaign_id, policy = self.campaign_id, self.policy
        return lambda conn: ledger.record_result_on(conn, claimed, campaign_id, owner, result, policy=policy)

    async def renew(self, owner: str, lease_seconds: int) -> int:
        return await self._run(ledger.renew_leases, owner, lease_seconds)

    async def release_unsent(self, owner: str) -> int:
        return await self._run(ledger.release_unsent, owner)

    async def has_delivered(self) -> bool:
        return await self._run(ledger.has_delivered, self.campaign_id)

    async def settle_bounces(self, event_ids: Sequence[int]) -> None:
        await self._run(ledger.settle_bounces, self.policy, event_ids)

    async def requeue_refused(self, delivery_ids: Sequence[int], event_ids: Sequence[int]) -> None:
        await self._run(ledger.requeue_refused, delivery_ids, event_ids)

    async def finish_if_done(self) -> bool:
        return await self._run(ledger.finish_if_done, self.campaign_id)

    def close(self) -> None:
        """Wait for the last call to finish, then end the database thread (its connection closed there)."""
        try:
            self._thread.submit(self._close_connection).result()
        except RuntimeError:  # closed before
            pass
        self._thread.shutdown(wait=True)


def _answer_all(futures: list[asyncio.Future[Any]], results: list[Any]) -> None:
    for future, result in zip(futures, results):
        if not future.done():
            future.set_result(result)


def _fail_all(futures: list[asyncio.Future[Any]], exc: BaseException) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(exc)


class SharedThrottle:
    """A relay's rate limits, drawn from token buckets in the database: shared by every worker, kept across
    restarts. Each message waits until every bucket it needs (per second, minute, hour, its domain) gives a token."""

    def __init__(self, engine: Engine, relay: str, limits: RateLimits) -> None:
        self.engine = engine
        self.relay = relay
        self.limits = limits
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="throttle")

    async def wait(self, recipient: str) -> None:
        buckets = self.limits.buckets(self.relay, recipient.rpartition("@")[2].lower())
        loop = asyncio.get_running_loop()
        while True:
            pause = await loop.run_in_executor(self._thread, retry_locked, functools.partial(ledger.take_tokens, self.engine, buckets))
            if pause <= 0:
                return
            await asyncio.sleep(min(pause, 5.0))

    def close(self) -> None:
        self._thread.shutdown(wait=True)
