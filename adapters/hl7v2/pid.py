"""PID (patient identification) → Patient, shared by the ADT, ORU and MDM mappings."""

from __future__ import annotations

from typing import Any

from .._errors import MalformedInput
from .datatypes import V2Context, address, codeable_concept, contact_point, human_name, identifier
from .er7 import Segment

# Table 0001 administrative sex → Patient.gender.
_GENDER = {
    "M": "male",
    "F": "female",
    "O": "other",
    "A": "other",
    "X": "other",
    "U": "unknown",
    "N": "unknown",
}


def patient_identifiers(ctx: V2Context, pid: Segment) -> list[dict[str, Any]]:
    """PID-3 repetitions as Identifiers (PID-2, deprecated since v2.3.1, when PID-3 is empty)."""
    found: list[dict[str, Any]] = []
    for number, cx in enumerate(pid.repetitions(3), start=1):
        mapped = identifier(ctx, cx, pid.location(3, number, 1), "patient")
        if mapped is not None and mapped not in found:
            found.append(mapped)
    if not pid.repetitions(3):
        for number, cx in enumerate(pid.repetitions(2), start=1):
            mapped = identifier(ctx, cx, pid.location(2, number, 1), "patient")
            if mapped is not None:
                found.append(mapped)
    return found


def map_patient(ctx: V2Context, pid: Segment) -> dict[str, Any]:
    """The Patient described by one PID segment."""
    patient: dict[str, Any] = {"resourceType": "Patient"}
    identifiers = patient_identifiers(ctx, pid)
    if identifiers:
        patient["identifier"] = identifiers
    else:
        ctx.issues.warning(
            pid.location(3), "no usable patient identifier; the patient cannot be matched"
        )
    names = [n for n in map(human_name, pid.repetitions(5)) if n]
    if names:
        patient["name"] = names
    telecom = [
        point
        for n, use in ((13, "home"), (14, "work"))
        for point in (contact_point(rep, use) for rep in pid.repetitions(n))
        if point
    ]
    if telecom:
        patient["telecom"] = telecom
    sex = pid.value(8).upper()
    if sex in _GENDER:
        patient["gender"] = _GENDER[sex]
    elif sex:
        ctx.issues.warning(pid.location(8), f"unknown administrative sex {sex!r}; left out")
    birth = ctx.date(pid.value(7), pid.location(7))
    if birth:
        patient["birthDate"] = birth
    died = ctx.datetime(pid.value(29), pid.location(29))
    if died:
        patient["deceasedDateTime"] = died
    elif pid.value(30).upper() == "Y":
        patient["deceasedBoolean"] = True
    addresses = [a for a in map(address, pid.repetitions(11)) if a]
    if addresses:
        patient["address"] = addresses
    marital = codeable_concept(ctx, pid.first(16), pid.location(16), table=2)
    if marital:
        patient["maritalStatus"] = marital
    return patient


def add_patient(ctx: V2Context) -> str:
    """Map the message's PID and add it to the Bundle; return the Patient's fullUrl."""
    pid = ctx.message.segment("PID")
    if pid is None:
        raise MalformedInput(
            f"{ctx.message.message_type} without a PID segment",
            location="PID",
            hl7_error_code="100",
        )
    return ctx.builder.add_patient(map_patient(ctx, pid), location=pid.label)
