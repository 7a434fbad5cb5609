"""Consents recorded through the FHIR API: each official example accepted or refused (422)
with the element and the reason, never a rule silently ignored."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from harness import FHIR_EXAMPLES

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "consent"))
from test_consent_spec_examples import EXPECTED  # the consent package's own table

BSN = "http://fhir.nl/fhir/NamingSystem/bsn"
URA = "http://fhir.nl/fhir/NamingSystem/ura"


@pytest.fixture(scope="module")
def patient_id(server):
    with server.client() as fhir:
        # The examples name Organization/f001; give it an URA so it can be resolved.
        fhir.put(
            "/Organization/f001",
            json={
                "resourceType": "Organization",
                "id": "f001",
                "identifier": [{"system": URA, "value": "90000991"}],
            },
        )
        created = fhir.post(
            "/Patient",
            json={"resourceType": "Patient", "identifier": [{"system": BSN, "value": "999911120"}]},
        )
        return created.json()["id"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_official_consent_example_is_accepted_or_refused_with_its_reason(fhir, patient_id, name):
    consent = json.loads((FHIR_EXAMPLES / "Consent" / name).read_text())
    consent["patient"] = {"reference": f"Patient/{patient_id}"}
    response = fhir.post("/Consent", json=consent)
    expected = EXPECTED[name]
    if expected is None:
        assert response.status_code == 201, response.text
        return
    element, reason = expected
    assert response.status_code == 422, response.text
    issue = response.json()["issue"][0]
    assert issue["expression"] == [element]
    assert reason in issue["diagnostics"]


def test_a_consent_about_a_patient_of_another_hospital_is_refused(server, fhir):
    other = server.hospital("90000992", "Ander")
    with server.client(other) as theirs:
        their_patient = theirs.post(
            "/Patient",
            json={"resourceType": "Patient", "identifier": [{"system": BSN, "value": "999990652"}]},
        ).json()["id"]
    consent = json.loads(
        (FHIR_EXAMPLES / "Consent" / "Consent-consent-example-notOrg.json").read_text()
    )
    consent["patient"] = {"reference": f"Patient/{their_patient}"}
    response = fhir.post("/Consent", json=consent)
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Consent.patient.reference"]
