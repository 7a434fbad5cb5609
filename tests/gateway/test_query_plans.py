"""No statement the gateway runs to serve its API reads a whole table that grows with the data.

Every statement of a tour through the API (CRUD, history, searches with includes, a transaction,
an ITI-65 push, the recipient's inbox, ITI-67 and ITI-68, a consent, an emergency, the DPO's
views) is traced on SQLite as it ran, with its values, and planned again with ``EXPLAIN QUERY
PLAN``. A full scan of such a table costs more with every row stored: one of every version per
pushed document made each ITI-65 submission slower than the one before (wrk with the
bench_exchange.py bundle: 175 submissions/s on a fresh store, 82/s once it held 800 MB).
"""

from __future__ import annotations

import sqlite3
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import BSN_SYSTEM as BSN
from harness import LiveServer, break_the_glass, start_server
from sqlalchemy import event
from sqlalchemy.engine import Engine

from gateway.exchange.compose import provide_document_bundle
from gateway.store.schema import metadata

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "consent"))
from consent_builders import consent_json, provision  # the consent package's own builders

URA = "http://fhir.nl/fhir/NamingSystem/ura"
PATIENT_BSN = "999911120"

# Tables that stay small whatever is stored (configuration, keys): a scan of them is cheap.
SMALL_TABLES = {
    "data_category_lineage",  # the fixed tree of data categories
    "master_key_checks",  # one row per master key
    "token_secrets",  # the token signing secrets in use
}
GROWING_TABLES = {table.name for table in metadata.sorted_tables} - SMALL_TABLES
PLANNED = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")


class Traced:
    """The statements every SQLite connection opened from now on runs, with their values."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, dbapi_connection: object, _record: object) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.set_trace_callback(self._keep)

    def _keep(self, sql: str) -> None:
        with self._lock:
            self.statements.append(sql)

    def taken(self) -> list[str]:
        with self._lock:
            taken, self.statements = self.statements, []
        return taken


@pytest.fixture
def traced_server(tmp_path: Path) -> Iterator[tuple[LiveServer, Traced]]:
    traced = Traced()
    event.listen(Engine, "connect", traced)
    try:
        server, database = start_server("sqlite", tmp_path)
        try:
            yield server, traced
        finally:
            server.stop()
            database.drop()
    finally:
        event.remove(Engine, "connect", traced)


def scans_of_growing_tables(database: Path, statements: list[str]) -> dict[str, str]:
    """Each growing table some statement scans, with the first such statement."""
    found: dict[str, str] = {}
    with sqlite3.connect(database) as planner:
        for sql in dict.fromkeys(statements):
            if sql.lstrip().split(None, 1)[0].upper() not in PLANNED:
                continue
            for _id, _parent, _unused, step in planner.execute(f"EXPLAIN QUERY PLAN {sql}"):
                words = step.split()
                if words[0] == "SCAN" and words[1] in GROWING_TABLES:
                    found.setdefault(words[1], " ".join(sql.split())[:400])
    return found


def table_reads_behind_index(database: Path, statements: list[str], index: str) -> set[str]:
    """The steps of queries that find rows through ``index`` and then read the table rows
    (a DELETE reads what it removes)."""
    found: set[str] = set()
    with sqlite3.connect(database) as planner:
        for sql in dict.fromkeys(statements):
            if sql.lstrip().split(None, 1)[0].upper() not in ("SELECT", "WITH"):
                continue
            for _id, _parent, _unused, step in planner.execute(f"EXPLAIN QUERY PLAN {sql}"):
                if f"USING INDEX {index} " in step:
                    found.add(f"{step}: {' '.join(sql.split())[:400]}")
    return found


def own_record(fhir) -> None:
    """A hospital's own data through the core FHIR interactions."""
    patient = fhir.post(
        "/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": BSN, "value": PATIENT_BSN}],
            "name": [{"family": "Jansen", "given": ["Piet"]}],
            "birthDate": "1970-01-01",
            "gender": "male",
        },
    ).json()
    pid = patient["id"]
    result = fhir.post(
        "/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": "2025-06-01",
        },
    ).json()
    oid = result["id"]
    calls = [
        fhir.put(f"/Observation/{oid}", json={**result, "status": "amended"}),
        fhir.get(f"/Observation/{oid}/_history"),
        fhir.get(f"/Observation/{oid}/_history/1"),
        fhir.get("/Observation/_history"),
        fhir.get(
            "/Observation",
            params={
                "patient": pid,
                "code": "http://loinc.org|718-7",
                "_include": "Observation:patient",
            },
        ),
        fhir.get(
            "/Observation",
            params={"patient.identifier": f"{BSN}|{PATIENT_BSN}", "_total": "accurate"},
        ),
        fhir.get(
            "/Patient",
            params={
                "family": "Jan",
                "birthdate": "ge1960",
                "_revinclude": "Observation:patient",
                "_sort": "-_lastUpdated",
            },
        ),
        fhir.get(
            "/Patient",
            params={"family": "Jan", "birthdate": "ge1960", "_sort": "given", "_total": "accurate"},
        ),
        fhir.get("/Patient", params={"name:contains": "ans", "_count": "1"}),
        fhir.get("/Patient", params={"identifier": f"{BSN}|{PATIENT_BSN}", "_summary": "count"}),
        fhir.get("/Patient", params={"_lastUpdated": "gt2020-01-01", "gender:not": "female"}),
        fhir.post(
            "/Patient",
            json={"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "1"}]},
            headers={"If-None-Exist": "identifier=urn:x|1"},
        ),
        fhir.post(
            "",
            json={
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                        "resource": {"resourceType": "Patient", "name": [{"family": "X"}]},
                        "request": {"method": "POST", "url": "Patient"},
                    }
                ],
            },
        ),
        fhir.delete(f"/Observation/{oid}"),
    ]
    assert [c.status_code for c in calls] == [200] * 11 + [201, 200, 204], [
        c.text[:200] for c in calls
    ]
    assert fhir.get(f"/Observation/{oid}").status_code == 410


def test_serving_the_api_scans_no_table_that_grows(traced_server, tmp_path):
    server, traced = traced_server
    sender = server.hospital("90000801", "Verzendend Ziekenhuis")
    recipient = server.hospital("90000802", "Ontvangend Ziekenhuis")
    server.agreement(sender.ura, recipient.ura)
    clinician = server.person(recipient, "dokter", "clinician")
    dpo = server.person(sender, "fg", "dpo")
    traced.taken()  # what registering them ran is not the API's

    with server.client(sender) as fhir:
        own_record(fhir)
        consent = consent_json("c", provision("permit", to=[recipient.ura]), patient=PATIENT_BSN)
        consent.pop("id")
        consent.pop("organization")
        assert fhir.post("/Consent", json=consent).status_code == 201
        for _ in range(2):
            bundle = provide_document_bundle(
                content=b"%PDF-1.4 " + uuid.uuid4().bytes * 100,
                content_type="application/pdf",
                bsn=PATIENT_BSN,
                sender=sender.ura,
                recipients=[recipient.ura],
                type_code="34133-9",
                title="Ontslagbrief",
                unique_id=f"urn:uuid:{uuid.uuid4()}",
            )
            assert fhir.post("", json=bundle).status_code == 200
        patient_id = fhir.get("/Patient", params={"identifier": f"{BSN}|{PATIENT_BSN}"}).json()[
            "entry"
        ][0]["resource"]["id"]

    with server.client(recipient) as fhir:
        inbox = fhir.get(
            "/Task", params={"owner.identifier": f"{URA}|{recipient.ura}", "status": "requested"}
        )
        task = inbox.json()["entry"][0]["resource"]
        assert fhir.put(f"/Task/{task['id']}", json={**task, "status": "completed"}).is_success
        found = fhir.get(
            "/DocumentReference",
            params={"patient.identifier": f"{BSN}|{PATIENT_BSN}", "status": "current"},
        ).json()
        url = found["entry"][0]["resource"]["content"][0]["attachment"]["url"]
        assert fhir.get(f"/{url}", headers={"Accept": "application/pdf"}).status_code == 200
        shared = fhir.get("/Observation", params={"patient.identifier": f"{BSN}|{PATIENT_BSN}"})
        assert shared.status_code == 200

    with clinician:
        assert break_the_glass(clinician, PATIENT_BSN, "bewusteloos binnengebracht").is_success
        shown = clinician.get("/Observation", params={"patient.identifier": f"{BSN}|{PATIENT_BSN}"})
        assert shown.json()["total"] == 0  # the one result was deleted

    with dpo:
        assert dpo.get(f"/Patient/{patient_id}/$access").status_code == 200
        assert dpo.get("/AuditEvent", params={"patient": PATIENT_BSN, "_count": "5"}).is_success

    statements = traced.taken()
    assert len(statements) > 300, "the tour ran through the gateway's SQLite connections"
    assert scans_of_growing_tables(tmp_path / "zorgbrug.db", statements) == {}
    # A date is probed per candidate (Patient?family=…&birthdate=…), and a token by
    # system|code looked up (identifier=…): each from its index alone, which holds every
    # column they ask for.
    for index in ("ix_idx_date_rid", "ix_idx_token_lookup"):
        assert table_reads_behind_index(tmp_path / "zorgbrug.db", statements, index) == set()
