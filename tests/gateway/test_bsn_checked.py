"""A BSN is checked on every write, not only in ITI-65: an identifier in the BSN system (the
http://fhir.nl URI or its legacy OID) that fails the elfproef is a 422 naming it, and nothing
of the request is stored."""

from __future__ import annotations

from typing import Any

import pytest
from harness import valid_bsns

BSN = "http://fhir.nl/fhir/NamingSystem/bsn"
LEGACY_BSN = "urn:oid:2.16.840.1.113883.2.4.6.3"
BSNS = valid_bsns(999_930_000)
INVALID = "999930001"  # one digit off a valid test BSN: fails the elfproef


def patient(bsn: str, system: str = BSN, family: str = "Elfproef") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": system, "value": bsn}],
        "name": [{"family": family}],
    }


def refused(response, expression: str, value: str) -> None:
    assert response.status_code == 422, response.text
    issue = response.json()["issue"][0]
    assert issue["expression"] == [expression]
    assert f"'{value}' is not a valid BSN" in issue["diagnostics"]


def count(fhir, res_type: str, **params: str) -> int:
    answer = fhir.get(f"/{res_type}", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()["total"]


def test_the_invalid_bsn_of_this_module_fails_the_elfproef():
    from gateway.fhir.dutch_identifiers import is_valid_bsn

    assert not is_valid_bsn(INVALID)
    assert is_valid_bsn(next(valid_bsns(999_930_000)))


@pytest.mark.parametrize("system", [BSN, LEGACY_BSN])
def test_a_patient_with_an_invalid_bsn_is_refused_in_either_system(fhir, system):
    refused(fhir.post("/Patient", json=patient(INVALID, system)), "Patient.identifier[0]", INVALID)
    refused(
        fhir.put("/Patient/elfproef-put", json=patient(INVALID, system) | {"id": "elfproef-put"}),
        "Patient.identifier[0]",
        INVALID,
    )
    assert count(fhir, "Patient", identifier=INVALID) == 0
    assert fhir.get("/Patient/elfproef-put").status_code == 404


def test_a_valid_bsn_in_the_legacy_system_is_accepted_and_found_by_the_fhir_nl_system(fhir):
    bsn = next(BSNS)
    created = fhir.post("/Patient", json=patient(bsn, LEGACY_BSN))
    assert created.status_code == 201, created.text
    assert count(fhir, "Patient", identifier=f"{BSN}|{bsn}") == 1


def test_an_update_to_an_invalid_bsn_keeps_the_current_version(fhir):
    bsn = next(BSNS)
    created = fhir.post("/Patient", json=patient(bsn)).json()
    changed = patient(INVALID, family="Changed") | {"id": created["id"]}
    refused(fhir.put(f"/Patient/{created['id']}", json=changed), "Patient.identifier[0]", INVALID)
    current = fhir.get(f"/Patient/{created['id']}").json()
    assert current["meta"]["versionId"] == "1"
    assert current["identifier"][0]["value"] == bsn


def test_a_reference_by_an_invalid_bsn_is_refused(fhir):
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "subject": {"identifier": {"system": BSN, "value": INVALID}},
    }
    refused(fhir.post("/Observation", json=observation), "Observation.subject.identifier", INVALID)


def test_a_transaction_with_one_invalid_bsn_stores_nothing(fhir):
    good, family = next(BSNS), "Transactie-elfproef"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{n}",
                "resource": patient(bsn, family=family),
                "request": {"method": "POST", "url": "Patient"},
            }
            for n, bsn in enumerate((good, INVALID))
        ],
    }
    answer = fhir.post("", json=bundle)
    refused(answer, "Bundle.entry[1].resource.identifier[0]", INVALID)
    assert count(fhir, "Patient", family=family) == 0


def test_an_invalid_bsn_in_any_identifier_element_is_refused(fhir):
    extended = patient(next(BSNS)) | {
        "extension": [
            {
                "url": "https://example.org/fhir/StructureDefinition/other-bsn",
                "valueIdentifier": {"system": BSN, "value": INVALID},
            }
        ]
    }
    refused(fhir.post("/Patient", json=extended), "Patient.extension[0].valueIdentifier", INVALID)
    grouped = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "paracetamol"},
        "subject": {"display": "Elfproef"},
        "groupIdentifier": {"system": LEGACY_BSN, "value": INVALID},
    }
    refused(
        fhir.post("/MedicationRequest", json=grouped),
        "MedicationRequest.groupIdentifier",
        INVALID,
    )


def test_a_bsn_whose_weighted_sum_is_zero_passes_the_elfproef_as_in_the_adapters(fhir):
    # 9·1 - 1·9 = 0 is divisible by 11: the elfproef the adapters (HL7 v2, CSV, CDA) apply
    # too, so an MLLP message with it is not refused by the gateway after the adapter took it.
    created = fhir.post("/Patient", json=patient("100000009"))
    assert created.status_code == 201, created.text
