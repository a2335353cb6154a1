"""The statements every message runs, on the driver's cursor.

`Connection.execute` spends about 60 µs of Python on a statement before the
database sees it (a cache key, an execution context, its parameters processed
one by one, a result object); the driver's own cursor takes about 6 µs. The
answering and sending paths run about ten statements per message, and the
answering thread is the worker's bottleneck (docs/BENCHMARKS.md), so those
statements are `Prepared`.

A `Prepared` statement is a Core statement compiled once per dialect by
SQLAlchemy, keeping what running it needs: the SQL text, the order of its
parameters, and SQLAlchemy's own conversions for each parameter and each
result column (`TypeEngine.bind_processor` / `result_processor`), so a
datetime, an enum or a JSON value is written and read exactly as
`Connection.execute` writes and reads it. It runs on the cursor of the
connection's current transaction (the caller's `engine.begin()` or session),
and a driver error comes out as SQLAlchemy's (`DBAPIError.instance`), so
callers handle it as before: a database that is down is a ServiceError for
the poll, never one failed case.

Only statements that SQLAlchemy would send unchanged can be prepared: no
Python-side column defaults to fill in, no expanding or literal parameters.
`Prepared` refuses any other when it compiles it.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import BindParameter, bindparam
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement

Processor = Callable[[Any], Any]


def typed_param(name: str, column: Any) -> BindParameter[Any]:
    """A bind parameter named `name` converted as `column` converts its values."""
    return bindparam(name, type_=column.type)


class Rows:
    """What a prepared statement returned: its rows (named tuples) and the rows it changed."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def first(self) -> Any:
        return self.rows[0] if self.rows else None

    def all(self) -> list[Any]:
        return self.rows

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

    def scalars(self) -> list[Any]:
        return [row[0] for row in self.rows]


class _Compiled:
    """One statement for one dialect: its SQL, its parameters' order, values and conversions."""

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None):
            raise ValueError("a statement with Python-side column defaults cannot be prepared")
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("a statement with expanding or literal parameters cannot be prepared")
        self.sql = compiled.string
        names = {name: bind for bind, name in compiled.bind_names.items()}
        order = list(compiled.positiontup or ()) if compiled.positional else list(names)
        self.positional = compiled.positional
        self.order = order
        self.given: dict[str, Processor | None] = {}  # caller's parameters
        self.fixed: dict[str, Any] = {}  # values written into the statement, converted once
        for name in order:
            bind = names[name]
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                self.given[name] = processor
            else:
                value = bind.effective_value
                self.fixed[name] = processor(value) if processor else value
        # what the statement itself returns (an INSERT that PostgreSQL's compiler gave an
        # implicit RETURNING of its key returns nothing, as through Connection.execute)
        self.columns = list(getattr(statement, "exported_columns", ()) or ())
        self.row_type: Any = None
        self.results: list[tuple[int, Processor]] = []

    def parameters(self, params: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        values = dict(self.fixed)
        for name, processor in self.given.items():
            value = params[name]
            values[name] = processor(value) if processor is not None else value
        return [values[name] for name in self.order] if self.positional else values

    def rows(self, cursor: Any, dialect: Dialect) -> list[Any]:
        if self.row_type is None:
            description = cursor.description
            if len(self.columns) != len(description):
                raise ValueError("the driver returned other columns than the statement names")
            self.row_type = namedtuple("Row", [col.key for col in self.columns], rename=True)  # type: ignore[misc]
            for i, col in enumerate(self.columns):
                processor = col.type.dialect_impl(dialect).result_processor(dialect, description[i][1])
                if processor is not None:
                    self.results.append((i, processor))
        rows = cursor.fetchall()
        if not self.results:
            return [self.row_type._make(row) for row in rows]
        out = []
        for row in rows:
            values = list(row)
            for i, processor in self.results:
                values[i] = processor(values[i])
            out.append(self.row_type._make(values))
        return out


class Prepared:
    """A Core statement run on the driver's cursor; `run` takes the statement's named parameters."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._by_dialect: dict[tuple[str, str, str], _Compiled] = {}

    def run(self, conn: Connection, params: Mapping[str, Any]) -> Rows:
        dialect = conn.dialect
        key = (dialect.name, dialect.driver, dialect.paramstyle)
        compiled = self._by_dialect.get(key)
        if compiled is None:
            compiled = self._by_dialect[key] = _Compiled(self.statement, dialect)
        if not conn.in_transaction():
            raise RuntimeError("a prepared statement runs inside the caller's transaction")
        arguments = compiled.parameters(params)
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            try:
                cursor.execute(compiled.sql, arguments)
            except dialect.loaded_dbapi.Error as exc:
                # as SQLAlchemy does for its own statements: a lost connection is not pooled again
                lost = dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)
                if lost:
                    conn.invalidate(exc)
                raise DBAPIError.instance(compiled.sql, arguments, exc, dialect.loaded_dbapi.Error,
                                          connection_invalidated=lost) from exc
            rows = compiled.rows(cursor, dialect) if compiled.columns and cursor.description else []
            return Rows(rows, cursor.rowcount)
        finally:
            cursor.close()
