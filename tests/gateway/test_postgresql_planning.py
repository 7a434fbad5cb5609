"""On PostgreSQL a search's transaction plans each statement for its values: after five runs of
a prepared search PostgreSQL would otherwise move to a generic plan, which cannot tell a
patient's few rows from a code's many (bench/run.py: Observation?patient=&code= went from 2 to
45 ms). Other transactions keep PostgreSQL's default, and so do searches by ``_id`` or by a
patient's BSN, whose matches are few whatever the values: planning them anew took ten times as
long as running them. A search that counts all its matches is planned once for any values:
planned for its values, PostgreSQL could take it for a page that stops early."""

from __future__ import annotations

import asyncio

import pytest
from harness import PG_URL, FreshDatabase

from gateway.fhir.indexing import IndexRows
from gateway.fhir.search import parse_search
from gateway.fhir.search_params import registry
from gateway.store import repository
from gateway.store.database import Database
from gateway.store.search_sql import keyed

needs_postgresql = pytest.mark.skipif(
    not PG_URL, reason="PostgreSQL tests need ZORGBRUG_TEST_DATABASE_URL (CI sets it)"
)


def show(conn) -> tuple[str, str]:
    return (
        str(conn.exec_driver_sql("SHOW plan_cache_mode").scalar_one()),
        str(conn.exec_driver_sql("SHOW max_parallel_workers_per_gather").scalar_one()),
    )


@needs_postgresql
def test_a_search_transaction_plans_for_values_or_generically_and_leaves_others_alone(tmp_path):
    """... and without parallel workers, whose start cost a search's page more than its work."""
    fresh = FreshDatabase("postgresql", tmp_path)
    db = Database(fresh.url, threads=1)

    def searching(conn, planning="for values") -> tuple[str, str]:
        # A page after the first, or a count: no row key to ask for.
        assert repository.start_search(conn, snapshot=False, planning=planning) == (None, None)
        return show(conn)

    def paging(conn, planning="for values") -> tuple[tuple[str, str], int | None]:
        # A first page: the same settings, asked with the newest row key that pins the pages.
        newest, _ = repository.start_search(conn, snapshot=True, planning=planning)
        return show(conn), newest

    async def run() -> tuple[object, ...]:
        await db.migrate()
        return (
            await db.read(show),
            await db.read(searching),
            *(await db.read(paging)),
            *(await db.read(lambda conn: paging(conn, "kept"))),
            await db.read(lambda conn: searching(conn, "generic")),
            *(await db.read(lambda conn: paging(conn, "generic"))),
            await db.read(show),
        )

    try:
        (
            before,
            during,
            first_page,
            newest,
            keyed_page,
            keyed_newest,
            counting,
            counted_page,
            counted_newest,
            after,
        ) = asyncio.run(run())
        assert during == first_page == ("force_custom_plan", "0")
        assert counting == counted_page == ("force_generic_plan", "0")
        assert newest == keyed_newest == counted_newest == 0  # an empty store
        assert before == after == keyed_page
        assert before[0] == "auto"
    finally:
        asyncio.run(db.dispose())
        fresh.drop()


BSN_CHAIN = "http://fhir.nl/fhir/NamingSystem/bsn|999911120"


@pytest.mark.parametrize(
    ("res_type", "params", "expected"),
    [
        ("Patient", [("_id", "a,b")], True),
        ("Observation", [("patient.identifier", BSN_CHAIN)], True),
        ("Observation", [("subject.identifier", BSN_CHAIN), ("code", "718-7")], True),
        ("Observation", [("patient", "Patient/a"), ("code", "718-7")], False),
        ("Observation", [("patient.identifier", "urn:oid:1.2.3|x")], False),  # not a BSN
        ("Patient", [("family", "Jans"), ("birthdate", "ge1950")], False),
        ("Patient", [("gender", "male")], False),
        ("Observation", [("code", "718-7")], False),
    ],
)
def test_only_searches_by_id_or_bsn_may_keep_a_generic_plan(res_type, params, expected):
    query = parse_search(
        res_type,
        params,
        registry(),
        default_count=20,
        max_count=1000,
        strict=True,
        own_base="http://gateway/fhir",
    )
    assert keyed(query) is expected


@needs_postgresql
def test_sharing_with_a_recipient_is_planned_for_each_push(tmp_path):
    """A push's share statement finds the shares to renew by key. Kept prepared, PostgreSQL
    went on with the plan it made while resource_shares was small, a scan of the whole table:
    after 10,000 pushes 8 ms per push, and growing (auto_explain under bench_exchange load)."""
    fresh = FreshDatabase("postgresql", tmp_path)
    db = Database(fresh.url, threads=1)  # one connection: the one psycopg would prepare on

    def push(conn, n: int) -> None:
        rid = repository.insert_resource(
            conn,
            res_type="Patient",
            res_id=f"p{n}",
            content=b'{"resourceType": "Patient"}',
            last_updated_us=n + 1,
            owner_org="90000001",
            patient_ref=None,
            index=IndexRows(),
            client_id=False,
        )
        repository.share(conn, [(rid, 1)], "90000002", now_us=n + 1)

    def prepared(conn) -> list[str]:
        rows = conn.exec_driver_sql("SELECT statement FROM pg_prepared_statements").scalars()
        return [s for s in rows if "resource_shares" in s]

    async def run() -> list[str]:
        await db.migrate()
        for n in range(12):  # psycopg prepares a statement on its sixth run
            await db.write(lambda conn, n=n: push(conn, n))
        return await db.read(prepared)

    try:
        assert asyncio.run(run()) == []
    finally:
        asyncio.run(db.dispose())
        fresh.drop()
