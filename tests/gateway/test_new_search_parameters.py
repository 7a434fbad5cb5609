"""IHE MHD's own search parameters (ITI-67 ``creation``, ITI-66 ``sourceId`` and
``designationType``) and the gateway's ``security-context`` of a Binary find also what was
stored before the gateway indexed them: migration 0020 writes their index rows. Dates stored
before they covered their precision are found as new ones are: migration 0021."""

from __future__ import annotations

import asyncio

import pytest
from harness import BACKENDS, LiveServer, start_server
from sqlalchemy import text
from test_practitioner_search import downgrade

from gateway.store.database import Database

MHD = "https://profiles.ihe.net/ITI/MHD/StructureDefinition"
SOURCE_ID = "urn:oid:1.3.6.1.4.1.21367.2005.3.7"


def found(server: LiveServer, res_type: str, **params: str) -> int:
    with server.client() as fhir:
        answer = fhir.get(f"/{res_type}", params=params, headers={"Prefer": "handling=strict"})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["total"])


def searches(server: LiveServer, document: str) -> list[int]:
    return [
        found(server, "Binary", **{"security-context": f"DocumentReference/{document}"}),
        found(server, "DocumentReference", creation="2024-05-01"),
        found(server, "DocumentReference", creation="lt2024-05-01"),
        found(server, "List", sourceId=SOURCE_ID),
        found(server, "List", designationType="http://snomed.info/sct|225728007"),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_mhd_parameters_find_documents_also_after_an_upgrade(backend, tmp_path):
    server, database = start_server(backend, tmp_path)
    try:
        with server.client() as fhir:
            document = {
                "resourceType": "DocumentReference",
                "status": "current",
                "content": [
                    {
                        "attachment": {
                            "contentType": "application/pdf",
                            "creation": "2024-05-01T10:00:00+02:00",
                        }
                    }
                ],
            }
            submission = {
                "resourceType": "List",
                "status": "current",
                "mode": "working",
                "extension": [
                    {"url": f"{MHD}/ihe-sourceId", "valueIdentifier": {"value": SOURCE_ID}},
                    {
                        "url": f"{MHD}/ihe-designationType",
                        "valueCodeableConcept": {
                            "coding": [{"system": "http://snomed.info/sct", "code": "225728007"}]
                        },
                    },
                ],
            }
            created = fhir.post("/DocumentReference", json=document)
            assert created.status_code == 201
            letter = created.json()["id"]
            assert fhir.post("/List", json=submission).status_code == 201
            content = fhir.post(
                "/Binary",
                content=b"%PDF-1.4",
                headers={
                    "Content-Type": "application/pdf",
                    "X-Security-Context": f"DocumentReference/{letter}",
                },
            )
            assert content.status_code == 201
        assert searches(server, letter) == [1, 1, 0, 1, 1]
        server.stop()

        downgrade(database.url, "0019")  # a store from before: no rows for these parameters
        server = LiveServer(server.settings, backend).start()  # migrates to the newest
        assert searches(server, letter) == [1, 1, 0, 1, 1]
    finally:
        server.stop()
        database.drop()


def dated(server: LiveServer, patient: str) -> list[int]:
    return [
        found(server, "Observation", subject=f"Patient/{patient}", date=value)
        for value in ("ge2025-03-04T00:00:00.1235Z", "9999")
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_dates_stored_before_cover_their_precision_after_an_upgrade(backend, tmp_path):
    """Migration 0021 rewrites the date rows an older gateway wrote: a fraction of a second
    covered one microsecond, and the year 9999 had no row."""
    server, database = start_server(backend, tmp_path)
    try:
        with server.client() as fhir:
            patient = fhir.post("/Patient", json={"resourceType": "Patient"}).json()["id"]
            for when in ("2025-03-04T00:00:00.123Z", "9999-12-31T23:59:59Z"):
                observation = {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "Hb"},
                    "subject": {"reference": f"Patient/{patient}"},
                    "effectiveDateTime": when,
                }
                assert fhir.post("/Observation", json=observation).status_code == 201
        assert dated(server, patient) == [2, 1]
        server.stop()

        db = Database(database.url, threads=1)
        try:
            with db.engine.begin() as conn:  # the rows as the older gateway wrote them
                conn.execute(
                    text("UPDATE idx_date SET hi = lo WHERE lo > 0 AND lo < :y9999"),
                    {"y9999": 253370764800000000},
                )
                conn.execute(
                    text("DELETE FROM idx_date WHERE lo >= :y9999"), {"y9999": 253370764800000000}
                )
        finally:
            asyncio.run(db.dispose())
        downgrade(database.url, "0020")
        server = LiveServer(server.settings, backend).start()  # migrates to the newest
        assert dated(server, patient) == [2, 1]
    finally:
        server.stop()
        database.drop()
