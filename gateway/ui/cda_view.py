"""A CDA R2 / C-CDA document turned into something a template can show a clinician safely.

The document is untrusted: whatever it contains, no script, markup or URL from it may reach the
browser as live HTML. So the narrative block (``section/text``) is not passed through but rebuilt:
each element of the CDA narrative schema maps to an allow-listed HTML element built here, with no
attribute from the document except a small ``colspan``/``rowspan``; every other element keeps
only its text; all text goes through ``markupsafe.escape``. Header fields are plain ``str`` and
rely on the template's autoescaping.

Parsing goes through ``adapters._safe_xml`` (no DTD, no entities, no network, bounded size and
depth); comments and processing instructions are removed there, CDATA arrives as plain text.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from dataclasses import dataclass

from lxml import etree
from markupsafe import Markup, escape

from adapters import AdapterError
from adapters._safe_xml import parse_xml

__all__ = ["CdaSection", "CdaView", "CdaViewError", "render_cda"]

_V3 = "urn:hl7-org:v3"
_NS = {"h": _V3}

# Narrative element → HTML element. Anything not listed here (and not handled specially in
# ``_element``) keeps its text and loses its markup.
_HTML_FOR = {
    "paragraph": "p",
    "content": "span",
    "item": "li",
    "table": "table",
    "thead": "thead",
    "tbody": "tbody",
    "tfoot": "tfoot",
    "tr": "tr",
    "th": "th",
    "td": "td",
    "sub": "sub",
    "sup": "sup",
    "footnote": "small",
    "footnoteRef": "small",
}
# Elements whose content may be wrapped for styleCode; wrapping table rows or lists would break
# the table or list structure.
_STYLABLE = {"paragraph", "content", "item", "td", "th", "caption", "footnote"}
_STYLE_TAGS = (("Bold", "strong"), ("Italics", "em"), ("Underline", "u"))
_SPAN = re.compile(r"[1-9][0-9]?")  # colspan/rowspan 1..99: enough for a clinical table
_TS = re.compile(
    r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?(?:([+-])(\d{2})(\d{2}))?"
)
# Embedded content a browser shows without running anything from it. Other types (text/html,
# image/svg+xml, XML, ...) are labelled octet-stream so no route can serve them as live content.
_INERT_MEDIA = {
    "application/pdf",
    "application/msword",
    "application/rtf",
    "text/plain",
    "text/rtf",
    "image/gif",
    "image/jpeg",
    "image/png",
    "image/tiff",
}
_IMAGE_MARKER = Markup("<small>[afbeelding niet getoond]</small>")
_NOTHING = Markup("")


class CdaViewError(Exception):
    """The input cannot be shown: not XML, refused as unsafe, or not a CDA document."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


@dataclass(frozen=True)
class CdaSection:
    title: str
    body: Markup  # safe HTML built here from the narrative block
    sections: tuple[CdaSection, ...] = ()


@dataclass(frozen=True)
class CdaView:
    title: str
    effective: str | None
    patient: str | None
    author: str | None
    custodian: str | None
    sections: tuple[CdaSection, ...]
    embedded: tuple[str, bytes] | None  # nonXMLBody base64 content: (media type, bytes)
    embedded_text: str | None  # nonXMLBody plain-text content


def render_cda(data: bytes) -> CdaView:
    """Parse an (untrusted) CDA document and return what the UI shows of it."""
    try:
        root = parse_xml(data, "CDA document")
    except AdapterError as error:
        raise CdaViewError(str(error)) from error
    if root.tag != f"{{{_V3}}}ClinicalDocument":
        name = etree.QName(root)
        raise CdaViewError(
            f"not a CDA document: root element is <{name.localname}> in namespace "
            f"{name.namespace or '(none)'}, expected ClinicalDocument in {_V3}"
        )
    code = root.find("h:code", _NS)
    title = _text(root.find("h:title", _NS))
    if not title and code is not None:
        title = " ".join(code.get("displayName", "").split())
    sections = tuple(
        _section(section)
        for section in root.iterfind("h:component/h:structuredBody/h:component/h:section", _NS)
    )
    embedded, embedded_text = _non_xml_body(root.find("h:component/h:nonXMLBody/h:text", _NS))
    return CdaView(
        title=title,
        effective=_effective(root.find("h:effectiveTime", _NS)),
        patient=_person_name(root.find("h:recordTarget/h:patientRole/h:patient/h:name", _NS)),
        author=_author(root.find("h:author/h:assignedAuthor", _NS)),
        custodian=_text(
            root.find(
                "h:custodian/h:assignedCustodian/h:representedCustodianOrganization/h:name", _NS
            )
        )
        or None,
        sections=sections,
        embedded=embedded,
        embedded_text=embedded_text,
    )


def _text(element: etree._Element | None) -> str:
    """All text inside ``element``, whitespace collapsed; "" when absent."""
    if element is None:
        return ""
    return " ".join("".join(element.itertext()).split())


def _person_name(name: etree._Element | None) -> str | None:
    """Given names and family name; a name without parts is taken as written."""
    if name is None:
        return None
    # A "CL" (call me) given name is a nickname, not part of the name a clinician checks.
    given = [
        _text(part)
        for part in name.iterfind("h:given", _NS)
        if "CL" not in part.get("qualifier", "").split()
    ]
    parts = [*given, *(_text(part) for part in name.iterfind("h:family", _NS))]
    return " ".join(part for part in parts if part) or _text(name) or None


def _author(author: etree._Element | None) -> str | None:
    """The first author's person and/or organisation: "Henry Seven, Good Health Clinic"."""
    if author is None:
        return None
    person = _person_name(author.find("h:assignedPerson/h:name", _NS))
    organisation = _text(author.find("h:representedOrganization/h:name", _NS))
    return ", ".join(part for part in (person, organisation) if part) or None


def _effective(time: etree._Element | None) -> str | None:
    """An HL7 TS as "2024-05-01 10:30" (with its UTC offset if given); else the raw value."""
    raw = " ".join((time.get("value", "") if time is not None else "").split())
    match = _TS.fullmatch(raw)
    if not match:
        return raw or None
    year, month, day, hour, minute, second, sign, off_h, off_m = match.groups()
    try:  # reject 20241399 and the like: show those raw rather than invent a date
        dt.datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
        )
    except ValueError:
        return raw
    shown = "-".join(part for part in (year, month, day) if part)
    if hour:
        shown += f" {hour}:{minute or '00'}" + (f":{second}" if second else "")
    if sign and hour:
        shown += f" {sign}{off_h}:{off_m}"
    return shown


def _section(section: etree._Element) -> CdaSection:
    code = section.find("h:code", _NS)
    title = _text(section.find("h:title", _NS))
    if not title and code is not None:
        title = " ".join(code.get("displayName", "").split())
    text = section.find("h:text", _NS)
    return CdaSection(
        title=title,
        body=_children(text) if text is not None else _NOTHING,
        sections=tuple(_section(sub) for sub in section.iterfind("h:component/h:section", _NS)),
    )


def _children(element: etree._Element) -> Markup:
    """The escaped text of ``element`` and its converted children, each followed by its tail."""
    out = [escape(element.text or "")]
    for child in element:
        if isinstance(child.tag, str):  # entity references and the like carry no markup of ours
            out.append(_element(child))
        out.append(escape(child.tail or ""))
    return Markup("").join(out)


def _element(element: etree._Element) -> Markup:
    """One narrative element as allow-listed HTML (or as its text alone)."""
    qname = etree.QName(element)
    name = qname.localname if qname.namespace == _V3 else ""  # foreign namespace: text only
    if name == "br":
        return Markup("<br>")
    if name in {"colgroup", "col"}:
        return _NOTHING
    if name == "renderMultiMedia":  # refers to an image by ID; we never load one
        return _IMAGE_MARKER
    if name == "list":
        tag = "ol" if element.get("listType") == "ordered" else "ul"
        # HTML lists have no caption: it becomes a bold line before the list.
        captions = [
            Markup("<p><strong>%s</strong></p>") % _children(caption)
            for caption in element.iterfind("h:caption", _NS)
        ]
        return Markup("").join(captions) + _wrap(tag, _children(element))
    if name == "caption":
        parent = element.getparent()
        parent_tag = parent.tag if parent is not None else ""
        if parent_tag == f"{{{_V3}}}list":
            return _NOTHING  # already shown before the list
        tag = "caption" if parent_tag == f"{{{_V3}}}table" else "strong"
    elif name in _HTML_FOR:
        tag = _HTML_FOR[name]
    else:  # linkHtml (never an href), unknown and foreign elements: their text, inert
        return escape("".join(element.itertext()))
    inner = _children(element)
    if name in _STYLABLE:
        styles = element.get("styleCode", "").split()
        for style, wrapper in _STYLE_TAGS:
            if style in styles:
                inner = _wrap(wrapper, inner)
    attributes = _NOTHING
    if name in {"td", "th"}:
        for attribute in ("colspan", "rowspan"):
            value = element.get(attribute, "")
            if _SPAN.fullmatch(value):
                attributes += Markup(' {0}="{1}"').format(attribute, int(value))
    return _wrap(tag, inner, attributes)


def _wrap(tag: str, inner: Markup, attributes: Markup = _NOTHING) -> Markup:
    """``inner`` inside an HTML element; ``tag`` is always one of the names in this module."""
    return Markup("<{0}{1}>{2}</{0}>").format(tag, attributes, inner)


def _non_xml_body(text: etree._Element | None) -> tuple[tuple[str, bytes] | None, str | None]:
    """(embedded, embedded_text) of a nonXMLBody; a reference to an outside file gives neither."""
    if text is None or text.find("h:reference", _NS) is not None:
        return None, None
    if text.get("compression"):
        raise CdaViewError(f"compressed nonXMLBody ({text.get('compression')}) is not supported")
    payload = "".join(text.itertext())
    if text.get("representation", "TXT").upper() != "B64":
        return None, payload.strip() or None
    try:
        content = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise CdaViewError("nonXMLBody content is not valid base64") from error
    media = text.get("mediaType", "text/plain").split(";")[0].strip().lower()
    return (media if media in _INERT_MEDIA else "application/octet-stream", content), None
