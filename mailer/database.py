"""Opening the database: SQLite (WAL) by default, PostgreSQL by URL; the schema brought to the latest
Alembic revision (mailer/migrations) whenever it is behind, so an upgrade of the code upgrades the data in place."""
from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, OperationalError
from sqlmodel import create_engine

import mailer.models  # noqa: F401  (registers the ledger tables)
from mailer.errors import DatabaseUnavailable
from mailer.reader import SCHEMA_HEAD
from mailer.settings import mask_url
import subscribers.models  # noqa: F401  (registers the store tables)

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK = 0x6D61696C  # PostgreSQL advisory lock key held while the schema is upgraded


def open_database(url: str, *, upgrade: bool = True, busy_timeout: float = 30.0) -> Engine:
    """An engine for `url`, with the schema in place (unless `upgrade` is false: `mailer db check` only looks).
    Relative SQLite paths are relative to the working directory."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUnavailable(f"database URL is not valid: {mask_url(url)!r}") from None
    if parsed.drivername == "postgresql":  # SQLAlchemy's default would be psycopg2; ours is psycopg 3
        parsed = parsed.set(drivername="postgresql+psycopg")
        url = parsed.render_as_string(hide_password=False)
    try:
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": busy_timeout})
            event.listen(engine, "connect", functools.partial(_sqlite_pragmas, busy_ms=int(busy_timeout * 1000)))
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        hint = (
            "install the PostgreSQL driver: pip install 'wip-mailer[postgresql]'"
            if parsed.get_backend_name() == "postgresql"
            else "the database URL should start with sqlite:/// or postgresql+psycopg://"
        )
        raise DatabaseUnavailable(f"no driver for {parsed.drivername!r} ({exc}); {hint}") from None
    except OSError as exc:
        raise DatabaseUnavailable(f"cannot create the database folder for {mask_url(url)}: {exc.strerror}") from None
    try:
        if upgrade:
            migrate(engine)
        else:
            current_revision(engine)  # reach it, or fail here with the reason
    except OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseUnavailable(f"cannot reach the database {mask_url(url.split('?', 1)[0])}: {reason}") from None
    return engine


def alembic_config(connection: Connection | None = None) -> "Config":
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine) -> None:
    """Upgrade the schema when it is behind. The common case (already current) is one read and takes no lock,
    so reports never wait for a running send; Alembic itself is imported only when there is work for it."""
    if current_revision(engine) == SCHEMA_HEAD:
        return
    from alembic import command

    with schema_transaction(engine) as connection:
        command.upgrade(alembic_config(connection), "head")


@dataclass(frozen=True)
class SchemaState:
    revision: str | None  # the database's Alembic revision (None: empty database)
    head: str  # the newest revision this code knows
    differences: list[str]  # where the tables differ from the models (empty when in step)

    @property
    def current(self) -> bool:
        return self.revision == self.head and not self.differences


def schema_state(engine: Engine) -> SchemaState:
    """Where the database's schema stands against this code's migrations and models; changes nothing."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    revision = current_revision(engine)
    with engine.connect() as connection:
        found = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata) if revision else []
    return SchemaState(revision, SCHEMA_HEAD, [_describe(d) for d in found])


def _describe(difference: Any) -> str:
    """One line for an Alembic autogenerate difference (a tuple, or a list of tuples for a column's changes)."""
    first = difference[0] if isinstance(difference, list) else difference
    action, *rest = first
    names = [getattr(x, "name", None) or str(x) for x in rest if x is not None][:3]
    return f"{action.replace('_', ' ')}: {' '.join(str(n) for n in names)}"


def current_revision(engine: Engine) -> str | None:
    """The schema's Alembic revision, or None for a new database."""
    with engine.connect() as connection:
        try:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except DatabaseError as exc:
            if "alembic_version" in str(exc.orig):  # no such table (SQLite) / relation does not exist (PostgreSQL)
                return None
            raise


@contextmanager
def schema_transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction for schema changes, committed only if all of it worked.

    On SQLite the driver would commit around DDL on its own; for this connection only, it is switched to
    manual mode and the transaction begun with BEGIN IMMEDIATE, which also makes concurrent first opens
    wait for each other. Ordinary transactions keep the driver's default, which begins at the first write.
    """
    with engine.connect() as connection:
        sqlite = engine.dialect.name == "sqlite"
        driver = connection.connection.dbapi_connection
        previous = driver.isolation_level if sqlite else None  # type: ignore[union-attr]
        try:
            if sqlite:
                driver.isolation_level = None  # type: ignore[union-attr]
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                connection.begin()
                # Several workers starting at once on a new version: one migrates, the others wait, then find it done.
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            yield connection
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        finally:
            if sqlite:
                driver.isolation_level = previous  # type: ignore[union-attr]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, busy_ms: int = 30000) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (reports, web) never block the sender
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at each checkpoint; safe with WAL
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={busy_ms}")  # a writer waits this long for another's lock, then retries (mailer.threaded_ledger)
    cursor.close()
