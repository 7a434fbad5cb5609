"""Checking produced resources against the FHIR R4B models (wire-compatible with R4).

``fhir.resources`` checks structure, cardinality, primitive formats and invariants it knows, but
not required terminology bindings: it accepts ``Observation.status = "bogus"``. The codes whose
binding is *required* in R4 and that adapters set are therefore checked here as well, from a
table, so a mapping table with a typo fails in the tests rather than on the gateway.

Validation costs roughly 0.1 to 0.5 ms per resource, which is why ``convert(validate=False)`` exists
for high-volume HL7 feeds: the gateway validates every resource again when it stores it.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from ._errors import InternalAdapterError
from ._terminology import is_mime_type

_THO = "http://terminology.hl7.org/CodeSystem/"
# (resource type or "*", dotted path, allowed codes, coding system the binding applies to).
# fmt: off
_REQUIRED: list[tuple[str, str, frozenset[str], str | None]] = [
    (t, p, frozenset(codes.split()), system)
    for t, p, codes, system in [
        ("*", "identifier.use", "usual official temp secondary old", None),
        ("Patient", "gender", "male female other unknown", None),
        ("Patient", "name.use", "usual official temp nickname anonymous old maiden", None),
        ("Patient", "telecom.system", "phone fax email pager url sms other", None),
        ("Patient", "telecom.use", "home work temp old mobile", None),
        ("Patient", "address.use", "home work temp old billing", None),
        ("Patient", "address.type", "postal physical both", None),
        ("Patient", "link.type", "replaced-by replaces refer seealso", None),
        ("Encounter", "status", "planned arrived triaged in-progress onleave finished cancelled "
                                "entered-in-error unknown", None),
        ("Observation", "status", "registered preliminary final amended corrected cancelled "
                                  "entered-in-error unknown", None),
        ("Observation", "valueQuantity.comparator", "< <= >= >", None),
        ("Observation", "referenceRange.low.comparator", "< <= >= >", None),
        ("DiagnosticReport", "status", "registered partial preliminary final amended corrected "
                                       "appended cancelled entered-in-error unknown", None),
        ("DocumentReference", "status", "current superseded entered-in-error", None),
        ("DocumentReference", "docStatus", "preliminary final amended entered-in-error", None),
        ("DocumentReference", "relatesTo.code", "replaces transforms signs appends", None),
        ("Condition", "clinicalStatus.coding.code",
         "active recurrence relapse inactive remission resolved", _THO + "condition-clinical"),
        ("Condition", "verificationStatus.coding.code",
         "unconfirmed provisional differential confirmed refuted entered-in-error",
         _THO + "condition-ver-status"),
        ("AllergyIntolerance", "clinicalStatus.coding.code", "active inactive resolved",
         _THO + "allergyintolerance-clinical"),
        ("AllergyIntolerance", "verificationStatus.coding.code",
         "unconfirmed confirmed refuted entered-in-error",
         _THO + "allergyintolerance-verification"),
        ("AllergyIntolerance", "type", "allergy intolerance", None),
        ("AllergyIntolerance", "category", "food medication environment biologic", None),
        ("AllergyIntolerance", "criticality", "low high unable-to-assess", None),
        ("AllergyIntolerance", "reaction.severity", "mild moderate severe", None),
        ("MedicationStatement", "status", "active completed entered-in-error intended stopped "
                                          "on-hold unknown not-taken", None),
        ("Procedure", "status", "preparation in-progress not-done on-hold stopped completed "
                                "entered-in-error unknown", None),
        ("Immunization", "status", "completed entered-in-error not-done", None),
    ]
]
# fmt: on


@cache
def _model(resource_type: str) -> Any:
    return get_fhir_model_class(resource_type)


def _values(node: Any, path: list[str]) -> Iterator[Any]:
    if isinstance(node, list):
        for item in node:
            yield from _values(item, path)
        return
    if not path:
        yield node
        return
    if isinstance(node, dict) and path[0] in node:
        yield from _values(node[path[0]], path[1:])


def _codings(node: Any, path: list[str], system: str) -> Iterator[str]:
    # path ends in "coding.code": filter the codings by system before taking their code.
    for coding in _values(node, path[:-1]):
        if isinstance(coding, dict) and coding.get("system") == system and "code" in coding:
            yield coding["code"]


def _binding_errors(resource: dict[str, Any]) -> Iterator[str]:
    resource_type = resource["resourceType"]
    for applies_to, dotted, allowed, system in _REQUIRED:
        if applies_to not in ("*", resource_type):
            continue
        path = dotted.split(".")
        codes = _codings(resource, path, system) if system else _values(resource, path)
        for code in codes:
            if code not in allowed:
                yield f"{dotted} = {code!r} is not in the required value set"
    for dotted in ("contentType", "content.attachment.contentType", "presentedForm.contentType"):
        for mime in _values(resource, dotted.split(".")):
            if not isinstance(mime, str) or not is_mime_type(mime):
                yield f"{dotted} = {mime!r} is not a MIME type"


def validate_resource(resource: dict[str, Any], where: str) -> None:
    """Raise ``InternalAdapterError`` naming the element when ``resource`` is not valid R4(B)."""
    resource_type = resource.get("resourceType")
    try:
        model = _model(str(resource_type))
    except (KeyError, ValueError) as exc:
        raise InternalAdapterError(
            f"unknown resource type {resource_type!r}", location=where
        ) from exc
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        first = exc.errors()[0]
        element = ".".join(str(part) for part in first["loc"])
        raise InternalAdapterError(
            f"{resource_type} is not valid FHIR R4B: {element}: {first['msg']}", location=where
        ) from exc
    for problem in _binding_errors(resource):
        raise InternalAdapterError(f"{resource_type}.{problem}", location=where)


def validate_bundle(bundle: dict[str, Any]) -> None:
    """Validate every resource of a transaction Bundle and the shape of its entries."""
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
        raise InternalAdapterError("output is not a transaction Bundle")
    for index, entry in enumerate(bundle.get("entry", [])):
        where = f"Bundle.entry[{index}]"
        full_url = entry.get("fullUrl", "")
        request = entry.get("request") or {}
        if not full_url.startswith("urn:uuid:") or request.get("method") not in ("POST", "PUT"):
            raise InternalAdapterError("entry without urn:uuid fullUrl or request", location=where)
        validate_resource(entry["resource"], where)
