"""The patient access report of NEN 7513 for a scripted scenario matches the scenario exactly:
three hospitals with agreements, a consent opening the record to one partner, the other
hospital refused for want of consent (reading and searching), then breaking the glass, which
stands in for the consent. Every line is accounted for; none is missing
and none is extra."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import BACKENDS, LiveServer, break_the_glass, patient_with_result, start_server

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "consent"))
from consent_builders import consent_json, provision  # the consent package's own builders

HOLDER, PARTNER, STRANGER = "90000731", "90000732", "90000733"
PATIENT = "999911120"
BSN_SYSTEM = "http://fhir.nl/fhir/NamingSystem/bsn"
OWN = ("own-organisation", False)
OTHER_PATIENT = "999911132"  # in the same store, never in the report of PATIENT


@pytest.fixture(scope="module", params=BACKENDS)
def scenario(request, tmp_path_factory) -> Iterator[tuple[LiveServer, dict[str, Any]]]:
    """Runs the scenario on a store of its own, so the report holds this scenario only."""
    server, database = start_server(request.param, tmp_path_factory.mktemp("scenario"))
    try:
        yield server, play(server)
    finally:
        server.stop()
        database.drop()


def play(server: LiveServer) -> dict[str, Any]:
    holder = server.hospital(HOLDER, "Houdend Ziekenhuis")
    partner = server.hospital(PARTNER, "Partner Ziekenhuis")
    stranger = server.hospital(STRANGER, "Ander Ziekenhuis")
    server.agreement(HOLDER, PARTNER)
    server.agreement(HOLDER, STRANGER)  # an emergency needs the agreement too
    made: dict[str, Any] = {}
    with server.client(holder) as fhir:
        for bsn in (PATIENT, OTHER_PATIENT):
            patient, result = patient_with_result(fhir, bsn)
            made[bsn] = {"patient": patient, "observation": result}
        consent = consent_json("c", provision("permit", to=[PARTNER]), patient=PATIENT)
        consent.pop("id")
        consent["organization"] = [
            {"identifier": {"system": "http://fhir.nl/fhir/NamingSystem/ura", "value": HOLDER}}
        ]
        recorded = fhir.post("/Consent", json=consent)
        assert recorded.status_code == 201, recorded.text
        made["consent"] = recorded.json()["id"]
    observation = f"/Observation/{made[PATIENT]['observation']}"
    made["partner_clinician"] = f"arts-{uuid.uuid4().hex[:6]}"
    with server.person(partner, made["partner_clinician"], "clinician") as api:
        assert api.get(observation).status_code == 200
    made["stranger_clinician"] = f"arts-{uuid.uuid4().hex[:6]}"
    with server.person(stranger, made["stranger_clinician"], "clinician") as api:
        assert api.get(observation).status_code == 404  # no consent
        searched = api.get("/Observation", params={"patient.identifier": f"{BSN_SYSTEM}|{PATIENT}"})
        assert (searched.status_code, searched.json()["total"]) == (200, 0)
        declared = break_the_glass(api, PATIENT, "bewusteloos op de SEH")
        assert declared.status_code == 201, declared.text
        assert api.get(observation).status_code == 200
    return made


def report(server: LiveServer, *args: str) -> list[dict[str, Any]]:
    run = server.cli("audit", "report", "--patient", PATIENT, "--format", "json", *args)
    assert run.returncode == 0, run.stderr
    return list(json.loads(run.stdout)["events"])


def test_the_patient_report_matches_the_scenario_exactly(scenario):
    server, made = scenario
    patient = f"Patient/{made[PATIENT]['patient']}/_history/1"
    observation = f"Observation/{made[PATIENT]['observation']}/_history/1"
    asked = f"Observation/{made[PATIENT]['observation']}"
    consent = f"Consent/{made['consent']}"
    lines = report(server)
    assert all(line["patient"] == PATIENT for line in lines)
    assert [line["when"] for line in lines] == sorted(line["when"] for line in lines)
    seen = [
        (
            line["event"],
            line["action"],
            line["outcome"],
            line["organization"],
            line["role"],
            line["data"],
            line["data_holder"],
            line["basis"],
            line["emergency"],
        )
        for line in lines
    ]
    expected = [
        # The holder records the patient, a lab result and the consent: its own data.
        ("create", "C", "0", HOLDER, "system", patient, HOLDER, *OWN),
        ("create", "C", "0", HOLDER, "system", observation, HOLDER, *OWN),
        (*("create", "C", "0", HOLDER, "system", f"{consent}/_history/1", HOLDER), *OWN),
        # The partner reads it: the agreement and the patient's consent open it.
        (
            *("read", "R", "0", PARTNER, "clinician", observation, HOLDER),
            *("agreement-and-consent", False),
        ),
        (
            *("consent-decision", "E", "0", PARTNER, "clinician", "", HOLDER),
            *("agreement-and-consent", False),
        ),
        # A hospital without the patient's consent is refused: the attempt (on the id it asked
        # for, no version was served) and the decision, both shown to the holder.
        (*("read", "R", "4", STRANGER, "clinician", asked, HOLDER), "", False),
        ("consent-decision", "E", "4", STRANGER, "clinician", "", HOLDER, "denied", False),
        # Its search by the patient's BSN finds nothing, and the decision that kept the holder's
        # result out is in the report too.
        ("search-type", "E", "0", STRANGER, "clinician", "", "", "", False),
        ("consent-decision", "E", "4", STRANGER, "clinician", "", HOLDER, "denied", False),
        # It breaks the glass: the emergency, then the read it opens, marked as such.
        ("emergency", "E", "0", STRANGER, "clinician", "", "", "", True),
        (*("read", "R", "0", STRANGER, "clinician", observation, HOLDER), "emergency", True),
        (*("consent-decision", "E", "0", STRANGER, "clinician", "", HOLDER), "emergency", True),
    ]
    assert seen == expected, "\n".join(map(str, seen))
    by_user = {line["user_name"] for line in lines if line["role"] == "clinician"}
    assert by_user == {made["partner_clinician"], made["stranger_clinician"]}
    consents = {line["consents"] for line in lines if line["basis"] == "agreement-and-consent"}
    assert consents == {consent}
    reasons = {line["emergency_reason"] for line in lines if line["event"] == "emergency"}
    assert reasons == {"bewusteloos op de SEH"}


def test_the_report_selects_denials_and_emergencies_of_the_scenario(scenario):
    server, _made = scenario
    denials = report(server, "--denials")
    assert [(d["event"], d["organization"]) for d in denials] == [
        ("read", STRANGER),
        ("consent-decision", STRANGER),
        ("consent-decision", STRANGER),
    ]
    emergencies = report(server, "--emergencies")
    assert {e["organization"] for e in emergencies} == {STRANGER}
    assert [e["event"] for e in emergencies] == ["emergency", "read", "consent-decision"]
