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
