"""The ledger's group writes through the driver's executemany store exactly what SQLAlchemy's execute stores
(on SQLite and PostgreSQL): same values, same formats, and the same count of rows still held."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy.engine import Engine

from mailer import driver_batch, ledger
from mailer.app import Mailer
from mailer.issue import load_issue
from mailer.ledger import Result
from mailer.settings import Settings
from mailer.statuses import DeliveryStatus
from tests.conftest import ISSUE_2026, add_people

COLUMNS = "status, lease_owner, lease_until, handed_at, smtp_code, smtp_reply, smtp_stage, updated_at, sent_at, attempts"


@pytest.fixture
def settings(any_settings: Settings) -> Settings:
    return any_settings


def claimed_rows(engine: Engine, settings: Settings, count: int) -> list[ledger.Claimed]:
    add_people(engine, [f"reader{n}@example.org" for n in range(count)])
    mailer = Mailer(settings, engine=engine)
    campaign = mailer.start_send(mailer.plan_send(load_issue(ISSUE_2026), None))
    return ledger.claim_batch(engine, campaign.id or 0, "worker-1", count, 600)


def stored(engine: Engine, delivery_id: int) -> tuple[object, ...]:
    """The row as the driver returns it (text on SQLite), not as the ORM would read it back."""
    with engine.connect() as conn:
        return tuple(conn.exec_driver_sql(f"SELECT {COLUMNS} FROM delivery WHERE id = {int(delivery_id)}").one())


def test_marks_and_results_written_through_the_driver_are_those_sqlalchemy_writes(engine: Engine, settings: Settings) -> None:
    by_sqlalchemy, by_driver, lost = claimed_rows(engine, settings, 3)
    now = datetime(2026, 12, 4, 21, 30, 5, 123456, tzinfo=timezone.utc)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE delivery SET lease_owner = 'someone-else' WHERE id = {int(lost.delivery_id)}")
    for make in (
        lambda c: ledger.mark_handed_write(c.delivery_id, "worker-1"),
        lambda c: ledger.plain_success_write(c, "worker-1", Result(DeliveryStatus.SENT, 250, "2.0.0 Ok: queued as 4F", stage="data")),
    ):
        writes = [make(c) for c in (by_sqlalchemy, by_driver, lost)]
        params = [{**w.params, "now": now, "updated_at": now, "sent_at": now} if "sent_at" in w.params else {**w.params, "now": now}
                  for w in writes]
        with engine.begin() as conn:
            assert conn.execute(writes[0].statement, [params[0]]).rowcount == 1
            assert driver_batch.executemany(conn, writes[1].statement, params[1:]) == 1  # the third row is not held
        assert stored(engine, by_driver.delivery_id) == stored(engine, by_sqlalchemy.delivery_id)
    final = stored(engine, by_driver.delivery_id)
    assert final[0] == "sent" and final[1] is None and final[4] == 250 and final[3] is not None and final[8] is not None
    assert stored(engine, lost.delivery_id)[0] == "sending"  # the row another owner holds is untouched


def test_a_locked_database_is_the_error_sqlalchemy_raises_so_the_ledger_retries_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The ledger retries a write that finds SQLite locked (mailer.threaded_ledger.retry_locked) only when
    it sees SQLAlchemy's OperationalError: the driver's own must not slip past it."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from mailer.settings import load_settings
    from mailer.database import open_database
    from mailer.threaded_ledger import is_lock_conflict

    url = f"sqlite:///{tmp_path / 'locked.sqlite'}"
    engine = open_database(url, busy_timeout=0.05)
    claimed = claimed_rows(engine, load_settings({}).with_overrides(database_url=url), 1)[0]
    other = sqlite3.connect(tmp_path / "locked.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's long write
    try:
        with pytest.raises(OperationalError) as raised, engine.begin() as conn:
            write = ledger.mark_handed_write(claimed.delivery_id, "worker-1")
            driver_batch.executemany(conn, write.statement, [write.params])
        assert is_lock_conflict(raised.value)
    finally:
        other.execute("ROLLBACK")
        other.close()
        engine.dispose()
