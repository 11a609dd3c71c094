"""The schema comes from Alembic migrations and matches the models."""
from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

from mailer.database import open_database


def test_migrations_build_exactly_the_models_schema(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'm.sqlite'}")
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()


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

    from mailer.database import alembic_config

    engine = open_database(f"sqlite:///{tmp_path / 'm.sqlite'}")
    with engine.connect() as conn:
        with conn.begin():
            try:  # a migration that adds a column, then fails
                conn.exec_driver_sql("ALTER TABLE delivery ADD COLUMN oops INTEGER")
                raise RuntimeError("migration failed")
            except RuntimeError:
                pass
            finally:
                conn.rollback()
        columns = [row[1] for row in conn.exec_driver_sql("PRAGMA table_info(delivery)")]
        assert "oops" not in columns
        command.check(alembic_config(conn))  # still exactly at head
    engine.dispose()
