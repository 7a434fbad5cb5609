"""Search parameter expressions compile to fast dict walks, with FHIRPath for the rest."""

from __future__ import annotations

from gateway.fhir.search_params import compile_expression, parse_reference, registry
from gateway.fhir.types import RESOURCE_TYPES

OBSERVATION = {
    "resourceType": "Observation",
    "subject": {"reference": "Patient/p1"},
    "effectivePeriod": {"start": "2026-01-01"},
    "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
}


def test_every_generated_parameter_compiles_for_every_accepted_type():
    params = registry()
    assert sum(len(params.for_type(t)) for t in RESOURCE_TYPES) > len(RESOURCE_TYPES) * 5
    assert params.get("Observation", "patient").targets == ("Patient",)


def test_choice_elements_resolve_and_where_resolve_filters_by_type():
    assert compile_expression("Observation.effective", "Observation")(OBSERVATION) == [
        {"start": "2026-01-01"}
    ]
    as_datetime = compile_expression("(Observation.effective as dateTime)", "Observation")
    assert as_datetime(OBSERVATION) == []
    patient = compile_expression("Observation.subject.where(resolve() is Patient)", "Observation")
    group = compile_expression("Observation.subject.where(resolve() is Group)", "Observation")
    assert patient(OBSERVATION) == [{"reference": "Patient/p1"}]
    assert group(OBSERVATION) == []


def test_other_expressions_fall_back_to_fhirpath():
    telecom = compile_expression("Patient.telecom.where(system='phone')", "Patient")
    patient = {
        "resourceType": "Patient",
        "telecom": [{"system": "phone", "value": "06"}, {"system": "email", "value": "a@b"}],
    }
    assert telecom(patient) == [{"system": "phone", "value": "06"}]


def test_parse_reference_forms():
    assert parse_reference("Patient/1") == ("Patient", "1", None)
    assert parse_reference("https://x.nl/fhir/Patient/1/_history/2") == (
        "Patient",
        "1",
        "https://x.nl/fhir",
    )
    assert parse_reference("urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0") is None
