"""The ledger's database work on its own thread (mailer.threaded_ledger, with group commits) against the
same SQL run on the event loop one transaction at a time, as the dispatcher did before: send rate, and the
longest the event loop went without running.

Two situations, each run with both ledgers in this one process, one after the other:
- quiet: nothing else uses the database;
- busy: another process holds SQLite's write lock for 2 s out of every 3 (as a long import does), with a
  busy timeout of 30 s. On the loop, every connection waits out each lock; off the loop, only the database
  thread does, and the connections finish the messages they already hold;
- and, with --postgresql (or MAILER_TEST_POSTGRESQL_URL), quiet on a PostgreSQL server.
The sink is Postfix's smtp-sink (bench/postfix_tools.py); messages are the May 2026 issue.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import Connection


from mailer.dispatch import Dispatcher, DispatchOptions
from mailer.ledger import RowWrite
from mailer.settings import load_settings, parse_smtp_url
from mailer.threaded_ledger import ThreadedLedger, retry_locked

sys.path.insert(0, str(Path(__file__).parent))
from databases import fresh_postgresql_database  # noqa: E402
from postfix_tools import find_postfix_tools, free_port  # noqa: E402
from send_rate import prepare_campaign  # noqa: E402

T = TypeVar("T")

LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
while True:
    db.execute("BEGIN IMMEDIATE")
    time.sleep(2.0)
    db.execute("COMMIT")
    time.sleep(1.0)
"""


class OnLoopLedger(ThreadedLedger):
    """The same SQL, run inline in the coroutine, one transaction per write: the dispatcher's database
    work as it was before."""

    async def _run(self, function: Callable[..., T], *args: object, **kwargs: object) -> T:
        return retry_locked(lambda: function(self.engine, *args, **kwargs))

    async def _in_group(self, write: Callable[[Connection], T] | RowWrite) -> T:
        def transaction() -> T:
            with self.engine.begin() as conn:
                return write.run(conn) if isinstance(write, RowWrite) else write(conn)  # type: ignore[no-any-return]

        return retry_locked(transaction)

    async def _in_group_all(self, writes: Sequence[Callable[[Connection], Any] | RowWrite]) -> list[Any]:
        return [await self._in_group(write) for write in writes]


async def loop_lag(stop: asyncio.Event) -> float:
    """The longest gap between two 10 ms ticks, beyond the 10 ms."""
    worst = 0.0
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.01)
        now = time.perf_counter()
        worst = max(worst, now - last - 0.01)
        last = now
    return worst


def one_run(kind: type[ThreadedLedger], port: int, count: int, folder: Path, busy: bool, postgresql: str = "") -> tuple[float, float]:
    path = folder / f"{kind.__name__}-{busy}.sqlite"
    url = fresh_postgresql_database(postgresql, f"bench_{kind.__name__.lower()}_{os.getpid()}") if postgresql else f"sqlite:///{path}"
    settings = load_settings({}).with_overrides(
        database_url=url, smtp=parse_smtp_url(f"smtp://127.0.0.1:{port}"), smtp_connections=4
    )
    engine, mailer, plan, campaign = prepare_campaign(settings, count)
    assert campaign.id is not None
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(path)]) if busy else None

    async def main() -> tuple[float, float, int]:
        ledger = kind(engine, campaign.id or 0, settings.bounce_policy)
        dispatcher = Dispatcher(
            ledger, mailer.edition_builders(plan.composed_by_language, campaign.id or 0, campaign.list_id),
            mailer.senders(), DispatchOptions(),
        )
        stop = asyncio.Event()
        lag = asyncio.create_task(loop_lag(stop))
        started = time.perf_counter()
        summary = await dispatcher.run()
        elapsed = time.perf_counter() - started
        stop.set()
        ledger.close()
        return elapsed, await lag, summary.counts["sent"]

    try:
        elapsed, lag, sent = asyncio.run(main())
    finally:
        if locker:
            locker.kill()
            locker.wait()
    engine.dispose()
    assert sent == count, f"{sent} of {count} sent"
    return sent / elapsed, lag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--postgresql", default=os.environ.get("MAILER_TEST_POSTGRESQL_URL", ""),
                        help="also measure on this PostgreSQL server (a role that may create databases)")
    args = parser.parse_args()
    port = free_port()
    tools = find_postfix_tools()
    if tools is None:
        raise SystemExit("Postfix's smtp-sink not found and could not be downloaded (apt-get download postfix)")
    sink = tools.start_sink(port)
    print(f"sink: Postfix smtp-sink; {args.messages} messages over 4 connections")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for busy in (False, True):
                figures = {kind: one_run(kind, port, args.messages, Path(tmp), busy) for kind in (OnLoopLedger, ThreadedLedger)}
                label = "busy (another writer holds the lock 2 s in 3)" if busy else "quiet"
                for kind, (rate, lag) in figures.items():
                    where = "on the event loop " if kind is OnLoopLedger else "on its own thread"
                    print(f"{label:48} ledger {where}: {rate:6.0f} msg/s, longest event-loop stall {lag * 1000:7.1f} ms")
                ratio = figures[ThreadedLedger][0] / figures[OnLoopLedger][0]
                print(f"{label:48} rate off the loop / on the loop: {ratio:.2f}")
            if args.postgresql:
                figures = {kind: one_run(kind, port, args.messages, Path(tmp), False, args.postgresql) for kind in (OnLoopLedger, ThreadedLedger)}
                for kind, (rate, lag) in figures.items():
                    where = "on the event loop " if kind is OnLoopLedger else "on its own thread"
                    print(f"{'PostgreSQL (same machine)':48} ledger {where}: {rate:6.0f} msg/s, longest event-loop stall {lag * 1000:7.1f} ms")
                ratio = figures[ThreadedLedger][0] / figures[OnLoopLedger][0]
                print(f"{'PostgreSQL (same machine)':48} rate off the loop / on the loop: {ratio:.2f}")
    finally:
        sink.terminate()
        sink.wait()


if __name__ == "__main__":
    main()
