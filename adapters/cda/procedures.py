"""C-CDA Procedure Activity Procedure/Observation/Act (…4.14, …4.13, …4.12) → Procedure.

Only performed procedures (moodCode EVN) are mapped; planned ones belong to the plan of
treatment. Status follows statusCode; ``negationInd="true"`` means not done. Target site →
bodySite; performers → performer (display and identifier).
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from .datatypes import (
    NS,
    CdaContext,
    add_entry,
    concept,
    display_name,
    find_templates,
    identifier,
    negated,
    period,
    status_code,
)

PROCEDURE_TEMPLATES = (
    "2.16.840.1.113883.10.20.22.4.14",
    "2.16.840.1.113883.10.20.22.4.13",
    "2.16.840.1.113883.10.20.22.4.12",
)
_STATUS = {
    "completed": "completed",
    "active": "in-progress",
    "aborted": "stopped",
    "cancelled": "not-done",
    "new": "preparation",
    "held": "on-hold",
    "suspended": "on-hold",
    "nullified": "entered-in-error",
}


def _performers(ctx: CdaContext, procedure: etree._Element) -> list[dict[str, Any]]:
    performers = []
    for entity in procedure.findall("h:performer/h:assignedEntity", NS):
        actor: dict[str, Any] = {}
        ident = next(
            (i for i in (identifier(ctx, e) for e in entity.findall("h:id", NS)) if i), None
        )
        if ident:
            actor["identifier"] = ident
        display = display_name(entity.find("h:assignedPerson/h:name", NS)) or " ".join(
            (entity.findtext("h:representedOrganization/h:name", "", NS) or "").split()
        )
        if display:
            actor["display"] = display
        if actor:
            performers.append({"actor": actor})
    return performers


def map_procedures(ctx: CdaContext, section: etree._Element) -> int:
    """Add a Procedure per performed procedure activity of ``section``; return how many."""
    added = 0
    for activity in find_templates(section, *PROCEDURE_TEMPLATES):
        if activity.get("moodCode", "EVN") != "EVN":
            continue
        code = concept(ctx, activity.find("h:code", NS))
        if code is None:
            ctx.issues.warning(ctx.where(activity), "procedure without a code; left out")
            continue
        procedure: dict[str, Any] = {
            "resourceType": "Procedure",
            "status": "not-done"
            if negated(activity)
            else _STATUS.get(status_code(activity), "unknown"),
            "code": code,
            "subject": {"reference": ctx.patient_url},
        }
        start, end = period(ctx, activity.find("h:effectiveTime", NS))
        if start and end:
            procedure["performedPeriod"] = {"start": start, "end": end}
        elif start:
            procedure["performedDateTime"] = start
        sites = [
            c for c in (concept(ctx, e) for e in activity.findall("h:targetSiteCode", NS)) if c
        ]
        if sites:
            procedure["bodySite"] = sites
        performers = _performers(ctx, activity)
        if performers:
            procedure["performer"] = performers
        add_entry(ctx, procedure, activity)
        added += 1
    return added
