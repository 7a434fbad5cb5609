"""Every official R4 example round-trips through the API unchanged, but those with an invalid
BSN, which are refused; transaction examples run."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from harness import FHIR_EXAMPLES

# Consents are judged by the consent rules the gateway enforces (422 for a rule it cannot
# enforce): tests/gateway/consent/test_consent_resources.py takes each official one through them.
EXAMPLES = sorted(p for p in FHIR_EXAMPLES.glob("*/*.json") if p.parent.name != "Consent")
# Bundle-bundle-transaction needs prepared state and calls an operation: see test_transactions.
TRANSACTIONS = [
    p
    for p in EXAMPLES
    if p.parent.name == "Bundle"
    and json.loads(p.read_text()).get("type") in ("transaction", "batch")
    and p.name != "Bundle-bundle-transaction.json"
]


def _without_server_fields(resource: dict[str, Any]) -> dict[str, Any]:
    copy = {k: v for k, v in resource.items() if k != "id"}
    meta = {
        k: v
        for k, v in (copy.pop("meta", None) or {}).items()
        if k not in ("versionId", "lastUpdated")
    }
    if meta:
        copy["meta"] = meta
    return copy


def _decoded_data(node: Any) -> Any:
    """base64Binary ``data`` as its bytes: the server stores the value, and writes it back in
    canonical base64 (some examples wrap their base64 with spaces)."""
    if isinstance(node, dict):
        return {
            k: base64.b64decode("".join(v.split()))
            if k == "data" and isinstance(v, str)
            else _decoded_data(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_decoded_data(v) for v in node]
    return node


def test_there_are_official_examples_to_load():
    assert len(EXAMPLES) >= 369


AUDIT_EVENTS = [p for p in EXAMPLES if p.parent.name == "AuditEvent"]


@pytest.mark.parametrize("path", AUDIT_EVENTS, ids=lambda p: p.name)
def test_an_audit_event_example_is_refused_because_only_the_gateway_writes_them(fhir, path):
    answer = fhir.post("/AuditEvent", json=json.loads(path.read_text(encoding="utf-8")))
    assert answer.status_code == 405
    assert answer.json()["resourceType"] == "OperationOutcome"


# Identifiers in the BSN system (here its legacy OID) that fail the elfproef: the Patients' are
# made-up numbers, the Practitioners' are not BSNs at all ('129IDH4OP733').
PRACTITIONER_BSNS = [
    "129IDH4OP733",
    "174BIP3JH438",
    "243HID3RT938",
    "523ASA1LK927",
    "191REW8WE916",
    "134IDY41W988",
    "567IUI51C154",
]
INVALID_BSN = {
    "Patient-f001.json": ("Patient.identifier[0]", "738472983"),
    "Patient-f201.json": ("Patient.identifier[0]", "123456789"),
    **{
        f"Practitioner-f00{n}.json": ("Practitioner.identifier[1]", value)
        for n, value in enumerate(PRACTITIONER_BSNS, start=1)
    },
}
REFUSED = [p for p in EXAMPLES if p.name in INVALID_BSN]


def test_the_examples_with_an_invalid_bsn_are_there():
    assert sorted(p.name for p in REFUSED) == sorted(INVALID_BSN)


@pytest.mark.parametrize("path", REFUSED, ids=lambda p: p.name)
def test_an_example_with_an_invalid_bsn_is_refused_naming_the_identifier(fhir, path):
    sent = json.loads(path.read_text(encoding="utf-8"))
    refused = fhir.post(f"/{sent['resourceType']}", json=sent)
    assert refused.status_code == 422, refused.text
    issue = refused.json()["issue"][0]
    where, value = INVALID_BSN[path.name]
    assert issue["expression"] == [where]
    assert f"'{value}' is not a valid BSN" in issue["diagnostics"]
    found = fhir.get(f"/{sent['resourceType']}", params={"identifier": value})
    assert found.json()["total"] == 0  # nothing filed


@pytest.mark.parametrize(
    "path", [p for p in EXAMPLES if p not in AUDIT_EVENTS + REFUSED], ids=lambda p: p.name
)
def test_example_is_created_and_read_back_equal(fhir, path):
    sent = json.loads(path.read_text(encoding="utf-8"))
    created = fhir.post(f"/{sent['resourceType']}", json=sent)
    assert created.status_code == 201, created.text
    location = created.headers["Location"]
    assert "/_history/1" in location
    read = fhir.get(f"/{sent['resourceType']}/{created.json()['id']}")
    assert read.status_code == 200
    back = read.json()
    assert back["meta"]["versionId"] == "1"
    assert _decoded_data(_without_server_fields(back)) == _decoded_data(
        _without_server_fields(sent)
    )


@pytest.mark.parametrize("path", TRANSACTIONS, ids=lambda p: p.name)
def test_transaction_and_batch_examples_succeed(fhir, path):
    bundle = json.loads(path.read_text(encoding="utf-8"))
    response = fhir.post("", json=bundle)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == f"{bundle['type']}-response"
    assert len(body["entry"]) == len(bundle["entry"])
    if bundle["type"] == "transaction":
        for entry in body["entry"]:
            assert entry["response"]["status"][:3] in ("200", "201", "204"), entry
