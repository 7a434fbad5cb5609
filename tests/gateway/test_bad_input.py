"""Bad input always gets an OperationOutcome with a fitting status, never a 500."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from harness import start_server

INJECTIONS = [
    "' OR 1=1 --",
    '"; DROP TABLE resources; --',
    "%",
    "_",
    "\\",
    "a\x00b",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "🙂" * 50,
    "x" * 5000,
    "eq' UNION SELECT content FROM resources --",
    "|",
    "||",
    ":",
    "$(rm -rf /)",
]


def outcome(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"]
    return body


def test_unparsable_json(fhir):
    response = fhir.post(
        "/Patient",
        content=b'{"resourceType": "Patient",',
        headers={"Content-Type": "application/fhir+json"},
    )
    outcome(response, 400)


def test_unparsable_xml(fhir):
    response = fhir.post(
        "/Patient",
        content=b"<Patient xmlns='http://hl7.org/fhir'><name>",
        headers={"Content-Type": "application/fhir+xml"},
    )
    outcome(response, 400)


def test_xml_with_entity_expansion_is_refused(fhir):
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b'<Patient xmlns="http://hl7.org/fhir"><name><family value="&lol2;"/></name></Patient>'
    )
    outcome(
        fhir.post("/Patient", content=bomb, headers={"Content-Type": "application/fhir+xml"}), 400
    )
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<Patient xmlns="http://hl7.org/fhir"><name><family value="&x;"/></name></Patient>'
    )
    outcome(
        fhir.post("/Patient", content=xxe, headers={"Content-Type": "application/fhir+xml"}), 400
    )


def test_wrong_resource_type_for_the_url(fhir):
    body = outcome(fhir.post("/Observation", json={"resourceType": "Patient"}), 400)
    assert body["issue"][0]["expression"] == ["resourceType"]


def test_unknown_type(fhir):
    outcome(fhir.get("/Spaceship"), 404)
    outcome(fhir.post("/Spaceship", json={"resourceType": "Spaceship"}), 404)
    outcome(fhir.get("/MedicinalProduct/1"), 404)  # R4-only type without an R4B model


def test_invalid_elements_are_named(fhir):
    body = outcome(fhir.post("/Patient", json={"resourceType": "Patient", "birthDate": "20x"}), 400)
    assert "Patient.birthDate" in body["issue"][0]["expression"]
    body = outcome(fhir.post("/Patient", json={"resourceType": "Patient", "colour": "blue"}), 400)
    assert "Patient.colour" in body["issue"][0]["expression"]
    body = outcome(
        fhir.post(
            "/Observation",
            json={"resourceType": "Observation", "status": "bogus", "code": {"text": "x"}},
        ),
        400,
    )
    assert "Observation.status" in body["issue"][0]["expression"]
    outcome(fhir.post("/Patient", json={"resourceType": "Patient", "active": "true"}), 400)
    outcome(fhir.post("/Patient", json=[1, 2]), 400)
    outcome(fhir.post("/Patient", json={"resourceType": "Patient", "gender": "unknownish"}), 400)


def test_an_empty_string_is_named_as_empty(fhir):
    sent = {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": ""}]}
    issue = outcome(fhir.post("/Patient", json=sent), 400)["issue"][0]
    assert issue["expression"] == ["Patient.identifier[0].value"]
    assert issue["diagnostics"].endswith(
        "Patient.identifier[0].value: is empty (a FHIR string has at least one character)"
    )


def test_unsupported_media_types(fhir):
    outcome(fhir.post("/Patient", content=b"name=x", headers={"Content-Type": "text/plain"}), 415)
    outcome(fhir.get("/metadata", headers={"Accept": "text/csv"}), 406)


def test_another_fhir_version_is_refused_by_its_media_type_parameter(fhir):
    """FHIR's fhirVersion parameter (http.html#version-parameter): a body of another version
    is a 415, an answer only in another version a 406; R4's 4.0 and 4.0.x are served."""
    patient = b'{"resourceType": "Patient", "gender": "female"}'
    r5 = {"Content-Type": "application/fhir+json; fhirVersion=5.0"}
    body = outcome(fhir.post("/Patient", content=patient, headers=r5), 415)
    assert "5.0" in body["issue"][0]["diagnostics"]
    r4 = {"Content-Type": "application/fhir+json; fhirVersion=4.0"}
    assert fhir.post("/Patient", content=patient, headers=r4).status_code == 201
    outcome(
        fhir.get("/metadata", headers={"Accept": "application/fhir+json; fhirVersion=3.0"}), 406
    )
    either = "application/fhir+xml; fhirVersion=5.0, application/fhir+json; fhirVersion=4.0.1"
    answer = fhir.get("/metadata", headers={"Accept": either})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/fhir+json")


def test_oversize_body_is_413(server, tmp_path):
    assert server.settings.max_body_bytes == 64 * 1024 * 1024  # the default
    small, database = start_server(server.backend, tmp_path, max_body_bytes=2048)
    try:
        with small.client() as client:
            big = {"resourceType": "Patient", "name": [{"family": "x" * 4096}]}
            outcome(client.post("/Patient", json=big), 413)
            chunks = (b"x" * 1024 for _ in range(8))  # no Content-Length: counted while streaming
            outcome(
                client.post(
                    "/Patient", content=chunks, headers={"Content-Type": "application/fhir+json"}
                ),
                413,
            )
    finally:
        small.stop()
        database.drop()


def test_unknown_search_parameter_lenient_or_strict(fhir):
    lenient = fhir.get("/Patient", params={"colour": "blue", "_count": "1"})
    assert lenient.status_code == 200
    assert "colour" not in lenient.json()["link"][0]["url"]
    strict = fhir.get("/Patient", params={"colour": "blue"}, headers={"Prefer": "handling=strict"})
    outcome(strict, 400)


def test_bad_search_values(fhir):
    outcome(fhir.get("/Patient", params={"birthdate": "yesterday"}), 400)
    outcome(fhir.get("/Patient", params={"_count": "-1"}), 400)
    outcome(fhir.get("/Patient", params={"_sort": "colour"}), 400)
    outcome(fhir.get("/Patient", params={"_include": "Patient:nothing"}), 400)
    outcome(fhir.get("/Patient", params={"family": ""}), 400)


def test_bad_if_match(fhir):
    created = fhir.post("/Patient", json={"resourceType": "Patient"}).json()
    outcome(
        fhir.put(f"/Patient/{created['id']}", json=created, headers={"If-Match": "nonsense"}), 400
    )


def test_methods_and_paths_that_do_not_exist(fhir):
    refused = outcome(fhir.patch("/Patient/1", json={}), 405)
    assert "PATCH" in refused["issue"][0]["diagnostics"]
    outcome(fhir.get("/Patient/1/2/3/4"), 404)
    for path in ("/Patient/1", "/Binary/1", "/metadata"):
        head = fhir.head(path)
        assert head.status_code == 405, path  # not a FHIR interaction: nothing read, audited
        assert "GET" in head.headers["Allow"] and "HEAD" not in head.headers["Allow"]


def test_bundle_posted_to_base_must_be_transaction_or_batch(fhir):
    outcome(fhir.post("", json={"resourceType": "Bundle", "type": "collection"}), 400)
    outcome(fhir.post("", json={"resourceType": "Patient"}), 400)
    outcome(
        fhir.post(
            "",
            json={
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"request": {"method": "FLY", "url": "Patient"}}],
            },
        ),
        400,
    )


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_strings_in_every_kind_of_parameter(fhir, value):
    for name in (
        "family",
        "name:contains",
        "identifier",
        "gender:not",
        "birthdate",
        "general-practitioner",
        "organization.name",
        "_id",
        "_lastUpdated",
        "_sort",
        "_count",
        "_include",
        "_elements",
        "_summary",
        "family:exact",
        "colour",
    ):
        response = fhir.get("/Patient", params={name: value})
        assert response.status_code in (200, 400), (name, value, response.text)
        assert response.headers["Content-Type"].startswith("application/fhir+json")
        assert response.json()["resourceType"] in ("Bundle", "OperationOutcome")
    quoted = quote(value, safe="")
    for path in (f"/Patient/{quoted}", f"/{quoted}", f"/Patient/{quoted}/_history/{quoted}"):
        response = fhir.get(path)
        assert response.status_code in (400, 404), (path, response.text)
    assert fhir.get("/Patient", params={"_count": "1"}).status_code == 200  # the store is intact


@pytest.mark.parametrize("control", ["\u0000", "\u0001", "\u000b", "\u001b"])
def test_a_control_character_in_a_resource_string_is_refused_and_nothing_stored(fhir, control):
    """FHIR strings hold no character below U+0020 but tab, CR and LF: a NUL would be stored
    and travel on to other hospitals' systems, which may cut the value at it."""
    family = f"Contr{control}olo"
    sent = {"resourceType": "Patient", "name": [{"family": "Ok", "given": ["a", family]}]}
    issue = outcome(fhir.post("/Patient", json=sent), 400)["issue"][0]
    assert issue["expression"] == ["Patient.name[0].given[1]"]
    assert f"U+{ord(control):04X}" in issue["diagnostics"]
    sent = {"resourceType": "Patient", "name": [{"family": family}]}
    assert outcome(fhir.post("/Patient", json=sent), 400)["issue"][0]["code"] == "value"
    assert fhir.get("/Patient", params={"family": "Contr"}).json().get("total") == 0
    allowed = {"resourceType": "Patient", "name": [{"family": "Tab\tCR\rLF\n"}]}
    assert fhir.post("/Patient", json=allowed).status_code == 201


# Digits str.isdigit takes but int() does not, and numbers no database integer holds.
ODD_NUMBERS = ["²", "٣", "9" * 20, "0" * 5000]


@pytest.mark.parametrize("number", ODD_NUMBERS)
def test_odd_numbers_in_versions_paging_and_etags_are_the_clients_mistake(fhir, number):
    created = fhir.post("/Patient", json={"resourceType": "Patient"}).json()
    path = f"/Patient/{created['id']}"
    outcome(fhir.get(f"{path}/_history/{quote(number)}"), 404)
    for name in ("_count", "_offset"):
        outcome(fhir.get("/Patient", params={name: number}), 400)
        outcome(fhir.get(f"{path}/_history", params={name: number}), 400)
        outcome(fhir.get("/AuditEvent", params={name: number}), 400)
    outcome(fhir.put(path, json=created, headers={"If-Match": f'W/"{number}"'.encode()}), 400)
    assert fhir.get(f"{path}/_history/1").status_code == 200  # the connection and store are fine
