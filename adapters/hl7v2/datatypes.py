"""HL7 v2 data types to FHIR data types: CX, XPN, XAD, XTN, CWE, XCN, EI, DTM.

Every function takes the ``V2Context`` of the message being mapped, so local identifiers are
scoped to the sending organisation, times are read in its time zone and problems are reported at
their ``PID-3[2].1``-style location. They return None for an empty value, never an empty element.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

from .._bundle import TransactionBuilder
from .._datetime import hl7_date, hl7_datetime, hl7_instant
from .._identifiers import (
    AGB_SYSTEM,
    BIG_SYSTEM,
    BSN_OID,
    BSN_SYSTEM,
    UZI_PERSON_SYSTEM,
    V2_BSN_AUTHORITIES,
    V2_BSN_TYPES,
    is_oid,
    local_system,
    normalize_bsn,
    system_for_oid,
)
from .._model import IssueLog, SourceInfo
from .._terminology import system_for_code_oid, system_for_v2_name, v2_table
from .er7 import Composite, Message, Segment

HUMANNAME_EXT = "http://hl7.org/fhir/StructureDefinition/humanname-"
ADXP_EXT = "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-"

# Identifier types of table 0203 worth carrying into Identifier.type.
# fmt: off
_ID_TYPES = frozenset({
    "AN", "BC", "DL", "DN", "EI", "EN", "FI", "JHN", "MA", "MB", "MC", "MR", "NH", "NI", "NPI",
    "PI", "PN", "PPN", "PRN", "PT", "RRI", "SS", "TAX", "U", "VN", "XX",
})
# fmt: on
# Practitioner identifier types and authorities used in Dutch feeds.
_PRACTITIONER_SYSTEMS = {
    "UZI": UZI_PERSON_SYSTEM,
    "AGB": AGB_SYSTEM,
    "VEKTIS": AGB_SYSTEM,
    "BIG": BIG_SYSTEM,
}
# Table 0200 name type → FHIR HumanName.use.
_NAME_USE = {
    "L": "official",
    "R": "official",
    "D": "usual",
    "M": "maiden",
    "B": "maiden",
    "N": "nickname",
    "S": "anonymous",
    "T": "temp",
}
# Table 0190 address type → (Address.use, Address.type).
_ADDRESS_KIND: dict[str, tuple[str | None, str | None]] = {
    "H": ("home", None),
    "P": ("home", None),
    "B": ("work", None),
    "O": ("work", None),
    "C": ("temp", None),
    "BA": ("old", None),
    "M": (None, "postal"),
}
# Table 0201 telecommunication use and 0202 equipment type.
_TELECOM_USE = {"PRN": "home", "ORN": "home", "VHN": "home", "WPN": "work", "BPN": "work"}
_TELECOM_SYSTEM = {"PH": "phone", "CP": "phone", "FX": "fax", "BP": "pager", "SAT": "phone"}


@dataclass
class V2Context:
    """What the mapping of one message needs besides the message itself."""

    message: Message
    source: SourceInfo
    issues: IssueLog
    builder: TransactionBuilder
    _unknown_systems: set[str] = field(default_factory=set)
    # A lab repeats the same timestamp on every OBX; converting it once per message is cheaper.
    _times: dict[str, str | None] = field(default_factory=dict)

    @property
    def organization(self) -> str:
        return self.source.organization

    def datetime(self, value: str, location: str) -> str | None:
        """FHIR dateTime for an HL7 DTM, with a warning when the value is not a real time."""
        if not value:
            return None
        if value in self._times:
            result = self._times[value]
        else:
            result = self._times[value] = hl7_datetime(value, self.source.zone)
        if result is None:
            self.issues.warning(location, f"{value!r} is not a valid date/time; left out")
        return result

    def instant(self, value: str, location: str) -> str | None:
        """FHIR instant (needs minutes at least), with a warning when it cannot be made."""
        if not value:
            return None
        result = hl7_instant(value, self.source.zone)
        if result is None:
            self.issues.warning(location, f"{value!r} is not a date/time precise to the minute")
        return result

    def date(self, value: str, location: str) -> str | None:
        if not value:
            return None
        result = hl7_date(value)
        if result is None:
            self.issues.warning(location, f"{value!r} is not a valid date; left out")
        return result

    def unknown_system(self, name: str, location: str) -> None:
        # Reported once per message: a lab sends the same local system on every OBX.
        if name not in self._unknown_systems:
            self._unknown_systems.add(name)
            self.issues.information(
                location, f"coding system {name!r} has no FHIR URI; codes kept without a system"
            )


def _clean_code(code: str) -> str:
    # FHIR codes may not carry leading, trailing or repeated whitespace.
    return " ".join(code.split())


def identifier(
    ctx: V2Context, cx: Composite, location: str, namespace: str
) -> dict[str, Any] | None:
    """CX → Identifier. A BSN (type NNNLD, authority NLMINBIZA or the BSN OID) must pass the
    elfproef: an invalid one is reported as an error and returns None, never a BSN identifier.
    Other identifiers get the authority's OID system, else a system local to the sender.
    """
    value = cx.get(1)
    if not value:
        return None
    authority = cx.get(4, 1)
    authority_id = cx.get(4, 2)
    id_type = cx.get(5).upper()
    if (
        id_type in V2_BSN_TYPES
        or authority_id == BSN_OID
        or authority.upper() in V2_BSN_AUTHORITIES
    ):
        bsn = normalize_bsn(value)
        if bsn is None:
            ctx.issues.error(location, f"BSN {value!r} fails the elfproef; not used as BSN")
            return None
        return {"use": "official", "system": BSN_SYSTEM, "value": bsn}
    if authority_id and is_oid(authority_id):
        system = system_for_oid(authority_id)
    else:
        system = local_system(ctx.organization, authority or authority_id or namespace)
    result: dict[str, Any] = {"system": system, "value": value}
    if id_type in _ID_TYPES:
        result["type"] = {"coding": [{"system": v2_table(203), "code": id_type}]}
    return result


def entity_identifier(ctx: V2Context, ei: Composite, namespace: str) -> dict[str, Any] | None:
    """EI (entity id ^ namespace ^ universal id ^ type) → Identifier scoped to its assigner."""
    value = ei.get(1)
    if not value:
        return None
    universal = ei.get(3)
    if universal and is_oid(universal):
        system = system_for_oid(universal)
    else:
        system = local_system(ctx.organization, ei.get(2) or universal or namespace)
    return {"system": system, "value": value}


def human_name(rep: Composite) -> dict[str, Any] | None:
    """XPN → HumanName, keeping the Dutch surname parts of FN (own/partner prefix and name)."""
    parts = [*rep.subcomponents(1), "", "", "", "", ""]
    surname, own_prefix, own_name, partner_prefix, partner_name = parts[:5]
    family = surname or " ".join(p for p in (own_prefix, own_name) if p)
    if not surname and partner_name:
        family = "-".join(
            p for p in (family, " ".join(q for q in (partner_prefix, partner_name) if q)) if p
        )
    given = [g for g in (rep.get(2), *rep.get(3).split()) if g]
    if not family and not given:
        return None
    name: dict[str, Any] = {}
    use = _NAME_USE.get(rep.get(7).upper())
    if use:
        name["use"] = use
    if family:
        name["family"] = family
        extensions = [
            {"url": f"{HUMANNAME_EXT}{kind}", "valueString": value}
            for kind, value in (
                ("own-prefix", own_prefix),
                ("own-name", own_name),
                ("partner-prefix", partner_prefix),
                ("partner-name", partner_name),
            )
            if value
        ]
        if extensions:
            name["_family"] = {"extension": extensions}
    if given:
        name["given"] = given
    if rep.get(5):
        name["prefix"] = [rep.get(5)]
    suffixes = [s for s in (rep.get(4), rep.get(6)) if s]
    if suffixes:
        name["suffix"] = suffixes
    return name


def address(rep: Composite) -> dict[str, Any] | None:
    """XAD → Address; street name and house number (SAD.2/.3) become ADXP extensions."""
    street_line, street, number = rep.get(1, 1), rep.get(1, 2), rep.get(1, 3)
    first_line = street_line or " ".join(p for p in (street, number) if p)
    lines = [line for line in (first_line, rep.get(2)) if line]
    result: dict[str, Any] = {}
    use, kind = _ADDRESS_KIND.get(rep.get(7).upper(), (None, None))
    if use:
        result["use"] = use
    if kind:
        result["type"] = kind
    if lines:
        result["line"] = lines
        parts = [
            {"url": f"{ADXP_EXT}{name}", "valueString": value}
            for name, value in (("streetName", street), ("houseNumber", number))
            if value
        ]
        if parts and first_line:
            result["_line"] = [{"extension": parts}] + [None] * (len(lines) - 1)
    places = {
        "city": rep.get(3),
        "district": rep.get(9),
        "state": rep.get(4),
        "postalCode": rep.get(5),
        "country": rep.get(6),
    }
    result.update((key, value) for key, value in places.items() if value)
    return result if lines or any(places.values()) else None


def contact_point(rep: Composite, default_use: str | None) -> dict[str, Any] | None:
    """XTN → ContactPoint (phone, fax, pager or e-mail)."""
    use_code, equipment = rep.get(2).upper(), rep.get(3).upper()
    email = rep.get(4)
    if equipment in ("INTERNET", "X.400") or use_code == "NET" or (email and not rep.get(1)):
        value, system = email or rep.get(1), "email"
    else:
        value = rep.get(1) or rep.get(12)
        if not value and rep.get(7):
            country = f"+{rep.get(5)} " if rep.get(5) else ""
            area = f"({rep.get(6)}) " if rep.get(6) else ""
            extension = f" ext. {rep.get(8)}" if rep.get(8) else ""
            value = f"{country}{area}{rep.get(7)}{extension}"
        system = _TELECOM_SYSTEM.get(equipment, "phone")
    if not value:
        return None
    point: dict[str, Any] = {"system": system, "value": value}
    use = "mobile" if equipment == "CP" else _TELECOM_USE.get(use_code, default_use)
    if use:
        point["use"] = use
    return point


def codeable_concept(
    ctx: V2Context, rep: Composite, location: str, *, table: int | None = None
) -> dict[str, Any] | None:
    """CE/CWE/CNE → CodeableConcept: the primary and the alternate coding, and original text.

    A coding-system name without a known URI leaves the coding without ``system``; when the
    field names no system and ``table`` is given, the HL7 table's system is used.
    """
    codings: list[dict[str, str]] = []
    for base, oid_field in ((1, 14), (4, 17)):
        code = _clean_code(rep.get(base))
        if not code:
            continue
        coding: dict[str, str] = {}
        name = rep.get(base + 2)
        oid = rep.get(oid_field)
        system = system_for_v2_name(name) if name else None
        if system is None and oid and is_oid(oid):
            system = system_for_code_oid(oid)
        if system is None and not name and table is not None:
            system = v2_table(table)
        if system:
            coding["system"] = system
        elif name:
            ctx.unknown_system(name, location)
        coding["code"] = code
        display = rep.get(base + 1)
        if display:
            coding["display"] = display
        codings.append(coding)
    text = rep.get(9) or next((c["display"] for c in codings if "display" in c), "")
    if not codings and not text:
        text = rep.get(2)
        if not text:
            return None
    concept: dict[str, Any] = {}
    if codings:
        concept["coding"] = codings
    if text:
        concept["text"] = text
    return concept


def practitioner_reference(ctx: V2Context, rep: Composite) -> dict[str, Any] | None:
    """XCN → a logical Reference (display, and identifier with its UZI/AGB/BIG system)."""
    given = " ".join(p for p in (rep.get(3), rep.get(4)) if p)
    display = " ".join(p for p in (rep.get(6), given, rep.get(2, 1)) if p)
    ref: dict[str, Any] = {}
    value = rep.get(1)
    if value and not display and not any(ch.isdigit() for ch in value):
        # A lone first component without digits ("IvanDoctorovich") is a name sent where an
        # id belongs, common in older CN fields; an identifier made of it would be false.
        return {"display": value}
    if value:
        authority, authority_id = rep.get(9, 1), rep.get(9, 2)
        id_type = rep.get(13).upper()
        if authority_id and is_oid(authority_id):
            system = system_for_oid(authority_id)
        elif id_type in _PRACTITIONER_SYSTEMS or authority.upper() in _PRACTITIONER_SYSTEMS:
            system = _PRACTITIONER_SYSTEMS.get(id_type) or _PRACTITIONER_SYSTEMS[authority.upper()]
        else:
            system = local_system(ctx.organization, authority or "practitioner")
        ref["identifier"] = {"system": system, "value": value}
    if display:
        ref["display"] = display
    return ref or None


# Table 0291 data subtypes (and common spellings) → MIME type.
_SUBTYPE_MEDIA = {
    "PDF": "application/pdf",
    "RTF": "application/rtf",
    "JPEG": "image/jpeg",
    "JPG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
    "HTML": "text/html",
    "XML": "text/xml",
    "PLAIN": "text/plain",
    "X-HL7-CDA-LEVEL-ONE": "text/xml",
    "OCTET-STREAM": "application/octet-stream",
}
_MEDIA_TYPES = frozenset({"application", "audio", "image", "text", "video", "multipart"})
_MEDIA_TOKEN = re.compile(r"[a-z0-9][a-z0-9.+-]*")


def encapsulated_data(ctx: V2Context, obx: Segment) -> tuple[bytes, str] | None:
    """OBX-5 of type ED (source ^ type ^ subtype ^ encoding ^ data) → (bytes, MIME type).

    Long data may arrive split: over ADD segments (joined by the tokenizer) or over repetitions
    of OBX-5 (concatenated here). Line breaks inside base64 (raw, or escaped as ``\\.br\\`` or
    ``\\X0D0A\\``) are ignored. Problems are reported at OBX-5 and return None.
    """
    reps = obx.repetitions(5)
    where = obx.location(5)
    if not reps:
        ctx.issues.warning(where, "ED value without data; left out")
        return None
    head = reps[0]
    data = head.get(5) + "".join(rep.text() for rep in reps[1:])
    main_type, subtype = head.get(2).lower(), head.get(3)
    media = _SUBTYPE_MEDIA.get(subtype.upper())
    if media is None:
        if main_type in _MEDIA_TYPES and _MEDIA_TOKEN.fullmatch(subtype.lower()):
            media = f"{main_type}/{subtype.lower()}"
        else:
            media = "application/octet-stream"
    encoding = head.get(4).upper()
    if not data.strip():
        ctx.issues.warning(where, "ED value without data; left out")
        return None
    if encoding == "BASE64":
        try:
            return base64.b64decode("".join(data.split()), validate=True), media
        except (binascii.Error, ValueError):
            ctx.issues.error(where, "ED data is not valid base64; left out")
            return None
    if encoding == "HEX":
        try:
            return bytes.fromhex("".join(data.split())), media
        except ValueError:
            ctx.issues.error(where, "ED data is not valid hexadecimal; left out")
            return None
    if encoding in ("A", ""):
        return data.encode("utf-8"), media if media != "application/octet-stream" else "text/plain"
    ctx.issues.error(where, f"ED encoding {encoding!r} not supported; left out")
    return None
