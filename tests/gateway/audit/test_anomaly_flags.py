"""The DPO's anomaly flags: a person opening many distinct patients in a short time, every
emergency access, and agents refused again and again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import BACKENDS, LiveServer, start_server, valid_bsns

BSN = "http://fhir.nl/fhir/NamingSystem/bsn"
OWN, OTHER = "90000801", "90000802"


@pytest.fixture(scope="module", params=BACKENDS)
def gateway(request, tmp_path_factory) -> Iterator[LiveServer]:
    live, database = start_server(
        request.param,
        tmp_path_factory.mktemp("flags"),
        audit_flag_patients=3,
        audit_flag_denials=2,
    )
    yield live
    live.stop()
    database.drop()


def flags(parameters: dict) -> list[dict[str, object]]:
    return [
        {
            part["name"]: next(v for k, v in part.items() if k.startswith("value"))
            for part in p["part"]
        }
        for p in parameters.get("parameter", [])
    ]


def test_many_patients_emergencies_and_repeated_denials_are_flagged(gateway):
    own = gateway.hospital(OWN, "Eigen Ziekenhuis")
    other = gateway.hospital(OTHER, "Ander Ziekenhuis")
    numbers = valid_bsns(999820000)
    with gateway.client(own) as fhir:
        patients = [
            fhir.post(
                "/Patient",
                json={
                    "resourceType": "Patient",
                    "identifier": [{"system": BSN, "value": next(numbers)}],
                },
            ).json()
            for _ in range(4)
        ]
    curious = gateway.person(own, "nieuwsgierig", "clinician")
    for patient in patients[:3]:
        assert curious.get(f"/Patient/{patient['id']}").status_code == 200
    careful = gateway.person(own, "zorgvuldig", "clinician")
    assert careful.get(f"/Patient/{patients[0]['id']}").status_code == 200
    with gateway.client(other) as fhir:
        for patient in patients[:2]:
            assert fhir.get(f"/Patient/{patient['id']}").status_code == 404
    emergency = careful.post(
        "/Patient/$break-the-glass",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "patient", "valueIdentifier": patients[3]["identifier"][0]},
                {"name": "reason", "valueString": "reanimatie"},
            ],
        },
    )
    assert emergency.status_code == 201, emergency.text
    dpo = gateway.person(own, "fg", "dpo")
    answer = dpo.get("/AuditEvent/$anomalies")
    assert answer.status_code == 200, answer.text
    found = {(f["kind"], f["agent"]) for f in flags(answer.json())}
    report = dpo.post("/AuditEvent/$report", data={"format": "json"}).json()
    people = {e["user_name"]: e["user"] for e in report["events"] if e["user_name"]}
    assert ("many-patients", people["nieuwsgierig"]) in found
    assert ("many-patients", people["zorgvuldig"]) not in found
    assert ("emergency", people["zorgvuldig"]) in found
    assert ("repeated-denials", other.client_id) in found
    assert {f["kind"] for f in report["flags"]} >= {
        "many-patients",
        "emergency",
        "repeated-denials",
    }
