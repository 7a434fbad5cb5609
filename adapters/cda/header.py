"""The CDA header: recordTarget → Patient, and the document's metadata → DocumentReference.

The DocumentReference carries the original XML unchanged as its first content (``text/xml``, the
MIME type IHE XDS and MHD use for CDA documents), with the C-CDA format code where the document
declares C-CDA R1.1 or R2.1 (US Realm Header template version). An unstructured document
(nonXMLBody) with embedded base64 content adds that content, decoded byte-identical, as a second
content; a nonXMLBody that only *references* a file adds an issue, since the file is not here.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from lxml import etree

from .._bundle import custodian
from .._errors import MalformedInput
from .._identifiers import URA_OID, URA_SYSTEM
from .._terminology import is_language_tag, is_mime_type
from .datatypes import (
    NS,
    CdaContext,
    address,
    concept,
    contact_point,
    display_name,
    gender,
    human_name,
    identifier,
    patient_identifier,
    period,
)

US_REALM_HEADER = "2.16.840.1.113883.10.20.22.1.1"
FORMAT_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-HL7DocumentFormatCodes"
IHE_FORMAT_SYSTEM = "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
CDA_MEDIA_TYPE = "text/xml"
_RELATION = {"RPLC": "replaces", "APND": "appends", "XFRM": "transforms"}
# US Realm Header template versions and the C-CDA release their format code names.
_CCDA_RELEASE = {None: "1.1", "2015-08-01": "2.1"}


def map_patient(ctx: CdaContext) -> dict[str, Any]:
    """The Patient of ``recordTarget/patientRole``; raises when the document names none."""
    role = ctx.root.find("h:recordTarget/h:patientRole", NS)
    if role is None:
        raise MalformedInput(
            "CDA document without recordTarget/patientRole",
            location="/ClinicalDocument/recordTarget",
        )
    patient: dict[str, Any] = {"resourceType": "Patient"}
    identifiers = []
    for ii in role.findall("h:id", NS):
        mapped = patient_identifier(ctx, ii)
        if mapped and mapped not in identifiers:
            identifiers.append(mapped)
    if identifiers:
        patient["identifier"] = identifiers
    else:
        ctx.issues.warning(
            ctx.where(role), "no usable patient identifier; the patient cannot be matched"
        )
    person = role.find("h:patient", NS)
    if person is not None:
        names = [n for n in map(human_name, person.findall("h:name", NS)) if n]
        if names:
            patient["name"] = names
    telecom = [t for t in map(contact_point, role.findall("h:telecom", NS)) if t]
    if telecom:
        patient["telecom"] = telecom
    if person is not None:
        sex = person.find("h:administrativeGenderCode", NS)
        mapped_gender = gender(sex.get("code", "")) if sex is not None else None
        if mapped_gender:
            patient["gender"] = mapped_gender
        birth = ctx.date(person.find("h:birthTime", NS))
        if birth:
            patient["birthDate"] = birth
        died = ctx.datetime(person.find("sdtc:deceasedTime", NS))
        deceased = person.find("sdtc:deceasedInd", NS)
        if died:
            patient["deceasedDateTime"] = died
        elif deceased is not None and deceased.get("value") == "true":
            patient["deceasedBoolean"] = True
    addresses = [a for a in map(address, role.findall("h:addr", NS)) if a]
    if addresses:
        patient["address"] = addresses
    if person is not None:
        marital = concept(ctx, person.find("h:maritalStatusCode", NS))
        if marital:
            patient["maritalStatus"] = marital
    return patient


def _person_reference(
    ctx: CdaContext, assigned: etree._Element | None, person_tag: str
) -> dict[str, Any] | None:
    if assigned is None:
        return None
    ref: dict[str, Any] = {}
    ident = next(
        (i for i in map(lambda e: identifier(ctx, e), assigned.findall("h:id", NS)) if i), None
    )
    if ident:
        ref["identifier"] = ident
    display = display_name(assigned.find(f"h:{person_tag}/h:name", NS))
    if not display:
        software = assigned.findtext("h:assignedAuthoringDevice/h:softwareName", "", NS)
        display = " ".join(software.split())
    if display:
        ref["display"] = display
    return ref or None


def _custodian(ctx: CdaContext) -> dict[str, Any]:
    org = ctx.root.find("h:custodian/h:assignedCustodian/h:representedCustodianOrganization", NS)
    if org is None:
        return custodian(ctx.source.organization)
    ref: dict[str, Any] = {}
    for ii in org.findall("h:id", NS):
        if ii.get("root") == URA_OID and ii.get("extension"):
            ref["identifier"] = {"system": URA_SYSTEM, "value": ii.get("extension")}
            break
        ident = identifier(ctx, ii)
        if ident and "identifier" not in ref:
            ref["identifier"] = ident
    name = " ".join((org.findtext("h:name", "", NS) or "").split())
    if name:
        ref["display"] = name
    return ref or custodian(ctx.source.organization)


def format_coding(ctx: CdaContext, structured: bool) -> dict[str, str] | None:
    """The C-CDA format code, when the document declares C-CDA R1.1 or R2.1."""
    header = next(
        (t for t in ctx.root.findall("h:templateId", NS) if t.get("root") == US_REALM_HEADER), None
    )
    if header is None:
        return None
    release = _CCDA_RELEASE.get(header.get("extension"))
    if release is None:
        return None
    body = "structuredBody" if structured else "nonXMLBody"
    code = f"urn:hl7-org:sdwg:ccda-{body}:{release}"
    return {"system": FORMAT_SYSTEM, "code": code}


def document_reference(ctx: CdaContext) -> dict[str, Any]:
    """DocumentReference for the document's header (content is added by the caller)."""
    root = ctx.root
    document: dict[str, Any] = {"resourceType": "DocumentReference"}
    master = identifier(ctx, root.find("h:id", NS))
    if master:
        document["masterIdentifier"] = master
    else:
        ctx.issues.warning("/ClinicalDocument/id", "document without an id; it cannot be matched")
    set_id = identifier(ctx, root.find("h:setId", NS))
    if set_id and set_id != master:
        document["identifier"] = [set_id]
    document["status"] = "current"
    if root.find("h:legalAuthenticator", NS) is not None:
        document["docStatus"] = "final"
    kind = concept(ctx, root.find("h:code", NS))
    if kind:
        document["type"] = kind
    document["subject"] = {"reference": ctx.patient_url}
    moment = ctx.instant(root.find("h:effectiveTime", NS))
    if moment:
        document["date"] = moment
    authors = [
        a
        for a in (
            _person_reference(ctx, author.find("h:assignedAuthor", NS), "assignedPerson")
            for author in root.findall("h:author", NS)
        )
        if a
    ]
    if authors:
        document["author"] = authors
    authenticator = _person_reference(
        ctx, root.find("h:legalAuthenticator/h:assignedEntity", NS), "assignedPerson"
    )
    if authenticator:
        document["authenticator"] = authenticator
    document["custodian"] = _custodian(ctx)
    relations = []
    for related in root.findall("h:relatedDocument", NS):
        code = _RELATION.get(related.get("typeCode", ""))
        target = identifier(ctx, related.find("h:parentDocument/h:id", NS))
        if code and target:
            relations.append({"code": code, "target": {"identifier": target}})
    if relations:
        document["relatesTo"] = relations
    title = " ".join((root.findtext("h:title", "", NS) or "").split())
    if title:
        document["description"] = title
    confidentiality = root.find("h:confidentialityCode", NS)
    if confidentiality is not None and confidentiality.get("code") in (
        "N",
        "R",
        "V",
        "L",
        "M",
        "U",
    ):
        document["securityLabel"] = [
            {"coding": [{"system": CONFIDENTIALITY, "code": confidentiality.get("code")}]}
        ]
    start, end = period(ctx, root.find("h:documentationOf/h:serviceEvent/h:effectiveTime", NS))
    if start or end:
        document["context"] = {"period": {k: v for k, v in (("start", start), ("end", end)) if v}}
    return document


def attachment_details(ctx: CdaContext) -> dict[str, Any]:
    """Attachment fields shared by every content of the document (title, language, creation)."""
    details: dict[str, Any] = {}
    title = " ".join((ctx.root.findtext("h:title", "", NS) or "").split())
    if title:
        details["title"] = title
    language = ctx.root.find("h:languageCode", NS)
    if language is not None and is_language_tag(language.get("code", "")):
        details["language"] = language.get("code")
    created = ctx.datetime(ctx.root.find("h:effectiveTime", NS))
    if created:
        details["creation"] = created
    return details


def embedded_content(ctx: CdaContext, body: etree._Element) -> tuple[bytes, str] | None:
    """The content of a nonXMLBody: decoded bytes and media type, or None (with an issue)."""
    text = body.find("h:text", NS)
    where = ctx.where(body)
    if text is None:
        ctx.issues.error(where, "nonXMLBody without text; no content")
        return None
    reference = text.find("h:reference", NS)
    if reference is not None:
        ctx.issues.warning(
            where,
            f"nonXMLBody refers to {reference.get('value', '')!r}, which is not part of the input; "
            "only the CDA document is stored",
        )
        return None
    media = text.get("mediaType", "text/plain").strip()
    if not is_mime_type(media):
        ctx.issues.warning(where, f"mediaType {media!r} is not a MIME type; stored as octet-stream")
        media = "application/octet-stream"
    if text.get("compression"):
        ctx.issues.error(where, f"compressed nonXMLBody ({text.get('compression')}) not supported")
        return None
    payload = "".join(text.itertext())
    if text.get("representation", "TXT").upper() == "B64":
        try:
            return base64.b64decode("".join(payload.split()), validate=True), media
        except (binascii.Error, ValueError):
            ctx.issues.error(where, "nonXMLBody text is not valid base64; no content")
            return None
    return payload.encode("utf-8"), media
