"""Purge audit records past their retention, keeping the rest of the chain verifiable.

Before anything is removed, the whole chain is verified (a damaged log is never purged: the
evidence would go with it). A signed ``anchor`` then records where the remaining chain resumes:
the sequence number and hash of the last removed record. The append-only triggers are lifted
for this one transaction only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select, text
from sqlalchemy.engine import Connection

from gateway.audit.chain import sign
from gateway.audit.signing import CheckpointSigner
from gateway.audit.verify import verify
from gateway.errors import BadRequest, Conflict
from gateway.store.schema import audit_events

_TRIGGER = "audit_events_no_delete"


@dataclass(frozen=True)
class PurgeResult:
    removed: int
    through_seq: int | None  # the last removed record (None: nothing was old enough)


def retention_start_us(years: int, now: datetime | None = None) -> int:
    """The moment before which records may go: ``years`` before now."""
    moment = now or datetime.now(UTC)
    try:
        start = moment.replace(year=moment.year - years)
    except ValueError:  # 29 February
        start = moment.replace(year=moment.year - years, day=28)
    return int(start.timestamp() * 1_000_000)


def purge(conn: Connection, signer: CheckpointSigner, before_us: int, years: int) -> PurgeResult:
    limit = retention_start_us(years)
    if before_us > limit:
        raise BadRequest(
            f"Audit records are kept {years} years: the date must be on or before "
            f"{datetime.fromtimestamp(limit / 1_000_000, UTC).date().isoformat()}",
            code="business-rule",
        )
    checked = verify(conn, signer)
    if not checked.intact:
        raise Conflict(f"The audit chain is damaged, so nothing was purged: {checked.problem}")
    through = conn.execute(
        select(func.max(audit_events.c.seq)).where(audit_events.c.recorded_us < before_us)
    ).scalar()
    if through is None:
        return PurgeResult(0, None)
    last = conn.execute(
        select(audit_events.c.hash).where(audit_events.c.seq == through)
    ).scalar_one()
    sign(conn, signer, "anchor", int(through), bytes(last), time.time_ns() // 1000)
    condition = audit_events.c.seq <= through
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL zorgbrug.audit_purge = 'on'"))
        removed = conn.execute(delete(audit_events).where(condition)).rowcount
        conn.execute(text("SET LOCAL zorgbrug.audit_purge = 'off'"))
    else:
        # Recreated from its own stored definition, exactly as the migration made it.
        definition = conn.execute(
            text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = :name"),
            {"name": _TRIGGER},
        ).scalar_one()
        conn.execute(text(f"DROP TRIGGER {_TRIGGER}"))
        removed = conn.execute(delete(audit_events).where(condition)).rowcount
        conn.execute(text(definition))
    return PurgeResult(int(removed), int(through))
