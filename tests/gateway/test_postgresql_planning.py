"""On PostgreSQL every connection of the gateway plans each statement for its values: after five
runs of a prepared search PostgreSQL would otherwise move to a generic plan, which cannot tell a
patient's few rows from a code's many (bench/run.py: Observation?patient=&code= went from 2 to
45 ms)."""

from __future__ import annotations

import asyncio

import pytest
from harness import PG_URL, FreshDatabase

from gateway.store.database import Database

pytestmark = pytest.mark.skipif(
    not PG_URL, reason="PostgreSQL tests need ZORGBRUG_TEST_DATABASE_URL (CI sets it)"
)


def test_every_pooled_connection_plans_each_run_for_its_values(tmp_path):
    fresh = FreshDatabase("postgresql", tmp_path)
    db = Database(fresh.url, threads=2)

    async def settings() -> list[str]:
        async def one() -> str:
            def show(conn) -> str:
                return str(conn.exec_driver_sql("SHOW plan_cache_mode").scalar_one())

            return await db.read(show)

        return list(await asyncio.gather(one(), one(), one(), one()))

    try:
        assert set(asyncio.run(settings())) == {"force_custom_plan"}
    finally:
        asyncio.run(db.dispose())
        fresh.drop()
