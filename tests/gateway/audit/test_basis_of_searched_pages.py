"""The audit basis of a partner's search results is taken from the search's own SQL (the consent
grant and the one agreement that opened each result) where that tells what consent.decide would:
with two agreements covering the same data, decide names the first, and so must the audit."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "consent"))
from consent_builders import consent_json, provision  # the consent package's own builders

HOLDER, PARTNER = "90000761", "90000762"
PATIENT = "999911168"
BSN = "http://fhir.nl/fhir/NamingSystem/bsn"
URA = "http://fhir.nl/fhir/NamingSystem/ura"


def search_basis(server: Any, partner: Any) -> list[dict[str, Any]]:
    """The partner's search of the patient's results, and the basis its audit record gives."""
    with server.person(partner, f"arts-{uuid.uuid4().hex[:6]}", "clinician") as api:
        found = api.get("/Observation", params={"patient.identifier": f"{BSN}|{PATIENT}"})
        assert found.status_code == 200, found.text
        assert found.json()["total"] == 1
    run = server.cli("audit", "report", "--patient", PATIENT, "--format", "json")
    assert run.returncode == 0, run.stderr
    return [
        e for e in json.loads(run.stdout)["events"] if e["event"] == "search-type" and e["data"]
    ]


def test_with_two_agreements_the_basis_names_the_one_decide_names(server):
    holder = server.hospital(HOLDER, "Houdend Ziekenhuis")
    partner = server.hospital(PARTNER, "Partner Ziekenhuis")
    with server.client(holder) as fhir:
        patient = fhir.post(
            "/Patient",
            json={"resourceType": "Patient", "identifier": [{"system": BSN, "value": PATIENT}]},
        )
        assert patient.status_code == 201, patient.text
        created = fhir.post(
            "/Observation",
            json={
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "Hb"},
                "subject": {"reference": f"Patient/{patient.json()['id']}"},
                "effectiveDateTime": "2024-03-01T10:00:00+01:00",
            },
        )
        assert created.status_code == 201, created.text
        consent = consent_json("c", provision("permit", to=[PARTNER]), patient=PATIENT)
        consent.pop("id")
        consent["organization"] = [{"identifier": {"system": URA, "value": HOLDER}}]
        recorded = fhir.post("/Consent", json=consent)
        assert recorded.status_code == 201, recorded.text
    first = server.agreement(HOLDER, PARTNER)
    [one] = search_basis(server, partner)
    assert (one["basis"], one["agreement"]) == ("agreement-and-consent", first)
    assert one["consents"] == f"Consent/{recorded.json()['id']}"
    # Later agreements covering the same data, until one of them sorts before the first: a
    # basis that took any covering agreement (the least, say) would then name another.
    later = [server.agreement(HOLDER, PARTNER)]
    while min(later) > first:
        later.append(server.agreement(HOLDER, PARTNER))
    events = search_basis(server, partner)
    assert len(events) == 2
    assert (events[-1]["basis"], events[-1]["agreement"]) == ("agreement-and-consent", first)
    assert events[-1]["consents"] == one["consents"]
