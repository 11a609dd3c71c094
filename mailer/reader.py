"""Read-only access to the database through its DB-API driver, for reports.

Reports are what operators open most (`mailer report`, `mailer campaigns`, the admin pages). Their few
queries are plain SQL (mailer.ledger_report), run here on a DB-API connection: one lent by the application's
engine when it is open, or, when nothing else has opened the database yet and its schema is current, a
SQLite connection of its own, so that `mailer report` starts without importing SQLAlchemy at all.
"""
from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA_HEAD = "0006"  # the newest migration (tests/test_database.py checks it): a current schema needs no Alembic

_NAMED = re.compile(r"(?<![:\w]):(\w+)")


class Reader:
    """Runs SQL written with ':name' placeholders on a DB-API connection, whichever style its driver takes."""

    def __init__(self, connection: Any, *, sqlite: bool) -> None:
        self.connection = connection
        self.sqlite = sqlite

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql if self.sqlite else _NAMED.sub(r"%(\1)s", sql), params)
            return cursor.fetchall()
        finally:
            cursor.close()

    def value(self, sql: str, **params: Any) -> Any:
        found = self.rows(sql, **params)
        return found[0][0] if found else None

    def time_param(self, moment: datetime) -> Any:
        """A timestamp to compare with stored ones: on SQLite the UTC text SQLAlchemy writes (no offset)."""
        utc = moment.astimezone(timezone.utc)
        return utc.strftime("%Y-%m-%d %H:%M:%S.%f") if self.sqlite else utc

    @staticmethod
    def time(value: Any) -> datetime | None:
        """A stored timestamp as an aware UTC datetime, as the models give it (sqlmodel's UTCDateTime):
        SQLite returns UTC text without an offset, PostgreSQL a datetime with its zone."""
        if value is None:
            return None
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)

    def close(self) -> None:
        self.connection.close()


def open_sqlite_reader(url: str) -> Reader | None:
    """A reader on the SQLite file `url` names, if it exists and its schema is current; otherwise None, and
    the caller opens the database the usual way (which creates or migrates it, and reports errors)."""
    path = sqlite_path(url)
    if path is None or not path.is_file():
        return None
    try:
        connection = sqlite3.connect(path, timeout=30)
    except sqlite3.Error:
        return None
    try:
        current = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:  # no such table, not a database, locked past the timeout
        current = None
    if current != (SCHEMA_HEAD,):
        connection.close()
        return None
    return Reader(connection, sqlite=True)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLAlchemy SQLite URL (sqlite:///relative, sqlite:////absolute); None for anything else."""
    for scheme in ("sqlite:///", "sqlite+pysqlite:///"):
        if url.startswith(scheme):
            path = url[len(scheme):].split("?", 1)[0]
            return Path(path) if path and path != ":memory:" else None
    return None
