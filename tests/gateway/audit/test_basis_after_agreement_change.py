"""The audit basis of a read names the agreement that holds at that read, also after the
running gateway already read the network's agreements for an earlier one: ending an agreement
(a new version of its Contract, no new resource) shows in the next read's basis."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import BACKENDS, LiveServer, patient_with_result, start_server

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "consent"))
from consent_builders import consent_json, provision  # the consent package's own builders

HOLDER, PARTNER = "90000741", "90000742"
PATIENT = "999911144"


@pytest.fixture(params=BACKENDS)
def server(request, tmp_path) -> Iterator[LiveServer]:
    live, database = start_server(request.param, tmp_path)
    try:
        yield live
    finally:
        live.stop()
        database.drop()


def reads(server: LiveServer) -> list[dict[str, Any]]:
    run = server.cli("audit", "report", "--patient", PATIENT, "--format", "json")
    assert run.returncode == 0, run.stderr
    return [e for e in json.loads(run.stdout)["events"] if e["event"] == "read"]


def test_the_next_read_names_the_agreement_that_still_holds(server):
    holder = server.hospital(HOLDER, "Houdend Ziekenhuis")
    partner = server.hospital(PARTNER, "Partner Ziekenhuis")
    first = server.agreement(HOLDER, PARTNER)
    second = server.agreement(HOLDER, PARTNER)
    with server.client(holder) as fhir:
        _patient, observation = patient_with_result(fhir, PATIENT)
        consent = consent_json("c", provision("permit", to=[PARTNER]), patient=PATIENT)
        consent.pop("id")
        consent["organization"] = [
            {"identifier": {"system": "http://fhir.nl/fhir/NamingSystem/ura", "value": HOLDER}}
        ]
        assert fhir.post("/Consent", json=consent).status_code == 201
    with server.person(partner, f"arts-{uuid.uuid4().hex[:6]}", "clinician") as api:
        assert api.get(f"/Observation/{observation}").status_code == 200
        ended = server.cli("agreements", "end", first)
        assert ended.returncode == 0, ended.stderr
        assert api.get(f"/Observation/{observation}").status_code == 200
    before, after = reads(server)
    assert before["basis"] == after["basis"] == "agreement-and-consent"
    assert before["agreement"] in (first, second)
    assert after["agreement"] == second
