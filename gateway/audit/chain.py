"""The hash chain: each audit record's hash covers the previous record's hash, its sequence
number and every stored column, so changing, removing, inserting or reordering a record breaks
every link after it; signed checkpoints pin the chain so that its tail cannot be cut off unseen.

``append`` is the only writer. It runs inside the caller's transaction and locks the chain's
head row first, so the records of all gateway processes form one sequence without gaps.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import insert
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import SQLAlchemyError

from gateway.audit.event import AuditFacts
from gateway.audit.signing import CheckpointSigner, checkpoint_message
from gateway.errors import AuditUnavailable
from gateway.store.database import defer_to_commit
from gateway.store.driver_sql import DriverQuery, insert_into, unnest_rows
from gateway.store.schema import audit_checkpoints, audit_events

log = logging.getLogger("zorgbrug.audit")
REFUSED = "The access could not be recorded in the audit log, so it was refused"
GENESIS = bytes(32)  # the "previous hash" of the first record

# The columns each link covers besides ``content``, in this order.
CHAINED = (
    "seq",
    "event_id",
    "recorded_us",
    "kind",
    "action",
    "outcome",
    "agent_kind",
    "agent_id",
    "agent_org",
    "agent_role",
    "patient_key",
    "custodian_org",
    "emergency",
    "request_id",
)


def link(previous: bytes, row: Mapping[str, Any] | RowMapping) -> bytes:
    """The hash of ``row`` chained to ``previous``."""
    return link_values(previous, [row[name] for name in CHAINED], row["content"])


def link_values(previous: bytes, values: Sequence[Any], content: bytes | str) -> bytes:
    """The hash of a record given its ``CHAINED`` values in order and its content."""
    header = b"[%d" % values[0] + header_tail(values[1:])
    digest = hashlib.sha256(previous)
    digest.update(len(header).to_bytes(4, "big"))
    digest.update(header)
    # A store edited by hand can hand back text; it is hashed as stored, never refused.
    digest.update(content.encode() if isinstance(content, str) else content)
    return digest.digest()


def header_tail(values: Sequence[Any]) -> bytes:
    """A link's header (the JSON array of the ``CHAINED`` values) after its sequence number,
    from the values after it: PostgreSQL puts the number in front when it appends a record
    (``_APPEND_HASHED_PG``), so both must build the same bytes."""
    after = list(values)
    after[11] = bool(after[11])  # emergency: SQLite hands booleans back as 0 or 1
    return b"," + orjson.dumps(after)[1:]


@dataclass(frozen=True)
class CheckpointPolicy:
    """When to sign: after this many records, or this long after the last checkpoint."""

    every_records: int = 1000
    every_seconds: float = 60.0

    def due(self, seq: int, checkpoint_seq: int, checkpoint_us: int, now_us: int) -> bool:
        return (
            seq - checkpoint_seq >= self.every_records
            or now_us - checkpoint_us >= self.every_seconds * 1_000_000
        )


def rows_of(facts: Sequence[AuditFacts], node: str, base_url: str) -> list[dict[str, Any]]:
    """The stored columns of each event, without ``seq`` and ``hash`` (``append`` adds them)."""
    rows = []
    for f in facts:
        rows.append(
            {
                "event_id": f.event_id,
                "recorded_us": f.recorded_us,
                "kind": f.kind,
                "action": f.event_action,
                "outcome": f.outcome,
                "agent_kind": f.agent.kind,
                "agent_id": f.agent.id[:200],
                "agent_org": f.agent.organization,
                "agent_role": f.agent.role,
                "patient_key": f.patient_key,
                "custodian_org": f.custodian,
                "emergency": f.emergency,
                "request_id": f.request_id[:200],
                "content": orjson.dumps(f.to_resource(node, base_url)),
            }
        )
    return rows


def append(
    conn: Connection,
    rows: Iterable[dict[str, Any]],
    signer: CheckpointSigner,
    policy: CheckpointPolicy,
) -> None:
    """Chain and insert ``rows`` (from ``rows_of``) in the caller's transaction; signs a
    checkpoint when one is due."""
    pending = list(rows)
    if not pending:
        return
    if len(pending) == 1 and conn.dialect.name == "postgresql":
        _append_one_pg(conn, pending[0], signer, policy)
        return
    head = _head(conn)
    seq, previous = head.seq, head.hash
    for row in pending:
        seq += 1
        row["seq"] = seq
        row["hash"] = previous = link(previous, row)
    now_us = time.time_ns() // 1000
    due = policy.due(seq, head.checkpoint_seq, head.checkpoint_us, now_us)
    if not due and conn.dialect.name == "postgresql":
        # The records and the head in one statement: every batch of reads runs this, and
        # each statement costs the gateway more CPU than PostgreSQL.
        columns = ([row[name] for row in pending] for name in _STORED)
        _APPEND_PG.run(conn, *columns, seq, previous)
        return
    _INSERT.run_many(conn, [tuple(row[name] for name in _STORED) for row in pending])
    if due:
        sign(conn, signer, "checkpoint", seq, previous, now_us)
        _MOVE_HEAD_SIGNED.run(conn, seq, previous, seq, now_us)
    else:
        _MOVE_HEAD.run(conn, seq, previous)


def _append_one_pg(
    conn: Connection, row: dict[str, Any], signer: CheckpointSigner, policy: CheckpointPolicy
) -> None:
    """A write's one record on PostgreSQL, chained by PostgreSQL in the statement that moves
    the head, and that statement sent with the COMMIT when the transaction takes a commit
    step (``Database.write``; the record then goes in after the rest of the transaction's
    work, still inside it). The head row is locked from that statement to the end of the
    transaction. Read first (``FOR UPDATE``), with the hash computed here, it stayed locked
    over three more round trips to this process, each waiting for a thread to get the GIL:
    under 32 concurrent creates, 63% of PostgreSQL's sessions were sampled waiting for it."""
    after = [row[name] for name in CHAINED[1:]]
    values = (header_tail(after), row["content"], *after)

    def at_commit(conn: Connection) -> None:
        try:
            found = _APPEND_HASHED_PG.first_then_commit(conn, *values)
        except SQLAlchemyError as error:  # nothing of the transaction is stored
            log.error("audit append failed: %s", error.__class__.__name__)
            raise AuditUnavailable(REFUSED) from error
        assert found is not None, "migration 0007 creates the head row"
        if policy.due(*_seq_and_checkpoint(found), time.time_ns() // 1000):
            # After the COMMIT, in a transaction of its own: the write is stored whether or
            # not this succeeds, and a later write finds the checkpoint still due.
            try:
                with conn.begin_nested():
                    checkpoint_now(conn, signer)
            except SQLAlchemyError as error:
                log.warning("audit checkpoint failed: %s", error.__class__.__name__)

    if defer_to_commit(conn, at_commit):
        return
    found = _APPEND_HASHED_PG.first(conn, *values)
    assert found is not None, "migration 0007 creates the head row"
    seq, checkpoint_seq, checkpoint_us = _seq_and_checkpoint(found)
    now_us = time.time_ns() // 1000
    if policy.due(seq, checkpoint_seq, checkpoint_us, now_us):
        sign(conn, signer, "checkpoint", seq, bytes(found[1]), now_us)
        _MOVE_HEAD_SIGNED.run(conn, seq, bytes(found[1]), seq, now_us)


def _seq_and_checkpoint(head: tuple[Any, ...]) -> tuple[int, int, int]:
    seq, _hash, checkpoint_seq, checkpoint_us = head
    return int(seq), int(checkpoint_seq), int(checkpoint_us)


# On the driver's cursor: the group commit of reads runs these for every batch, and
# SQLAlchemy's per-statement work cost more than the statements (bench/bench_audit.py).
_STORED = (*CHAINED, "content", "hash")
_INSERT = insert_into("audit_events", _STORED)
_HEAD = "SELECT seq, hash, checkpoint_seq, checkpoint_us FROM audit_chain_head WHERE id = 1"
_SELECT_HEAD, _LOCK_HEAD = DriverQuery(_HEAD), DriverQuery(_HEAD + " FOR UPDATE")
_MOVE_HEAD = DriverQuery("UPDATE audit_chain_head SET seq = ?, hash = ? WHERE id = 1")
_APPEND_PG = DriverQuery(
    f"WITH appended AS (INSERT INTO audit_events ({', '.join(_STORED)}) "  # noqa: S608 - our schema
    f"SELECT * FROM {unnest_rows([audit_events.c[name] for name in _STORED])}) "
    "UPDATE audit_chain_head SET seq = ?, hash = ? WHERE id = 1"
)
# ``link_values`` in SQL (sha256 is PostgreSQL 11's): the head's next number and hash come
# from the head row as the UPDATE finds it once its lock is granted, so concurrent writers
# chain one after the other.
_APPEND_HASHED_PG = DriverQuery(
    "WITH record AS (SELECT ?::bytea AS tail, ?::bytea AS content), "  # noqa: S608 - our schema
    "head AS (UPDATE audit_chain_head SET seq = seq + 1, hash = sha256(hash"
    " || int4send(length((seq + 1)::text) + 1 + octet_length(record.tail))"
    " || convert_to('[' || (seq + 1)::text, 'UTF8') || record.tail || record.content)"
    " FROM record WHERE id = 1 RETURNING seq, hash, checkpoint_seq, checkpoint_us), "
    f"appended AS (INSERT INTO audit_events ({', '.join(_STORED)}) "
    f"SELECT head.seq, {', '.join('?' * (len(CHAINED) - 1))}, record.content, head.hash "
    "FROM head, record) "
    "SELECT seq, hash, checkpoint_seq, checkpoint_us FROM head"
)
_MOVE_HEAD_SIGNED = DriverQuery(
    "UPDATE audit_chain_head SET seq = ?, hash = ?, checkpoint_seq = ?, checkpoint_us = ? "
    "WHERE id = 1"
)


@dataclass(frozen=True)
class _Head:
    seq: int
    hash: bytes
    checkpoint_seq: int
    checkpoint_us: int


def _head(conn: Connection) -> _Head:
    """The chain's head row, locked until the transaction ends (SQLite: by BEGIN IMMEDIATE)."""
    query = _LOCK_HEAD if conn.dialect.name == "postgresql" else _SELECT_HEAD
    row = query.first(conn)
    assert row is not None, "migration 0007 creates the head row"
    seq, chain_hash, checkpoint_seq, checkpoint_us = row
    return _Head(int(seq), bytes(chain_hash), int(checkpoint_seq), int(checkpoint_us))


def checkpoint_now(conn: Connection, signer: CheckpointSigner) -> int:
    """Sign a checkpoint at the current tail (at shutdown, before a verify); its seq."""
    head = _head(conn)
    if head.seq == 0 or head.seq == head.checkpoint_seq:
        return head.checkpoint_seq
    now_us = time.time_ns() // 1000
    sign(conn, signer, "checkpoint", head.seq, head.hash, now_us)
    _MOVE_HEAD_SIGNED.run(conn, head.seq, head.hash, head.seq, now_us)
    return head.seq


def sign(
    conn: Connection, signer: CheckpointSigner, kind: str, seq: int, chain_hash: bytes, now_us: int
) -> None:
    conn.execute(
        insert(audit_checkpoints),
        {
            "seq": seq,
            "kind": kind,
            "hash": chain_hash,
            "recorded_us": now_us,
            "key_id": signer.key_id,
            "signature": signer.sign(checkpoint_message(kind, seq, chain_hash, now_us)),
        },
    )
