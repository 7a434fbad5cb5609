"""The delivery outbox: notifications to partner endpoints, in the submission's transaction.

Before it is performed, a delivery is admitted again under the consent rules (a revoked consent
or an ended agreement cancels it, and what it would have shared is never shared). A delivery is
claimed by one worker at a time (a lease; ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, SQLite's single writer otherwise) and recorded as delivered only after the partner
acknowledged it. A worker that dies mid-delivery leaves its lease to expire, after which another
worker tries again: at least once, with a stable ``delivery_id`` receivers de-duplicate on.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.engine import Connection

from gateway.store.keys import new_key
from gateway.store.schema import outbox

PENDING, DELIVERED, FAILED, CANCELLED = "pending", "delivered", "failed", "cancelled"


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    sender_org: str
    recipient_org: str
    endpoint: str
    task_id: str
    status: str
    attempts: int
    next_attempt_us: int
    last_error: str | None
    created_us: int
    delivered_us: int | None


_COLUMNS = (
    outbox.c.delivery_id,
    outbox.c.sender_org,
    outbox.c.recipient_org,
    outbox.c.endpoint,
    outbox.c.task_id,
    outbox.c.status,
    outbox.c.attempts,
    outbox.c.next_attempt_us,
    outbox.c.last_error,
    outbox.c.created_us,
    outbox.c.delivered_us,
)


def enqueue(
    conn: Connection, *, sender: str, recipient: str, endpoint: str, task_id: str, now_us: int
) -> str:
    """Add a delivery of notification Task ``task_id``; returns its stable id."""
    delivery_id = new_key()
    conn.execute(
        insert(outbox),
        {
            "delivery_id": delivery_id,
            "sender_org": sender,
            "recipient_org": recipient,
            "endpoint": endpoint,
            "task_id": task_id,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_us": now_us,
            "claimed_by": None,
            "claimed_until_us": None,
            "last_error": None,
            "created_us": now_us,
            "delivered_us": None,
        },
    )
    return delivery_id


def claim(conn: Connection, worker: str, now_us: int, lease_us: int, limit: int) -> list[Delivery]:
    """Deliveries due now that no other worker holds, leased to ``worker``."""
    free = or_(outbox.c.claimed_until_us.is_(None), outbox.c.claimed_until_us < now_us)
    statement = (
        select(*_COLUMNS)
        .where(outbox.c.status == PENDING, outbox.c.next_attempt_us <= now_us, free)
        .order_by(outbox.c.next_attempt_us)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    rows = [Delivery(*row) for row in conn.execute(statement)]
    if rows:
        conn.execute(
            update(outbox)
            .where(outbox.c.delivery_id.in_([r.delivery_id for r in rows]))
            .values(claimed_by=worker, claimed_until_us=now_us + lease_us)
        )
    return rows


def _held(delivery_id: str, worker: str) -> object:
    return and_(outbox.c.delivery_id == delivery_id, outbox.c.claimed_by == worker)


def delivered(conn: Connection, delivery_id: str, worker: str, now_us: int) -> bool:
    """Record the partner's acknowledgement; False when the lease was lost meanwhile."""
    result = conn.execute(
        update(outbox)
        .where(_held(delivery_id, worker))  # type: ignore[arg-type]
        .values(
            status=DELIVERED,
            attempts=outbox.c.attempts + 1,
            delivered_us=now_us,
            claimed_by=None,
            claimed_until_us=None,
            last_error=None,
        )
    )
    return bool(result.rowcount)


def failed(
    conn: Connection, delivery_id: str, worker: str, error: str, next_attempt_us: int | None
) -> None:
    """Record a failed attempt: try again at ``next_attempt_us``, or give up (dead letter)."""
    conn.execute(
        update(outbox)
        .where(_held(delivery_id, worker))  # type: ignore[arg-type]
        .values(
            status=PENDING if next_attempt_us is not None else FAILED,
            attempts=outbox.c.attempts + 1,
            next_attempt_us=next_attempt_us
            if next_attempt_us is not None
            else outbox.c.next_attempt_us,
            last_error=error[:1000],
            claimed_by=None,
            claimed_until_us=None,
        )
    )


def cancelled(conn: Connection, delivery_id: str, worker: str, reason: str) -> None:
    """Stop a delivery for good: what it would deliver may no longer go to its recipient."""
    conn.execute(
        update(outbox)
        .where(_held(delivery_id, worker))  # type: ignore[arg-type]
        .values(status=CANCELLED, last_error=reason[:1000], claimed_by=None, claimed_until_us=None)
    )


def listing(conn: Connection, *, failed_only: bool = False) -> list[Delivery]:
    statement = select(*_COLUMNS).order_by(outbox.c.created_us)
    if failed_only:
        statement = statement.where(outbox.c.status == FAILED)
    return [Delivery(*row) for row in conn.execute(statement)]


def retry(conn: Connection, delivery_id: str, now_us: int) -> bool:
    """Put a failed delivery back in the queue with a fresh retry budget."""
    result = conn.execute(
        update(outbox)
        .where(outbox.c.delivery_id == delivery_id, outbox.c.status == FAILED)
        .values(status=PENDING, attempts=0, next_attempt_us=now_us, last_error=None)
    )
    return bool(result.rowcount)
