"""Data categories: the Mitz hierarchy, and which category each resource falls under."""

from __future__ import annotations

import json

import pytest
from consent_builders import SHARED_DATA

from consent import DATA_CATEGORIES, InvalidRequest, categories_of

EXAMPLES = SHARED_DATA / "fhir-r4-spec-examples"


@pytest.mark.parametrize(
    "resource_type, categories",
    [
        ("DiagnosticReport", {"diagnostic-reports", "results", "treatment"}),
        ("MedicationStatement", {"medication-statements", "medication", "treatment"}),
        ("MedicationRequest", {"medication-requests", "medication", "treatment"}),
        ("MedicationDispense", {"medication-dispenses", "medication", "treatment"}),
        ("MedicationAdministration", {"medication-administrations", "medication", "treatment"}),
        ("Medication", {"medication-definitions", "medication", "treatment"}),
        ("DocumentReference", {"document-references", "documents", "treatment"}),
        ("Binary", {"binaries", "documents", "treatment"}),
        ("Composition", {"compositions", "documents", "treatment"}),
        ("List", {"lists", "documents", "treatment"}),
        ("Condition", {"problems", "treatment"}),
        ("AllergyIntolerance", {"allergies", "treatment"}),
        ("Procedure", {"procedures", "treatment"}),
        ("Encounter", {"encounters", "treatment"}),
        ("Immunization", {"immunizations", "treatment"}),
        ("Patient", {"demographics", "treatment"}),
        ("CarePlan", {"other", "treatment"}),
    ],
)
def test_categories_of_a_resource_type(resource_type, categories):
    assert categories_of(resource_type) == categories


@pytest.mark.parametrize(
    "example, categories",
    [
        ("Observation-bgpanel.json", {"result-observations", "results", "treatment"}),  # laboratory
        ("Observation-blood-pressure.json", {"result-observations", "results", "treatment"}),
        ("Observation-alcohol-type.json", {"other-observations", "treatment"}),  # social-history
        ("Observation-eye-color.json", {"other-observations", "treatment"}),  # no category
    ],
)
def test_observation_category_decides_between_results_and_other(example, categories):
    resource = json.loads((EXAMPLES / "Observation" / example).read_text())
    assert categories_of("Observation", resource) == categories


def test_observation_without_its_content_is_refused():
    with pytest.raises(InvalidRequest, match="pass the resource"):
        categories_of("Observation")


def test_the_tree_follows_mitz():
    assert DATA_CATEGORIES["treatment"].mitz == "GGC002"
    assert DATA_CATEGORIES["treatment"].parent is None
    assert DATA_CATEGORIES["results"].mitz == "GGC012"
    assert DATA_CATEGORIES["medication"].mitz == "GGC013"
    assert DATA_CATEGORIES["results"].parent == DATA_CATEGORIES["medication"].parent == "treatment"


def test_every_category_reaches_the_umbrella():
    for code, category in DATA_CATEGORIES.items():
        seen = {code}
        while category.parent is not None:
            assert category.parent not in seen
            seen.add(category.parent)
            category = DATA_CATEGORIES[category.parent]
        assert category.code == "treatment"
