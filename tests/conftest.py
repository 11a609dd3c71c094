"""Shared fixtures: real SQLite files in a temporary folder, settings from the real config, sample issues."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

from mailer.capture import CaptureServer, capture_in_thread
from mailer.database import open_database
from mailer.settings import PROJECT_ROOT, Settings, load_settings
from subscribers import store

EXAMPLES = PROJECT_ROOT / "examples"
ISSUE_2026 = EXAMPLES / "2026-05-work-in-progress.md"
ISSUE_2021 = EXAMPLES / "2021-05-work-in-progress.md"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({"MAILER_DATABASE_URL": f"sqlite:///{tmp_path / 'mailer.sqlite'}"})


@pytest.fixture
def engine(settings: Settings) -> Engine:
    engine = open_database(settings.database_url)
    yield engine
    engine.dispose()


def add_people(engine: Engine, emails: list[str], list_name: str = "work-in-progress") -> None:
    with Session(engine) as session:
        mailing_list = store.get_or_create_list(session, list_name)
        people = [store.NewSubscriber(store.normalise_address(e), f"Nome {n}", "it") for n, e in enumerate(emails)]
        store.add_subscribers(session, mailing_list, people, source="test")
        session.commit()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"MAILER_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite'}", "COLUMNS": "120"}


@pytest.fixture
def relay() -> Iterator[CaptureServer]:
    """A capture relay in its own thread (it answers 550 to ghost* addresses), for commands run as subprocesses."""
    with capture_in_thread(rule=lambda r: "550 5.1.1 User unknown" if r.startswith("ghost") else None) as server:
        yield server


# PostgreSQL: a server whose URL (with a role that may create databases) is in MAILER_TEST_POSTGRESQL_URL;
# .ci/run starts Debian's. Each test gets a database of its own, copied from one migrated template.
POSTGRESQL_URL = os.environ.get("MAILER_TEST_POSTGRESQL_URL", "")
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgresql_template() -> Iterator[str]:
    """The name of a migrated database to copy, on the test server."""
    if not POSTGRESQL_URL:
        if os.environ.get("MAILER_REQUIRE_POSTGRESQL"):
            pytest.fail("MAILER_REQUIRE_POSTGRESQL is set but MAILER_TEST_POSTGRESQL_URL names no server")
        pytest.skip("no PostgreSQL server: set MAILER_TEST_POSTGRESQL_URL (as .ci/run does)")
    name = f"mailer_template_{os.getpid()}"
    _admin(f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
    open_database(_on(name)).dispose()
    yield name
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgresql_url(postgresql_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test."""
    name = f"mailer_test_{os.getpid()}_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}" TEMPLATE "{postgresql_template}"')
    yield _on(name)
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def any_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings on SQLite, then on PostgreSQL: for the store, ledger and dispatcher tests, which run on both."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'mailer.sqlite'}"
    else:
        url = request.getfixturevalue("postgresql_url")
    return load_settings({"MAILER_DATABASE_URL": url})


def _on(database: str) -> str:
    return make_url(POSTGRESQL_URL).set(database=database).render_as_string(hide_password=False)


def _admin(*statements: str) -> None:
    import psycopg

    url = make_url(POSTGRESQL_URL)
    with psycopg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, dbname=url.database or "postgres",
        autocommit=True,
    ) as connection:
        for statement in statements:
            connection.execute(statement)


def write_short_issue(folder: Path) -> Path:
    """The May 2026 issue cut to its first two items (a ~10 KB message), for the tests that send tens of
    thousands: what they test is the ledger and the SMTP session, not the size of the mail."""
    text = ISSUE_2026.read_text(encoding="utf-8")
    head, _, body = text.partition("\n---\n")
    items = body.split("\n## ")
    path = folder / "2026-05-work-in-progress.md"
    path.write_text(head + "\n---\n" + "\n## ".join(items[:3]) + "\n", encoding="utf-8")
    return path
