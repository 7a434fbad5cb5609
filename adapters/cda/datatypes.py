"""CDA R2 data types to FHIR: II, CD/CE, PQ, IVL_PQ, TS, IVL_TS, PN, AD, TEL.

Helpers take the ``CdaContext`` of the document so that times are read in the sender's zone,
``originalText`` references resolve against the section narrative, and problems are reported at
an XPath-like location (``/ClinicalDocument/component/structuredBody/component[3]/section/…``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from .._bundle import TransactionBuilder
from .._datetime import hl7_date, hl7_datetime, hl7_instant
from .._identifiers import (
    BSN_OID,
    BSN_SYSTEM,
    is_oid,
    is_uuid,
    local_system,
    normalize_bsn,
    system_for_oid,
    uri_identifier,
)
from .._model import IssueLog, SourceInfo
from .._terminology import UCUM, decimal_value, system_for_code_oid

V3 = "urn:hl7-org:v3"
SDTC = "urn:hl7-org:sdtc"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
NS = {"h": V3, "sdtc": SDTC}
HUMANNAME_EXT = "http://hl7.org/fhir/StructureDefinition/humanname-"
ADXP_EXT = "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-"

_NAME_USE = {
    "L": "official",
    "OR": "official",
    "P": "nickname",
    "A": "nickname",
    "ANON": "anonymous",
}
_ADDRESS_USE = {
    "H": "home",
    "HP": "home",
    "HV": "home",
    "WP": "work",
    "DIR": "work",
    "PUB": "work",
    "TMP": "temp",
    "OLD": "old",
    "BAD": "old",
}
_TELECOM_USE = {
    "H": "home",
    "HP": "home",
    "HV": "home",
    "WP": "work",
    "DIR": "work",
    "PUB": "work",
    "MC": "mobile",
    "TMP": "temp",
    "OLD": "old",
    "BAD": "old",
}
_TELECOM_SCHEME = {"tel": "phone", "mailto": "email", "fax": "fax", "http": "url", "https": "url"}


def q(tag: str) -> str:
    """Clark name of a CDA element: ``q("code")`` → ``{urn:hl7-org:v3}code``."""
    return f"{{{V3}}}{tag}"


def template_ids(element: etree._Element) -> set[str]:
    """The templateId roots of an element (the extension, i.e. the template version, ignored)."""
    return {t.get("root", "") for t in element.findall("h:templateId", NS)}


def xsi_type(element: etree._Element) -> str:
    value = element.get(XSI_TYPE, "")
    return value.rsplit(":", 1)[-1].upper()


@dataclass
class CdaContext:
    """What the mapping of one CDA document needs besides the document itself."""

    root: etree._Element
    source: SourceInfo
    issues: IssueLog
    builder: TransactionBuilder
    patient_url: str = ""
    _narrative: dict[str, str] | None = field(default=None, repr=False)

    def where(self, element: etree._Element) -> str:
        """A readable location: the element path without namespaces."""
        path = self.root.getroottree().getelementpath(element)
        return "/ClinicalDocument/" + path.replace(f"{{{V3}}}", "").replace(f"{{{SDTC}}}", "sdtc:")

    def narrative(self, reference: str) -> str:
        """The text of the narrative element a ``<reference value="#id"/>`` points at."""
        if self._narrative is None:
            self._narrative = {}
            for element in self.root.iter():
                ident = element.get("ID") if isinstance(element.tag, str) else None
                if ident:
                    self._narrative[ident] = " ".join("".join(element.itertext()).split())
        return self._narrative.get(reference.lstrip("#"), "")

    def datetime(self, element: etree._Element | None) -> str | None:
        value = element.get("value") if element is not None else None
        if not value:
            return None
        result = hl7_datetime(value, self.source.zone)
        if result is None and element is not None:
            self.issues.warning(self.where(element), f"{value!r} is not a valid time; left out")
        return result

    def instant(self, element: etree._Element | None) -> str | None:
        value = element.get("value") if element is not None else None
        return hl7_instant(value, self.source.zone) if value else None

    def date(self, element: etree._Element | None) -> str | None:
        value = element.get("value") if element is not None else None
        return hl7_date(value) if value else None


def text_of(ctx: CdaContext, element: etree._Element | None) -> str:
    """Text of an ED/ST element or of the narrative its ``<reference>`` points at."""
    if element is None:
        return ""
    reference = element.find("h:reference", NS)
    if reference is not None and reference.get("value", "").startswith("#"):
        return ctx.narrative(reference.get("value", ""))
    return " ".join("".join(element.itertext()).split())


def identifier(ctx: CdaContext, ii: etree._Element | None) -> dict[str, Any] | None:
    """II → Identifier: ``root``+``extension`` as system+value, a lone root as a URI value."""
    if ii is None:
        return None
    root, extension = ii.get("root", "").strip(), ii.get("extension", "").strip()
    if ii.get("nullFlavor") and not extension:
        return None
    if extension:
        if is_oid(root):
            system = system_for_oid(root)
        elif is_uuid(root):
            system = f"urn:uuid:{root.lower()}"
        else:
            system = local_system(ctx.source.organization, root or "cda")
        return {"system": system, "value": extension}
    return uri_identifier(root) if root else None


def patient_identifier(ctx: CdaContext, ii: etree._Element) -> dict[str, Any] | None:
    """Like ``identifier``, but a BSN (root 2.16.840.1.113883.2.4.6.3) must pass the elfproef."""
    if ii.get("root") == BSN_OID:
        value = ii.get("extension", "")
        bsn = normalize_bsn(value)
        if bsn is None:
            ctx.issues.error(ctx.where(ii), f"BSN {value!r} fails the elfproef; not used as BSN")
            return None
        return {"use": "official", "system": BSN_SYSTEM, "value": bsn}
    return identifier(ctx, ii)


def _coding(element: etree._Element) -> dict[str, str] | None:
    code = " ".join(element.get("code", "").split())
    if not code or element.get("nullFlavor"):
        return None
    coding: dict[str, str] = {}
    system = element.get("codeSystem", "").strip()
    if system and is_oid(system):
        coding["system"] = system_for_code_oid(system)
    coding["code"] = code
    display = " ".join(element.get("displayName", "").split())
    if display:
        coding["display"] = display
    return coding


def concept(ctx: CdaContext, element: etree._Element | None) -> dict[str, Any] | None:
    """CD/CE (with translations and originalText) → CodeableConcept, or None when empty."""
    if element is None:
        return None
    codings = [c for c in map(_coding, [element, *element.findall("h:translation", NS)]) if c]
    text = text_of(ctx, element.find("h:originalText", NS))
    if not text and codings:
        text = codings[0].get("display", "")
    if not codings and not text:
        return None
    result: dict[str, Any] = {}
    if codings:
        result["coding"] = codings
    if text:
        result["text"] = text
    return result


def number(text: str | None) -> int | float | None:
    """A CDA REAL/INT/PQ value as a JSON number, or None when it is not a decimal FHIR takes."""
    return decimal_value(text) if text else None


def quantity(element: etree._Element | None) -> dict[str, Any] | None:
    """PQ → Quantity; CDA units are UCUM by definition (default ``1``)."""
    if element is None:
        return None
    value = number(element.get("value"))
    if value is None:
        return None
    result: dict[str, Any] = {"value": value}
    unit = element.get("unit", "").strip()
    if unit and unit != "1":
        result.update(unit=unit, system=UCUM, code=unit)
    return result


def period(ctx: CdaContext, element: etree._Element | None) -> tuple[str | None, str | None]:
    """IVL_TS (or a plain TS value) → (start, end) FHIR dateTimes."""
    if element is None:
        return None, None
    if element.get("value"):
        moment = ctx.datetime(element)
        return moment, None
    return ctx.datetime(element.find("h:low", NS)), ctx.datetime(element.find("h:high", NS))


def human_name(element: etree._Element) -> dict[str, Any] | None:
    """PN → HumanName. Dutch parts: ``prefix qualifier="VV"`` is a surname prefix (voorvoegsel),
    ``qualifier="SP"`` marks the partner's (spouse's) name; both become humanname extensions."""
    given = [
        t for t in (" ".join((g.text or "").split()) for g in element.findall("h:given", NS)) if t
    ]
    prefixes, suffixes = [], []
    own: list[str] = []
    partner: list[str] = []
    extensions: dict[str, list[str]] = {}
    for part in element:
        if not isinstance(part.tag, str):
            continue
        tag = etree.QName(part).localname
        text = " ".join((part.text or "").split())
        qualifiers = set(part.get("qualifier", "").split())
        if not text:
            continue
        is_partner = "SP" in qualifiers
        if tag == "family":
            (partner if is_partner else own).append(text)
            extensions.setdefault("partner-name" if is_partner else "own-name", []).append(text)
        elif tag == "prefix" and "VV" in qualifiers:
            (partner if is_partner else own).append(text)
            extensions.setdefault("partner-prefix" if is_partner else "own-prefix", []).append(text)
        elif tag == "prefix":
            prefixes.append(text)
        elif tag == "suffix":
            suffixes.append(text)
    family = "-".join(p for p in (" ".join(own), " ".join(partner)) if p)
    name: dict[str, Any] = {}
    use = _NAME_USE.get(element.get("use", "").split(" ")[0])
    if use:
        name["use"] = use
    if not family and not given:
        text = " ".join("".join(element.itertext()).split())
        if not text:
            return None
        name["text"] = text
        return name
    if family:
        name["family"] = family
        if any(kind != "own-name" for kind in extensions):
            name["_family"] = {
                "extension": [
                    {"url": f"{HUMANNAME_EXT}{kind}", "valueString": " ".join(values)}
                    for kind, values in extensions.items()
                ]
            }
    if given:
        name["given"] = given
    if prefixes:
        name["prefix"] = prefixes
    if suffixes:
        name["suffix"] = suffixes
    return name


def display_name(element: etree._Element | None) -> str:
    """A person's name as one line of text, for Reference.display."""
    if element is None:
        return ""
    name = human_name(element)
    if not name:
        return ""
    if "text" in name:
        return str(name["text"])
    return " ".join(
        [*name.get("prefix", []), *name.get("given", []), name.get("family", "")]
    ).strip()


def address(element: etree._Element) -> dict[str, Any] | None:
    """AD → Address, with Dutch street name / house number parts as ADXP extensions."""
    if element.get("nullFlavor"):
        return None
    result: dict[str, Any] = {}
    use = _ADDRESS_USE.get(element.get("use", "").split(" ")[0])
    if use:
        result["use"] = use
    lines = [
        t
        for t in (
            " ".join((e.text or "").split()) for e in element.findall("h:streetAddressLine", NS)
        )
        if t
    ]
    street = " ".join((element.findtext("h:streetName", "", NS) or "").split())
    house = " ".join(
        t
        for t in (
            element.findtext("h:houseNumber", "", NS),
            element.findtext("h:houseNumberNumeric", "", NS),
            element.findtext("h:buildingNumberSuffix", "", NS),
        )
        if t and t.strip()
    )
    if not lines and (street or house):
        lines = [" ".join(p for p in (street, house) if p)]
        parts = [
            {"url": f"{ADXP_EXT}{kind}", "valueString": value}
            for kind, value in (("streetName", street), ("houseNumber", house))
            if value
        ]
        result["_line"] = [{"extension": parts}]
    if lines:
        result["line"] = lines
    for key, tag in (
        ("city", "city"),
        ("district", "county"),
        ("state", "state"),
        ("postalCode", "postalCode"),
        ("country", "country"),
    ):
        text = " ".join((element.findtext(f"h:{tag}", "", NS) or "").split())
        if text:
            result[key] = text
    return result if set(result) - {"use"} else None


def contact_point(element: etree._Element) -> dict[str, Any] | None:
    """TEL (``tel:``, ``mailto:``, ``fax:``, ``http:`` URL) → ContactPoint."""
    value = element.get("value", "").strip()
    if not value or element.get("nullFlavor"):
        return None
    scheme, _, rest = value.partition(":")
    system = _TELECOM_SCHEME.get(scheme.lower())
    if system is None:
        system, rest = "other", value
    elif system == "url":
        rest = value
    point: dict[str, Any] = {"system": system, "value": rest.strip()}
    uses = element.get("use", "").split()
    if "PG" in uses:
        point["system"] = "pager"
    use = next((_TELECOM_USE[u] for u in uses if u in _TELECOM_USE), None)
    if use:
        point["use"] = use
    return point if point["value"] else None


def gender(code: str) -> str | None:
    return {"M": "male", "F": "female", "UN": "other"}.get(code)


def add_entry(ctx: CdaContext, resource: dict[str, Any], element: etree._Element) -> str:
    """Add a resource mapped from an entry, identified (and deduplicated) by the entry's id."""
    ident = next((i for i in (identifier(ctx, e) for e in element.findall("h:id", NS)) if i), None)
    if ident:
        resource["identifier"] = [ident]
    return ctx.builder.add(resource, identifier=ident, location=ctx.where(element))


def status_code(element: etree._Element) -> str:
    found = element.find("h:statusCode", NS)
    return found.get("code", "") if found is not None else ""


def negated(element: etree._Element) -> bool:
    return element.get("negationInd") == "true"


def find_templates(section: etree._Element, *roots: str) -> list[etree._Element]:
    """Entry elements under ``section`` carrying one of the template ``roots``, in order."""
    wanted = set(roots)
    found = []
    for template in section.iterfind(".//h:entry//h:templateId", NS):
        if template.get("root") in wanted:
            parent = template.getparent()
            if parent is not None and parent not in found:
                found.append(parent)
    return found
