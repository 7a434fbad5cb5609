"""The hash chain: each audit record's hash covers the previous record's hash, its sequence
number and every stored column, so changing, removing, inserting or reordering a record breaks
every link after it; signed checkpoints pin the chain so that its tail cannot be cut off unseen.

``append`` is the only writer. It runs inside the caller's transaction and locks the chain's
head row, so the records of all gateway processes form one sequence without gaps. On
PostgreSQL the records are chained by PostgreSQL and go in as the transaction's last
statement, sent with its COMMIT, so that the lock is held for as short a time as possible.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import BigInteger, Column, Text, insert
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import SQLAlchemyError

from gateway.audit.event import AuditFacts
from gateway.audit.signing import CheckpointSigner, checkpoint_message
from gateway.errors import AuditUnavailable
from gateway.store.database import defer_to_commit
from gateway.store.driver_sql import DriverQuery, insert_into, json_rows
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
    (``_NEXT_LINK``), so both must build the same bytes."""
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
    if conn.dialect.name == "postgresql":
        _append_pg(conn, pending, signer, policy)
        return
    head = _head(conn)
    seq, previous = head.seq, head.hash
    for row in pending:
        seq += 1
        row["seq"] = seq
        row["hash"] = previous = link(previous, row)
    _INSERT.run_many(conn, [tuple(row[name] for name in _STORED) for row in pending])
    now_us = time.time_ns() // 1000
    if policy.due(seq, head.checkpoint_seq, head.checkpoint_us, now_us):
        sign(conn, signer, "checkpoint", seq, previous, now_us)
        _MOVE_HEAD_SIGNED.run(conn, seq, previous, seq, now_us)
    else:
        _MOVE_HEAD.run(conn, seq, previous)


def _append_pg(
    conn: Connection,
    rows: list[dict[str, Any]],
    signer: CheckpointSigner,
    policy: CheckpointPolicy,
) -> None:
    """PostgreSQL: the records are chained by PostgreSQL in the statement that moves the head,
    and that statement is sent with the COMMIT when the transaction takes a commit step
    (``Database.write``; the records then go in after the rest of the transaction's work,
    still inside it). The head row is locked from that statement to the end of the
    transaction. When the head was read in a statement of its own (``FOR UPDATE``) and the
    hashes computed here, it stayed locked over three more round trips to this process, each
    waiting for a thread to get the GIL: under 32 concurrent creates, 63% of PostgreSQL's
    sessions were sampled waiting for it."""
    if len(rows) == 1:  # a write's one record: scalars, which psycopg dumps cheaply
        after = [rows[0][name] for name in CHAINED[1:]]
        query, values = _APPEND_ONE_PG, (header_tail(after), rows[0]["content"], *after)
    else:
        query, values = _APPEND_MANY_PG, _records_parameters(rows)

    def at_commit(conn: Connection) -> None:
        try:
            found = query.first_then_commit(conn, *values)
        except SQLAlchemyError as error:  # nothing of the transaction is stored
            log.error("audit append failed: %s", error.__class__.__name__)
            raise AuditUnavailable(REFUSED) from error
        if _checkpoint_due(policy, found):
            # After the COMMIT, in a transaction of its own: the write is stored whether or
            # not this succeeds, and a later write finds the checkpoint still due.
            try:
                with conn.begin_nested():
                    checkpoint_now(conn, signer)
            except SQLAlchemyError as error:
                log.warning("audit checkpoint failed: %s", error.__class__.__name__)

    if defer_to_commit(conn, at_commit):
        return
    if _checkpoint_due(policy, query.first(conn, *values)):
        checkpoint_now(conn, signer)  # at the head this statement moved, still locked


def _records_parameters(rows: list[dict[str, Any]]) -> tuple[bytes, str]:
    """The parameters of ``_APPEND_MANY_PG``: every record's content, one after the other, as
    one bytea, and the records' other columns as one JSON array, with where each content lies
    in it. psycopg dumped an array per column element by element, 1.6 ms of CPU for a
    search's 20 records where the JSON takes 0.2 ms; the contents inside the JSON (strings of
    escaped JSON) cost PostgreSQL 0.67 ms to parse for 20 records, as one bytea 0.15 ms."""
    contents = [row["content"] for row in rows]
    records = []
    start = 1  # substring() counts from 1
    for n, (row, content) in enumerate(zip(rows, contents, strict=True), 1):
        records.append(
            {
                "n": n,
                "tail": header_tail([row[name] for name in CHAINED[1:]]).decode(),
                **{name: row[name] for name in CHAINED[1:]},
                "start": start,
                "length": len(content),
            }
        )
        start += len(content)
    return b"".join(contents), orjson.dumps(records).decode()


def _checkpoint_due(policy: CheckpointPolicy, head: tuple[Any, ...] | None) -> bool:
    """Whether the head a PostgreSQL append returned is due for a signed checkpoint."""
    assert head is not None, "migration 0007 creates the head row"
    seq, _hash, checkpoint_seq, checkpoint_us = head
    return policy.due(int(seq), int(checkpoint_seq), int(checkpoint_us), time.time_ns() // 1000)


# On the driver's cursor: SQLite's group commit of reads runs these for every batch, and
# SQLAlchemy's per-statement work cost more than the statements (bench/bench_audit.py).
_STORED = (*CHAINED, "content", "hash")
_INSERT = insert_into("audit_events", _STORED)
_HEAD = "SELECT seq, hash, checkpoint_seq, checkpoint_us FROM audit_chain_head WHERE id = 1"
_SELECT_HEAD, _LOCK_HEAD = DriverQuery(_HEAD), DriverQuery(_HEAD + " FOR UPDATE")
_MOVE_HEAD = DriverQuery("UPDATE audit_chain_head SET seq = ?, hash = ? WHERE id = 1")
# ``link_values`` in SQL (sha256 is PostgreSQL 11's). One record: the head's next number and
# hash come from the head row as the UPDATE finds it once its lock is granted, so concurrent
# writers chain one after the other.
_NEXT_LINK = (
    "sha256({prev}.hash || int4send(length(({prev}.seq + 1)::text) + 1 + octet_length({r}.tail))"
    " || convert_to('[' || ({prev}.seq + 1)::text, 'UTF8') || {r}.tail || {r}.content)"
)
_APPEND_ONE_PG = DriverQuery(
    "WITH record AS (SELECT ?::bytea AS tail, ?::bytea AS content), "  # noqa: S608 - our schema
    "head AS (UPDATE audit_chain_head SET seq = audit_chain_head.seq + 1, "
    f"hash = {_NEXT_LINK.format(prev='audit_chain_head', r='record')} "
    "FROM record WHERE id = 1 RETURNING seq, hash, checkpoint_seq, checkpoint_us), "
    f"appended AS (INSERT INTO audit_events ({', '.join(_STORED)}) "
    f"SELECT head.seq, {', '.join('?' * (len(CHAINED) - 1))}, record.content, head.hash "
    "FROM head, record) "
    "SELECT seq, hash, checkpoint_seq, checkpoint_us FROM head"
)
# Several records (a batch of reads, a submission's): the locked head (``FOR UPDATE`` returns
# its newest version once the lock is granted), then each link from the one before.
_RECORD_COLUMNS = (*CHAINED[1:], "content")
_JSON_RECORDS = json_rows(
    [
        Column("n", BigInteger),
        Column("tail", Text),
        *(audit_events.c[n] for n in CHAINED[1:]),
        Column("start", BigInteger),
        Column("length", BigInteger),
    ]
)
_APPEND_MANY_PG = DriverQuery(
    "WITH RECURSIVE record AS (SELECT n, convert_to(tail, 'UTF8') AS tail, "  # noqa: S608 - our schema
    f"{', '.join(CHAINED[1:])}, substring(?::bytea FROM start::int FOR length::int) AS content "
    f"FROM {_JSON_RECORDS}), "
    "head AS (SELECT seq, hash FROM audit_chain_head WHERE id = 1 FOR UPDATE), "
    "chain AS (SELECT 0::bigint AS n, seq, hash FROM head UNION ALL "
    f"SELECT r.n, c.seq + 1, {_NEXT_LINK.format(prev='c', r='r')} "
    "FROM chain AS c JOIN record AS r ON r.n = c.n + 1), "
    f"appended AS (INSERT INTO audit_events ({', '.join(_STORED)}) "
    f"SELECT c.seq, {', '.join(f'r.{n}' for n in _RECORD_COLUMNS)}, c.hash "
    "FROM chain AS c JOIN record AS r ON r.n = c.n), "
    "tail AS (SELECT seq, hash FROM chain ORDER BY n DESC LIMIT 1) "
    "UPDATE audit_chain_head SET seq = tail.seq, hash = tail.hash FROM tail WHERE id = 1 "
    "RETURNING audit_chain_head.seq, audit_chain_head.hash, checkpoint_seq, checkpoint_us"
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
