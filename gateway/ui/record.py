"""One patient's shared record for the clinician's view: every item from every organisation the
consent rules open to the clinician, marked with its source, through the service layer (which
decides and audits each search)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.context import RequestContext
from gateway.fhir.dutch_identifiers import BSN as BSN_SYSTEM
from gateway.service.resources import ResourceService

# Resource type -> the kind the timeline files it under; the order is the order of the searches.
KINDS: dict[str, str] = {
    "DocumentReference": "documents",
    "Observation": "results",
    "DiagnosticReport": "results",
    "Condition": "problems",
    "MedicationStatement": "medication",
    "MedicationRequest": "medication",
    "AllergyIntolerance": "allergies",
    "Procedure": "procedures",
    "Encounter": "encounters",
}
_MAX_PER_TYPE = "200"
_ABNORMAL = {"H", "HH", "L", "LL", "A", "AA", "HU", "LU", "POS"}


@dataclass(frozen=True)
class Item:
    res_type: str
    res_id: str
    kind: str
    date: str | None
    title: str
    detail: str
    reference_range: str
    abnormal: bool
    source: str | None  # URA of the organisation that holds it

    @property
    def link(self) -> str | None:
        return f"/ui/documents/{self.res_id}" if self.res_type == "DocumentReference" else None


@dataclass(frozen=True)
class PatientHeader:
    name: str
    birth_date: str | None
    gender: str | None


async def patients_with_bsn(
    service: ResourceService, ctx: RequestContext, bsn: str
) -> list[tuple[dict[str, Any], str | None]]:
    """The Patient resources with this BSN the person may see, each with its holder."""
    return await _search(service, ctx, "Patient", [("identifier", f"{BSN_SYSTEM}|{bsn}")])


async def patient_record(
    service: ResourceService, ctx: RequestContext, bsn: str
) -> tuple[PatientHeader | None, list[Item]]:
    """Who the patient is and every item of theirs the person may see, newest first."""
    queries = [("Patient", [("identifier", f"{BSN_SYSTEM}|{bsn}")])]
    for res_type in KINDS:
        params = [("patient.identifier", f"{BSN_SYSTEM}|{bsn}"), ("_count", _MAX_PER_TYPE)]
        if res_type == "DocumentReference":
            params.append(("status", "current"))  # a replaced letter shows once, as its successor
        queries.append((res_type, params))
    # One audited call: the DPO sees one view of the record, not a line per resource type.
    patients, *answers = await service.search_together(ctx, queries)
    items = [
        describe(resource, KINDS[res_type], owner)
        for (res_type, _params), answer in zip(queries[1:], answers, strict=True)
        for resource, owner in _matches(*answer)
    ]
    items.sort(key=lambda item: item.date or "", reverse=True)
    return header_of(_matches(*patients)), items


def header_of(patients: list[tuple[dict[str, Any], str | None]]) -> PatientHeader | None:
    for resource, _owner in patients:
        names = resource.get("name") or []
        if names:
            return PatientHeader(
                person_name(names[0]), resource.get("birthDate"), resource.get("gender")
            )
    return None


async def _search(
    service: ResourceService, ctx: RequestContext, res_type: str, params: list[tuple[str, str]]
) -> list[tuple[dict[str, Any], str | None]]:
    return _matches(*await service.search_with_owners(ctx, res_type, params))


def _matches(body: bytes, owners: dict[str, str | None]) -> list[tuple[dict[str, Any], str | None]]:
    bundle = orjson.loads(body)
    found = []
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") or {}
        if (entry.get("search") or {}).get("mode", "match") == "match":
            found.append((resource, owners.get(str(resource.get("id")))))
    return found


def describe(resource: dict[str, Any], kind: str, owner: str | None) -> Item:
    """The line a resource gets in the timeline."""
    res_type = str(resource.get("resourceType"))
    detail, reference_range, abnormal = "", "", False
    if res_type == "DocumentReference":
        attachment = ((resource.get("content") or [{}])[0] or {}).get("attachment") or {}
        title = (
            resource.get("description")
            or attachment.get("title")
            or concept(resource.get("type"))
            or "Document"
        )
        detail = concept(resource.get("type")) if title != concept(resource.get("type")) else ""
        date = resource.get("date") or ((resource.get("context") or {}).get("period") or {}).get(
            "start"
        )
    elif res_type == "Observation":
        title = concept(resource.get("code"))
        detail = value_text(resource)
        reference_range = range_text(resource.get("referenceRange") or [])
        abnormal = any(
            c.get("code") in _ABNORMAL
            for i in resource.get("interpretation") or []
            for c in i.get("coding") or []
        )
        date = resource.get("effectiveDateTime") or resource.get("issued")
    elif res_type == "DiagnosticReport":
        title = concept(resource.get("code"))
        detail = str(resource.get("conclusion") or "")
        date = resource.get("effectiveDateTime") or resource.get("issued")
    elif res_type == "Condition":
        title = concept(resource.get("code"))
        detail = concept(resource.get("clinicalStatus"))
        date = resource.get("onsetDateTime") or resource.get("recordedDate")
    elif res_type in ("MedicationStatement", "MedicationRequest"):
        title = concept(resource.get("medicationCodeableConcept")) or str(
            (resource.get("medicationReference") or {}).get("display") or ""
        )
        dosage = resource.get("dosage") or resource.get("dosageInstruction") or []
        detail = "; ".join(str(d.get("text")) for d in dosage if d.get("text"))
        period = resource.get("effectivePeriod") or {}
        date = (
            resource.get("effectiveDateTime") or period.get("start") or resource.get("authoredOn")
        )
    elif res_type == "AllergyIntolerance":
        title = concept(resource.get("code"))
        detail = str(resource.get("criticality") or "")
        date = resource.get("recordedDate") or resource.get("onsetDateTime")
    elif res_type == "Procedure":
        title = concept(resource.get("code"))
        date = resource.get("performedDateTime") or (resource.get("performedPeriod") or {}).get(
            "start"
        )
    else:  # Encounter
        title = concept((resource.get("type") or [None])[0]) or str(
            (resource.get("class") or {}).get("display")
            or (resource.get("class") or {}).get("code")
            or ""
        )
        date = (resource.get("period") or {}).get("start")
    return Item(
        res_type,
        str(resource.get("id")),
        kind,
        date,
        title or res_type,
        detail,
        reference_range,
        abnormal,
        owner,
    )


def concept(value: Any) -> str:
    """The words of a CodeableConcept: its text, else the first coding's display or code."""
    if not isinstance(value, dict):
        return ""
    if value.get("text"):
        return str(value["text"])
    for coding in value.get("coding") or []:
        if coding.get("display") or coding.get("code"):
            return str(coding.get("display") or coding.get("code"))
    return ""


def quantity(value: dict[str, Any]) -> str:
    number = value.get("value")
    unit = value.get("unit") or value.get("code") or ""
    comparator = value.get("comparator") or ""
    return f"{comparator}{number} {unit}".strip() if number is not None else ""


def value_text(observation: dict[str, Any]) -> str:
    if "valueQuantity" in observation:
        return quantity(observation["valueQuantity"])
    if "valueCodeableConcept" in observation:
        return concept(observation["valueCodeableConcept"])
    for key in ("valueString", "valueBoolean", "valueInteger", "valueDateTime"):
        if key in observation:
            return str(observation[key])
    if "valueRange" in observation:
        low, high = (observation["valueRange"].get(k) or {} for k in ("low", "high"))
        return f"{quantity(low)} - {quantity(high)}"
    return ""


def range_text(ranges: list[dict[str, Any]]) -> str:
    for reference in ranges:
        if reference.get("text"):
            return str(reference["text"])
        low, high = quantity(reference.get("low") or {}), quantity(reference.get("high") or {})
        if low or high:
            return f"{low} - {high}".strip(" -")
    return ""


def person_name(name: dict[str, Any]) -> str:
    if name.get("text"):
        return str(name["text"])
    given = " ".join(str(g) for g in name.get("given") or [])
    return f"{given} {name.get('family') or ''}".strip()
