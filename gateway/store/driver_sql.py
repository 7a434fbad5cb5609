"""Fixed statements run on the database driver's own cursor, for those that requests make
all the time (transaction begins, reads and writes of resources, index rows, audit records,
document chunks): under load SQLAlchemy's per-statement work (cache key, compiled-cache
lookup, parameter and result processing) costs ~50 us, more than the statement itself (measured with
``bench/bench_auth.py`` and ``bench/bench_audit.py``).

Only constant SQL over our own schema, every value bound as a parameter; it runs on the
caller's connection, so inside the caller's transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, LargeBinary, bindparam
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import BindParameter


class DriverQuery:
    def __init__(self, sql: str, *, binary: bool = False, planned_per_run: bool = False) -> None:
        """``sql`` with ``?`` for each parameter (rewritten to ``%s`` for psycopg). ``binary``:
        psycopg receives the rows in PostgreSQL's binary format, for bytea columns of
        document content that would otherwise come as hex text, twice their size, to decode.
        ``planned_per_run``: PostgreSQL plans the statement for each run (psycopg does not
        prepare it), for one whose plan depends on a table's size: a plan kept from when the
        table was small goes on scanning it whole as it grows."""
        self._sql = {"qmark": sql, "format": sql.replace("?", "%s")}
        self._options: dict[str, Any] = {"binary": True} if binary else {}
        if planned_per_run:
            self._options["prepare"] = False

    @property
    def sql(self) -> str:
        """The statement, with ``?`` for each parameter (to build larger statements of)."""
        return self._sql["qmark"]

    def first(self, conn: Connection, *parameters: Any) -> tuple[Any, ...] | None:
        """The first row, or None."""

        def fetch(cursor: Any, sql: str) -> Any:
            cursor.execute(sql, parameters, **self._driver_options(conn))
            return cursor.fetchone()

        row = self._execute(conn, fetch)
        return tuple(row) if row is not None else None

    def all(self, conn: Connection, *parameters: Any) -> list[tuple[Any, ...]]:
        """Every row, for statements known to return few."""

        def fetch(cursor: Any, sql: str) -> Any:
            cursor.execute(sql, parameters, **self._driver_options(conn))
            return cursor.fetchall()

        return [tuple(row) for row in self._execute(conn, fetch)]

    def first_then_commit(self, conn: Connection, *parameters: Any) -> tuple[Any, ...] | None:
        """PostgreSQL: ``first``, and COMMIT the transaction in the same round trip (psycopg's
        pipeline), so that no work of this process, nor its wait for the GIL, comes between
        the statement and the COMMIT: the row locks it takes are held only while PostgreSQL
        works. SQLAlchemy's own COMMIT then finds no transaction and does nothing."""
        raw = conn.connection.driver_connection
        assert raw is not None

        def fetch(cursor: Any, sql: str) -> Any:
            with raw.pipeline():
                cursor.execute(sql, parameters, **self._driver_options(conn))
                raw.commit()
            return cursor.fetchone()

        row = self._execute(conn, fetch)
        return tuple(row) if row is not None else None

    def run(self, conn: Connection, *parameters: Any) -> None:
        options = self._driver_options(conn)
        self._execute(conn, lambda cursor, sql: cursor.execute(sql, parameters, **options))

    def run_later(self, conn: Connection, *parameters: Any) -> None:
        """``run``, for a write whose result nobody reads: on PostgreSQL it travels with the
        transaction's next statement, in one pipeline (``_on_cursor``), so a push's inserts,
        its shares and its audit record cost one round trip, not one each. Its error, if
        any, is raised by that statement, or by the COMMIT (``send_queued``)."""
        raw: Any = conn.connection.driver_connection
        if conn.dialect.paramstyle == "qmark" or raw.autocommit:  # no transaction to wait in
            self.run(conn, *parameters)
            return
        conn.info.setdefault(_QUEUED, []).append((self._sql["format"], parameters, self._options))

    def run_many(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        self._execute(conn, lambda cursor, sql: cursor.executemany(sql, rows))

    def _driver_options(self, conn: Connection) -> dict[str, Any]:
        return {} if conn.dialect.paramstyle == "qmark" else self._options

    def _execute(self, conn: Connection, call: Callable[[Any, str], Any]) -> Any:
        sql = self._sql["qmark" if conn.dialect.paramstyle == "qmark" else "format"]
        return _on_cursor(conn, sql, call)


# A connection's ``info`` key for the writes ``run_later`` queued in its transaction.
_QUEUED = "zorgbrug_queued_writes"


def _on_cursor(conn: Connection, sql: str, call: Callable[[Any, str], Any]) -> Any:
    dbapi = conn.dialect.loaded_dbapi
    raw: Any = conn.connection.driver_connection
    queued = conn.info.pop(_QUEUED, None)
    cursor = raw.cursor()
    try:
        if queued is None:
            return call(cursor, sql)
        # In psycopg's pipeline what was queued goes with this statement: one round trip.
        # Not for a statement alone: entering and leaving the pipeline cost psycopg more
        # CPU than the round trip it saves (BEGIN with a transaction's first SELECT: 137 us
        # against 73 us, time.thread_time over 3,000 transactions).
        with raw.pipeline():
            for queued_sql, parameters, options in queued or ():
                cursor.execute(queued_sql, parameters, **options)
            return call(cursor, sql)
    except dbapi.Error as error:  # as SQLAlchemy would raise it, for callers that catch it
        raise DBAPIError.instance(sql, None, error, dbapi.Error) from error
    finally:
        cursor.close()


def send_queued(conn: Connection) -> None:
    """Run the writes ``run_later`` queued, before a statement SQLAlchemy runs or a COMMIT
    (``gateway.store.database`` calls it on both)."""
    if _QUEUED in conn.info:
        _on_cursor(conn, "SELECT 1", lambda cursor, sql: None)


def drop_queued(conn: Connection) -> None:
    """Forget the writes queued in a transaction that is rolled back."""
    conn.info.pop(_QUEUED, None)


def insert_into(table: str, columns: Sequence[str], returning: str = "") -> DriverQuery:
    """An INSERT of ``columns`` into ``table`` (names of our own schema, never input), every
    value bound, in the order of ``columns``."""
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"  # noqa: S608
    return DriverQuery(sql + (f" RETURNING {returning}" if returning else ""))


def _element_type(column: Column[Any]) -> str:
    for kind, name in ((BigInteger, "bigint"), (Boolean, "boolean"), (LargeBinary, "bytea")):
        if isinstance(column.type, kind):
            return name
    return "text"


def json_rows(columns: Sequence[Column[Any]]) -> str:
    """PostgreSQL: a row source named ``json_rows`` with ``columns``, made by
    ``json_to_recordset`` of one JSON parameter (an array of objects keyed by column name).
    Any number of rows travel as one string; arrays psycopg checks and dumps element by
    element, which cost the gateway more than the rows cost PostgreSQL."""
    typed = ", ".join(f'"{c.name}" {_element_type(c)}' for c in columns)
    return f"json_to_recordset(?::json) AS json_rows({typed})"


def constant(value: Any) -> BindParameter[Any]:
    """``value`` written into the statement's SQL instead of bound: PostgreSQL keeps one plan
    for every call of a statement only when that plan is not much worse than one made for the
    call's values, and a generic plan cannot see a bound constant (the audit basis's facts
    statement, bound: 20 ms generic, so planned anew on every call; written: 0.03 ms)."""
    if isinstance(value, tuple):
        return bindparam(None, value, expanding=True, literal_execute=True)
    return bindparam(None, value, literal_execute=True)


def rows_of(conn: Connection, statement: Any, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Every row of a SQLAlchemy Core SELECT (one built once, e.g. under ``functools.cache``),
    run on the driver's cursor: compiled once per dialect and per length of each expanding
    (IN) parameter, not on every execution. ``values`` must be of the driver's own types (no
    bind or result processing: a Boolean column comes back as SQLite's 0 or 1)."""
    lengths = tuple(len(v) if isinstance(v, list | tuple) else -1 for v in values.values())
    shape = _shape(statement, conn.dialect, tuple(values), lengths)
    parameters = shape.parameters(values)

    def fetch(cursor: Any, sql: str) -> Any:
        cursor.execute(sql, parameters)
        return cursor.fetchall()

    return [tuple(row) for row in _on_cursor(conn, shape.sql, fetch)]


class _Shape:
    """One statement compiled for one dialect and the lengths of its lists of values."""

    def __init__(self, statement: Any, dialect: Any, values: Mapping[str, Any]) -> None:
        compiled = statement.compile(dialect=dialect)
        written = {compiled.bind_names[bind] for bind in compiled.literal_execute_params}
        self.defaults = {  # its literals, but for those written into the SQL (``constant``)
            name: value
            for name, value in compiled.construct_params(_check=False).items()
            if name not in written
        }
        # Values computed for each execution (the clock of a visibility check), never kept.
        self.computed: Mapping[str, Callable[[], Any]] = {
            name: bind.callable for bind, name in compiled.bind_names.items() if bind.callable
        }
        state = compiled.construct_expanded_state({**self.defaults, **values})
        self.sql: str = state.statement
        self.expansion: Mapping[str, Sequence[str]] = state.parameter_expansion
        self.order: Sequence[str] | None = state.positiontup if compiled.positional else None

    def parameters(self, values: Mapping[str, Any]) -> Any:
        flat: dict[str, Any] = {}
        now = {name: compute() for name, compute in self.computed.items()}
        for name, value in {**self.defaults, **now, **values}.items():
            expanded = self.expansion.get(name)
            if expanded is None:
                flat[name] = value
            else:
                flat.update(zip(expanded, value, strict=True))
        return flat if self.order is None else tuple(flat[name] for name in self.order)


@functools.lru_cache(maxsize=512)
def _shape(
    statement: Any, dialect: Any, names: tuple[str, ...], lengths: tuple[int, ...]
) -> _Shape:
    # Sample values give each list its length: the compiled SQL holds no value of a call.
    sample = {name: [0] * n if n >= 0 else None for name, n in zip(names, lengths, strict=True)}
    return _Shape(statement, dialect, sample)
