"""FHIR JSON and XML on the wire: content negotiation, safe parsing, serialisation.

JSON is the store's format; XML is converted at the edge with the fhir.resources models. XML is
parsed without DTDs, entity expansion or network access (XXE and "billion laughs" are refused).
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import orjson
from lxml import etree
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from gateway.errors import (
    BadRequest,
    InvalidResource,
    Issue,
    NotAcceptable,
    UnsupportedMediaType,
)
from gateway.fhir.shape import FHIR_XML_NAMESPACE, check_xml
from gateway.fhir.validation import model_class, parse_json

JSON = "application/fhir+json"
XML = "application/fhir+xml"
_JSON_TYPES = {
    "application/fhir+json",
    "application/json",
    "application/json+fhir",
    "json",
    "text/json",
}
_XML_TYPES = {"application/fhir+xml", "application/xml", "application/xml+fhir", "text/xml", "xml"}
_FHIR_NS = "{http://hl7.org/fhir}"


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def is_fhir_media_type(value: str | None) -> bool:
    """Whether a Content-Type or Accept media type names a FHIR format (JSON or XML)."""
    return bool(value) and _media_type(value or "") in _JSON_TYPES | _XML_TYPES


def _other_fhir_version(value: str) -> str | None:
    """The FHIR version a media type's ``fhirVersion`` parameter names when it is not R4's
    (4.0, 4.0.0 or 4.0.1; FHIR http.html#version-parameter), else None."""
    for param in value.split(";")[1:]:
        name, _, version = param.partition("=")
        if name.strip().lower() == "fhirversion":
            version = version.strip().strip('"')
            if version != "4.0" and not version.startswith("4.0."):
                return version or "(empty)"
    return None


def request_format(content_type: str | None) -> str:
    """The format of a request body from its Content-Type (JSON when absent)."""
    if not content_type:
        return JSON
    media = _media_type(content_type)
    if (version := _other_fhir_version(content_type)) is not None:
        raise UnsupportedMediaType(
            f"The body is FHIR version {version[:20]}; this server takes FHIR R4 (fhirVersion=4.0)"
        )
    if media in _JSON_TYPES:
        return JSON
    if media in _XML_TYPES:
        return XML
    raise UnsupportedMediaType(f"Content-Type '{media}' is not supported; use {JSON} or {XML}")


def response_format(accept: str | None, format_param: str | None) -> str:
    """The format to answer in, from ``_format`` (wins) or the Accept header."""
    if format_param:
        media = _media_type(format_param)
        if media in _JSON_TYPES:
            return JSON
        if media in _XML_TYPES:
            return XML
        raise NotAcceptable(f"_format '{format_param}' is not supported; use json or xml")
    if not accept:
        return JSON
    ranges = []
    for position, item in enumerate(accept.split(",")):
        media, *params = [p.strip() for p in item.split(";")]
        quality = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        if _other_fhir_version(item) is not None:
            continue  # another FHIR version of the format: not what this server serves
        ranges.append((-quality, position, media.lower()))
    for quality, _position, media in sorted(ranges):
        if quality == 0:
            continue
        if media in _JSON_TYPES or media in ("*/*", "application/*"):
            return JSON
        if media in _XML_TYPES or media == "text/*":
            return XML
    raise NotAcceptable(
        f"None of '{accept[:200]}' can be served; use {JSON} or {XML} (FHIR R4, fhirVersion=4.0)"
    )


def parse_body(body: bytes | bytearray, fmt: str) -> Any:
    """A request body as FHIR JSON (a dict), whatever format it came in."""
    if not body or body.isspace():  # (not strip(): that would copy a large body)
        raise BadRequest("The request has no body", code="required")
    if fmt == JSON:
        return parse_json(body)
    return xml_to_json(bytes(body))


_XML_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
)


def xml_to_json(body: bytes) -> dict[str, Any]:
    """Parse FHIR XML into FHIR JSON; DOCTYPEs are refused outright."""
    try:
        root = etree.fromstring(body, _XML_PARSER)
    except etree.XMLSyntaxError as exc:
        raise InvalidResource(f"The body is not well-formed XML: {exc}", code="structure") from None
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise InvalidResource("XML with a DOCTYPE is not accepted", code="security")
    if not isinstance(root.tag, str) or not root.tag.startswith(_FHIR_NS):
        raise InvalidResource("The XML root is not in the FHIR namespace http://hl7.org/fhir")
    resource_type = root.tag[len(_FHIR_NS) :]
    _refuse_text_values(root)
    issues = check_xml(root)
    if issues:
        raise InvalidResource(
            f"Invalid {resource_type} XML: {issues[0].expression}: {issues[0].message}",
            issues=[Issue(i.message, i.code, "error", (i.expression,)) for i in issues[:20]],
        )
    cls = model_class(resource_type)
    if any(e.prefix for e in root.iter() if isinstance(e.tag, str) and e.tag.startswith(_FHIR_NS)):
        body = etree.tostring(_unprefixed(root))  # the models read the default namespace only
    try:
        model = cls.model_validate_xml(body, xmlparser=_XML_PARSER)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidResource(
            f"Invalid {resource_type} XML at {where}: {first.get('msg')}",
            expression=[f"{resource_type}.{where}"],
        ) from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InvalidResource(f"Invalid {resource_type} XML: {exc}") from None
    except RecursionError:  # the models recurse per level, below the parser's depth limit
        raise InvalidResource(f"Invalid {resource_type} XML: nested too deeply") from None
    try:
        resource: dict[str, Any] = orjson.loads(model.model_dump_json(exclude_none=True))
    except orjson.JSONDecodeError as exc:  # a number out of JSON's range, such as 1e400
        raise InvalidResource(f"Invalid {resource_type} XML: {exc}") from None
    except PydanticSerializationError:  # the models recursed too deep writing it out
        raise InvalidResource(f"Invalid {resource_type} XML: nested too deeply") from None
    return resource


def _unprefixed(element: Any, parent: Any = None) -> Any:
    """A copy of a FHIR XML tree with its FHIR elements in the default namespace: a prefix
    (``<f:Patient xmlns:f="http://hl7.org/fhir">``) is as valid XML, and the same resource."""
    if parent is None:
        copy = etree.Element(element.tag, nsmap={None: FHIR_XML_NAMESPACE})
    else:
        copy = etree.SubElement(parent, element.tag)
    copy.attrib.update(element.attrib)
    copy.text = element.text
    for child in element:
        if not isinstance(child.tag, str):
            continue
        if child.tag.startswith(_FHIR_NS):
            _unprefixed(child, copy).tail = child.tail
        else:  # the XHTML narrative, kept as it is
            copy.append(deepcopy(child))
    return copy


def _refuse_text_values(root: Any) -> None:
    """FHIR XML gives every value in a ``value`` attribute; text inside a FHIR element (not in
    the XHTML narrative) would be dropped by the models without a word, so it is refused."""
    for element in root.iter():
        if (
            isinstance(element.tag, str)
            and element.tag.startswith(_FHIR_NS)
            and element.text
            and element.text.strip()
        ):
            path = ".".join(
                e.tag[len(_FHIR_NS) :] for e in (*reversed(list(element.iterancestors())), element)
            )
            raise InvalidResource(
                f"{path}: FHIR XML gives a value in its value attribute, not as text "
                f"('{element.text.strip()[:40]}')",
                expression=[path],
            )


def json_to_xml(content: bytes) -> bytes:
    """Serialise stored FHIR JSON as FHIR XML."""
    resource = orjson.loads(content)
    model = model_class(resource["resourceType"]).model_validate(resource)
    xml = model.model_dump_xml()
    return xml if isinstance(xml, bytes) else xml.encode()
