"""The dispatcher's ledger (mailer.dispatch.Ledger) over SQL, with every query run on a thread of its own.

The dispatcher's event loop carries every SMTP connection; a commit that waits (SQLite busy with another
writer, a PostgreSQL round trip) must not freeze them all. Each call of one campaign's ledger runs, in
order, on one database thread: the loop awaits it while the connections carry on. A write that finds the
SQLite file locked by another process (a long `subscribers import`) is retried until it goes through, so
a claim is never abandoned because of someone else's transaction.
"""
from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from mailer import ledger
from mailer.errors import DatabaseUnavailable
from mailer.ledger import Claimed, Expired, Recorded, Result
from mailer.policy import BouncePolicy

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


class ThreadedLedger:
    """One campaign's ledger; its calls are coroutines whose SQL runs in order on a single database thread."""

    def __init__(self, engine: Engine, campaign_id: int, policy: BouncePolicy) -> None:
        self.engine = engine
        self.campaign_id = campaign_id
        self.policy = policy
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ledger-{campaign_id}")

    async def _run(self, function: Callable[..., T], *args: object, **kwargs: object) -> T:
        call = functools.partial(function, self.engine, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._thread, retry_locked, call)

    async def expire_leases(self) -> Expired:
        return await self._run(ledger.expire_leases, self.campaign_id)

    async def mark_started(self) -> None:
        await self._run(ledger.mark_started, self.campaign_id)

    async def claim(self, owner: str, size: int, lease_seconds: int) -> list[Claimed]:
        return await self._run(ledger.claim_batch, self.campaign_id, owner, size, lease_seconds)

    async def mark_handed(self, delivery_id: int, owner: str) -> bool:
        return await self._run(ledger.mark_handed, delivery_id, owner)

    async def unhand(self, delivery_id: int, owner: str) -> None:
        await self._run(ledger.unhand, delivery_id, owner)

    async def record(self, claimed: Claimed, owner: str, result: Result) -> Recorded:
        return await self._run(ledger.record_result, claimed, self.campaign_id, owner, result, policy=self.policy)

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
        """Wait for the last call to finish, then end the database thread."""
        self._thread.shutdown(wait=True)
