"""The hash chain: each audit record's hash covers the previous record's hash, its sequence
number and every stored column, so changing, removing, inserting or reordering a record breaks
every link after it; signed checkpoints pin the chain so that its tail cannot be cut off unseen.

``append`` is the only writer. It runs inside the caller's transaction and locks the chain's
head row first, so the records of all gateway processes form one sequence without gaps.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import insert
from sqlalchemy.engine import Connection, RowMapping

from gateway.audit.event import AuditFacts
from gateway.audit.signing import CheckpointSigner, checkpoint_message
from gateway.store.driver_sql import DriverQuery, insert_into, unnest_rows
from gateway.store.schema import audit_checkpoints, audit_events

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


def link_values(previous: bytes, values: list[Any], content: bytes | str) -> bytes:
    """The hash of a record given its ``CHAINED`` values in order and its content."""
    values[12] = bool(values[12])  # SQLite hands booleans back as 0 or 1
    header = orjson.dumps(values)
    digest = hashlib.sha256(previous)
    digest.update(len(header).to_bytes(4, "big"))
    digest.update(header)
    # A store edited by hand can hand back text; it is hashed as stored, never refused.
    digest.update(content.encode() if isinstance(content, str) else content)
    return digest.digest()


@dataclass(frozen=True)
class CheckpointPolicy:
    """When to sign: after this many records, or this long after the last checkpoint."""

    every_records: int = 1000
    every_seconds: float = 60.0


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
) -> int:
    """Chain and insert ``rows`` (from ``rows_of``) in the caller's transaction; signs a
    checkpoint when one is due. Returns the sequence number of the last record."""
    pending = list(rows)
    head = _head(conn)
    seq, previous = head.seq, head.hash
    if not pending:
        return seq
    for row in pending:
        seq += 1
        row["seq"] = seq
        row["hash"] = previous = link(previous, row)
    now_us = time.time_ns() // 1000
    due = seq - head.checkpoint_seq >= policy.every_records or (
        now_us - head.checkpoint_us >= policy.every_seconds * 1_000_000
    )
    if not due and conn.dialect.name == "postgresql":
        # The records and the head in one statement: every write and every batch of reads
        # runs this, and each statement costs the gateway more CPU than PostgreSQL.
        if len(pending) == 1:  # a write's one record: scalars, which psycopg dumps cheaply
            _APPEND_ONE_PG.run(conn, *(pending[0][name] for name in _STORED), seq, previous)
        else:
            columns = ([row[name] for row in pending] for name in _STORED)
            _APPEND_PG.run(conn, *columns, seq, previous)
        return seq
    _INSERT.run_many(conn, [tuple(row[name] for name in _STORED) for row in pending])
    if due:
        sign(conn, signer, "checkpoint", seq, previous, now_us)
        _MOVE_HEAD_SIGNED.run(conn, seq, previous, seq, now_us)
    else:
        _MOVE_HEAD.run(conn, seq, previous)
    return seq


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
_APPEND_ONE_PG = DriverQuery(
    f"WITH appended AS ({_INSERT.sql}) "  # noqa: S608 - our schema, every value bound
    "UPDATE audit_chain_head SET seq = ?, hash = ? WHERE id = 1"
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
