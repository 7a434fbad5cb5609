"""C-CDA sections → the entry mappers, recognised by section templateId or LOINC section code.

=============  ==============================================================  ====================
kind           sections (template roots 2.16.840.1.113883.10.20.22.2.x, LOINC)  FHIR
=============  ==============================================================  ====================
problems       Problems (5, 5.1; 11450-4), Past Medical History (20; 11348-0)   Condition
diagnoses      Admission (43), Discharge (24), Pre-/Postoperative (34, 35)      Condition
allergies      Allergies and Intolerances (6, 6.1; 48765-2)                     AllergyIntolerance
medications    Medications (1, 1.1; 10160-0), Discharge Medications (11, 11.1)  MedicationStatement
results        Results (3, 3.1; 30954-2)                                        Observation
vital-signs    Vital Signs (4, 4.1; 8716-3)                                     Observation
procedures     Procedures (7, 7.1; 47519-4)                                     Procedure
=============  ==============================================================  ====================

Problems are problem-list items, diagnoses encounter diagnoses; results are laboratory
observations, vital signs vital-signs observations.
Other sections (plan of treatment, immunizations, social history, narrative-only sections …)
stay in the stored document but are not turned into resources.
"""

from __future__ import annotations

from collections import Counter

from lxml import etree

from .allergies import map_allergies
from .datatypes import NS, CdaContext, template_ids
from .medications import map_medications
from .problems import map_problems
from .procedures import map_procedures
from .results import map_observations

_SECTION = "2.16.840.1.113883.10.20.22.2."
_BY_TEMPLATE = {
    f"{_SECTION}{suffix}": kind
    for suffix, kind in (
        ("5", "problems"), ("5.1", "problems"), ("20", "problems"),
        ("43", "diagnoses"), ("24", "diagnoses"), ("34", "diagnoses"), ("35", "diagnoses"),
        ("6", "allergies"), ("6.1", "allergies"),
        ("1", "medications"), ("1.1", "medications"),
        ("11", "medications"), ("11.1", "medications"),
        ("3", "results"), ("3.1", "results"),
        ("4", "vital-signs"), ("4.1", "vital-signs"),
        ("7", "procedures"), ("7.1", "procedures"),
    )
}  # fmt: skip
_BY_CODE = {
    "11450-4": "problems",
    "11348-0": "problems",
    "46241-6": "diagnoses",
    "11535-2": "diagnoses",
    "48765-2": "allergies",
    "10160-0": "medications",
    "10183-2": "medications",
    "75311-1": "medications",
    "30954-2": "results",
    "8716-3": "vital-signs",
    "47519-4": "procedures",
}


def section_kind(section: etree._Element) -> str | None:
    """Which kind of entries a section holds, or None for sections that are not mapped."""
    for root in template_ids(section):
        if root in _BY_TEMPLATE:
            return _BY_TEMPLATE[root]
    code = section.find("h:code", NS)
    return _BY_CODE.get(code.get("code", "")) if code is not None else None


def map_sections(ctx: CdaContext, body: etree._Element) -> Counter[str]:
    """Map the entries of every recognised top-level section; return counts per section kind."""
    counts: Counter[str] = Counter()
    for section in body.iterfind("h:component/h:section", NS):
        kind = section_kind(section)
        if kind is None or section.get("nullFlavor"):
            continue
        if kind == "problems":
            counts[kind] += map_problems(ctx, section, "problem-list-item")
        elif kind == "diagnoses":
            counts[kind] += map_problems(ctx, section, "encounter-diagnosis")
        elif kind == "allergies":
            counts[kind] += map_allergies(ctx, section)
        elif kind == "medications":
            counts[kind] += map_medications(ctx, section)
        elif kind == "results":
            counts[kind] += map_observations(ctx, section, "laboratory")
        elif kind == "vital-signs":
            counts[kind] += map_observations(ctx, section, "vital-signs")
        elif kind == "procedures":
            counts[kind] += map_procedures(ctx, section)
    return counts
