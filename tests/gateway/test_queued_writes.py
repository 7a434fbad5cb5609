"""On PostgreSQL a write whose result nobody reads waits for the transaction's next statement
and travels with it (``DriverQuery.run_later``), and a created resource takes a row key
reserved ahead (``repository.reserve_rids``). What a transaction sees and commits must not
change: each test also runs on SQLite, where the writes run at once."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from harness import BACKENDS, FreshDatabase
from sqlalchemy.exc import DBAPIError

from gateway.fhir.indexing import IndexRows
from gateway.store import repository
from gateway.store.database import Database


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path):
    fresh = FreshDatabase(request.param, tmp_path)
    database = Database(fresh.url, threads=1)  # one connection: every transaction reuses it
    asyncio.run(database.migrate())
    yield database
    asyncio.run(database.dispose())
    fresh.drop()


def create(conn, res_id: str) -> int:
    return repository.insert_resource(
        conn,
        res_type="Patient",
        res_id=res_id,
        content=orjson.dumps({"resourceType": "Patient", "id": res_id}),
        last_updated_us=1,
        owner_org="90000001",
        patient_ref=f"Patient/{res_id}",
        index=IndexRows(),
        client_id=False,
    )


def stored_ids(db: Database) -> list[str]:
    def read(conn) -> list[str]:
        return [
            stored.res_id
            for res_id in ("p1", "p2", "p3")
            if (stored := repository.current(conn, "Patient", res_id)) is not None
        ]

    return asyncio.run(db.read(read))


def test_the_next_statement_sees_a_waiting_write(db):
    def work(conn) -> tuple[int, repository.StoredVersion | None]:
        rid = create(conn, "p1")
        return rid, repository.current(conn, "Patient", "p1")

    rid, seen = asyncio.run(db.write(work))
    assert seen is not None and seen.rid == rid and seen.version == 1
    assert stored_ids(db) == ["p1"]


def test_a_transaction_that_fails_sends_none_of_its_waiting_writes(db):
    def fails(conn) -> None:
        create(conn, "p1")
        raise RuntimeError("the request fails after its create")

    with pytest.raises(RuntimeError):
        asyncio.run(db.write(fails))
    # The next transaction on the same connection must not carry the create along.
    asyncio.run(db.write(lambda conn: create(conn, "p2")))
    assert stored_ids(db) == ["p2"]


def test_a_waiting_write_that_fails_fails_its_whole_transaction(db):
    asyncio.run(db.write(lambda conn: create(conn, "p1")))

    def collides(conn) -> None:
        create(conn, "p2")
        create(conn, "p1")  # a second p1: the unique (type, id) refuses it, at the COMMIT

    with pytest.raises(DBAPIError):
        asyncio.run(db.write(collides))
    assert stored_ids(db) == ["p1"]  # p2 went with it
    asyncio.run(db.write(lambda conn: create(conn, "p3")))  # the connection works on
    assert stored_ids(db) == ["p1", "p3"]


def test_creates_take_distinct_increasing_row_keys_beyond_those_reserved(db):
    def work(conn) -> list[int]:
        repository.reserve_rids(conn, 1)
        return [create(conn, res_id) for res_id in ("p1", "p2", "p3")]

    rids = asyncio.run(db.write(work))
    assert rids == sorted(set(rids))

    def current_rids(conn) -> list[int]:
        return [repository.current(conn, "Patient", r).rid for r in ("p1", "p2", "p3")]

    assert asyncio.run(db.read(current_rids)) == rids
    # Keys reserved and left unused are not handed out again.

    def reserve_more_than_used(conn) -> int:
        repository.reserve_rids(conn, 5)
        return create(conn, "p4")

    first = asyncio.run(db.write(reserve_more_than_used))
    later = asyncio.run(db.write(lambda conn: create(conn, "p5")))
    assert rids[-1] < first < later
