"""The audit basis of what a partner reads (search results, a read by id) is taken from the
read's own SQL (the consent grant and the one agreement that opened it) where that tells what
consent.decide would: with two agreements covering the same data, decide names the first, and so
must the audit."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "consent"))
from consent_builders import consent_json, provision  # the consent package's own builders
from harness import patient_with_result

HOLDER, PARTNER = "90000761", "90000762"
PATIENT = "999911168"
BSN = "http://fhir.nl/fhir/NamingSystem/bsn"
URA = "http://fhir.nl/fhir/NamingSystem/ura"


def partner_reads(server: Any, partner: Any, result: str) -> list[dict[str, Any]]:
    """The partner searches the patient's results and reads the one by id: the audit records
    of both, newest last."""
    with server.person(partner, f"arts-{uuid.uuid4().hex[:6]}", "clinician") as api:
        found = api.get("/Observation", params={"patient.identifier": f"{BSN}|{PATIENT}"})
        assert found.status_code == 200, found.text
        assert found.json()["total"] == 1
        read = api.get(f"/Observation/{result}")
        assert read.status_code == 200, read.text
    run = server.cli("audit", "report", "--patient", PATIENT, "--format", "json")
    assert run.returncode == 0, run.stderr
    events = json.loads(run.stdout)["events"]
    return [e for e in events if e["event"] in ("search-type", "read") and e["data"]]


def test_with_several_agreements_the_basis_names_the_one_decide_names(server):
    holder = server.hospital(HOLDER, "Houdend Ziekenhuis")
    partner = server.hospital(PARTNER, "Partner Ziekenhuis")
    with server.client(holder) as fhir:
        _patient, result = patient_with_result(fhir, PATIENT)
        consent = consent_json("c", provision("permit", to=[PARTNER]), patient=PATIENT)
        consent.pop("id")
        consent["organization"] = [{"identifier": {"system": URA, "value": HOLDER}}]
        recorded = fhir.post("/Consent", json=consent)
        assert recorded.status_code == 201, recorded.text
    first = server.agreement(HOLDER, PARTNER)
    consents = f"Consent/{recorded.json()['id']}"
    once = partner_reads(server, partner, result)
    assert [(e["event"], e["basis"], e["agreement"], e["consents"]) for e in once] == [
        ("search-type", "agreement-and-consent", first, consents),
        ("read", "agreement-and-consent", first, consents),
    ]
    # Later agreements covering the same data, until one of them sorts before the first: a
    # basis that took any covering agreement (the least, say) would then name another.
    later = [server.agreement(HOLDER, PARTNER)]
    while min(later) > first:
        later.append(server.agreement(HOLDER, PARTNER))
    again = partner_reads(server, partner, result)[len(once) :]
    assert [(e["event"], e["basis"], e["agreement"], e["consents"]) for e in again] == [
        ("search-type", "agreement-and-consent", first, consents),
        ("read", "agreement-and-consent", first, consents),
    ]
