"""Fixed statements run on the database driver's own cursor, for those that requests make
all the time (transaction begins, reads and writes of resources, index rows, audit records,
document chunks): under load SQLAlchemy's per-statement work (cache key, compiled-cache
lookup, parameter and result processing) costs ~50 us, more than the statement itself (measured with
``bench/bench_auth.py`` and ``bench/bench_audit.py``).

Only constant SQL over our own schema, every value bound as a parameter; it runs on the
caller's connection, so inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError


class DriverQuery:
    def __init__(self, sql: str) -> None:
        """``sql`` with ``?`` for each parameter (rewritten to ``%s`` for psycopg)."""
        self._sql = {"qmark": sql, "format": sql.replace("?", "%s")}

    def first(self, conn: Connection, *parameters: Any) -> tuple[Any, ...] | None:
        """The first row, or None."""

        def fetch(cursor: Any, sql: str) -> Any:
            cursor.execute(sql, parameters)
            return cursor.fetchone()

        row = self._execute(conn, fetch)
        return tuple(row) if row is not None else None

    def all(self, conn: Connection, *parameters: Any) -> list[tuple[Any, ...]]:
        """Every row, for statements known to return few."""

        def fetch(cursor: Any, sql: str) -> Any:
            cursor.execute(sql, parameters)
            return cursor.fetchall()

        return [tuple(row) for row in self._execute(conn, fetch)]

    def run(self, conn: Connection, *parameters: Any) -> None:
        self._execute(conn, lambda cursor, sql: cursor.execute(sql, parameters))

    def run_many(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        self._execute(conn, lambda cursor, sql: cursor.executemany(sql, rows))

    def _execute(self, conn: Connection, call: Callable[[Any, str], Any]) -> Any:
        dbapi = conn.dialect.loaded_dbapi
        sql = self._sql["qmark" if conn.dialect.paramstyle == "qmark" else "format"]
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            return call(cursor, sql)
        except dbapi.Error as error:  # as SQLAlchemy would raise it, for callers that catch it
            raise DBAPIError.instance(sql, None, error, dbapi.Error) from error
        finally:
            cursor.close()


def insert_into(table: str, columns: Sequence[str], returning: str = "") -> DriverQuery:
    """An INSERT of ``columns`` into ``table`` (names of our own schema, never input), every
    value bound, in the order of ``columns``."""
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"  # noqa: S608
    return DriverQuery(sql + (f" RETURNING {returning}" if returning else ""))
