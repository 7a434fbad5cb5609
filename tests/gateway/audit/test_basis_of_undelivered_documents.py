"""A document addressed to a hospital but not yet delivered (its endpoint does not answer) is not
the hospital's by referral: it stays hidden until the patient's consent opens it, and a read
then names the consent as its basis, never the referral the visibility check did not grant."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

from gateway.exchange.compose import provide_document_bundle

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "consent"))
from consent_builders import consent_json, provision  # the consent package's own builders

SENDER, RECIPIENT = "90000761", "90000762"
PATIENT = "999911168"
URA = "http://fhir.nl/fhir/NamingSystem/ura"
NOBODY_LISTENS = "http://127.0.0.1:9/notifications"  # the discard port: every delivery fails


def test_an_undelivered_document_opened_by_consent_is_read_on_the_consent(server):
    sender = server.hospital(SENDER, "Verzendend Ziekenhuis")
    recipient = server.hospital(RECIPIENT, "Ontvangend Ziekenhuis", endpoint=NOBODY_LISTENS)
    server.agreement(SENDER, RECIPIENT)
    bundle = provide_document_bundle(
        content=b"Ontslagbrief",
        content_type="text/plain",
        bsn=PATIENT,
        sender=SENDER,
        recipients=[RECIPIENT],
    )
    with server.client(sender) as fhir:
        pushed = fhir.post("", json=bundle)
        assert pushed.status_code == 200, pushed.text
        locations = [
            e["response"]["location"].split("/_history")[0] for e in pushed.json()["entry"]
        ]
        document = next(x for x in locations if x.startswith("DocumentReference/"))
    with server.client(recipient) as fhir:
        assert fhir.get(f"/{document}").status_code == 404  # addressed, not delivered
    consent = consent_json("c", provision("permit", to=[RECIPIENT]), patient=PATIENT)
    consent.pop("id")
    consent["organization"] = [{"identifier": {"system": URA, "value": SENDER}}]
    with server.client(sender) as fhir:
        recorded = fhir.post("/Consent", json=consent)
        assert recorded.status_code == 201, recorded.text
    request_id = uuid.uuid4().hex
    with server.client(recipient) as fhir:
        read = fhir.get(f"/{document}", headers={"X-Request-Id": request_id})
        assert read.status_code == 200, read.text
    run = server.cli("audit", "report", "--patient", PATIENT, "--format", "json")
    assert run.returncode == 0, run.stderr
    (event,) = [
        e
        for e in json.loads(run.stdout)["events"]
        if e["request_id"] == request_id and e["event"] == "read"
    ]
    assert event["basis"] == "agreement-and-consent"
    assert event["consents"] == f"Consent/{recorded.json()['id']}"
