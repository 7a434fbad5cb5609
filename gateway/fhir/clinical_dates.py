"""The clinical date of a resource: when the care it records happened.

A consent's ``dataPeriod`` limits which data it covers by this date. Per resource type, the
elements tried in order (the first present wins); a Period counts by its start. Resources of
other types, or without any of these elements, have no clinical date ("undated"), which consent
rules treat conservatively (see consent.consent_permits).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.fhir.dates import date_range, to_us

# A date without a time is a day in the Netherlands, as consent reads a dataPeriod's dates.
_DUTCH = ZoneInfo("Europe/Amsterdam")

_ELEMENTS: dict[str, tuple[str, ...]] = {
    "Observation": ("effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued"),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod", "issued"),
    "Condition": ("onsetDateTime", "onsetPeriod", "recordedDate"),
    "AllergyIntolerance": ("onsetDateTime", "onsetPeriod", "recordedDate"),
    "Procedure": ("performedDateTime", "performedPeriod"),
    "Immunization": ("occurrenceDateTime",),
    "MedicationStatement": ("effectiveDateTime", "effectivePeriod", "dateAsserted"),
    "MedicationRequest": ("authoredOn",),
    "MedicationDispense": ("whenHandedOver", "whenPrepared"),
    "MedicationAdministration": ("effectiveDateTime", "effectivePeriod"),
    "Encounter": ("period",),
    "DocumentReference": ("context.period", "date"),
    "Composition": ("date",),
    "List": ("date",),
}


def clinical_date_us(resource: dict[str, Any]) -> int | None:
    """The resource's clinical date as microseconds since the epoch (its earliest instant)."""
    for path in _ELEMENTS.get(str(resource.get("resourceType")), ()):
        value: Any = resource
        for name in path.split("."):
            value = value.get(name) if isinstance(value, dict) else None
        if isinstance(value, dict):  # a Period: its start
            value = value.get("start")
        if isinstance(value, str):
            found = date_range(value)
            if found is not None:
                return found[0] if "T" in value else _dutch_day_start(value)
    return None


def _dutch_day_start(value: str) -> int:
    """The first instant of a date (``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``) in Dutch time."""
    parts = [int(p) for p in value.split("-")] + [1, 1]
    return to_us(datetime(parts[0], parts[1], parts[2], tzinfo=_DUTCH))
