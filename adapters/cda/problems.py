"""C-CDA Problem Observation (2.16.840.1.113883.10.20.22.4.4) → Condition.

Found in the Problems section (as problem-list items) and in diagnosis sections (admission,
discharge, pre- and post-operative diagnoses: encounter diagnoses). The clinical status follows
the evidence in order: an end date means resolved; else the Problem Status observation; else the
status of the Problem Concern Act around it. ``negationInd="true"`` means the problem was ruled
out (verification status refuted).
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
    period,
    status_code,
)

PROBLEM_OBSERVATION = "2.16.840.1.113883.10.20.22.4.4"
PROBLEM_STATUS = "2.16.840.1.113883.10.20.22.4.6"
_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
# SNOMED CT problem status values (Problem Status observation).
_STATUS_VALUES = {"55561003": "active", "73425007": "inactive", "413322009": "resolved"}
_CONCERN_STATUS = {
    "active": "active",
    "completed": "resolved",
    "suspended": "inactive",
    "aborted": "inactive",
}


def _clinical_status(observation: etree._Element, ended: bool) -> str:
    if ended:
        return "resolved"
    for related in observation.findall("h:entryRelationship/h:observation", NS):
        if any(t.get("root") == PROBLEM_STATUS for t in related.findall("h:templateId", NS)):
            value = related.find("h:value", NS)
            code = value.get("code", "") if value is not None else ""
            if code in _STATUS_VALUES:
                return _STATUS_VALUES[code]
    concern = observation.getparent()
    while concern is not None and etree.QName(concern).localname != "act":
        concern = concern.getparent()
    if concern is not None:
        return _CONCERN_STATUS.get(status_code(concern), "active")
    return "active"


def map_problems(ctx: CdaContext, section: etree._Element, category: str) -> int:
    """Add a Condition per Problem Observation of ``section``; return how many were added."""
    added = 0
    for observation in find_templates(section, PROBLEM_OBSERVATION):
        code = concept(ctx, observation.find("h:value", NS))
        if code is None:
            ctx.issues.warning(ctx.where(observation), "problem without a coded value; left out")
            continue
        onset, abatement = period(ctx, observation.find("h:effectiveTime", NS))
        refuted = negated(observation)
        clinical = "inactive" if refuted else _clinical_status(observation, abatement is not None)
        condition: dict[str, Any] = {
            "resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": _CLINICAL, "code": clinical}]},
            "verificationStatus": {
                "coding": [{"system": _VERIFICATION, "code": "refuted" if refuted else "confirmed"}]
            },
            "category": [{"coding": [{"system": _CATEGORY, "code": category}]}],
            "code": code,
            "subject": {"reference": ctx.patient_url},
        }
        if onset:
            condition["onsetDateTime"] = onset
        if abatement:
            condition["abatementDateTime"] = abatement
        add_entry(ctx, condition, observation)
        added += 1
    return added
