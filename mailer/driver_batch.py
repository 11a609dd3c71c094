"""One SQL statement over many rows of parameters, sent through the database driver's own executemany.

The ledger writes two small UPDATEs per message (the mark before SMTP, the result after), grouped by the
hundred. SQLAlchemy compiles them once, but through `Connection.execute` it still spends more time on each
row's parameters (their dictionary, type lookups, its execution context) than the database spends
running it: the ledger's thread held Python's lock for a quarter of a DKIM-signed send, 86% of it there.
Here SQLAlchemy still compiles the statement and supplies every type's bind processor, so the values the
driver receives are those SQLAlchemy would have sent (tests/test_driver_batch.py compares the rows
written both ways, on SQLite and PostgreSQL); only the per-row machinery is skipped.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError


@dataclass(frozen=True)
class DriverStatement:
    """A statement compiled for one dialect: its SQL, the order of its parameters, their processors."""

    sql: str
    names: tuple[str, ...]  # every parameter of the SQL, in order
    positional: bool
    processors: Mapping[str, Callable[[Any], Any]]
    constants: Mapping[str, Any]  # parameters the statement fixes itself (already processed)

    def rows(self, params: Sequence[Mapping[str, object]]) -> list[Any]:
        """Each parameter set as the driver takes it: processed, with the statement's own constants."""
        if self.positional:
            return [tuple(self._value(name, given) for name in self.names) for given in params]
        return [{name: self._value(name, given) for name in self.names} for given in params]

    def _value(self, name: str, given: Mapping[str, object]) -> Any:
        if name in self.constants:
            return self.constants[name]
        processor = self.processors.get(name)
        return given[name] if processor is None else processor(given[name])


_compiled: dict[tuple[int, str], tuple[Any, DriverStatement]] = {}  # the statement is kept, so its id stays its own


def driver_statement(statement: Any, dialect: Dialect, sample: Mapping[str, object]) -> DriverStatement:
    """`statement` compiled for `dialect` (once per process; statements here are module constants).
    `sample` is one set of the caller's parameters: those it names vary per row, the rest are constants."""
    key = (id(statement), dialect.name)
    if key in _compiled:
        return _compiled[key][1]
    compiled = statement.compile(dialect=dialect)
    every = compiled.construct_params(dict(sample))  # every parameter the SQL takes, by the name it uses
    names = tuple(compiled.positiontup) if compiled.positional else tuple(every)  # type: ignore[arg-type]
    processors = {}
    for name in names:
        processor = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)  # as SQLAlchemy does
        if processor is not None:
            processors[name] = processor
    constants = {
        name: processors[name](every[name]) if name in processors else every[name] for name in names if name not in sample
    }
    found = DriverStatement(compiled.string, names, compiled.positional, processors, constants)
    _compiled[key] = (statement, found)
    return found


def executemany(conn: Connection, statement: Any, params: Sequence[Mapping[str, object]]) -> int:
    """Run `statement` once per parameter set, in the connection's transaction; the rows it touched."""
    prepared = driver_statement(statement, conn.dialect, params[0])
    rows = prepared.rows(params)
    cursor = conn.connection.cursor()
    dbapi_error = conn.dialect.loaded_dbapi.Error
    try:
        cursor.executemany(prepared.sql, rows)
        return int(cursor.rowcount)
    except dbapi_error as exc:  # as SQLAlchemy raises it, so that a locked database is retried (threaded_ledger)
        raise DBAPIError.instance(prepared.sql, rows, exc, dbapi_error, dialect=conn.dialect, ismulti=True) from None
    finally:
        cursor.close()
