"""C-CDA Medication Activity (2.16.840.1.113883.10.20.22.4.16) → MedicationStatement.

The medication is ``consumable/manufacturedProduct/manufacturedMaterial/code``; the period is
the IVL_TS ``effectiveTime``, the frequency a PIVL_TS ``effectiveTime``; dose (PQ or IVL_PQ) and
route go to ``dosage``. Status follows statusCode; an intended activity (moodCode INT) is
``intended``, a negated one ``not-taken``.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from .datatypes import (
    NS,
    CdaContext,
    add_entry,
    concept,
    find_templates,
    negated,
    number,
    period,
    quantity,
    status_code,
    text_of,
    xsi_type,
)

MEDICATION_ACTIVITY = "2.16.840.1.113883.10.20.22.4.16"
_STATUS = {
    "active": "active",
    "completed": "completed",
    "aborted": "stopped",
    "suspended": "on-hold",
    "held": "on-hold",
    "cancelled": "not-taken",
    "new": "intended",
    "nullified": "entered-in-error",
}
_TIME_UNITS = {"s", "min", "h", "d", "wk", "mo", "a"}


def _status(activity: etree._Element) -> str:
    if negated(activity):
        return "not-taken"
    if activity.get("moodCode") == "INT" and status_code(activity) in ("", "active", "new"):
        return "intended"
    return _STATUS.get(status_code(activity), "unknown")


def _dosage(ctx: CdaContext, activity: etree._Element) -> dict[str, Any]:
    dosage: dict[str, Any] = {}
    text = text_of(ctx, activity.find("h:text", NS))
    if text:
        dosage["text"] = text
    for effective in activity.findall("h:effectiveTime", NS):
        if xsi_type(effective) == "PIVL_TS":
            every = effective.find("h:period", NS)
            value = number(every.get("value")) if every is not None else None
            unit = every.get("unit", "") if every is not None else ""
            if value is not None and unit in _TIME_UNITS:
                dosage["timing"] = {"repeat": {"period": value, "periodUnit": unit}}
    route = concept(ctx, activity.find("h:routeCode", NS))
    if route:
        dosage["route"] = route
    dose = activity.find("h:doseQuantity", NS)
    if dose is not None:
        low, high = quantity(dose.find("h:low", NS)), quantity(dose.find("h:high", NS))
        single = quantity(dose)
        if single:
            dosage["doseAndRate"] = [{"doseQuantity": single}]
        elif low and high:
            dosage["doseAndRate"] = [{"doseRange": {"low": low, "high": high}}]
    return dosage


def map_medications(ctx: CdaContext, section: etree._Element) -> int:
    """Add a MedicationStatement per Medication Activity of ``section``; return how many."""
    added = 0
    for activity in find_templates(section, MEDICATION_ACTIVITY):
        medication = concept(
            ctx,
            activity.find("h:consumable/h:manufacturedProduct/h:manufacturedMaterial/h:code", NS),
        )
        if medication is None:
            ctx.issues.warning(
                ctx.where(activity), "medication activity without a medication; left out"
            )
            continue
        statement: dict[str, Any] = {
            "resourceType": "MedicationStatement",
            "status": _status(activity),
            "medicationCodeableConcept": medication,
            "subject": {"reference": ctx.patient_url},
        }
        interval = next(
            (
                e
                for e in activity.findall("h:effectiveTime", NS)
                if xsi_type(e) in ("", "IVL_TS", "TS")
            ),
            None,
        )
        start, end = period(ctx, interval)
        if start and end:
            statement["effectivePeriod"] = {"start": start, "end": end}
        elif start:
            statement["effectivePeriod"] = {"start": start}
        elif end:
            statement["effectivePeriod"] = {"end": end}
        dosage = _dosage(ctx, activity)
        if dosage:
            statement["dosage"] = [dosage]
        add_entry(ctx, statement, activity)
        added += 1
    return added
