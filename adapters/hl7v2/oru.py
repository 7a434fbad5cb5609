"""ORU^R01 (unsolicited observation result) → DiagnosticReport per OBR with its Observations.

- OBR → DiagnosticReport: code (OBR-4), effective (OBR-7/-8), issued (OBR-22), status (OBR-25,
  table 0123), category (OBR-24), performer (OBR-32, else the sending organisation), identifiers
  (filler order number OBR-3/ORC-3, placer order number OBR-2/ORC-2).
- OBX → Observation: code (OBX-3), value by OBX-2 (NM, SN, ST/TX/FT, CE/CWE/CNE, DT/DTM/TS, TM,
  ID/IS), units in UCUM (OBX-6), reference range (OBX-7), interpretation (OBX-8), status
  (OBX-11, table 0085), effective (OBX-14, else OBR-7), performer (OBX-16), NTE → note.
  ED values (embedded reports, usually PDF) become the DiagnosticReport's ``presentedForm``.
- Identity: a report is identified by its filler order number; an Observation by OBX-21, else by
  the filler order number, OBX-3 and OBX-4. Both are *conditional updates*: a lab sends the same
  order again when a preliminary result becomes final or is corrected, and that later message must
  replace the earlier state; re-sending the same message changes nothing.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any

from .._errors import MalformedInput
from .._identifiers import ura_reference
from .._terminology import (
    OBSERVATION_CATEGORY,
    UCUM,
    V2_INTERPRETATION,
    V3_INTERPRETATION,
    V3_INTERPRETATION_CODES,
    decimal_value,
    ucum_code,
    v2_table,
)
from .datatypes import (
    V2Context,
    codeable_concept,
    encapsulated_data,
    entity_identifier,
    practitioner_reference,
)
from .er7 import Composite, Segment
from .pid import map_patient

_COMPARED = re.compile(r"(<=|>=|<|>)\s*([+-]?(?:\d+\.?\d*|\.\d+))")
_RANGE = re.compile(
    r"\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*(?:-|_|\u2013|to)\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*"
)

# Table 0123 (OBR-25) → DiagnosticReport.status, after the HL7 v2-to-FHIR concept map.
_REPORT_STATUS = {
    "O": "registered",
    "I": "registered",
    "S": "registered",
    "A": "partial",
    "P": "preliminary",
    "C": "corrected",
    "R": "partial",
    "F": "final",
    "X": "cancelled",
    "Y": "unknown",
    "Z": "unknown",
}
# Table 0085 (OBX-11) → Observation.status.
_OBSERVATION_STATUS = {
    "C": "corrected",
    "D": "entered-in-error",
    "F": "final",
    "I": "registered",
    "N": "cancelled",
    "O": "registered",
    "P": "preliminary",
    "R": "preliminary",
    "S": "preliminary",
    "U": "final",
    "W": "entered-in-error",
    "X": "cancelled",
}
# Diagnostic service sections (table 0074) whose results are laboratory results.
# fmt: off
_LAB_SECTIONS = frozenset({
    "BG", "BLB", "CG", "CH", "CP", "HM", "IMM", "LAB", "MB", "MCB", "MYC", "NMS", "OSL", "PAR",
    "SP", "SR", "TX", "URN", "VR",
})
# fmt: on
_TEXT_TYPES = frozenset({"ST", "TX", "FT"})
_SINGLE_TYPES = frozenset(
    {"NM", "SN", "CE", "CWE", "CNE", "CF", "DT", "DTM", "TS", "TM", "ID", "IS"}
)
# Returned by _value for a value type this mapping does not carry: the OBX is left out.
_UNMAPPED = ("", None)
_CODED_TYPES = frozenset({"CE", "CWE", "CNE", "CF"})


@dataclass
class _Report:
    obr: Segment
    orc: Segment | None
    patient_url: str
    observations: list[tuple[dict[str, Any], dict[str, Any] | None, Segment]] = field(
        default_factory=list
    )
    presented: list[dict[str, Any]] = field(default_factory=list)
    filler: dict[str, Any] | None = None
    placer: dict[str, Any] | None = None
    laboratory: bool = False


def map_oru(ctx: V2Context) -> None:
    """Add Patient, Observations and DiagnosticReports of an ORU^R01 to ``ctx.builder``."""
    patient_url: str | None = None
    report: _Report | None = None
    orc: Segment | None = None
    target: dict[str, Any] | None = None  # where an NTE belongs: the last Observation
    reports: list[_Report] = []
    for seg in ctx.message.segments:
        if seg.name == "PID":
            patient_url = ctx.builder.add_patient(map_patient(ctx, seg), location=seg.label)
            target = None
        elif seg.name == "ORC":
            orc = seg
        elif seg.name == "OBR":
            if patient_url is None:
                raise MalformedInput("OBR before any PID", location=seg.label, hl7_error_code="100")
            report = _Report(seg, orc, patient_url)
            report.filler, report.placer = _filler(ctx, report), _placer(ctx, report)
            report.laboratory = seg.value(24).upper() in _LAB_SECTIONS
            reports.append(report)
            orc, target = None, None
        elif seg.name == "OBX":
            if report is None:
                ctx.issues.error(seg.label, "OBX outside an order (no OBR before it); left out")
                continue
            target = _observation(ctx, report, seg)
        elif seg.name == "NTE":
            _note(ctx, seg, target)
    if patient_url is None:
        raise MalformedInput("ORU^R01 without a PID segment", location="PID", hl7_error_code="100")
    if not reports:
        raise MalformedInput("ORU^R01 without an OBR segment", location="OBR", hl7_error_code="100")
    for rep in reports:
        _add_report(ctx, rep)


def _note(ctx: V2Context, nte: Segment, target: dict[str, Any] | None) -> None:
    text = "\n".join(r.text() for r in nte.repetitions(3)).strip()
    if not text:
        return
    if target is None:
        ctx.issues.information(
            nte.label,
            "NTE not after an Observation (an order or patient comment) not mapped: "
            "DiagnosticReport has no note in R4",
        )
        return
    target.setdefault("note", []).append({"text": text})


def _filler(ctx: V2Context, report: _Report) -> dict[str, Any] | None:
    for seg, number in ((report.obr, 3), (report.orc, 3)):
        if seg is not None:
            found = entity_identifier(ctx, seg.first(number), "filler-order")
            if found:
                return found
    return None


def _placer(ctx: V2Context, report: _Report) -> dict[str, Any] | None:
    for seg in (report.obr, report.orc):
        if seg is not None:
            found = entity_identifier(ctx, seg.first(2), "placer-order")
            if found:
                return found
    return None


def _typed(identifier: dict[str, Any], code: str) -> dict[str, Any]:
    return {**identifier, "type": {"coding": [{"system": v2_table(203), "code": code}]}}


def _quantity(value: str, unit: Composite) -> dict[str, Any] | None:
    """A Quantity for a decimal text and an OBX-6 unit; None when the text is no decimal."""
    number = decimal_value(value)
    if number is None:
        return None
    quantity: dict[str, Any] = {"value": number}
    label = unit.get(2) or unit.get(1)
    if label:
        quantity["unit"] = label
        code = unit.get(1) if unit.get(3).upper() == "UCUM" and unit.get(1) else None
        code = code or ucum_code(unit.get(1)) or ucum_code(unit.get(2))
        if code:
            quantity["system"] = UCUM
            quantity["code"] = code
    return quantity


def _structured_numeric(rep: Composite, unit: Composite) -> tuple[str, Any] | None:
    """SN (comparator ^ number ^ separator/suffix ^ number) → Quantity, Range or Ratio."""
    comparator, separator = rep.get(1), rep.get(3)
    first, second = _quantity(rep.get(2), unit), _quantity(rep.get(4), unit)
    if first is None:
        return None
    if separator == "" and not rep.get(4):
        if comparator in ("", "="):
            return "valueQuantity", first
        if comparator in ("<", "<=", ">", ">="):
            return "valueQuantity", {**first, "comparator": comparator}
        return None
    if separator == "-" and second is not None:
        return "valueRange", {"low": first, "high": second}
    if separator in (":", "/") and second is not None:
        return "valueRatio", {"numerator": first, "denominator": second}
    return None


def _value(ctx: V2Context, obx: Segment, value_type: str) -> tuple[str, Any] | None:
    reps = obx.repetitions(5)
    if not reps:
        return None  # no value yet (a pending result): the Observation still records the test
    where = obx.location(5)
    unit = obx.first(6)
    if value_type in _SINGLE_TYPES and len(reps) > 1:
        ctx.issues.warning(
            where, f"{len(reps)} repetitions of a {value_type} value; first one used"
        )
    if value_type == "NM":
        text = reps[0].get(1)
        quantity = _quantity(text, unit)
        if quantity is not None:
            return "valueQuantity", quantity
        compared = _COMPARED.fullmatch(text)
        bound = _quantity(compared.group(2), unit) if compared else None
        if compared and bound is not None:
            return "valueQuantity", {**bound, "comparator": compared.group(1)}
        ctx.issues.warning(where, f"NM value {reps[0].raw!r} is not a number; kept as text")
        return ("valueString", text) if text else None
    if value_type == "SN":
        mapped = _structured_numeric(reps[0], unit)
        if mapped:
            return mapped
        text = "".join(reps[0].get(i) for i in range(1, 5))
        return ("valueString", text) if text else None
    if value_type in _TEXT_TYPES:
        text = "\n".join(r.text() for r in reps).strip()
        return ("valueString", text) if text else None
    if value_type in _CODED_TYPES:
        concept = codeable_concept(ctx, reps[0], where)
        return ("valueCodeableConcept", concept) if concept else None
    if value_type in ("DT", "DTM", "TS"):
        moment = ctx.datetime(reps[0].get(1), where)
        return ("valueDateTime", moment) if moment else None
    if value_type == "TM":
        digits = reps[0].get(1)[:6]
        if re.fullmatch(r"([01]\d|2[0-3])([0-5]\d)([0-5]\d)?", digits):
            return "valueTime", f"{digits[:2]}:{digits[2:4]}:{digits[4:6] or '00'}"
        ctx.issues.warning(where, f"TM value {digits!r} is not a time; left out")
        return None
    if value_type in ("ID", "IS"):
        code = " ".join(reps[0].get(1).split())
        return (
            ("valueCodeableConcept", {"coding": [{"code": code}], "text": code}) if code else None
        )
    ctx.issues.warning(
        obx.location(2), f"value type {value_type or '(empty)'!r} not mapped; OBX left out"
    )
    return _UNMAPPED


def _reference_range(text: str, unit: Composite) -> dict[str, Any]:
    """OBX-7 (``3.5-5.0``, ``<5``, ``>1.0``, or free text) → referenceRange, text always kept."""
    bounds: dict[str, Any | None] = {}
    between = _RANGE.fullmatch(text)
    compared = _COMPARED.fullmatch(text.strip())
    if between:
        bounds = {
            "low": _quantity(between.group(1), unit),
            "high": _quantity(between.group(2), unit),
        }
    elif compared:
        side = "high" if compared.group(1).startswith("<") else "low"
        bounds = {side: _quantity(compared.group(2), unit)}
    return {**{k: v for k, v in bounds.items() if v is not None}, "text": text}


def _interpretation(obx: Segment) -> list[dict[str, Any]]:
    concepts = []
    for rep in obx.repetitions(8):
        code = rep.get(1)
        if code:
            system = V3_INTERPRETATION if code in V3_INTERPRETATION_CODES else V2_INTERPRETATION
            concepts.append({"coding": [{"system": system, "code": code}]})
    return concepts


def _observation(ctx: V2Context, report: _Report, obx: Segment) -> dict[str, Any] | None:
    value_type = obx.value(2).upper()
    if value_type == "ED":
        # An embedded report (usually a PDF) is the report's presented form, not a value.
        embedded = encapsulated_data(ctx, obx)
        if embedded:
            content, media = embedded
            report.presented.append(
                {
                    "contentType": media,
                    "data": base64.b64encode(content).decode("ascii"),
                    "size": len(content),
                }
            )
        return None
    code = codeable_concept(ctx, obx.first(3), obx.location(3))
    if code is None:
        ctx.issues.warning(obx.location(3), "OBX without an observation identifier; left out")
        return None
    value = _value(ctx, obx, value_type)
    if value is _UNMAPPED:
        return None
    observation: dict[str, Any] = {"resourceType": "Observation"}
    status_code = obx.value(11).upper()
    status = _OBSERVATION_STATUS.get(status_code)
    if status is None:
        ctx.issues.warning(
            obx.location(11), f"result status {status_code!r} unknown; 'unknown' used"
        )
        status = "unknown"
    observation["status"] = status
    if report.laboratory:
        observation["category"] = [
            {
                "coding": [
                    {"system": OBSERVATION_CATEGORY, "code": "laboratory", "display": "Laboratory"}
                ]
            }
        ]
    observation["code"] = code
    observation["subject"] = {"reference": report.patient_url}
    effective = ctx.datetime(obx.value(14), obx.location(14)) or ctx.datetime(
        report.obr.value(7), report.obr.location(7)
    )
    if effective:
        observation["effectiveDateTime"] = effective
    performers = [
        r for r in map(lambda rep: practitioner_reference(ctx, rep), obx.repetitions(16)) if r
    ]
    if obx.value(23):
        performers.append({"display": obx.value(23)})
    if performers:
        observation["performer"] = performers
    if value:
        observation[value[0]] = value[1]
    interpretation = _interpretation(obx)
    if interpretation:
        observation["interpretation"] = interpretation
    if obx.value(7):
        observation["referenceRange"] = [_reference_range(obx.first(7).text(), obx.first(6))]
    instance = entity_identifier(ctx, obx.first(21), "observation")
    key = instance
    if key is None:
        filler = report.filler
        code_value = obx.value(3, 1) or obx.value(1)
        if filler and code_value:
            sub_id = obx.value(4) or obx.value(1) or "1"
            key = {"system": filler["system"], "value": f"{filler['value']}/{code_value}/{sub_id}"}
    if key:
        observation["identifier"] = [key]
    report.observations.append((observation, key, obx))
    return observation


def _report_performer(ctx: V2Context, obr: Segment) -> list[dict[str, Any]]:
    interpreter = obr.first(32)
    # OBR-32 is NDL: its first component is a CNN whose parts are subcomponents.
    parts = interpreter.subcomponents(1)
    parts += [""] * (7 - len(parts))
    display = " ".join(p for p in (parts[5], parts[2], parts[3], parts[1]) if p)
    if display:
        return [{"display": display}]
    return [ura_reference(ctx.organization)]


def _add_report(ctx: V2Context, report: _Report) -> None:
    obr = report.obr
    code = codeable_concept(ctx, obr.first(4), obr.location(4))
    if code is None:
        raise MalformedInput(
            "universal service identifier missing", location=obr.location(4), hl7_error_code="101"
        )
    results = [
        ctx.builder.add(obs, identifier=key, update=key is not None, location=seg.label)
        for obs, key, seg in report.observations
    ]
    diagnostic: dict[str, Any] = {"resourceType": "DiagnosticReport"}
    filler, placer = report.filler, report.placer
    identifiers = [_typed(i, t) for i, t in ((filler, "FILL"), (placer, "PLAC")) if i]
    if identifiers:
        diagnostic["identifier"] = identifiers
    status_code = obr.value(25).upper()
    status = _REPORT_STATUS.get(status_code)
    if status is None:
        ctx.issues.warning(
            obr.location(25), f"result status {status_code!r} unknown; 'unknown' used"
        )
        status = "unknown"
    diagnostic["status"] = status
    section = obr.first(24)
    if section.get(1):
        diagnostic["category"] = [{"coding": [{"system": v2_table(74), "code": section.get(1)}]}]
    diagnostic["code"] = code
    diagnostic["subject"] = {"reference": report.patient_url}
    start = ctx.datetime(obr.value(7), obr.location(7))
    end = ctx.datetime(obr.value(8), obr.location(8))
    if start and end:
        diagnostic["effectivePeriod"] = {"start": start, "end": end}
    elif start:
        diagnostic["effectiveDateTime"] = start
    issued = ctx.instant(obr.value(22), obr.location(22))
    if issued:
        diagnostic["issued"] = issued
    diagnostic["performer"] = _report_performer(ctx, obr)
    if results:
        diagnostic["result"] = [{"reference": url} for url in results]
    if report.presented:
        diagnostic["presentedForm"] = report.presented
    key = filler or placer
    if key is None:
        ctx.issues.warning(
            obr.location(3), "no filler or placer order number; the report cannot be matched"
        )
    ctx.builder.add(diagnostic, identifier=key, update=key is not None, location=obr.label)
