"""Data categories, modelled on the Mitz "gegevenscategorieën".

Mitz knows GGC002 treatment data (behandelgegevens, the umbrella), GGC012 results (uitslagen) and
GGC013 medication (medicatiegegevens); a choice for a higher category also holds for the lower
ones. Zorgbrug refines the umbrella into the categories below, down to one leaf per resource type
(Observation is split by its category), so that a Consent ``provision.class`` naming a FHIR resource
type selects exactly that type and never a wider category::

    treatment               GGC002  every patient resource
    ├── results             GGC012
    │   ├── result-observations         Observation with category laboratory or vital-signs
    │   └── diagnostic-reports          DiagnosticReport
    ├── medication          GGC013
    │   ├── medication-statements       MedicationStatement
    │   ├── medication-requests         MedicationRequest
    │   ├── medication-dispenses        MedicationDispense
    │   ├── medication-administrations  MedicationAdministration
    │   └── medication-definitions      Medication
    ├── documents
    │   ├── document-references         DocumentReference
    │   ├── binaries                    Binary
    │   ├── compositions                Composition
    │   └── lists                       List (MHD SubmissionSet and Folder)
    ├── problems                        Condition
    ├── allergies                       AllergyIntolerance
    ├── procedures                      Procedure
    ├── encounters                      Encounter
    ├── immunizations                   Immunization
    ├── demographics                    Patient
    ├── other-observations              Observation of any other or no category
    └── other                           every other resource type

Every resource falls in exactly one leaf; ``categories_of`` returns that leaf with its ancestors.
A rule or agreement naming a category covers every leaf below it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from consent._errors import InvalidRequest
from consent._terminology import DATA_CATEGORY_SYSTEM, MITZ_CATEGORY_SYSTEM, RESOURCE_TYPES_SYSTEM


@dataclass(frozen=True, slots=True)
class DataCategory:
    """One node of the category tree: its code, parent, names (English, Dutch), Mitz code and
    the types it holds."""

    code: str
    parent: str | None
    title: str
    dutch_title: str
    mitz: str | None = None
    resource_types: tuple[str, ...] = ()


_TREE: Final = (
    DataCategory(
        "treatment", None, "treatment data (behandelgegevens)", "behandelgegevens", "GGC002"
    ),
    DataCategory("results", "treatment", "results (uitslagen)", "uitslagen", "GGC012"),
    DataCategory(
        "result-observations",
        "results",
        "laboratory and vital-sign observations",
        "laboratoriumuitslagen en vitale functies",
        resource_types=("Observation",),
    ),
    DataCategory(
        "diagnostic-reports",
        "results",
        "diagnostic reports",
        "diagnostische verslagen",
        None,
        ("DiagnosticReport",),
    ),
    DataCategory(
        "medication", "treatment", "medication (medicatiegegevens)", "medicatiegegevens", "GGC013"
    ),
    DataCategory(
        "medication-statements",
        "medication",
        "medication use",
        "medicatiegebruik",
        None,
        ("MedicationStatement",),
    ),
    DataCategory(
        "medication-requests",
        "medication",
        "prescriptions",
        "voorschriften",
        None,
        ("MedicationRequest",),
    ),
    DataCategory(
        "medication-dispenses",
        "medication",
        "dispenses",
        "verstrekkingen",
        None,
        ("MedicationDispense",),
    ),
    DataCategory(
        "medication-administrations",
        "medication",
        "administrations",
        "toedieningen",
        None,
        ("MedicationAdministration",),
    ),
    DataCategory(
        "medication-definitions",
        "medication",
        "medicinal products",
        "geneesmiddelen",
        None,
        ("Medication",),
    ),
    DataCategory("documents", "treatment", "documents", "documenten"),
    DataCategory(
        "document-references",
        "documents",
        "document metadata",
        "documentgegevens",
        None,
        ("DocumentReference",),
    ),
    DataCategory("binaries", "documents", "document content", "documentinhoud", None, ("Binary",)),
    DataCategory(
        "compositions",
        "documents",
        "structured documents",
        "gestructureerde documenten",
        None,
        ("Composition",),
    ),
    DataCategory(
        "lists",
        "documents",
        "submission sets and folders",
        "verzendsets en mappen",
        None,
        ("List",),
    ),
    DataCategory("problems", "treatment", "problems", "problemen", None, ("Condition",)),
    DataCategory(
        "allergies",
        "treatment",
        "allergies and intolerances",
        "allergieën en intoleranties",
        None,
        ("AllergyIntolerance",),
    ),
    DataCategory("procedures", "treatment", "procedures", "verrichtingen", None, ("Procedure",)),
    DataCategory("encounters", "treatment", "encounters", "contacten", None, ("Encounter",)),
    DataCategory(
        "immunizations", "treatment", "immunizations", "vaccinaties", None, ("Immunization",)
    ),
    DataCategory(
        "demographics", "treatment", "demographics", "persoonsgegevens", None, ("Patient",)
    ),
    DataCategory(
        "other-observations",
        "treatment",
        "other observations",
        "overige observaties",
        resource_types=("Observation",),
    ),
    DataCategory("other", "treatment", "other patient data", "overige patiëntgegevens"),
)

DATA_CATEGORIES: Final[Mapping[str, DataCategory]] = MappingProxyType({c.code: c for c in _TREE})
_BY_MITZ: Final = {c.mitz: c.code for c in _TREE if c.mitz}
CHILDREN: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {c.code: tuple(d.code for d in _TREE if d.parent == c.code) for c in _TREE}
)
ROOT: Final = "treatment"
LEAVES: Final = frozenset(code for code, children in CHILDREN.items() if not children)
# Result observations: Observation.category codes that make an Observation a result (GGC012).
RESULT_OBSERVATION_CATEGORIES: Final = frozenset({"laboratory", "vital-signs"})
_OBSERVATION_CATEGORY_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/observation-category"


def _leaves_below(code: str) -> frozenset[str]:
    children = CHILDREN[code]
    if not children:
        return frozenset({code})
    return frozenset().union(*(_leaves_below(child) for child in children))


def _lineage(code: str) -> frozenset[str]:
    chain = []
    node: str | None = code
    while node is not None:
        chain.append(node)
        node = DATA_CATEGORIES[node].parent
    return frozenset(chain)


LEAVES_BELOW: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {code: _leaves_below(code) for code in DATA_CATEGORIES}
)
LINEAGE: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {leaf: _lineage(leaf) for leaf in LEAVES}
)
# Resource type -> its leaf; Observation is absent because its leaf depends on its content.
_TYPE_LEAF: Final = {
    rtype: c.code for c in _TREE for rtype in c.resource_types if rtype != "Observation"
}
OBSERVATION_LEAVES: Final = frozenset({"result-observations", "other-observations"})


def category_code(code: str) -> str:
    """Our category code for ``code`` (one of ours or a Mitz GGC code); KeyError if neither."""
    if code in DATA_CATEGORIES:
        return code
    return _BY_MITZ[code]


def leaves_of_coding(system: str | None, code: str | None) -> frozenset[str] | None:
    """The leaves a Coding selects: our category, a Mitz GGC code or a FHIR resource type.

    None when the system is none of the three. KeyError for an unknown code in a known system,
    ValueError for a resource type that is not a category of its own (it falls under ``other``).
    """
    if code is None:
        return None
    if system == DATA_CATEGORY_SYSTEM:
        return LEAVES_BELOW[code]
    if system == MITZ_CATEGORY_SYSTEM:
        return LEAVES_BELOW[_BY_MITZ[code]]
    if system == RESOURCE_TYPES_SYSTEM:
        if code == "Observation":
            return OBSERVATION_LEAVES
        if code in _TYPE_LEAF:
            return frozenset({_TYPE_LEAF[code]})
        raise ValueError(
            f"resource type '{code}' is not a data category of its own (it falls under 'other')"
        )
    return None


def leaf_of(resource_type: str, resource: Mapping[str, Any] | None = None) -> str:
    """The one leaf category a resource falls in (see the module docstring)."""
    if resource_type == "Observation":
        if resource is None:
            raise InvalidRequest(
                "Observation.category",
                "the category of an Observation depends on Observation.category: pass the resource",
            )
        return "result-observations" if _is_result(resource) else "other-observations"
    return _TYPE_LEAF.get(resource_type, "other")


def categories_of(resource_type: str, resource: Mapping[str, Any] | None = None) -> frozenset[str]:
    """Every data category a resource falls under: its leaf and all umbrellas above it.

    ``resource`` (the FHIR JSON) is needed only for Observation, whose category decides between
    results (laboratory, vital-signs) and other observations; other types are decided by type.
    """
    return LINEAGE[leaf_of(resource_type, resource)]


def leaves_for_type(resource_type: str) -> frozenset[str]:
    """The leaves a resource of this type can fall in (two for Observation, else one)."""
    if resource_type == "Observation":
        return OBSERVATION_LEAVES
    return frozenset({_TYPE_LEAF.get(resource_type, "other")})


def _is_result(observation: Mapping[str, Any]) -> bool:
    for concept in observation.get("category") or ():
        for coding in concept.get("coding") or ():
            if (
                coding.get("system") == _OBSERVATION_CATEGORY_SYSTEM
                and coding.get("code") in RESULT_OBSERVATION_CATEGORIES
            ):
                return True
    return False
