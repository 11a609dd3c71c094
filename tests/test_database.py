"""The schema comes from Alembic migrations and matches the models."""
from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

from mailer.database import open_database
from mailer.reader import SCHEMA_HEAD


def test_migrations_build_exactly_the_models_schema(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'm.sqlite'}")
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == SCHEMA_HEAD
    engine.dispose()


def test_the_same_migrations_build_the_same_schema_on_postgresql(postgresql_url: str) -> None:
    """The test database is a copy of a template that open_database migrated from empty."""
    engine = open_database(postgresql_url)
    with engine.connect() as conn:
        assert engine.dialect.name == "postgresql"
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == SCHEMA_HEAD
    engine.dispose()


def test_a_plain_postgresql_url_uses_psycopg_3(postgresql_url: str) -> None:
    engine = open_database(postgresql_url.replace("postgresql+psycopg://", "postgresql://"))
    assert engine.dialect.driver == "psycopg"
    engine.dispose()


def test_an_unreachable_postgresql_server_is_one_clear_error() -> None:
    import pytest

    from mailer.errors import DatabaseUnavailable

    with pytest.raises(DatabaseUnavailable, match="cannot reach the database postgresql\\+psycopg://mailer:\\*\\*\\*@127.0.0.1:9/x"):
        open_database("postgresql+psycopg://mailer:secret@127.0.0.1:9/x?connect_timeout=2")


def test_concurrent_first_opens_of_a_new_database_all_succeed(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'race.sqlite'}"
    code = f"from mailer.database import open_database; open_database({url!r})"
    processes = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(10)]
    results = [(p.communicate(timeout=60)[1], p.returncode) for p in processes]
    assert [err for err, code in results if code != 0] == []


def test_a_failing_migration_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    from alembic import command

    from mailer.database import alembic_config, schema_transaction

    engine = open_database(f"sqlite:///{tmp_path / 'm.sqlite'}")
    try:
        with schema_transaction(engine) as conn:  # what migrate() wraps around a migration
            conn.exec_driver_sql("ALTER TABLE delivery ADD COLUMN oops INTEGER")
            raise RuntimeError("the migration fails half-way")
    except RuntimeError:
        pass
    with engine.connect() as conn:
        assert "oops" not in [row[1] for row in conn.exec_driver_sql("PRAGMA table_info(delivery)")]
        command.check(alembic_config(conn))  # still exactly at head
    engine.dispose()


def test_writers_and_readers_do_not_lock_each_other_out(tmp_path: Path) -> None:
    """A read-then-write transaction (record_result on a deferral, imports) waits for another process's
    commit instead of failing at once, and opening the database takes no lock when the schema is current."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'busy.sqlite'}"
    open_database(url).dispose()
    writer = (
        "import time\nfrom mailer.database import open_database\nfrom sqlalchemy import text\n"
        f"e = open_database({url!r})\n"
        "end = time.monotonic() + 3\n"
        "while time.monotonic() < end:\n"
        "    with e.begin() as c:\n"
        "        c.execute(text(\"INSERT INTO mailing_list (name, title, language, created_at) VALUES "
        "(hex(randomblob(8)), '', 'it', '2026-01-01')\"))\n"
    )
    process = subprocess.Popen([sys.executable, "-c", writer])
    engine = open_database(url)
    failures = 0
    from sqlalchemy import text as sql

    n = 0
    while process.poll() is None:
        n += 1
        try:
            with engine.begin() as conn:
                conn.execute(sql("SELECT count(*) FROM mailing_list")).scalar_one()  # read, then write
                conn.execute(sql(f"INSERT INTO mailing_list (name, title, language, created_at) VALUES ('x{n}', '', 'it', '2026-01-01')"))
        except Exception:
            failures += 1
    engine.dispose()
    assert n > 100 and failures == 0


def test_the_schema_head_constant_is_the_newest_migration() -> None:
    """open_database() skips Alembic when the schema is at SCHEMA_HEAD; a new migration must move it."""
    from alembic.script import ScriptDirectory

    from mailer.database import SCHEMA_HEAD, alembic_config

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == SCHEMA_HEAD
