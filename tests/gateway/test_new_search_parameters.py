"""IHE MHD's own search parameters (ITI-67 ``creation``, ITI-66 ``sourceId`` and
``designationType``) and the gateway's ``security-context`` of a Binary find also what was
stored before the gateway indexed them: migration 0020 writes their index rows."""

from __future__ import annotations

import pytest
from harness import BACKENDS, LiveServer, start_server
from test_practitioner_search import downgrade

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
