"""Fixed lookups run on the database driver's own cursor, for the few statements every request
makes: under load SQLAlchemy's per-statement work (cache key, compiled-cache lookup, result
wrapping) costs ~50 us, more than the lookup itself (measured with ``bench/bench_auth.py``).

Only constant SQL over our own schema, with every value bound as a parameter; it runs on the
caller's connection, so inside the caller's transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection


class DriverQuery:
    def __init__(self, sql: str) -> None:
        """``sql`` with ``?`` for each parameter (rewritten to ``%s`` for psycopg)."""
        self._markers = {"qmark": sql, "format": sql.replace("?", "%s")}

    def first(self, conn: Connection, *parameters: Any) -> tuple[Any, ...] | None:
        style = "qmark" if conn.dialect.paramstyle == "qmark" else "format"
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(self._markers[style], parameters)
            row = cursor.fetchone()
        finally:
            cursor.close()
        return tuple(row) if row is not None else None
