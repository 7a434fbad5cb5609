"""The CapabilityStatement is truthful: everything it lists works (walked here over HTTP)."""

from __future__ import annotations

SAMPLE_VALUES = {
    "string": "a",
    "token": "a",
    "uri": "http://example.org/a",
    "date": "ge2020-01-01",
    "reference": "Patient/a",
}


def test_metadata_is_public_r4_and_lists_formats(fhir):
    response = fhir.get("/metadata")
    assert response.status_code == 200
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    assert set(statement["format"]) == {"application/fhir+json", "application/fhir+xml"}
    assert len(statement["rest"][0]["resource"]) == 126


def test_every_listed_search_parameter_include_and_revinclude_is_accepted(fhir):
    statement = fhir.get("/metadata").json()
    strict = {"Prefer": "handling=strict"}
    checked = 0
    for resource in statement["rest"][0]["resource"]:
        res_type = resource["type"]
        if res_type == "AuditEvent":  # the audit log, for DPOs only: tests/gateway/audit
            continue
        for param in resource["searchParam"]:
            value = (
                SAMPLE_VALUES[param["type"]] if param["name"] != "_lastUpdated" else "ge2020-01-01"
            )
            response = fhir.get(f"/{res_type}", params={param["name"]: value}, headers=strict)
            assert response.status_code == 200, (res_type, param, response.text)
            assert response.json()["type"] == "searchset"
            checked += 1
        for include in resource["searchInclude"]:
            response = fhir.get(f"/{res_type}", params={"_include": include}, headers=strict)
            assert response.status_code == 200, (res_type, include, response.text)
        for include in resource["searchRevInclude"]:
            response = fhir.get(f"/{res_type}", params={"_revinclude": include}, headers=strict)
            assert response.status_code == 200, (res_type, include, response.text)
    assert checked > 125 * 4  # the Resource-level parameters of every type, and more


def test_every_listed_interaction_works_for_a_sample_type(fhir):
    statement = fhir.get("/metadata").json()
    patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    interactions = {i["code"] for i in patient["interaction"]}
    created = fhir.post("/Patient", json={"resourceType": "Patient"})
    assert "create" in interactions and created.status_code == 201
    res_id = created.json()["id"]
    assert "read" in interactions and fhir.get(f"/Patient/{res_id}").status_code == 200
    assert "vread" in interactions and fhir.get(f"/Patient/{res_id}/_history/1").status_code == 200
    updated = fhir.put(f"/Patient/{res_id}", json={"resourceType": "Patient", "id": res_id})
    assert "update" in interactions and updated.status_code == 200
    assert "history-instance" in interactions
    assert fhir.get(f"/Patient/{res_id}/_history").json()["total"] == 2
    assert "history-type" in interactions and fhir.get("/Patient/_history").status_code == 200
    assert "search-type" in interactions and fhir.get("/Patient").status_code == 200
    assert "delete" in interactions and fhir.delete(f"/Patient/{res_id}").status_code == 204
    system = {i["code"] for i in statement["rest"][0]["interaction"]}
    assert system == {"transaction", "batch", "history-system"}
    assert fhir.get("/_history", params={"_count": "1"}).status_code == 200


def test_binary_is_listed_without_update_as_it_is_write_once(fhir):
    statement = fhir.get("/metadata").json()
    (binary,) = [r for r in statement["rest"][0]["resource"] if r["type"] == "Binary"]
    assert "update" not in {i["code"] for i in binary["interaction"]}
    assert binary["updateCreate"] is False and binary["conditionalUpdate"] is False
    refused = fhir.put(
        "/Binary/b1", json={"resourceType": "Binary", "id": "b1", "contentType": "text/plain"}
    )
    assert refused.status_code == 422
