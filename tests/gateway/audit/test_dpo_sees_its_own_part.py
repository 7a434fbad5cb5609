"""A DPO reads its own organisation's part of the audit log: what its people and systems did,
what was done with its data, and the emergencies declared for patients it treats. It does not
read what another hospital did with that hospital's own data about a patient both treat, and
of an attempt of its own people that consent refused on another hospital's data it sees the
attempt, not the patient or the hospital the refused data belonged to (the 404 kept those)."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from harness import BACKENDS, LiveServer, break_the_glass, patient_with_result, start_server

HOLDER, PARTNER = "90000741", "90000742"
PATIENT = "999911120"
BSN = "http://fhir.nl/fhir/NamingSystem/bsn"


@pytest.fixture(scope="module", params=BACKENDS)
def world(request, tmp_path_factory) -> Iterator[tuple[LiveServer, dict[str, Any]]]:
    server, database = start_server(request.param, tmp_path_factory.mktemp("dpo"))
    try:
        holder = server.hospital(HOLDER, "Houdend Ziekenhuis")
        partner = server.hospital(PARTNER, "Partner Ziekenhuis")
        server.agreement(HOLDER, PARTNER)  # an agreement, but the patient gave no consent
        with server.client(holder) as fhir:
            _, observation = patient_with_result(fhir, PATIENT)
            assert fhir.get(f"/Observation/{observation}").status_code == 200  # its own read
        with server.client(partner) as fhir:
            patient_with_result(fhir, PATIENT)  # the partner treats the patient too
        clinician = f"arts-{uuid.uuid4().hex[:6]}"
        with server.person(partner, clinician, "clinician") as api:
            assert api.get(f"/Observation/{observation}").status_code == 404
            assert break_the_glass(api, PATIENT, "reanimatie").status_code == 201
        made = {"holder": holder, "partner": partner, "observation": observation}
        yield server, made
    finally:
        server.stop()
        database.drop()


def events(server: LiveServer, hospital, **params: str) -> list[dict[str, Any]]:
    with server.person(hospital, f"dpo-{uuid.uuid4().hex[:6]}", "dpo") as dpo:
        answer = dpo.get("/AuditEvent", params=params | {"_count": "1000"})
    assert answer.status_code == 200, answer.text
    return [e["resource"] for e in answer.json().get("entry", [])]


def organisation(event: dict[str, Any]) -> str:
    return next(
        a["who"]["identifier"]["value"]
        for a in event["agent"]
        if a.get("who", {}).get("identifier", {}).get("system", "").endswith("/ura")
    )


def is_emergency(event: dict[str, Any]) -> bool:
    return any(c["code"] == "110127" for c in event.get("subtype", []))  # Emergency Override


def mentions(event: dict[str, Any], value: str) -> bool:
    return value in str(event["entity"])


def test_a_dpo_does_not_read_what_another_hospital_did_with_its_own_data(world):
    server, made = world
    seen = events(server, made["partner"])
    assert seen, "the partner's DPO reads its own part"
    assert all(organisation(e) == PARTNER for e in seen), [
        (organisation(e), e["type"]) for e in seen
    ]
    assert not any(mentions(e, made["observation"]) and organisation(e) == HOLDER for e in seen)


def test_a_refused_attempt_shows_its_dpo_the_attempt_not_whose_data_it_was(world):
    server, made = world
    refused = [e for e in events(server, made["partner"]) if e["outcome"] != "0"]
    assert refused, "the attempt is in the partner's log"
    for event in refused:
        assert not mentions(event, PATIENT) and not mentions(event, HOLDER), event
        assert "another organisation" in event["outcomeDesc"]
    asked = [e for e in refused if mentions(e, f"Observation/{made['observation']}")]
    assert asked, "the id its clinician asked for is shown"
    with server.person(made["partner"], f"dpo-{uuid.uuid4().hex[:6]}", "dpo") as dpo:
        answer = dpo.post("/AuditEvent/$report", data={"patient": PATIENT, "format": "csv"})
    assert answer.status_code == 200, answer.text
    for line in csv.DictReader(io.StringIO(answer.text)):
        assert line["data_holder"] in ("", PARTNER), line


def test_the_holder_reads_the_refused_attempt_and_the_emergency_whole(world):
    server, made = world
    seen = events(server, made["holder"], patient=PATIENT)
    refused = [e for e in seen if organisation(e) == PARTNER and e["outcome"] != "0"]
    assert refused and all(mentions(e, PATIENT) for e in refused)
    assert any(is_emergency(e) and organisation(e) == PARTNER for e in seen), "the emergency"
