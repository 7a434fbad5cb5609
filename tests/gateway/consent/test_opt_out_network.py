"""A network whose default policy is opt-out (``consent_policy="opt-out"``): with an agreement, a
partner sees the data of a patient who recorded no consent, and of one whose consents do not
object to it, but not of one who objected; the audit gives such a read the rule
``opt-out-default`` and names no consent."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from harness import BACKENDS, LiveServer, patient_with_result, start_server

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "consent"))
from consent_builders import consent_json, provision  # the consent package's own builders

HOLDER, PARTNER, ELSEWHERE = "90000771", "90000772", "90000773"
SILENT, OBJECTING, OBJECTING_ELSEWHERE = "999911181", "999911193", "999911211"
BSN = "http://fhir.nl/fhir/NamingSystem/bsn"
URA = "http://fhir.nl/fhir/NamingSystem/ura"


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, tmp_path_factory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp(f"opt-out-{request.param}")
    live, database = start_server(request.param, tmp, consent_policy="opt-out")
    try:
        yield live
    finally:
        live.stop()
        database.drop()


@pytest.fixture(scope="module")
def network(server: LiveServer) -> dict[str, Any]:
    """Three patients of the holder, each with a result; two recorded an objection (to the
    partner, and to another hospital only)."""
    holder = server.hospital(HOLDER, "Houdend Ziekenhuis")
    partner = server.hospital(PARTNER, "Partner Ziekenhuis")
    server.hospital(ELSEWHERE, "Ander Ziekenhuis")
    server.agreement(HOLDER, PARTNER)
    results = {}
    with server.client(holder) as fhir:
        for bsn, objects_to in (
            (SILENT, None),
            (OBJECTING, PARTNER),
            (OBJECTING_ELSEWHERE, ELSEWHERE),
        ):
            _patient, results[bsn] = patient_with_result(fhir, bsn)
            if objects_to is None:
                continue
            consent = consent_json(
                "c", provision("deny", to=[objects_to]), patient=bsn, policy_rule="OPTOUT"
            )
            consent.pop("id")
            consent["organization"] = [{"identifier": {"system": URA, "value": HOLDER}}]
            recorded = fhir.post("/Consent", json=consent)
            assert recorded.status_code == 201, recorded.text
    return {"partner": partner, "results": results}


def partner_reads(server: LiveServer, network: dict[str, Any], bsn: str) -> tuple[int, int]:
    """The partner's search of the patient's results (their number) and read of the one by id
    (its status)."""
    with server.person(network["partner"], f"arts-{uuid.uuid4().hex[:6]}", "clinician") as api:
        found = api.get("/Observation", params={"patient.identifier": f"{BSN}|{bsn}"})
        assert found.status_code == 200, found.text
        read = api.get(f"/Observation/{network['results'][bsn]}")
    return found.json()["total"], read.status_code


def bases(server: LiveServer, bsn: str) -> list[tuple[str, str, str, list[str]]]:
    """(event type, basis kind, rule, consents named) of the patient's foreign reads."""
    run = server.cli("audit", "report", "--patient", bsn, "--format", "fhir")
    assert run.returncode == 0, run.stderr
    found = []
    for entry in orjson.loads(run.stdout).get("entry", []):
        event = entry["resource"]
        kind = event["type"]["code"]
        for entity in event.get("entity", []):
            if entity.get("type", {}).get("code") != "access-basis":
                continue
            basis = {d["type"]: d["valueString"] for d in entity.get("detail", [])}
            consents = [
                e["what"]["reference"]
                for e in event.get("entity", [])
                if e.get("type", {}).get("code") == "Consent"
            ]
            found.append((kind, basis.get("kind", ""), basis.get("rule", ""), consents))
    return found


@pytest.mark.parametrize("bsn", [SILENT, OBJECTING_ELSEWHERE], ids=["no consent", "no objection"])
def test_without_an_objection_the_partner_reads_on_the_opt_out_default(server, network, bsn):
    assert partner_reads(server, network, bsn) == (1, 200)
    opened = [b for b in bases(server, bsn) if b[1] == "agreement-and-consent"]
    assert opened, bases(server, bsn)
    assert {(rule, tuple(consents)) for _kind, _basis, rule, consents in opened} == {
        ("opt-out-default", ())
    }


def test_an_objection_keeps_the_partner_out(server, network):
    assert partner_reads(server, network, OBJECTING) == (0, 404)
    assert not [b for b in bases(server, OBJECTING) if b[1] == "agreement-and-consent"]
