"""Named locks held until the end of the caller's transaction.

PostgreSQL runs writers concurrently under READ COMMITTED: a transaction that recomputes derived
rows from what it can see (a patient's consent rows, the agreement rows, the audit chain's tail)
must hold a lock first, so that it sees whatever another such transaction committed before it.
SQLite writers already take the database lock at BEGIN, so there it is a no-op.
"""

from __future__ import annotations

import hashlib

from sqlalchemy.engine import Connection

from gateway.store.driver_sql import DriverQuery

# One round trip for any number of locks, taken one after the other in the array's order.
_LOCK_EACH = DriverQuery("SELECT count(pg_advisory_xact_lock(key)) FROM unnest(?::bigint[]) AS key")


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (advisory locks take a bigint)."""
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


def hold(conn: Connection, *names: str) -> None:
    """Take the locks called ``names`` (in the order of their keys, so two holders never wait
    on each other)."""
    if conn.dialect.name != "postgresql" or not names:
        return
    _LOCK_EACH.first(conn, sorted({lock_key(name) for name in names}))
