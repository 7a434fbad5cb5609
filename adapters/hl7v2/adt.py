"""ADT (admission, discharge, transfer) → Patient and Encounter.

Mapped events and what they mean for the Encounter (from PV1):

- A01 admit, A04 register an outpatient: the visit is ``in-progress``, a conditional create on
  the visit number (PV1-19);
- A05 pre-admit: ``planned``, conditional create;
- A03 discharge: ``finished``; A08 update: the state PV1 describes (``finished`` once PV1-45 has
  a discharge time). Both *change* an existing visit, so they are a conditional update
  (``PUT Encounter?identifier=…``) and the new state replaces what A01 created;
- A28/A31 add/update person: Patient only (PV1 is a placeholder in these events);
- A40 merge: the surviving Patient (PID) gets ``link.type = replaces`` pointing at the merged
  identifier (MRG-1), and a warning says that merging stored records is left to the receiver.

Other ADT events (transfers, leaves of absence, cancellations, …) are not mapped.
"""

from __future__ import annotations

from typing import Any

from .._datetime import is_after
from .._identifiers import ura_reference
from .datatypes import V2Context, codeable_concept, identifier, practitioner_reference
from .er7 import Segment
from .pid import add_patient, map_patient

SUPPORTED_EVENTS = frozenset({"A01", "A03", "A04", "A05", "A08", "A28", "A31", "A40"})
_ENCOUNTER_EVENTS = frozenset({"A01", "A03", "A04", "A05", "A08"})
_UPDATE_EVENTS = frozenset({"A03", "A08"})

_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
# Table 0004 patient class → v3 ActCode encounter class.
_CLASS = {
    "I": ("IMP", "inpatient encounter"),
    "O": ("AMB", "ambulatory"),
    "E": ("EMER", "emergency"),
    "P": ("PRENC", "pre-admission"),
    "R": ("AMB", "ambulatory"),
    "B": ("IMP", "inpatient encounter"),
}
_UNKNOWN_CLASS = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
    "code": "UNK",
    "display": "unknown",
}
# PV1 fields naming a doctor, and their participation type.
_PARTICIPANTS = (
    (7, "ATND", "attender"),
    (8, "REF", "referrer"),
    (9, "CON", "consultant"),
    (17, "ADM", "admitter"),
)


def map_adt(ctx: V2Context) -> None:
    """Add the Patient(s) and Encounter an ADT message describes to ``ctx.builder``."""
    event = ctx.message.trigger_event
    if event == "A40":
        _map_merge(ctx)
        return
    patient_url = add_patient(ctx)
    pv1 = ctx.message.segment("PV1")
    if event in _ENCOUNTER_EVENTS and pv1 is not None and pv1.value(2).upper() not in ("", "N"):
        _add_encounter(ctx, pv1, event, patient_url)
    elif event in _ENCOUNTER_EVENTS:
        ctx.issues.information("PV1", f"ADT^{event} without a patient visit; no Encounter")


def _map_merge(ctx: V2Context) -> None:
    segments = ctx.message.segments
    pairs = [
        (seg, next((m for m in segments[i + 1 :] if m.name in ("MRG", "PID")), None))
        for i, seg in enumerate(segments)
        if seg.name == "PID"
    ]
    if not pairs:
        add_patient(ctx)  # raises the missing-PID error
        return
    for pid, mrg in pairs:
        patient = map_patient(ctx, pid)
        merged = []
        if mrg is not None and mrg.name == "MRG":
            for number, cx in enumerate(mrg.repetitions(1), start=1):
                old = identifier(ctx, cx, mrg.location(1, number, 1), "patient")
                if old is not None:
                    merged.append(old)
        if merged:
            patient["link"] = [{"other": {"identifier": old}, "type": "replaces"} for old in merged]
            ctx.issues.warning(
                mrg.label if mrg else "MRG",
                "ADT^A40 merge: the surviving Patient links the merged identifier(s) with "
                "'replaces'; merging records already stored is left to the receiving system",
            )
        else:
            ctx.issues.error("MRG-1", "ADT^A40 without the merged patient's identifier (MRG-1)")
        ctx.builder.add_patient(patient, location=pid.label)


def _period(ctx: V2Context, pv1: Segment, event: str) -> dict[str, str]:
    period: dict[str, str] = {}
    start = ctx.datetime(pv1.value(44), pv1.location(44))
    end = ctx.datetime(pv1.value(45), pv1.location(45))
    evn = ctx.message.segment("EVN")
    if end is None and event == "A03" and evn is not None:
        # A discharge without PV1-45: the event's own time is the best evidence of the end.
        end = ctx.datetime(evn.value(6) or evn.value(2), evn.location(6))
    if start:
        period["start"] = start
    if end:
        if start and is_after(start, end):
            ctx.issues.warning(pv1.location(45), "discharge is before admission; end left out")
        else:
            period["end"] = end
    return period


def _status(pv1: Segment, event: str, period: dict[str, str]) -> str:
    if event in ("A01", "A04"):
        return "in-progress"
    if event == "A05":
        return "planned"
    if event == "A03" or "end" in period:
        return "finished"
    return "planned" if pv1.value(2).upper() == "P" else "in-progress"


def _add_encounter(ctx: V2Context, pv1: Segment, event: str, patient_url: str) -> None:
    patient_class = pv1.value(2).upper()
    code, display = _CLASS.get(patient_class, (None, None))
    encounter: dict[str, Any] = {"resourceType": "Encounter"}
    visit = identifier(ctx, pv1.first(19), pv1.location(19, 1, 1), "visit")
    if visit is not None:
        encounter["identifier"] = [visit]
    period = _period(ctx, pv1, event)
    encounter["status"] = _status(pv1, event, period)
    encounter["class"] = (
        {"system": _ACT_CODE, "code": code, "display": display} if code else _UNKNOWN_CLASS
    )
    encounter["subject"] = {"reference": patient_url}
    participants = []
    for number, role, role_display in _PARTICIPANTS:
        for rep in pv1.repetitions(number):
            individual = practitioner_reference(ctx, rep)
            if individual:
                participants.append(
                    {
                        "type": [
                            {
                                "coding": [
                                    {
                                        "system": _PARTICIPATION,
                                        "code": role,
                                        "display": role_display,
                                    }
                                ]
                            }
                        ],
                        "individual": individual,
                    }
                )
    if participants:
        encounter["participant"] = participants
    if period:
        encounter["period"] = period
    place = pv1.first(3)
    where = ", ".join(p for p in (place.get(1), place.get(2), place.get(3), place.get(4)) if p)
    if where:
        encounter["location"] = [{"location": {"display": where}}]
    disposition = codeable_concept(ctx, pv1.first(36), pv1.location(36), table=112)
    if disposition:
        encounter["hospitalization"] = {"dischargeDisposition": disposition}
    encounter["serviceProvider"] = ura_reference(ctx.organization)
    update = event in _UPDATE_EVENTS
    if visit is None:
        ctx.issues.warning(
            pv1.location(19),
            "no visit number; the Encounter cannot be matched and is created unconditionally",
        )
    ctx.builder.add(encounter, identifier=visit, update=update, location=pv1.label)
