"""MDM (medical document management) T02/T06/T10 → Patient, DocumentReference and Binary.

The events carrying document content are mapped: T02 (original document with content), T06
(addendum, ``relatesTo.appends`` the parent document TXA-13) and T10 (replacement,
``relatesTo.replaces`` TXA-13; marking the replaced document superseded is left to the receiver,
which holds it). Notification-only events (T01, T03, T05, …) carry no content and are not mapped.

- TXA-12 unique document number → ``masterIdentifier`` (an OID or UUID as
  ``urn:ietf:rfc:3986|urn:oid:…``), and the conditional create that makes a re-send harmless;
- TXA-2 document type → ``type`` (table 0270, plus the LOINC document code where one exists);
- TXA-4 activity date → ``date``; TXA-6 origination date → ``attachment.creation``;
- TXA-9 originator (else TXA-5) → ``author``; TXA-10 → ``authenticator``; custodian = sender;
- TXA-17 completion status → ``docStatus``; TXA-19 availability → ``status``;
  TXA-18 confidentiality → ``securityLabel``;
- OBX ED (base64, hex or plain) → one Binary per embedded document; OBX TX/FT/ST lines → one
  ``text/plain`` Binary with one line per OBX.
"""

from __future__ import annotations

from typing import Any

from .._bundle import add_document, custodian
from .._errors import MalformedInput
from .._identifiers import uri_identifier
from .._terminology import LOINC, v2_table
from .datatypes import V2Context, encapsulated_data, entity_identifier, practitioner_reference
from .pid import add_patient

SUPPORTED_EVENTS = frozenset({"T02", "T06", "T10"})

# Table 0270 document types with an equivalent LOINC document code.
_LOINC_TYPES = {
    "AR": ("18743-5", "Autopsy report"),
    "CN": ("11488-4", "Consult note"),
    "DI": ("18748-4", "Diagnostic imaging study"),
    "DS": ("18842-5", "Discharge summary"),
    "HP": ("34117-2", "History and physical note"),
    "OP": ("11504-8", "Surgical operation note"),
    "PN": ("28570-0", "Procedure note"),
    "PR": ("11506-3", "Progress note"),
    "SP": ("11526-1", "Pathology study"),
    "TS": ("18761-7", "Transfer summary note"),
}
_DOC_STATUS = {
    "AU": "final",
    "LA": "final",
    "DI": "preliminary",
    "DO": "preliminary",
    "IN": "preliminary",
    "IP": "preliminary",
    "PA": "preliminary",
}
_AVAILABILITY = {"AV": "current", "UN": "current", "OB": "superseded", "CA": "entered-in-error"}
_CONFIDENTIALITY = {"V": "V", "R": "R", "U": "N"}
_TEXT_TYPES = frozenset({"TX", "FT", "ST"})


def _document_type(ctx: V2Context, code: str, display: str) -> dict[str, Any] | None:
    if not code:
        return None
    codings: list[dict[str, str]] = []
    loinc = _LOINC_TYPES.get(code.upper())
    if loinc:
        codings.append({"system": LOINC, "code": loinc[0], "display": loinc[1]})
    codings.append(
        {"system": v2_table(270), "code": code, **({"display": display} if display else {})}
    )
    return {"coding": codings, "text": display or (loinc[1] if loinc else code)}


def _contents(ctx: V2Context) -> list[tuple[bytes, str, dict[str, Any]]]:
    contents: list[tuple[bytes, str, dict[str, Any]]] = []
    lines: list[str] = []
    for obx in ctx.message.all("OBX"):
        value_type = obx.value(2).upper()
        if value_type == "ED":
            embedded = encapsulated_data(ctx, obx)
            if embedded:
                contents.append((embedded[0], embedded[1], {}))
        elif value_type in _TEXT_TYPES:
            # One OBX per line of text; an empty OBX-5 is an empty line.
            lines.append("\n".join(rep.text() for rep in obx.repetitions(5)))
        else:
            ctx.issues.information(
                obx.location(2), f"OBX of type {value_type!r} is not document content; left out"
            )
    if any(line.strip() for line in lines):
        text = "\n".join(lines).strip("\n") + "\n"
        contents.append((text.encode("utf-8"), "text/plain; charset=utf-8", {}))
    return contents


def map_mdm(ctx: V2Context) -> None:
    """Add the Patient and the document of an MDM T02/T06/T10 to ``ctx.builder``."""
    event = ctx.message.trigger_event
    patient_url = add_patient(ctx)
    txa = ctx.message.segment("TXA")
    if txa is None:
        raise MalformedInput(
            f"MDM^{event} without a TXA segment", location="TXA", hl7_error_code="100"
        )
    contents = _contents(ctx)
    if not contents:
        ctx.issues.error(
            "OBX-5", f"MDM^{event} carries no document content; no DocumentReference created"
        )
        return
    document: dict[str, Any] = {"resourceType": "DocumentReference"}
    number = txa.first(12)
    master = uri_identifier(number.get(1)) or entity_identifier(ctx, number, "document")
    if master:
        document["masterIdentifier"] = master
    else:
        ctx.issues.warning(
            txa.location(12), "no unique document number; the document cannot be matched"
        )
    availability = txa.value(19).upper()
    document["status"] = _AVAILABILITY.get(availability, "current")
    completion = txa.value(17).upper()
    if completion in _DOC_STATUS:
        document["docStatus"] = _DOC_STATUS[completion]
    kind = _document_type(ctx, txa.value(2), txa.value(2, 2))
    if kind:
        document["type"] = kind
    document["subject"] = {"reference": patient_url}
    moment = ctx.instant(txa.value(4), txa.location(4)) or ctx.instant(
        ctx.message.msh.value(7), ctx.message.msh.location(7)
    )
    if moment:
        document["date"] = moment
    authors = [
        r for r in map(lambda rep: practitioner_reference(ctx, rep), txa.repetitions(9)) if r
    ]
    if not authors:
        authors = [
            r for r in map(lambda rep: practitioner_reference(ctx, rep), txa.repetitions(5)) if r
        ]
    if authors:
        document["author"] = authors
    authenticator = practitioner_reference(ctx, txa.first(10))
    if authenticator:
        document["authenticator"] = authenticator
    document["custodian"] = custodian(ctx.organization)
    parent = txa.first(13)
    relation = {"T06": "appends", "T10": "replaces"}.get(event)
    if relation and parent.get(1):
        target = uri_identifier(parent.get(1)) or entity_identifier(ctx, parent, "document")
        document["relatesTo"] = [{"code": relation, "target": {"identifier": target}}]
    elif relation:
        ctx.issues.warning(txa.location(13), f"MDM^{event} without the parent document (TXA-13)")
    label = _CONFIDENTIALITY.get(txa.value(18).upper())
    if label:
        document["securityLabel"] = [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                        "code": label,
                    }
                ]
            }
        ]
    created = ctx.datetime(txa.value(6), txa.location(6))
    if created:
        contents = [
            (data, media, {**extra, "creation": created}) for data, media, extra in contents
        ]
    add_document(ctx.builder, document, contents, location=txa.label)
