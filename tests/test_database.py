"""The schema comes from Alembic migrations and matches the models; old databases are adopted."""
from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel, create_engine

from mailer.database import BASELINE, open_database


def test_migrations_build_exactly_the_models_schema(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'm.sqlite'}")
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()


def test_a_database_made_before_migrations_is_stamped_not_rebuilt(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    old = create_engine(url)
    SQLModel.metadata.create_all(old)
    with old.begin() as conn:
        conn.execute(text("INSERT INTO mailing_list (name, title, language, created_at) VALUES ('wip', 'wip', 'it', '2026-01-01')"))
    old.dispose()
    engine = open_database(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM mailing_list")).scalars().all() == ["wip"]
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() >= BASELINE
        assert "delivery" in inspect(conn).get_table_names()
    engine.dispose()
