"""The shape checker passes every official R4 example and names each kind of defect exactly."""

from __future__ import annotations

import copy
import json
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from gateway.fhir.shape import ShapeIssue, check_resource

# The checkout sits next to shared/ (locally and in CI).
FHIR_EXAMPLES = Path(__file__).resolve().parents[4] / "shared" / "data" / "fhir-r4-spec-examples"
EXAMPLES = sorted(FHIR_EXAMPLES.glob("**/*.json"))
# Official examples with a genuine defect the checker rightly reports: file name -> reason.
# (None so far: all 381 official examples under shared/ are well formed.)
KNOWN_DEFECTS: dict[str, str] = {}


def _example(relative: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FHIR_EXAMPLES / relative).read_text(encoding="utf-8"))
    return data


def _definitions(name: str) -> Any:
    return json.loads((resources.files("gateway.fhir") / "definitions" / name).read_text())


@pytest.fixture
def patient() -> dict[str, Any]:
    return _example("Patient/Patient-example.json")


def test_there_are_official_examples_to_check():
    assert len([p for p in EXAMPLES if p.name != "package.json"]) >= 381


@pytest.mark.parametrize(
    "path", [p for p in EXAMPLES if p.name != "package.json"], ids=lambda p: p.name
)
def test_official_example_has_no_shape_issues(path: Path):
    resource = json.loads(path.read_text(encoding="utf-8"))
    issues = check_resource(resource)
    if path.name in KNOWN_DEFECTS:
        assert issues, f"{path.name} no longer shows its known defect"
    else:
        assert issues == []


def test_bad_observation_status_is_a_binding_issue():
    observation = _example("Observation/Observation-example.json")
    observation["status"] = "bogus"
    assert check_resource(observation) == [
        ShapeIssue(
            "Observation.status",
            "'bogus' is not a valid code for Observation.status (required binding)",
        )
    ]


def test_boolean_given_as_string_is_reported(patient):
    patient["active"] = "true"
    assert check_resource(patient) == [
        ShapeIssue(
            "Patient.active",
            "Patient.active is a FHIR boolean: expected JSON true or false, got a string",
        )
    ]


def test_integer_choice_given_as_string_is_reported(patient):
    patient["multipleBirthInteger"] = "2"
    assert check_resource(patient) == [
        ShapeIssue(
            "Patient.multipleBirthInteger",
            "Patient.multipleBirthInteger is a FHIR integer: expected a JSON integer, got a string",
        )
    ]


@pytest.mark.parametrize("value", [True, 2.5, 2**31])
def test_integer_must_be_a_json_integer_in_range(patient, value):
    patient["multipleBirthInteger"] = value
    [issue] = check_resource(patient)
    assert issue.expression == "Patient.multipleBirthInteger"


def test_repeating_element_given_as_object_is_reported(patient):
    patient["name"] = patient["name"][0]
    assert check_resource(patient) == [
        ShapeIssue("Patient.name", "Patient.name repeats: expected a JSON array, got an object")
    ]


def test_single_element_given_as_array_is_reported(patient):
    patient["birthDate"] = [patient["birthDate"]]
    assert check_resource(patient) == [
        ShapeIssue(
            "Patient.birthDate",
            "Patient.birthDate does not repeat: expected a single value, got a JSON array",
        )
    ]


def test_bad_gender_is_a_binding_issue(patient):
    patient["gender"] = "unknownish"
    assert check_resource(patient) == [
        ShapeIssue(
            "Patient.gender",
            "'unknownish' is not a valid code for Patient.gender (required binding)",
        )
    ]


def test_bad_code_in_backbone_element_names_its_index(patient):
    patient["contact"][0]["gender"] = "bogus"
    assert check_resource(patient) == [
        ShapeIssue(
            "Patient.contact[0].gender",
            "'bogus' is not a valid code for Patient.contact.gender (required binding)",
        )
    ]


def test_bad_code_in_contained_resource_is_checked_as_its_own_type():
    audit = _example("AuditEvent/AuditEvent-example-error.json")
    assert audit["contained"][0]["resourceType"] == "OperationOutcome"
    audit["contained"][0]["issue"][0]["severity"] = "bogus"
    assert check_resource(audit) == [
        ShapeIssue(
            "AuditEvent.contained[0].issue[0].severity",
            "'bogus' is not a valid code for OperationOutcome.issue.severity (required binding)",
        )
    ]


def test_bad_code_in_bundle_entry_is_checked_as_its_own_type():
    bundle = _example("Bundle/Bundle-bundle-transaction.json")
    assert bundle["entry"][2]["resource"]["resourceType"] == "Patient"
    bundle["entry"][2]["resource"]["gender"] = "bogus"
    assert check_resource(bundle) == [
        ShapeIssue(
            "Bundle.entry[2].resource.gender",
            "'bogus' is not a valid code for Patient.gender (required binding)",
        )
    ]


def test_resource_in_parameters_is_checked_as_its_own_type(patient):
    patient["gender"] = "bogus"
    parameters = {"resourceType": "Parameters", "parameter": [{"name": "p", "resource": patient}]}
    [issue] = check_resource(parameters)
    assert issue.expression == "Parameters.parameter[0].resource.gender"


def test_abstract_or_unknown_contained_type_is_reported(patient):
    patient["contained"] = [{"resourceType": "DomainResource"}]
    assert [i.expression for i in check_resource(patient)] == ["Patient.contained[0].resourceType"]


def test_content_reference_uses_the_referenced_elements(patient):
    questionnaire = {
        "resourceType": "Questionnaire",
        "status": "active",
        "item": [
            {
                "linkId": "1",
                "type": "group",
                "item": [{"linkId": "1.1", "type": "question", "required": "yes"}],
            }
        ],
    }
    assert check_resource(questionnaire) == [
        # "question" is an abstract (notSelectable) code of the item-type code system.
        ShapeIssue(
            "Questionnaire.item[0].item[0].type",
            "'question' is not a valid code for Questionnaire.item.type (required binding)",
        ),
        ShapeIssue(
            "Questionnaire.item[0].item[0].required",
            "Questionnaire.item.required is a FHIR boolean: expected JSON true or false, "
            "got a string",
        ),
    ]


def test_primitive_extensions_must_be_objects_or_aligned_nulls(patient):
    ok = copy.deepcopy(patient)
    ok["name"][0]["given"] = [None, "Jim"]
    ok["name"][0]["_given"] = [{"extension": [{"url": "x", "valueString": "a"}]}, None]
    ok["_gender"] = {"id": "g"}
    assert check_resource(ok) == []

    patient["_gender"] = "male"
    patient["name"][0]["_given"] = {"id": "a"}
    patient["name"][0]["given"] = [None, "Jim"]
    assert sorted(i.expression for i in check_resource(patient)) == [
        "Patient._gender",
        "Patient.name[0]._given",  # an object where given repeats
        "Patient.name[0].given[0]",  # a null with no _given array to line up with
    ]


def test_extension_values_are_checked_by_their_choice_type(patient):
    patient["extension"] = [{"url": "http://example.org/x", "valueDecimal": "1.5"}]
    assert [i.expression for i in check_resource(patient)] == ["Patient.extension[0].valueDecimal"]


def test_missing_resource_type_is_reported():
    assert check_resource({"id": "x"}) == [
        ShapeIssue("resourceType", "the resource has no resourceType")
    ]


def test_search_parameters_have_one_entry_per_resource_and_code():
    params = _definitions("search_parameters.json")
    counts = Counter((p["resource"], p["code"]) for p in params)
    assert max(counts.values()) == 1
    by_key = {(p["resource"], p["code"]): p for p in params}
    assert by_key[("Observation", "patient")]["expression"] == (
        "Observation.subject.where(resolve() is Patient)"
    )
    assert by_key[("Observation", "patient")]["target"] == ["Patient"]
    assert by_key[("Resource", "_lastUpdated")]["expression"] == "Resource.meta.lastUpdated"
    for p in params:
        assert all(
            part.lstrip("(").startswith(p["resource"] + ".")
            for part in p["expression"].split(" | ")
        )


def test_element_tables_expand_choices_and_resolve_content_references():
    tables = _definitions("element_types.json")
    assert tables["Patient"]["multipleBirthInteger"] == {"t": ["integer"], "a": False}
    assert tables["Patient"]["contact"] == {"t": ["Patient.contact"], "a": True}
    assert tables["Questionnaire.item"]["item"] == {"t": ["Questionnaire.item"], "a": True}
    assert tables["Observation"]["valueQuantity"] == {"t": ["Quantity"], "a": False}


def test_required_bindings_are_expanded_from_the_code_systems():
    bindings = _definitions("required_bindings.json")
    assert bindings["Patient.gender"] == ["female", "male", "other", "unknown"]
    assert bindings["Patient.contact.gender"] == bindings["Patient.gender"]
    assert "final" in bindings["Observation.status"]
