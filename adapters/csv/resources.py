"""One row → one resource, per resource type a profile can map to (see ``profile.FIELDS``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._bundle import TransactionBuilder
from .._identifiers import BSN_SYSTEM, local_system, normalize_bsn
from .._model import IssueLog, SourceInfo
from .._terminology import OBSERVATION_CATEGORY, SNOMED
from .profile import Profile, TableSpec
from .rows import Row, RowError

_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_GENDERS = frozenset({"male", "female", "other", "unknown"})
_ENCOUNTER_STATUS = frozenset(
    {"planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled", "unknown"}
)
_OBSERVATION_STATUS = frozenset(
    {"registered", "preliminary", "final", "amended", "corrected", "cancelled"}
)
_ALLERGY_TYPES = frozenset({"allergy", "intolerance"})
_ALLERGY_CATEGORIES = frozenset({"food", "medication", "environment", "biologic"})
_SEVERITIES = frozenset({"mild", "moderate", "severe"})
_CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"


@dataclass
class CsvRun:
    """State of one CSV conversion: the Bundle being built and the ids of rows already added."""

    profile: Profile
    source: SourceInfo
    issues: IssueLog
    builder: TransactionBuilder
    row_urls: dict[str, dict[str, str]] = field(default_factory=dict)
    missing_tables: set[str] = field(default_factory=set)

    def key_identifier(self, table: TableSpec, row: Row) -> dict[str, str] | None:
        """The row's stable id as an Identifier: the id column, or the composite of columns."""
        if not table.id_columns:
            return None
        parts = [row.cell(columns) for columns in table.id_columns]
        if not parts[0]:
            raise RowError(f"id column {' or '.join(table.id_columns[0])} is empty")
        base = self.profile.id_system
        if len(parts) == 1:
            system = base or local_system(
                self.source.organization, f"csv-{self.profile.name}-{table.name}"
            )
        else:
            system = (
                f"{base}/{table.name}"
                if base
                else local_system(self.source.organization, f"csv-{self.profile.name}-{table.name}")
            )
        return {"system": system, "value": "/".join(parts)}

    def reference(
        self, row: Row, key: str, resource_type: str, *, required: bool
    ) -> dict[str, str] | None:
        """A Reference to the row of ``resource_type`` whose id is in field ``key``."""
        value = row.text(key)
        if not value:
            if required:
                raise RowError(f"{key} is empty")
            return None
        known = self.row_urls.get(resource_type, {})
        url = known.get(value)
        if url:
            return {"reference": url}
        if required and resource_type in self.missing_tables:
            raise RowError(f"{key} {value!r}: no {resource_type} table in this input to refer to")
        if required:
            raise RowError(f"{key} {value!r} is not a row of the {resource_type} table")
        if resource_type in self.missing_tables or not known:
            return None
        row.issues.warning(row.location, f"{key} {value!r} not found; reference left out")
        return None


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value:
        target[key] = value


def _period(start: str | None, end: str | None) -> dict[str, str] | None:
    found = {k: v for k, v in (("start", start), ("end", end)) if v}
    return found or None


def _patient(run: CsvRun, row: Row) -> dict[str, Any]:
    patient: dict[str, Any] = {"resourceType": "Patient"}
    identifiers = []
    for spec in row.file.table.identifiers:
        value = row.cell(spec.column)
        if not value:
            continue
        if spec.system == BSN_SYSTEM:
            bsn = normalize_bsn(value)
            if bsn is None:  # a bad row, as the gateway refuses it: its data too are left out
                raise RowError(f"BSN {value!r} fails the elfproef")
            identifiers.append({"use": "official", "system": BSN_SYSTEM, "value": bsn})
        else:
            identifiers.append({"system": spec.system, "value": value})
    if identifiers:
        patient["identifier"] = identifiers
    name: dict[str, Any] = {"use": "official"}
    _put(name, "family", row.text("family"))
    given_spec = row.spec("given")
    if given_spec:
        given = (
            [row.cell((c,)) for c in given_spec.columns]
            if given_spec.columns
            else [row.text("given")]
        )
        _put(name, "given", [g for g in given if g])
    _put(name, "prefix", [p for p in [row.text("prefix")] if p])
    _put(name, "suffix", [s for s in [row.text("suffix")] if s])
    names = [name] if len(name) > 1 else []
    if row.text("maiden"):
        names.append({"use": "maiden", "family": row.text("maiden")})
    _put(patient, "name", names)
    telecom = [
        {"system": system, "value": row.text(key)}
        for key, system in (("phone", "phone"), ("email", "email"))
        if row.text(key)
    ]
    _put(patient, "telecom", telecom)
    _put(patient, "gender", row.mapped("gender", _GENDERS))
    _put(patient, "birthDate", row.datetime("birth_date", date_only=True))
    _put(patient, "deceasedDateTime", row.datetime("death_date"))
    address: dict[str, Any] = {}
    _put(address, "line", [line for line in [row.text("line")] if line])
    for key, element in (
        ("city", "city"), ("district", "district"), ("state", "state"),
        ("postal_code", "postalCode"), ("country", "country"),
    ):  # fmt: skip
        _put(address, element, row.text(key))
    if address:
        patient["address"] = [{"use": "home", **address}]
    _put(patient, "maritalStatus", row.concept("marital"))
    return patient


def _encounter(run: CsvRun, row: Row) -> dict[str, Any]:
    encounter: dict[str, Any] = {"resourceType": "Encounter"}
    start, end = row.datetime("start"), row.datetime("end")
    status = row.mapped("status", _ENCOUNTER_STATUS) if row.spec("status") else None
    encounter["status"] = status or ("finished" if end else "in-progress")
    klass = row.mapped("class")
    encounter["class"] = (
        {"system": _ACT_CODE, "code": klass}
        if klass
        else {"system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "code": "UNK"}
    )
    kind = row.concept("type")
    if kind:
        encounter["type"] = [kind]
    encounter["subject"] = run.reference(row, "patient", "Patient", required=True)
    _put(encounter, "period", _period(start, end))
    reason = row.concept("reason")
    if reason:
        encounter["reasonCode"] = [reason]
    return encounter


def _condition(run: CsvRun, row: Row) -> dict[str, Any]:
    onset, abatement = row.datetime("onset"), row.datetime("abatement")
    condition: dict[str, Any] = {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "resolved" if abatement else "active",
                }
            ]
        },
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "confirmed",
                }
            ]
        },
        "category": [
            {
                "coding": [
                    {
                        "system": _CONDITION_CATEGORY,
                        "code": row.text("category") or "problem-list-item",
                    }
                ]
            }
        ],
        "code": _required_concept(row, "code"),
        "subject": run.reference(row, "patient", "Patient", required=True),
    }
    _put(condition, "encounter", run.reference(row, "encounter", "Encounter", required=False))
    _put(condition, "onsetDateTime", onset)
    _put(condition, "abatementDateTime", abatement)
    return condition


def _observation(run: CsvRun, row: Row) -> dict[str, Any]:
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "status": row.mapped("status", _OBSERVATION_STATUS) or "final",
    }
    category = row.text("category")
    if category:
        observation["category"] = [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category}]}]
    observation["code"] = _required_concept(row, "code")
    observation["subject"] = run.reference(row, "patient", "Patient", required=True)
    _put(observation, "encounter", run.reference(row, "encounter", "Encounter", required=False))
    _put(observation, "effectiveDateTime", row.datetime("effective"))
    value = row.value("value")
    if value:
        observation[value[0]] = value[1]
    return observation


def _medication(run: CsvRun, row: Row) -> dict[str, Any]:
    start, end = row.datetime("start"), row.datetime("end")
    statement: dict[str, Any] = {
        "resourceType": "MedicationStatement",
        "status": "completed" if end else "active",
        "medicationCodeableConcept": _required_concept(row, "code"),
        "subject": run.reference(row, "patient", "Patient", required=True),
    }
    _put(statement, "context", run.reference(row, "encounter", "Encounter", required=False))
    _put(statement, "effectivePeriod", _period(start, end))
    reason = row.concept("reason")
    if reason:
        statement["reasonCode"] = [reason]
    return statement


def _allergy(run: CsvRun, row: Row) -> dict[str, Any]:
    ended = row.datetime("end")
    allergy: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "resolved" if ended else "active",
                }
            ]
        },
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                    "code": "confirmed",
                }
            ]
        },
    }
    _put(allergy, "type", row.mapped("type", _ALLERGY_TYPES))
    category = row.mapped("category", _ALLERGY_CATEGORIES)
    if category:
        allergy["category"] = [category]
    allergy["code"] = _required_concept(row, "code")
    allergy["patient"] = run.reference(row, "patient", "Patient", required=True)
    _put(allergy, "encounter", run.reference(row, "encounter", "Encounter", required=False))
    _put(allergy, "onsetDateTime", row.datetime("onset"))
    reactions = []
    for spec in row.file.table.reactions:
        manifestation = _concept_of(row, spec.manifestation, SNOMED)
        if manifestation is None:
            continue
        reaction: dict[str, Any] = {"manifestation": [manifestation]}
        if spec.severity is not None:
            raw = (
                row.cell(spec.severity.columns)
                if spec.severity.columns
                else spec.severity.value or ""
            )
            severity = spec.severity.map.get(raw.upper(), raw.lower()) if raw else None
            if severity in _SEVERITIES:
                reaction["severity"] = severity
            elif raw:
                row.issues.warning(
                    row.location, f"reaction severity {raw!r} not understood; left out"
                )
        reactions.append(reaction)
    _put(allergy, "reaction", reactions)
    return allergy


def _procedure(run: CsvRun, row: Row) -> dict[str, Any]:
    start, end = row.datetime("start"), row.datetime("end")
    procedure: dict[str, Any] = {
        "resourceType": "Procedure",
        "status": "completed",
        "code": _required_concept(row, "code"),
        "subject": run.reference(row, "patient", "Patient", required=True),
    }
    _put(procedure, "encounter", run.reference(row, "encounter", "Encounter", required=False))
    if start and end:
        procedure["performedPeriod"] = {"start": start, "end": end}
    else:
        _put(procedure, "performedDateTime", start)
    reason = row.concept("reason")
    if reason:
        procedure["reasonCode"] = [reason]
    return procedure


def _immunization(run: CsvRun, row: Row) -> dict[str, Any]:
    occurrence = row.datetime("date")
    if not occurrence:
        raise RowError("date is empty or not a date; an Immunization needs one")
    immunization: dict[str, Any] = {
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": _required_concept(row, "code"),
        "patient": run.reference(row, "patient", "Patient", required=True),
    }
    _put(immunization, "encounter", run.reference(row, "encounter", "Encounter", required=False))
    immunization["occurrenceDateTime"] = occurrence
    return immunization


def _required_concept(row: Row, key: str) -> dict[str, Any]:
    concept = row.concept(key)
    if concept is None or "coding" not in concept:
        spec = row.spec(key)
        columns = " or ".join(spec.columns) if spec and spec.columns else key
        raise RowError(f"{columns} ({key}) is empty")
    return concept


def _concept_of(row: Row, spec: Any, default_system: str) -> dict[str, Any] | None:
    code = row.cell(spec.columns) if spec.columns else (spec.value or "")
    display = row.cell(spec.display) if spec.display else ""
    if not code:
        return None
    coding = {
        "system": spec.system or default_system,
        "code": code,
        **({"display": display} if display else {}),
    }
    return {"coding": [coding], **({"text": display} if display else {})}


MAPPERS: dict[str, Callable[[CsvRun, Row], dict[str, Any]]] = {
    "Patient": _patient,
    "Encounter": _encounter,
    "Condition": _condition,
    "Observation": _observation,
    "MedicationStatement": _medication,
    "AllergyIntolerance": _allergy,
    "Procedure": _procedure,
    "Immunization": _immunization,
}
