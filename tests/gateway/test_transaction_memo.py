"""``repository.derived_from_current`` works a value out of a resource's current version once
per transaction (a document push needs its Patient's BSN three times), and forgets it as soon
as it may be stale: when the resource is written in the transaction, when a savepoint is rolled
back, and when the transaction ends."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from harness import BACKENDS, FreshDatabase

from gateway.fhir.indexing import IndexRows
from gateway.store import repository
from gateway.store.database import Database


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path):
    fresh = FreshDatabase(request.param, tmp_path)
    database = Database(fresh.url, threads=1)
    asyncio.run(database.migrate())
    yield database
    asyncio.run(database.dispose())
    fresh.drop()


class Family:
    """A derivation that counts how often it runs."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(self, stored: repository.StoredVersion | None) -> str | None:
        self.runs += 1
        return None if stored is None else orjson.loads(stored.content or b"{}")["family"]


def patient(family: str) -> bytes:
    return orjson.dumps({"resourceType": "Patient", "id": "p1", "family": family})


def insert(conn, family: str, bsn: str | None = None) -> None:
    repository.insert_resource(
        conn,
        res_type="Patient",
        res_id="p1",
        content=patient(family),
        last_updated_us=1,
        owner_org="90000001",
        patient_ref="Patient/p1",
        index=IndexRows(),
        client_id=False,
        consent=repository.ConsentColumns(patient_key=bsn),
    )


def rename(conn, family: str) -> None:
    previous = repository.current(conn, "Patient", "p1")
    repository.write_version(
        conn,
        previous,
        content=patient(family),
        last_updated_us=previous.last_updated_us + 1,
        method="PUT",
        owner_org="90000001",
        patient_ref="Patient/p1",
        index=IndexRows(),
    )


def test_a_value_is_worked_out_once_per_transaction_and_forgotten_when_stale(db):
    family = Family()

    def derived(conn) -> str | None:
        return repository.derived_from_current(conn, "Patient", "p1", family)

    def first(conn) -> list[str | None]:
        seen = [derived(conn)]  # no such resource yet
        insert(conn, "Jansen")
        seen += [derived(conn), derived(conn)]
        rename(conn, "de Vries")  # written in this transaction: worked out anew
        seen.append(derived(conn))
        savepoint = conn.begin_nested()
        rename(conn, "Bakker")
        seen.append(derived(conn))
        savepoint.rollback()  # the savepoint's version is gone, and so is what came of it
        seen.append(derived(conn))
        return seen

    assert asyncio.run(db.write(first)) == [
        None,
        "Jansen",
        "Jansen",
        "de Vries",
        "Bakker",
        "de Vries",
    ]
    assert family.runs == 5
    # A new transaction reads the resource again.
    assert asyncio.run(db.read(derived)) == "de Vries"
    assert family.runs == 6


def test_a_patient_found_by_bsn_is_not_read_again_for_what_is_derived_from_it(db):
    """A document push finds the sender's Patient by BSN, then keys each resource by it."""
    family = Family()
    asyncio.run(db.write(lambda conn: insert(conn, "Jansen", bsn="999911120")))

    def found_then_derived(conn) -> str | None:
        found = repository.find_patient(conn, "999911120", "90000001")
        assert found is not None and found.res_id == "p1"
        # Changed behind the repository's back: only a read would see it.
        conn.exec_driver_sql(
            "UPDATE resources SET content = ? WHERE rid = ?"
            if conn.dialect.name == "sqlite"
            else "UPDATE resources SET content = %s WHERE rid = %s",
            (patient("Bakker"), found.rid),
        )
        return repository.derived_from_current(conn, "Patient", "p1", family)

    assert asyncio.run(db.write(found_then_derived)) == "Jansen"
    assert (
        asyncio.run(
            db.read(lambda conn: repository.derived_from_current(conn, "Patient", "p1", family))
        )
        == "Bakker"
    )
