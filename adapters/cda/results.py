"""C-CDA Result Observation (…4.2) and Vital Sign Observation (…4.27) → Observation.

Values by ``xsi:type``: PQ → Quantity (UCUM, as CDA units are), IVL_PQ → Range, CD/CE/CO/CV →
CodeableConcept, ST/ED → string, INT → integer, REAL → Quantity, BL → boolean, TS → dateTime,
RTO → Ratio. ``interpretationCode`` → interpretation; ``referenceRange/observationRange`` →
referenceRange (low/high and text). Category: laboratory or vital-signs, by section.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from .._terminology import OBSERVATION_CATEGORY
from .datatypes import (
    NS,
    CdaContext,
    add_entry,
    concept,
    find_templates,
    number,
    period,
    quantity,
    status_code,
    text_of,
    xsi_type,
)

RESULT_OBSERVATION = "2.16.840.1.113883.10.20.22.4.2"
VITAL_SIGN_OBSERVATION = "2.16.840.1.113883.10.20.22.4.27"
_STATUS = {
    "completed": "final",
    "active": "preliminary",
    "aborted": "cancelled",
    "cancelled": "cancelled",
    "nullified": "entered-in-error",
}
_CATEGORY = {"laboratory": "Laboratory", "vital-signs": "Vital Signs"}


def _value(ctx: CdaContext, value: etree._Element | None) -> tuple[str, Any] | None:
    if value is None or value.get("nullFlavor"):
        return None
    kind = xsi_type(value)
    if kind == "PQ":
        mapped = quantity(value)
        return ("valueQuantity", mapped) if mapped else None
    if kind == "IVL_PQ":
        low, high = quantity(value.find("h:low", NS)), quantity(value.find("h:high", NS))
        bounds = {k: v for k, v in (("low", low), ("high", high)) if v}
        return ("valueRange", bounds) if bounds else None
    if kind in ("CD", "CE", "CO", "CV"):
        mapped = concept(ctx, value)
        return ("valueCodeableConcept", mapped) if mapped else None
    if kind in ("ST", "ED"):
        text = text_of(ctx, value)
        return ("valueString", text) if text else None
    if kind == "INT":
        count = number(value.get("value"))
        return ("valueInteger", count) if isinstance(count, int) else None
    if kind == "REAL":
        real = number(value.get("value"))
        return ("valueQuantity", {"value": real}) if real is not None else None
    if kind == "BL" and value.get("value") in ("true", "false"):
        return "valueBoolean", value.get("value") == "true"
    if kind == "TS":
        moment = ctx.datetime(value)
        return ("valueDateTime", moment) if moment else None
    if kind.startswith("RTO"):
        numerator = quantity(value.find("h:numerator", NS))
        denominator = quantity(value.find("h:denominator", NS))
        if numerator and denominator:
            return "valueRatio", {"numerator": numerator, "denominator": denominator}
        return None
    ctx.issues.warning(
        ctx.where(value), f"observation value of type {kind or '(none)'!r} not mapped"
    )
    return None


def _reference_ranges(ctx: CdaContext, observation: etree._Element) -> list[dict[str, Any]]:
    ranges = []
    for observed in observation.findall("h:referenceRange/h:observationRange", NS):
        entry: dict[str, Any] = {}
        value = observed.find("h:value", NS)
        if value is not None and xsi_type(value) == "IVL_PQ":
            for side in ("low", "high"):
                bound = quantity(value.find(f"h:{side}", NS))
                if bound:
                    entry[side] = bound
        text = text_of(ctx, observed.find("h:text", NS))
        if text:
            entry["text"] = text
        if entry:
            ranges.append(entry)
    return ranges


def map_observations(ctx: CdaContext, section: etree._Element, category: str) -> int:
    """Add an Observation per result or vital sign observation of ``section``."""
    template = RESULT_OBSERVATION if category == "laboratory" else VITAL_SIGN_OBSERVATION
    added = 0
    for observation in find_templates(section, template):
        code = concept(ctx, observation.find("h:code", NS))
        if code is None:
            ctx.issues.warning(ctx.where(observation), "observation without a code; left out")
            continue
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "status": _STATUS.get(status_code(observation), "final"),
            "category": [
                {
                    "coding": [
                        {
                            "system": OBSERVATION_CATEGORY,
                            "code": category,
                            "display": _CATEGORY[category],
                        }
                    ]
                }
            ],
            "code": code,
            "subject": {"reference": ctx.patient_url},
        }
        start, end = period(ctx, observation.find("h:effectiveTime", NS))
        if start and end:
            resource["effectivePeriod"] = {"start": start, "end": end}
        elif start:
            resource["effectiveDateTime"] = start
        value = _value(ctx, observation.find("h:value", NS))
        if value:
            resource[value[0]] = value[1]
        interpretation = [
            c
            for c in (concept(ctx, e) for e in observation.findall("h:interpretationCode", NS))
            if c
        ]
        if interpretation:
            resource["interpretation"] = interpretation
        ranges = _reference_ranges(ctx, observation)
        if ranges:
            resource["referenceRange"] = ranges
        add_entry(ctx, resource, observation)
        added += 1
    return added
