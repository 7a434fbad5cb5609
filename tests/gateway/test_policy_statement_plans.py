"""On PostgreSQL the statement that reads the facts of every foreign read's audit basis (the
directory's versions, what was addressed to the organisation, the patient's consents) keeps one
plan for all its calls: with its constants bound, the generic plan read every resource (20 ms on
bench/bench_consent_search.py's store) and PostgreSQL planned the statement anew on each call."""

from __future__ import annotations

import asyncio

import pytest
from harness import PG_URL, FreshDatabase

from consent import NetworkPolicy
from gateway.policy.information import PolicyInformation
from gateway.store.database import Database

needs_postgresql = pytest.mark.skipif(
    not PG_URL, reason="PostgreSQL tests need ZORGBRUG_TEST_DATABASE_URL (CI sets it)"
)


@needs_postgresql
def test_the_audit_basis_facts_statement_is_planned_once_for_every_call(tmp_path):
    fresh = FreshDatabase("postgresql", tmp_path)
    db = Database(fresh.url, threads=1)
    policy = PolicyInformation(NetworkPolicy("opt-in"))

    def calls(conn) -> list[tuple[int, int]]:
        for n in range(20):
            policy.call_facts(conn, "90000001", [n + 1, n + 2], ["999911120"])
        found = conn.exec_driver_sql(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE strpos(statement, 'AS kind') > 0"
        )
        return [(int(generic), int(custom)) for generic, custom in found]

    def store(conn) -> None:
        # A hospital network's proportions: many results, few directory resources.
        conn.exec_driver_sql(
            "INSERT INTO resources (res_type, res_id, version, last_updated_us, deleted, "
            "content, owner_org, patient_key) "
            "SELECT CASE WHEN mod(n, 100) = 0 THEN 'Consent' ELSE 'Observation' END, 'r' || n, 1, "
            "n, false, '{}', '9000000' || (mod(n, 3) + 1), (999000000 + n / 4)::text "
            "FROM generate_series(1, 20000) AS n"
        )
        conn.exec_driver_sql(
            "INSERT INTO resources (res_type, res_id, version, last_updated_us, deleted, "
            "content, owner_org) "
            "SELECT 'Organization', 'o' || n, 1, n, false, '{}', 'network' "
            "FROM generate_series(1, 3) AS n"
        )
        conn.exec_driver_sql("ANALYZE resources")

    async def run() -> list[tuple[int, int]]:
        await db.migrate()
        await db.write(store)
        return await db.read(calls)

    try:
        ((generic, custom),) = asyncio.run(run())
        assert custom <= 5 and generic >= 10, (generic, custom)
    finally:
        asyncio.run(db.dispose())
        fresh.drop()
