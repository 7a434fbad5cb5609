"""C-CDA Allergy-Intolerance Observation (2.16.840.1.113883.10.20.22.4.7) → AllergyIntolerance.

- substance: ``participant/participantRole/playingEntity/code``; a negated observation without a
  substance is "no known allergy" (SNOMED CT 716186003);
- type and category: from the observation value (SNOMED CT allergy/intolerance kinds);
- clinical status: the Allergy Status observation, else the Allergy Concern Act's status;
- reactions: Reaction Observations (…4.9) with their Severity Observation (…4.8);
  criticality: the Criticality Observation (…4.145).
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from .._terminology import SNOMED
from .datatypes import (
    NS,
    CdaContext,
    add_entry,
    concept,
    find_templates,
    negated,
    period,
    status_code,
    template_ids,
)

ALLERGY_OBSERVATION = "2.16.840.1.113883.10.20.22.4.7"
REACTION = "2.16.840.1.113883.10.20.22.4.9"
SEVERITY = "2.16.840.1.113883.10.20.22.4.8"
ALLERGY_STATUS = "2.16.840.1.113883.10.20.22.4.28"
CRITICALITY = "2.16.840.1.113883.10.20.22.4.145"
_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
_NO_KNOWN_ALLERGY = {"system": SNOMED, "code": "716186003", "display": "No known allergy"}
# SNOMED CT allergy kinds → (type, category).
_KINDS: dict[str, tuple[str | None, str | None]] = {
    "419199007": ("allergy", None),
    "416098002": ("allergy", "medication"),
    "414285001": ("allergy", "food"),
    "426232007": ("allergy", "environment"),
    "59037007": ("intolerance", "medication"),
    "235719002": ("intolerance", "food"),
    "418471000": (None, "food"),
    "419511003": (None, "medication"),
    "418038007": (None, None),
    "420134006": (None, None),
}
_SEVERITY = {
    "255604002": "mild",
    "371923003": "moderate",  # mild to moderate
    "6736007": "moderate",
    "371924009": "severe",  # moderate to severe
    "24484000": "severe",
}
_CRITICALITY = {"CRITL": "low", "CRITH": "high", "CRITU": "unable-to-assess"}
_STATUS_VALUES = {"55561003": "active", "73425007": "inactive", "413322009": "resolved"}
_CONCERN_STATUS = {
    "active": "active",
    "completed": "inactive",
    "suspended": "inactive",
    "aborted": "inactive",
}


def _related(observation: etree._Element, template: str) -> list[etree._Element]:
    return [
        o
        for o in observation.findall("h:entryRelationship/h:observation", NS)
        if template in template_ids(o)
    ]


def _value_code(observation: etree._Element) -> str:
    value = observation.find("h:value", NS)
    return value.get("code", "") if value is not None else ""


def _clinical_status(observation: etree._Element) -> str:
    for status in _related(observation, ALLERGY_STATUS):
        code = _value_code(status)
        if code in _STATUS_VALUES:
            return _STATUS_VALUES[code]
    concern = observation.getparent()
    if concern is not None:
        concern = concern.getparent()  # entryRelationship → act
    if concern is not None and etree.QName(concern).localname == "act":
        return _CONCERN_STATUS.get(status_code(concern), "active")
    return "active"


def _reactions(ctx: CdaContext, observation: etree._Element) -> list[dict[str, Any]]:
    reactions = []
    for reaction in _related(observation, REACTION):
        manifestation = concept(ctx, reaction.find("h:value", NS))
        if manifestation is None:
            continue
        entry: dict[str, Any] = {"manifestation": [manifestation]}
        onset, _ = period(ctx, reaction.find("h:effectiveTime", NS))
        if onset:
            entry["onset"] = onset
        severity = next(
            (
                _SEVERITY[c]
                for c in map(_value_code, _related(reaction, SEVERITY))
                if c in _SEVERITY
            ),
            None,
        )
        if severity:
            entry["severity"] = severity
        reactions.append(entry)
    return reactions


def map_allergies(ctx: CdaContext, section: etree._Element) -> int:
    """Add an AllergyIntolerance per Allergy-Intolerance Observation; return how many."""
    added = 0
    for observation in find_templates(section, ALLERGY_OBSERVATION):
        substance = concept(
            ctx, observation.find("h:participant/h:participantRole/h:playingEntity/h:code", NS)
        )
        if negated(observation) and substance is None:
            substance = {"coding": [_NO_KNOWN_ALLERGY], "text": "No known allergy"}
        if substance is None:
            ctx.issues.warning(ctx.where(observation), "allergy without a substance; left out")
            continue
        refuted = negated(observation) and substance["coding"] != [_NO_KNOWN_ALLERGY]
        allergy: dict[str, Any] = {
            "resourceType": "AllergyIntolerance",
            "clinicalStatus": {
                "coding": [{"system": _CLINICAL, "code": _clinical_status(observation)}]
            },
            "verificationStatus": {
                "coding": [{"system": _VERIFICATION, "code": "refuted" if refuted else "confirmed"}]
            },
        }
        kind, category = _KINDS.get(_value_code(observation), (None, None))
        if kind:
            allergy["type"] = kind
        if category:
            allergy["category"] = [category]
        criticality = next(
            (
                _CRITICALITY[c]
                for c in map(_value_code, _related(observation, CRITICALITY))
                if c in _CRITICALITY
            ),
            None,
        )
        if criticality:
            allergy["criticality"] = criticality
        allergy["code"] = substance
        allergy["patient"] = {"reference": ctx.patient_url}
        onset, _ = period(ctx, observation.find("h:effectiveTime", NS))
        if onset:
            allergy["onsetDateTime"] = onset
        reactions = _reactions(ctx, observation)
        if reactions:
            allergy["reaction"] = reactions
        add_entry(ctx, allergy, observation)
        added += 1
    return added
