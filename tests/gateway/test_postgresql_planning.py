"""On PostgreSQL a search's transaction plans each statement for its values: after five runs of
a prepared search PostgreSQL would otherwise move to a generic plan, which cannot tell a
patient's few rows from a code's many (bench/run.py: Observation?patient=&code= went from 2 to
45 ms). Other transactions keep PostgreSQL's default."""

from __future__ import annotations

import asyncio

import pytest
from harness import PG_URL, FreshDatabase

from gateway.store import repository
from gateway.store.database import Database, plan_for_values

pytestmark = pytest.mark.skipif(
    not PG_URL, reason="PostgreSQL tests need ZORGBRUG_TEST_DATABASE_URL (CI sets it)"
)


def show(conn) -> tuple[str, str]:
    return (
        str(conn.exec_driver_sql("SHOW plan_cache_mode").scalar_one()),
        str(conn.exec_driver_sql("SHOW max_parallel_workers_per_gather").scalar_one()),
    )


def test_a_search_transaction_plans_for_values_and_leaves_others_alone(tmp_path):
    """... and without parallel workers, whose start cost a search's page more than its work."""
    fresh = FreshDatabase("postgresql", tmp_path)
    db = Database(fresh.url, threads=1)

    def searching(conn) -> tuple[str, str]:
        plan_for_values(conn)
        return show(conn)

    def paging(conn) -> tuple[tuple[str, str], int | None]:
        # A first page: the same settings, asked with the newest row key that pins the pages.
        newest = repository.start_search(conn, snapshot=True)
        return show(conn), newest

    async def run() -> tuple[object, ...]:
        await db.migrate()
        return (
            await db.read(show),
            await db.read(searching),
            *(await db.read(paging)),
            await db.read(show),
        )

    try:
        before, during, first_page, newest, after = asyncio.run(run())
        assert during == first_page == ("force_custom_plan", "0")
        assert newest == 0  # an empty store
        assert before == after
        assert before[0] == "auto"
    finally:
        asyncio.run(db.dispose())
        fresh.drop()
