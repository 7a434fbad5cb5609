"""FHIR R4 exports (JSON or XML) → transaction Bundle: nl-core examples, references, systems."""

from __future__ import annotations

import json

import pytest

from adapters import BSN_SYSTEM, MalformedInput, SourceInfo, UnsafeInput, UnsupportedInput, convert
from tests.adapters.adapters_testkit import NL_CORE, SHARED_DATA, TEST_BSN, only

EXAMPLES = sorted(NL_CORE.glob("*.xml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_nl_core_example_loads_as_valid_r4(path, source: SourceInfo) -> None:
    conversion = convert("fhir", path.read_bytes(), source)
    assert conversion.validated and conversion.ok
    assert len(conversion.bundle["entry"]) == 1
    resource = conversion.bundle["entry"][0]["resource"]
    assert "id" not in resource  # the server assigns ids


def test_the_example_count_is_what_the_data_set_holds() -> None:
    assert len(EXAMPLES) == 136


def test_nl_core_patient_keeps_its_bsn_and_dutch_name_parts(source: SourceInfo) -> None:
    conversion = convert("fhir", (NL_CORE / "nl-core-Patient-01.xml").read_bytes(), source)
    entry = conversion.bundle["entry"][0]
    patient = entry["resource"]
    assert {"system": BSN_SYSTEM, "value": "111222333"} in patient["identifier"]
    assert entry["request"]["ifNoneExist"] == f"identifier={BSN_SYSTEM}|111222333"
    assert patient["meta"]["profile"] == [
        "http://nictiz.nl/fhir/StructureDefinition/nl-core-Patient"
    ]
    own_prefix = [e for name in patient["name"] for e in name.get("_family", {}).get("extension", [])
                  if e["url"].endswith("humanname-own-prefix")]  # fmt: skip
    assert own_prefix


def test_a_legacy_bsn_oid_system_is_normalised(source: SourceInfo) -> None:
    data = (NL_CORE / "nl-core-TreatmentDirective2-02-Patient-01.xml").read_bytes()
    legacy = data.replace(
        b"http://fhir.nl/fhir/NamingSystem/bsn", b"urn:oid:2.16.840.1.113883.2.4.6.3"
    )
    assert legacy != data
    patient = only(convert("fhir", legacy, source).resources("Patient"))
    assert {"system": BSN_SYSTEM, "value": TEST_BSN} in patient["identifier"]


def _bundle(*resources: dict, kind: str = "collection") -> bytes:
    return json.dumps({"resourceType": "Bundle", "type": kind, "entry": [
        {"fullUrl": f"http://example.org/fhir/{r['resourceType']}/{r['id']}", "resource": r} for r in resources
    ]}).encode()  # fmt: skip


PATIENT = {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "3", "lastUpdated": "2024-01-01T00:00:00Z"},
           "identifier": [{"system": "urn:oid:2.16.840.1.113883.2.4.6.3", "value": "999911120"},
                          {"system": "urn:oid:2.16.528.1.1007.3.3", "value": "87654321"}]}  # fmt: skip
OBSERVATION = {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "Hb"},
               "subject": {"reference": "Patient/p1"}, "performer": [{"reference": "Practitioner/elsewhere"}],
               "identifier": [{"system": "urn:oid:1.2.3", "value": "obs-1"}]}  # fmt: skip
BINARY = {"resourceType": "Binary", "id": "b1", "contentType": "text/plain", "data": "aGFsbG8="}
DOCUMENT = {"resourceType": "DocumentReference", "id": "d1", "status": "current",
            "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.3.4"},
            "subject": {"reference": "http://example.org/fhir/Patient/p1"},
            "content": [{"attachment": {"contentType": "text/plain", "url": "http://example.org/fhir/Binary/b1"}}]}  # fmt: skip


def test_a_bundle_becomes_a_transaction_with_references_rewritten(source: SourceInfo) -> None:
    conversion = convert(
        "fhir", _bundle(PATIENT, OBSERVATION, BINARY, DOCUMENT, kind="searchset"), source
    )
    urls = {e["resource"]["resourceType"]: e["fullUrl"] for e in conversion.bundle["entry"]}
    observation = only(conversion.resources("Observation"))
    assert observation["subject"] == {"reference": urls["Patient"]}
    document = only(conversion.resources("DocumentReference"))
    assert document["subject"] == {"reference": urls["Patient"]}
    assert document["content"][0]["attachment"]["url"] == urls["Binary"]
    patient = only(conversion.resources("Patient"))
    assert patient["identifier"] == [{"system": BSN_SYSTEM, "value": TEST_BSN},
                                     {"system": "http://fhir.nl/fhir/NamingSystem/ura", "value": "87654321"}]  # fmt: skip
    assert "id" not in patient and "meta" not in patient
    # the practitioner is not in the input: kept, and said so
    assert [(i.severity, i.message) for i in conversion.issues] == [
        ("warning", "reference 'Practitioner/elsewhere' points outside the input; kept as is")]  # fmt: skip
    requests = {e["resource"]["resourceType"]: e["request"] for e in conversion.bundle["entry"]}
    assert requests["Observation"]["ifNoneExist"] == "identifier=urn:oid:1.2.3|obs-1"
    assert (
        requests["DocumentReference"]["ifNoneExist"]
        == "identifier=urn:ietf:rfc:3986|urn:oid:1.2.3.4"
    )


def test_an_invalid_bsn_in_a_fhir_resource_is_removed_with_an_error(source: SourceInfo) -> None:
    bad = {**PATIENT, "identifier": [{"system": BSN_SYSTEM, "value": "999911121"}]}
    conversion = convert("fhir", json.dumps(bad).encode(), source)
    assert not conversion.ok
    assert "identifier" not in only(conversion.resources("Patient"))


def test_r4_only_resource_types_are_refused_cleanly(source: SourceInfo) -> None:
    medicinal = json.dumps({"resourceType": "MedicinalProduct", "id": "x"}).encode()
    with pytest.raises(UnsupportedInput, match="MedicinalProduct"):
        convert("fhir", medicinal, source)
    inside = convert(
        "fhir", _bundle(PATIENT, {"resourceType": "MedicinalProduct", "id": "x"}), source
    )
    assert inside.resource_counts() == {"Patient": 1}
    assert [i.severity for i in inside.issues] == ["error"]


SPEC_BUNDLES = sorted((SHARED_DATA / "fhir-r4-spec-examples" / "Bundle").glob("Bundle-*.json"))


@pytest.mark.parametrize("path", SPEC_BUNDLES, ids=lambda p: p.stem)
def test_spec_example_bundles_of_every_kind_become_transactions(path, source: SourceInfo) -> None:
    original = json.loads(path.read_bytes())
    conversion = convert("fhir", path.read_bytes(), source)
    assert conversion.validated and conversion.bundle["type"] == "transaction"
    with_resource = [e for e in original.get("entry", []) if "resource" in e]
    skipped = [i for i in conversion.issues
               if i.message.endswith("left out") and not i.message.startswith("entry without")]  # fmt: skip
    merged = [i for i in conversion.issues if "occurs more than once" in i.message]
    assert len(conversion.bundle["entry"]) == len(with_resource) - len(skipped) - len(merged)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", MalformedInput),
        (b"[]", MalformedInput),
        (b'{"resourceType": 5}', MalformedInput),
        (b'{"resourceType": "Patient", "gender": "bogus"}', MalformedInput),
        (b'{"resourceType": "Patient", "birthDate": "1975-13-01"}', MalformedInput),
        (b'<Patient xmlns="http://hl7.org/fhir"><foo value="1"/></Patient>', MalformedInput),
        (b'<Patient xmlns="urn:other"/>', MalformedInput),
        (
            b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><Patient xmlns="http://hl7.org/fhir"/>',
            UnsafeInput,
        ),
    ],
    ids=[
        "empty",
        "array",
        "bad-type",
        "bad-code",
        "bad-date",
        "unknown-element",
        "not-fhir-xml",
        "xxe",
    ],
)
def test_broken_fhir_input_is_refused_cleanly(data: bytes, error: type, source: SourceInfo) -> None:
    with pytest.raises(error):
        convert("fhir", data, source)
