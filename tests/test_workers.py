"""`mailer worker`, `mailer send --queue | --at`, `mailer campaign pause|resume|cancel`: real processes, a
real SMTP server, SQLite and PostgreSQL."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlmodel import Session, select

from mailer import ledger
from mailer.database import open_database
from mailer.editions import editions_of
from mailer.issue import load_issue
from mailer.models import Campaign, Delivery
from mailer.settings import PROJECT_ROOT, Settings
from subscribers import store
from tests.conftest import ISSUE_2026, add_people
from tests.fault_server import FaultHandler, fault_server
from tests.test_cli import MAILER, run


@pytest.fixture
def settings(any_settings: Settings) -> Settings:
    """These tests run on SQLite and on PostgreSQL."""
    return any_settings


@pytest.fixture
def sink() -> tuple[FaultHandler, int]:
    with fault_server() as server:
        yield server


def environment(settings: Settings, port: int, **extra: str) -> dict[str, str]:
    return {"MAILER_DATABASE_URL": settings.database_url, "MAILER_SMTP_URL": f"smtp://127.0.0.1:{port}", **extra}


def people(settings: Settings | str, count: int) -> list[str]:
    emails = [f"lettore{n:05d}@example.org" for n in range(count)]
    engine = open_database(settings if isinstance(settings, str) else settings.database_url)
    add_people(engine, emails)
    engine.dispose()
    return emails


def statuses(settings: Settings) -> dict[str, int]:
    engine = open_database(settings.database_url)
    with engine.connect() as conn:
        found = dict(conn.execute(text("SELECT status, count(*) FROM delivery GROUP BY status")).all())
    engine.dispose()
    return found


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def start_worker(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        MAILER + ["worker", "--poll", "0.2"], env={**os.environ, **env}, cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def stop_worker(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    return out


def test_send_queue_leaves_the_campaign_to_a_worker(settings: Settings, sink: tuple[FaultHandler, int]) -> None:
    handler, port = sink
    emails = people(settings, 30)
    env = environment(settings, port)
    queued = run(["send", str(ISSUE_2026), "--queue", "--yes"], env)
    assert queued.returncode == 0, queued.stderr
    assert "campaign 1 started: `mailer worker` processes send it" in queued.stdout
    assert handler.accepted == {} and statuses(settings) == {"queued": 30}
    worked = run(["worker", "--once"], env)
    assert worked.returncode == 0, worked.stderr
    assert "campaign 1 (2026-05): 30 sent" in worked.stdout
    assert handler.accepted == {e: 1 for e in emails}
    assert run(["worker", "--once"], env).stdout == ""  # nothing left to do


def test_pause_and_resume_from_another_process_stop_and_restart_the_worker(settings: Settings, sink: tuple[FaultHandler, int]) -> None:
    handler, port = sink
    emails = people(settings, 300)
    env = environment(settings, port, MAILER_SMTP_RATE="60")
    assert run(["send", str(ISSUE_2026), "--queue", "--yes"], env).returncode == 0
    worker = start_worker(env)
    try:
        wait_for(lambda: sum(handler.accepted.values()) >= 40, 60, "the worker to start sending")
        paused = run(["campaign", "pause", "1", "--reason", "wrong link in item 3"], env)
        assert paused.returncode == 0 and "campaign 1 paused (wrong link in item 3)" in paused.stdout, paused.stderr
        time.sleep(2.5)  # within seconds: the worker sees the status at its next look (every second)
        at_pause = sum(handler.accepted.values())
        time.sleep(1.5)
        assert sum(handler.accepted.values()) == at_pause < 300  # it stopped, with most still to go
        assert statuses(settings).get("sending", 0) == 0  # its claims went back to the queue
        resumed = run(["campaign", "resume", "1"], env)
        assert resumed.returncode == 0, resumed.stderr
        wait_for(lambda: statuses(settings) == {"sent": 300}, 60, "the rest to be sent")
    finally:
        out = stop_worker(worker)
    assert handler.accepted == {e: 1 for e in emails}  # each exactly once across the pause
    assert "paused: wrong link in item 3" in out


def test_cancel_ends_a_campaign_for_good(settings: Settings, sink: tuple[FaultHandler, int]) -> None:
    handler, port = sink
    people(settings, 20)
    env = environment(settings, port)
    assert run(["send", str(ISSUE_2026), "--queue", "--yes"], env).returncode == 0
    cancelled = run(["campaign", "cancel", "1", "--yes", "--reason", "sent by mistake"], env)
    assert cancelled.returncode == 0 and "20 deliveries will not be sent" in cancelled.stdout, cancelled.stderr
    assert run(["worker", "--once"], env).stdout == "" and handler.accepted == {}
    assert statuses(settings) == {"cancelled": 20}
    again = run(["send", str(ISSUE_2026), "--yes"], env)
    assert again.returncode == 1 and "campaign 1 of issue 2026-05 is cancelled (sent by mistake)" in again.stderr
    assert run(["campaign", "resume", "1"], env).returncode == 1


def test_send_at_schedules_and_a_worker_starts_it_then(settings: Settings, sink: tuple[FaultHandler, int]) -> None:
    handler, port = sink
    emails = people(settings, 10)
    env = environment(settings, port)
    soon = datetime.now(timezone.utc) + timedelta(seconds=3)
    scheduled = run(["send", str(ISSUE_2026), "--at", soon.isoformat(timespec="seconds"), "--yes"], env)
    assert scheduled.returncode == 0 and "campaign 1 scheduled for" in scheduled.stdout, scheduled.stderr
    assert run(["worker", "--once"], env).stdout == "" and statuses(settings) == {}  # not yet: nobody enqueued
    people_later = ["late@example.org"]  # joins before the time: gets it
    engine = open_database(settings.database_url)
    add_people(engine, people_later)
    engine.dispose()
    time.sleep(max(0.0, (soon - datetime.now(timezone.utc)).total_seconds()) + 0.2)
    worked = run(["worker", "--once"], env)
    assert "campaign 1 (2026-05): 11 sent" in worked.stdout, worked.stderr
    assert handler.accepted == {e: 1 for e in [*emails, *people_later]}


def test_a_schedule_long_past_is_refused_without_confirmation(settings: Settings, sink: tuple[FaultHandler, int]) -> None:
    handler, port = sink
    people(settings, 3)
    env = environment(settings, port)
    past = (datetime.now() - timedelta(hours=3)).strftime("%Y-%m-%d %H:%M")  # local time, as an editor types it
    refused = run(["send", str(ISSUE_2026), "--at", past, "--yes"], env)
    assert refused.returncode == 1 and "hours in the past; nothing scheduled (pass --start-late" in refused.stderr
    assert statuses(settings) == {} and "Traceback" not in refused.stderr
    late = run(["send", str(ISSUE_2026), "--at", past, "--start-late", "--yes"], env)
    assert late.returncode == 0 and "campaign 1 started" in late.stdout, late.stderr
    assert run(["send", str(ISSUE_2026), "--at", "next tuesday", "--yes"], env).stderr.startswith("error: --at 'next tuesday' is not a time")


def test_two_sends_creating_the_same_campaign_at_once_share_it(settings: Settings) -> None:
    """The other send's INSERT lands between our look-up and our own INSERT: we must take theirs."""
    engine = open_database(settings.database_url)
    add_people(engine, ["a@example.org"])
    editions = editions_of(load_issue(ISSUE_2026))
    theirs: list[int] = []

    def the_other_send_first(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.startswith("INSERT INTO campaign ") and not theirs:
            theirs.append(0)
            with Session(engine) as other:
                wip = store.get_list(other, "work-in-progress")
                theirs[0] = ledger.open_campaign(other, editions, wip, allow_changed=False).id or 0

    event.listen(engine, "before_cursor_execute", the_other_send_first)
    try:
        with Session(engine) as session:
            ours = ledger.open_campaign(session, editions, store.get_list(session, "work-in-progress"), allow_changed=False)
    finally:
        event.remove(engine, "before_cursor_execute", the_other_send_first)
    with Session(engine) as session:
        assert [c.id for c in session.exec(select(Campaign))] == [ours.id] == theirs
    engine.dispose()


def test_a_send_beside_a_long_import_waits_for_the_lock_instead_of_failing(tmp_path: Path, sink: tuple[FaultHandler, int]) -> None:
    """SQLite: another process holds the write lock past the busy timeout (1 s here) three times."""
    handler, port = sink
    url = f"sqlite:///{tmp_path / 'locked.sqlite'}"
    emails = people(url, 60)
    env = {"MAILER_DATABASE_URL": url, "MAILER_SMTP_URL": f"smtp://127.0.0.1:{port}", "MAILER_SQLITE_BUSY_TIMEOUT": "1",
           "MAILER_SMTP_RATE": "40"}
    locker = subprocess.Popen(
        ["python3", "-c", (
            "import sqlite3, sys, time\n"
            f"db = sqlite3.connect({str(tmp_path / 'locked.sqlite')!r}, isolation_level=None)\n"
            "time.sleep(0.5)\n"
            "for _ in range(3):\n"
            "    db.execute('BEGIN IMMEDIATE'); time.sleep(2.5); db.execute('COMMIT'); time.sleep(0.3)\n"
        )],
    )
    try:
        sent = run(["send", str(ISSUE_2026), "--yes"], env)
    finally:
        locker.wait(30)
    assert sent.returncode == 0, sent.stderr
    assert "database is locked" not in sent.stderr + sent.stdout
    assert handler.accepted == {e: 1 for e in emails}
    with Session(engine := open_database(url)) as session:
        assert {d.status for d in session.exec(select(Delivery))} == {"sent"}
    engine.dispose()


def test_a_send_says_when_another_process_holds_deliveries(settings: Settings, sink: tuple[FaultHandler, int]) -> None:
    handler, port = sink
    people(settings, 5)
    env = environment(settings, port)
    assert run(["send", str(ISSUE_2026), "--queue", "--yes"], env).returncode == 0
    engine = open_database(settings.database_url)
    with engine.begin() as conn:  # a worker on another machine claimed two (alive or not, we cannot tell from here)
        conn.execute(text(
            "UPDATE delivery SET status = 'sending', lease_owner = 'elsewhere:4242:1', lease_until = :until "
            "WHERE id IN (SELECT id FROM delivery ORDER BY id LIMIT 2)"
        ), {"until": (datetime.now(timezone.utc) + timedelta(seconds=60)).strftime("%Y-%m-%d %H:%M:%S.%f")})
    engine.dispose()
    planned = run(["send", str(ISSUE_2026), "--dry-run"], env)
    assert "2 deliveries are being sent by another process" in planned.stdout, planned.stdout
    assert "they come back within 60 s, when its lease runs out" in planned.stdout
