"""Database threads per process: fewer on SQLite, whose work runs in the process and contends
for the GIL; ``ZORGBRUG_DB_THREADS`` sets them. Even one thread serves concurrent reads and
writes: a search waits for its audit write on the same pool."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from harness import BACKENDS, PG_URL, FreshDatabase, start_server

from gateway.settings import Settings
from gateway.store.database import Database


def pool_size(url: str, threads: int | None = None) -> int:
    db = Database(url, threads=threads)
    try:
        return int(db.engine.pool.size())  # type: ignore[attr-defined]
    finally:
        asyncio.run(db.dispose())


def test_sqlite_defaults_to_four_threads_and_the_setting_overrides(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'zorgbrug.db'}"
    assert pool_size(url) == 4
    monkeypatch.setenv("ZORGBRUG_DB_THREADS", "2")
    assert pool_size(url, Settings().db_threads) == 2


@pytest.mark.skipif(not PG_URL, reason="PostgreSQL tests need ZORGBRUG_TEST_DATABASE_URL")
def test_postgresql_defaults_to_eight_threads(tmp_path):
    fresh = FreshDatabase("postgresql", tmp_path)
    try:
        assert pool_size(fresh.url) == 8
    finally:
        fresh.drop()


def test_zero_threads_is_refused(monkeypatch):
    monkeypatch.setenv("ZORGBRUG_DB_THREADS", "0")
    with pytest.raises(ValueError, match="db_threads"):
        Settings()


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_thread_serves_concurrent_reads_and_writes(backend, tmp_path):
    live, database = start_server(backend, tmp_path, db_threads=1)
    try:
        with live.client() as fhir:
            created = fhir.post("/Patient", json={"resourceType": "Patient", "gender": "female"})
            assert created.status_code == 201

            def read_or_write(i: int) -> int:
                if i % 2:  # a search runs on the pool (a read by id, on SQLite, does not)
                    return fhir.get("/Patient", params={"gender": "female"}).status_code
                patient = {"resourceType": "Patient", "gender": "male"}
                return fhir.post("/Patient", json=patient).status_code

            with ThreadPoolExecutor(8) as pool:
                codes = list(pool.map(read_or_write, range(40)))
            assert codes == [201 if i % 2 == 0 else 200 for i in range(40)]
    finally:
        live.stop()
        database.drop()


def test_sqlite_reads_on_the_event_loop_never_wait_for_a_writer(tmp_path):
    """Reads by id run on the event loop (``Database.lookup``): while another process holds the
    write lock, they and everything else the loop serves go on; only their audit commit waits."""
    live, database = start_server("sqlite", tmp_path)
    try:
        with live.client() as fhir:
            created = fhir.post("/Patient", json={"resourceType": "Patient", "gender": "female"})
            path = f"/Patient/{created.json()['id']}"
            db_file = tmp_path / "zorgbrug.db"
            holder = subprocess.Popen(
                [sys.executable, "-c", HOLD_WRITE_LOCK, str(db_file), "3"], stdout=subprocess.PIPE
            )
            try:
                assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
                with ThreadPoolExecutor(4) as pool:
                    reads = [pool.submit(fhir.get, path) for _ in range(4)]
                    started = time.monotonic()
                    for _ in range(10):
                        assert httpx.get(f"{live.url}/healthz", timeout=1).status_code == 200
                    assert time.monotonic() - started < 2.5
                    assert not any(read.done() for read in reads)  # audit waits for the lock
                    assert [read.result().status_code for read in reads] == [200] * 4
            finally:
                holder.wait(timeout=30)
    finally:
        live.stop()
        database.drop()


HOLD_WRITE_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""
