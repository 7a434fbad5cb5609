"""Edges of the REST API a test campaign found: each was a 500, a write answered as refused, or
a write on the wrong resource. Each is now the client's error, and nothing is half-written."""

from __future__ import annotations

import gzip
import json
import uuid
from typing import Any

import pytest
from harness import unique

JSON = {"Content-Type": "application/fhir+json"}


def patient(family: str, **more: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}], **more}


def entry(resource: dict[str, Any] | None, method: str, url: str, **request: Any) -> dict:
    found: dict[str, Any] = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        found["resource"] = resource
    return found


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def total(fhir, res_type: str, **params: str) -> int:
    answer = fhir.get(f"/{res_type}", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()["total"]


def statuses(answer) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [e["response"]["status"][:3] for e in answer.json()["entry"]]


def nested(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"url": "http://example.org/x", "valueString": "y"}
    for _ in range(levels):
        node = {"url": "http://example.org/x", "extension": [node]}
    return node


@pytest.mark.parametrize(
    "request_fields",
    [{"ifNoneExist": 123}, {"ifNoneExist": {"a": 1}}, {"ifMatch": 1}, {"ifMatch": ['W/"1"']}],
    ids=["ifNoneExist-number", "ifNoneExist-object", "ifMatch-number", "ifMatch-list"],
)
def test_a_request_field_that_is_not_a_string_fails_its_entry_alone(fhir, request_fields):
    first, second = f"Edge{unique()}", f"Edge{unique()}"
    answer = fhir.post(
        "",
        json=bundle(
            "batch",
            entry(patient(first), "POST", "Patient"),
            entry(patient(second), "POST", "Patient", **request_fields),
        ),
    )
    assert statuses(answer) == ["201", "400"]
    assert (total(fhir, "Patient", family=first), total(fhir, "Patient", family=second)) == (1, 0)
    third = f"Edge{unique()}"
    atomic = bundle(
        "transaction",
        entry(patient(third), "POST", "Patient"),
        entry(patient(third), "POST", "Patient", **request_fields),
    )
    assert fhir.post("", json=atomic).status_code == 400
    assert total(fhir, "Patient", family=third) == 0


def test_a_resource_nested_too_deeply_is_refused_not_a_server_error(fhir):
    family = f"Deep{unique()}"
    answer = fhir.post("/Patient", json=patient(family, extension=[nested(150)]))
    assert answer.status_code == 400, answer.text
    assert "nested too deeply" in answer.json()["issue"][0]["diagnostics"]
    fine = f"Fine{unique()}"
    mixed = bundle(
        "batch",
        entry(patient(fine), "POST", "Patient"),
        entry(patient(family, extension=[nested(150)]), "POST", "Patient"),
    )
    assert statuses(fhir.post("", json=mixed)) == ["201", "400"]
    assert (total(fhir, "Patient", family=fine), total(fhir, "Patient", family=family)) == (1, 0)


def test_an_xml_number_out_of_range_is_refused(fhir):
    body = (
        b'<Patient xmlns="http://hl7.org/fhir"><extension url="http://example.org/x">'
        b'<valueDecimal value="1e400"/></extension></Patient>'
    )
    answer = fhir.post("/Patient", content=body, headers={"Content-Type": "application/fhir+xml"})
    assert answer.status_code == 400, answer.text


XML = {"Content-Type": "application/fhir+xml"}


@pytest.mark.parametrize(
    ("inside", "expression", "named"),
    [
        ('<gender value="male"/><gender value="female"/>', "Patient.gender", "repeats"),
        (
            '<birthDate value="2000-01-01"/><birthDate value="1999-01-01"/>',
            "Patient.birthDate",
            "repeats",
        ),
        (
            "<contained><Patient><id value='a'/></Patient>"
            "<Organization><id value='b'/></Organization></contained>",
            "Patient.contained[0]",
            "holds one resource",
        ),
        ('<x:gender xmlns:x="urn:x" value="male"/>', "Patient.gender", "not in the FHIR namespace"),
    ],
    ids=["repeated code", "repeated date", "two resources in one contained", "foreign namespace"],
)
def test_xml_the_models_would_read_by_halves_is_refused(fhir, inside, expression, named):
    """The models kept the last of a repeated single element, the first resource of a
    contained holding two, and read elements of another namespace as FHIR's."""
    family = f"Xml{unique()}"
    body = f'<Patient xmlns="http://hl7.org/fhir"><name><family value="{family}"/></name>{inside}'
    answer = fhir.post("/Patient", content=(body + "</Patient>").encode(), headers=XML)
    assert answer.status_code == 400, answer.text
    issue = answer.json()["issue"][0]
    assert issue["expression"] == [expression]
    assert named in issue["diagnostics"]
    assert total(fhir, "Patient", family=family) == 0


def test_xml_with_a_prefixed_fhir_namespace_is_the_same_resource(fhir):
    family = f"Prefixed{unique()}"
    body = (
        f'<f:Patient xmlns:f="http://hl7.org/fhir"><f:name><f:family value="{family}"/>'
        '</f:name><f:gender value="female"/></f:Patient>'
    )
    answer = fhir.post("/Patient", content=body.encode(), headers=XML)
    assert answer.status_code == 201, answer.text
    stored = fhir.get(answer.headers["Location"]).json()
    assert (stored["name"][0]["family"], stored["gender"]) == (family, "female")


@pytest.mark.parametrize("condition", ["_format=json", "_count=1", "_sort=name&_summary=count"])
def test_a_condition_of_result_parameters_alone_selects_nothing(fhir, condition):
    family = f"Only{unique()}"
    created = fhir.post("/Patient", json=patient(family)).json()
    deleted = fhir.delete(f"/Patient?{condition}")
    assert deleted.status_code == 400, deleted.text
    replaced = fhir.put(f"/Patient?{condition}", json=patient("Overwritten"))
    assert replaced.status_code == 400, replaced.text
    matched = fhir.post("/Patient", json=patient("Other"), headers={"If-None-Exist": condition})
    assert matched.status_code == 400, matched.text
    current = fhir.get(f"/Patient/{created['id']}").json()
    assert (current["meta"]["versionId"], current["name"][0]["family"]) == ("1", family)


@pytest.mark.parametrize("accept", ["image/png", "application/fhir+json;q=0"])
def test_a_write_whose_answer_cannot_be_served_is_refused_before_it_is_made(fhir, accept):
    family = f"Accept{unique()}"
    refused = fhir.post("/Patient", json=patient(family), headers={"Accept": accept})
    assert refused.status_code == 406
    assert total(fhir, "Patient", family=family) == 0
    created = fhir.post("/Patient", json=patient(family)).json()
    changed = patient("Changed") | {"id": created["id"]}
    put = fhir.put(f"/Patient/{created['id']}", json=changed, headers={"Accept": accept})
    assert put.status_code == 406
    assert fhir.get(f"/Patient/{created['id']}").json()["meta"]["versionId"] == "1"
    other = f"Accept{unique()}"
    atomic = bundle("transaction", entry(patient(other), "POST", "Patient"))
    assert fhir.post("", json=atomic, headers={"Accept": accept}).status_code == 406
    assert total(fhir, "Patient", family=other) == 0
    # Nothing to serve: Prefer return=minimal writes whatever the client accepts.
    minimal = {"Accept": accept, "Prefer": "return=minimal"}
    assert fhir.post("/Patient", json=patient(other), headers=minimal).status_code == 201


def test_two_conditional_updates_of_one_condition_in_a_transaction_are_refused(fhir):
    key = f"urn:edge|{unique()}"
    same = [
        entry(
            patient(f"Twice{n}", identifier=[{"system": "urn:edge", "value": key[9:]}]),
            "PUT",
            f"Patient?identifier={key}",
        )
        for n in range(2)
    ]
    answer = fhir.post("", json=bundle("transaction", *same))
    assert answer.status_code == 400, answer.text
    assert "appears twice" in answer.json()["issue"][0]["diagnostics"]
    assert total(fhir, "Patient", identifier=key) == 0


def test_if_match_holds_for_a_conditional_update_too(fhir):
    key = f"urn:edge|{unique()}"
    body = patient("Versioned", identifier=[{"system": "urn:edge", "value": key[9:]}])
    assert fhir.put(f"/Patient?identifier={key}", json=body).status_code == 201
    stale = fhir.put(f"/Patient?identifier={key}", json=body, headers={"If-Match": 'W/"99"'})
    assert stale.status_code == 412, stale.text
    batched = bundle("batch", entry(body, "PUT", f"Patient?identifier={key}", ifMatch='W/"99"'))
    assert statuses(fhir.post("", json=batched)) == ["412"]
    found = fhir.get("/Patient", params={"identifier": key}).json()
    assert found["entry"][0]["resource"]["meta"]["versionId"] == "1"
    current = fhir.put(f"/Patient?identifier={key}", json=body, headers={"If-Match": 'W/"1"'})
    assert current.status_code == 200, current.text


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_a_write_to_a_version_url_is_refused(fhir, method):
    created = fhir.post("/Patient", json=patient(f"Hist{unique()}")).json()
    url = f"Patient/{created['id']}/_history/1"
    resource = created if method == "PUT" else None
    assert statuses(fhir.post("", json=bundle("batch", entry(resource, method, url)))) == ["400"]
    assert fhir.get(f"/Patient/{created['id']}").json()["meta"]["versionId"] == "1"


def test_a_transaction_with_one_full_url_twice_is_refused(fhir):
    family = f"Dup{unique()}"
    url = "urn:uuid:2f0b7e51-0c7a-4d5e-9a51-6f0c2b3e4d5f"
    twice = [entry(patient(family), "POST", "Patient") | {"fullUrl": url} for _ in range(2)]
    answer = fhir.post("", json=bundle("transaction", *twice))
    assert answer.status_code == 400, answer.text
    assert answer.json()["issue"][0]["expression"] == ["Bundle.entry[1].fullUrl"]
    assert total(fhir, "Patient", family=family) == 0


def test_a_transaction_referring_to_no_entry_of_it_is_refused(fhir):
    code = unique()
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "urn:edge", "code": code}]},
        "subject": {"reference": "urn:uuid:7d1e0c55-3b9a-4f6e-8c2d-1a2b3c4d5e6f"},
    }
    answer = fhir.post("", json=bundle("transaction", entry(observation, "POST", "Observation")))
    assert answer.status_code == 400, answer.text
    issue = answer.json()["issue"][0]
    assert issue["expression"] == ["Bundle.entry[0].resource.subject.reference"]
    assert "names no entry of the bundle" in issue["diagnostics"]
    assert total(fhir, "Observation", code=f"urn:edge|{code}") == 0


XML = {"Content-Type": "application/fhir+xml"}


def test_xml_with_a_processing_instruction_is_read_and_a_value_as_text_refused(fhir):
    family = f"Xml{unique()}"
    with_pi = (
        f'<Patient xmlns="http://hl7.org/fhir"><?editor keep?><name><family value="{family}"/>'
        "</name></Patient>"
    ).encode()
    assert fhir.post("/Patient", content=with_pi, headers=XML).status_code == 201
    as_text = (
        f'<Patient xmlns="http://hl7.org/fhir"><name><family>{family}</family></name></Patient>'
    ).encode()
    refused = fhir.post("/Patient", content=as_text, headers=XML)
    assert refused.status_code == 400, refused.text
    assert refused.json()["issue"][0]["expression"] == ["Patient.name.family"]
    assert total(fhir, "Patient", family=family) == 1  # the first only: nothing dropped silently


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_a_compressed_body_is_refused_as_unsupported(fhir, encoding):
    family = f"Zip{unique()}"
    raw = json.dumps(patient(family)).encode()
    body = gzip.compress(raw) if encoding == "gzip" else raw
    answer = fhir.post("/Patient", content=body, headers=JSON | {"Content-Encoding": encoding})
    assert answer.status_code == 415, answer.text
    assert f"Content-Encoding '{encoding}' is not supported" in answer.text
    pdf = fhir.post(
        "/Binary",
        content=b"%PDF-1.4 x",
        headers={"Content-Type": "application/pdf", "Content-Encoding": encoding},
    )
    assert pdf.status_code == 415, pdf.text
    assert total(fhir, "Patient", family=family) == 0


def test_an_entry_of_an_unknown_type_is_named_by_its_entry(fhir):
    unknown = bundle("transaction", entry(None, "GET", "metadata"))
    answer = fhir.post("", json=unknown)
    assert answer.status_code == 404, answer.text
    diagnostics = answer.json()["issue"][0]["diagnostics"]
    assert diagnostics == "Bundle.entry[0]: Unknown resource type 'metadata'"


def test_if_match_on_a_deleted_resource_says_it_is_deleted(fhir):
    created = fhir.post("/Patient", json=patient(f"Gone{unique()}")).json()
    assert fhir.delete(f"/Patient/{created['id']}").status_code == 204
    body = patient("Back") | {"id": created["id"]}
    stale = fhir.put(f"/Patient/{created['id']}", json=body, headers={"If-Match": 'W/"2"'})
    assert stale.status_code == 412, stale.text
    diagnostics = stale.json()["issue"][0]["diagnostics"]
    assert diagnostics == f'Patient/{created["id"]} is deleted: there is no version W/"2" to update'


def test_a_urn_uuid_reference_outside_a_transaction_is_refused(fhir):
    """It names an entry of the transaction it is sent in; alone or in a batch it names
    nothing, and stored it would point nowhere."""
    family = f"Dangling{unique()}"
    before = total(fhir, "Observation")
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": family},
        "subject": {"reference": f"urn:uuid:{uuid.uuid4()}"},
    }
    alone = fhir.post("/Observation", json=observation)
    assert alone.status_code == 400, alone.text
    assert alone.json()["issue"][0]["expression"] == ["Observation.subject.reference"]
    batch = bundle(
        "batch",
        entry(patient(family), "POST", "Patient"),
        entry(observation, "POST", "Observation"),
    )
    assert statuses(fhir.post("", json=batch)) == ["201", "400"]
    assert total(fhir, "Observation") == before
