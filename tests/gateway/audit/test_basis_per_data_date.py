"""The audit basis of each result a partner sees names the consents that open that result: where a
consent covers only data of some period, results of one patient from inside and outside it are
opened by different consents, though the gateway decides once for a patient's results alike."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "consent"))
from consent_builders import consent_json, provision  # the consent package's own builders

HOLDER, PARTNER = "90000751", "90000752"
PATIENT = "999911156"
BSN = "http://fhir.nl/fhir/NamingSystem/bsn"
URA = "http://fhir.nl/fhir/NamingSystem/ura"


def result(fhir: Any, patient: str, when: str) -> str:
    created = fhir.post(
        "/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "Hb"},
            "subject": {"reference": f"Patient/{patient}"},
            "effectiveDateTime": when,
        },
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def record_consent(fhir: Any, rules: dict[str, Any]) -> str:
    consent = consent_json("c", rules, patient=PATIENT)
    consent.pop("id")
    consent["organization"] = [{"identifier": {"system": URA, "value": HOLDER}}]
    created = fhir.post("/Consent", json=consent)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def test_results_inside_and_outside_a_consents_data_period_name_their_own_consents(server):
    holder = server.hospital(HOLDER, "Houdend Ziekenhuis")
    partner = server.hospital(PARTNER, "Partner Ziekenhuis")
    server.agreement(HOLDER, PARTNER)
    with server.client(holder) as fhir:
        patient = fhir.post(
            "/Patient",
            json={"resourceType": "Patient", "identifier": [{"system": BSN, "value": PATIENT}]},
        )
        assert patient.status_code == 201, patient.text
        old = result(fhir, patient.json()["id"], "2020-03-01T10:00:00+01:00")
        recent = result(fhir, patient.json()["id"], "2024-03-01T10:00:00+01:00")
        everything = record_consent(fhir, provision("permit", to=[PARTNER]))
        period = record_consent(
            fhir, provision("permit", to=[PARTNER], data_period=("2019-01-01", "2021-01-01"))
        )
    with server.person(partner, f"arts-{uuid.uuid4().hex[:6]}", "clinician") as api:
        found = api.get("/Observation", params={"patient.identifier": f"{BSN}|{PATIENT}"})
        assert found.status_code == 200, found.text
        assert found.json()["total"] == 2
    run = server.cli("audit", "report", "--patient", PATIENT, "--format", "json")
    assert run.returncode == 0, run.stderr
    reads = [
        e for e in json.loads(run.stdout)["events"] if e["event"] == "search-type" and e["data"]
    ]
    consents = {
        reference.split("/_history")[0]: set(e["consents"].split())
        for e in reads
        for reference in e["data"].split()
    }
    assert consents == {
        f"Observation/{old}": {f"Consent/{everything}", f"Consent/{period}"},
        f"Observation/{recent}": {f"Consent/{everything}"},
    }
