"""Records appended together (a search's, a submission's) are stored byte for byte as built and
chained one after the other: on PostgreSQL they travel as one JSON text, so any text, also
outside ASCII and with JSON's own special characters, must come back unchanged."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from harness import BACKENDS, FreshDatabase
from sqlalchemy import select

from gateway.audit.chain import CheckpointPolicy, append
from gateway.audit.signing import CheckpointSigner
from gateway.audit.verify import verify
from gateway.store.database import Database
from gateway.store.schema import audit_events

TEXTS = ["Ærøskøbing-Müller 山田 🩺", 'quote " backslash \\ slash /', "tab\tnewline\nnul-free \x01"]


def record(n: int, text: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "recorded_us": 1_790_000_000_000_000 + n,
        "kind": "search-type",
        "action": "E",
        "outcome": "0",
        "agent_kind": "user",
        "agent_id": f"jørgen-{n}",
        "agent_org": "90000001",
        "agent_role": "arts",
        "patient_key": f"99999{n:04d}",
        "custodian_org": None if n % 2 else "90000002",
        "emergency": bool(n % 2),
        "request_id": f"req-{text[:8]}",
        "content": orjson.dumps({"resourceType": "AuditEvent", "outcomeDesc": text}),
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_records_appended_together_come_back_exact_and_verify(backend, tmp_path):
    fresh = FreshDatabase(backend, tmp_path)
    db = Database(fresh.url, threads=1)
    signer = CheckpointSigner(Ed25519PrivateKey.generate())
    batch = [record(n, text) for n, text in enumerate(TEXTS)]
    single = [record(9, TEXTS[0])]
    expected = [dict(row) for row in [*batch, *single]]

    def stored(conn: Any) -> list[dict[str, Any]]:
        rows = conn.execute(select(audit_events).order_by(audit_events.c.seq)).mappings()
        return [dict(row) for row in rows]

    async def run() -> tuple[list[dict[str, Any]], Any]:
        await db.migrate()
        for rows in (batch, single):
            await db.write(lambda conn, rows=rows: append(conn, rows, signer, CheckpointPolicy()))
        return await db.read(stored), await db.read(lambda conn: verify(conn, signer))

    try:
        rows, verification = asyncio.run(run())
    finally:
        asyncio.run(db.dispose())
        fresh.drop()
    assert [row["seq"] for row in rows] == [1, 2, 3, 4]
    for row, sent in zip(rows, expected, strict=True):
        assert bytes(row["content"]) == sent["content"]
        assert {k: row[k] for k in sent if k != "content"} == {
            k: v for k, v in sent.items() if k != "content"
        }
    assert verification.intact, verification.problem
    assert verification.checked == 4


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "sqlite"])
def test_postgresql_stores_records_compressed_with_lz4_and_returns_them_exact(backend, tmp_path):
    # An AuditEvent is ~4 KB: past the size at which PostgreSQL compresses a value.
    fresh = FreshDatabase(backend, tmp_path)
    db = Database(fresh.url, threads=1)
    signer = CheckpointSigner(Ed25519PrivateKey.generate())
    rows = [record(n, TEXTS[n % 3] * 200) for n in range(3)]
    sent = [row["content"] for row in rows]

    def stored(conn: Any) -> list[tuple[bytes, str]]:
        found = conn.exec_driver_sql(
            "SELECT content, pg_column_compression(content) FROM audit_events ORDER BY seq"
        )
        return [(bytes(content), method) for content, method in found]

    async def run() -> list[tuple[bytes, str]]:
        await db.migrate()
        await db.write(lambda conn: append(conn, rows, signer, CheckpointPolicy()))
        return await db.read(stored)

    try:
        found = asyncio.run(run())
    finally:
        asyncio.run(db.dispose())
        fresh.drop()
    assert all(len(content) > 4000 for content in sent)
    assert found == [(content, "lz4") for content in sent]
