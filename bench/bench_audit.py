"""Audit benchmark: what the audit trail costs a read, and how fast the chain verifies.

1. Reads: one gateway (uvicorn in this process, SQLite in a temp dir, or PostgreSQL when
   ZORGBRUG_BENCH_DATABASE_URL names an empty database) serves ``GET /fhir/Patient/{id}`` to
   ``--concurrency`` clients at once. Rounds alternate ABAB between the real gateway and the
   same gateway with the audit trail's two writers (``AuditTrail.append_rows`` and
   ``record_rows``) made no-ops: the ratio is reads/s with audit over reads/s without (target
   >= 0.8). The no-op variant exists only here.
2. Verify: ``--records`` synthetic records are chained in batches of 1,000 (real
   ``chain.append``), then ``verify`` streams them: records/s (target >= 50,000/s).

Usage: python bench/bench_audit.py [--reads 2000] [--concurrency 8] [--rounds 4]
       [--records 200000]
"""

from __future__ import annotations

# ruff: noqa: E402  (the imports below need the paths set up first)
import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the package before tests/gateway/
from harness import LiveServer

from gateway.audit import trail
from gateway.audit.chain import CheckpointPolicy, append
from gateway.audit.event import Agent, AuditFacts
from gateway.audit.signing import CheckpointSigner
from gateway.audit.verify import verify
from gateway.settings import Settings
from gateway.store.database import Database

REAL = (trail.AuditTrail.append_rows, trail.AuditTrail.record_rows)


async def _nothing(*_args: Any) -> None:
    return None


def audit_on(on: bool) -> None:
    if on:
        trail.AuditTrail.append_rows, trail.AuditTrail.record_rows = REAL  # type: ignore[method-assign]
    else:
        trail.AuditTrail.append_rows = lambda *_a: None  # type: ignore[method-assign]
        trail.AuditTrail.record_rows = _nothing  # type: ignore[method-assign,assignment]


async def reads_per_s(
    server: LiveServer, token: str, ids: list[str], n: int, workers: int
) -> float:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
    async with httpx.AsyncClient(base_url=server.fhir, headers=headers, timeout=60) as client:
        counter = iter(range(n))

        async def worker() -> None:
            for i in counter:
                answer = await client.get(f"/Patient/{ids[i % len(ids)]}")
                assert answer.status_code == 200, answer.text

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        return n / (time.perf_counter() - start)


def bench_reads(args: argparse.Namespace, data_dir: Path, url: str) -> None:
    server = LiveServer(Settings(data_dir=data_dir, database_url=url), "bench").start()
    hospital = server.default_hospital
    with server.client(hospital) as fhir:
        ids = [
            fhir.post(
                "/Patient",
                json={
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:bench", "value": f"{i}"}],
                },
            ).json()["id"]
            for i in range(50)
        ]
    token = server._auth[(hospital.client_id, "system/*.cruds")].token()
    asyncio.run(reads_per_s(server, token, ids, 200, args.concurrency))  # warm up
    figures: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.rounds):
        for on in (True, False):
            audit_on(on)
            rate = asyncio.run(reads_per_s(server, token, ids, args.reads, args.concurrency))
            figures[on].append(rate)
    audit_on(True)
    server.stop()
    with_audit, without = statistics.median(figures[True]), statistics.median(figures[False])
    print(
        f"reads/s with audit     {with_audit:8.0f}   (rounds: {[round(f) for f in figures[True]]})"
    )
    print(f"reads/s without audit  {without:8.0f}   (rounds: {[round(f) for f in figures[False]]})")
    print(f"ratio                  {with_audit / without:8.2f}   (target >= 0.8)")


def bench_verify(args: argparse.Namespace, key_file: Path, url: str) -> None:
    async def run() -> None:
        db = Database(url, threads=2)
        await db.migrate()
        signer = CheckpointSigner.open(key_file)
        agent = Agent("system", "bench-client", "90000001", "system")
        policy = CheckpointPolicy(1000, 3600)
        made = 0
        while made < args.records:
            batch = [
                AuditFacts(
                    kind="read",
                    agent=agent,
                    request_id=f"r{made + i}",
                    patient_key="999911120",
                    custodian="90000001",
                    data=(f"Patient/p{made + i}/_history/1",),
                    recorded_us=time.time_ns() // 1000,
                )
                for i in range(1000)
            ]
            rows = trail.rows_of(batch, "bench", "http://bench")
            await db.write(lambda conn, rows=rows: append(conn, rows, signer, policy))
            made += len(batch)
        start = time.perf_counter()
        result = await db.read(lambda conn: verify(conn, signer))
        elapsed = time.perf_counter() - start
        assert result.intact, result.problem
        print(
            f"verify: {result.checked} records, {result.checkpoints} checkpoints in "
            f"{elapsed:.2f} s = {result.checked / elapsed:,.0f} records/s (target >= 50,000/s)"
        )
        await db.dispose()

    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = os.environ.get("ZORGBRUG_BENCH_DATABASE_URL")
        reads_dir, verify_dir = Path(tmp, "reads"), Path(tmp, "verify")
        reads_dir.mkdir()
        verify_dir.mkdir()
        print(f"backend: {'PostgreSQL' if base else 'SQLite'}")
        bench_reads(args, reads_dir, base or f"sqlite:///{reads_dir / 'zorgbrug.db'}")
        # On PostgreSQL the chain already holds the reads' records, signed with that key.
        key_file = (reads_dir if base else verify_dir) / "audit.key"
        bench_verify(args, key_file, base or f"sqlite:///{verify_dir / 'zorgbrug.db'}")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
