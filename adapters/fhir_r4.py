"""FHIR R4 exports (JSON or XML; one resource or a Bundle of any type) → transaction Bundle.

- JSON is read with orjson; XML with ``fhir.resources.R4B`` ``model_validate_xml`` on the safe
  lxml parser of ``adapters._safe_xml`` (no DTD, no entities, no network), which is how the Dutch
  nl-core (zib2020) examples, published as XML only, come in.
- A Bundle's resources become the entries of a new transaction; entries without a resource
  (deletes, outcomes of a response bundle) and envelope resources (MessageHeader,
  OperationOutcome, the Parameters of a PATCH, Bundles nested in a response) are left out with an
  information issue.
- References between the input's resources (by fullUrl, ``Type/id`` or an absolute URL ending in
  ``Type/id``), and attachment URLs pointing at a Binary of the input, are rewritten to the new
  ``urn:uuid:`` fullUrls; references to anything else are kept and reported.
- Identifier systems are normalised (``urn:oid:`` forms of BSN, URA, AGB, UZI, BIG → their
  ``http://fhir.nl/fhir/NamingSystem/…`` URIs); a BSN failing the elfproef is an error and is
  removed. Server-assigned ``id``, ``meta.versionId`` and ``meta.lastUpdated`` are dropped.
- Each resource is a conditional create on its first identifier (a Patient on its BSN).

A resource type that FHIR R4B cannot represent (the R4-only MedicinalProduct* family, for
instance) is ``UnsupportedInput`` for a single resource and an error issue inside a Bundle.
"""

from __future__ import annotations

from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from lxml import etree

from ._bundle import TransactionBuilder
from ._errors import InternalAdapterError, MalformedInput, UnsafeInput, UnsupportedInput
from ._identifiers import BSN_SYSTEM, normalize_bsn, normalize_system
from ._model import Conversion, IssueLog, SourceInfo
from ._safe_xml import parse_xml, safe_parser
from ._validation import validate_resource

__all__ = ["convert_fhir"]

MAX_FHIR_BYTES = 64 * 1024 * 1024
FHIR_NS = "http://hl7.org/fhir"
# Entries that are envelope, not content: message headers, outcomes and PATCH bodies of a
# transaction, and Bundles nested in a response (convert those on their own).
_NOT_STORED = frozenset({"MessageHeader", "OperationOutcome", "Parameters", "Bundle"})


def _resource_type_known(resource_type: str) -> bool:
    try:
        get_fhir_model_class(resource_type)
    except (KeyError, ValueError):
        return False
    return True


def _load_xml(data: bytes) -> dict[str, Any]:
    root = parse_xml(data, "FHIR XML")
    name = etree.QName(root)
    if name.namespace != FHIR_NS:
        raise MalformedInput(
            f"root element <{name.localname}> is not in the FHIR namespace", location="/"
        )
    if not _resource_type_known(name.localname):
        raise UnsupportedInput(
            f"resource type {name.localname} cannot be represented in FHIR R4B", location="/"
        )
    model = get_fhir_model_class(name.localname)
    try:
        parsed = model.model_validate_xml(data, xmlparser=safe_parser())
    except Exception as exc:
        # The boundary of a third-party parser: fhir.resources reports unknown elements as
        # KeyError and invalid values as ValidationError; either way the XML is not valid R4.
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MalformedInput(
            f"not a valid FHIR R4 {name.localname}: {type(exc).__name__}: {detail}", location="/"
        ) from exc
    loaded: dict[str, Any] = orjson.loads(parsed.model_dump_json())
    return loaded


def _load(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_FHIR_BYTES:
        raise UnsafeInput(f"input of {len(data)} bytes exceeds the {MAX_FHIR_BYTES} byte bound")
    start = data.removeprefix(b"\xef\xbb\xbf").lstrip()
    if start.startswith(b"<"):
        return _load_xml(data)
    if not start.startswith(b"{"):
        raise MalformedInput("neither FHIR JSON (an object) nor FHIR XML", location="byte 0")
    try:
        parsed = orjson.loads(start)
    except orjson.JSONDecodeError as exc:
        raise MalformedInput(f"not valid JSON: {exc}") from exc
    if not isinstance(parsed.get("resourceType"), str):
        raise MalformedInput("JSON object without a resourceType", location="resourceType")
    return parsed


def _normalize_identifiers(resource: dict[str, Any], where: str, issues: IssueLog) -> None:
    """Normalise identifier systems everywhere in ``resource``; drop BSNs failing the elfproef."""
    stack: list[Any] = [resource]
    while stack:  # iterative: deeply nested input must not exhaust the interpreter's stack
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        for key in ("identifier", "masterIdentifier"):
            value = node.get(key)
            items = value if isinstance(value, list) else [value]
            kept = []
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("system"), str):
                    item["system"] = normalize_system(item["system"])
                    if item["system"] == BSN_SYSTEM and isinstance(item.get("value"), str):
                        bsn = normalize_bsn(item["value"])
                        if bsn is None:
                            issues.error(
                                where, f"BSN {item['value']!r} fails the elfproef; removed"
                            )
                            continue
                        item["value"] = bsn
                kept.append(item)
            if isinstance(value, list):
                if kept:
                    node[key] = kept
                else:
                    del node[key]
            elif value is not None and not kept:
                del node[key]
        stack.extend(node.values())


def _rewrite_references(
    resource: dict[str, Any], urls: dict[str, str], where: str, issues: IssueLog
) -> None:
    stack: list[Any] = [resource]
    outside: set[str] = set()
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        target = node.get("reference")
        if isinstance(target, str) and not target.startswith("#"):
            if target in urls:
                node["reference"] = urls[target]
            else:
                outside.add(target)
        if "contentType" in node and isinstance(node.get("url"), str) and node["url"] in urls:
            node["url"] = urls[node["url"]]  # an Attachment pointing at a Binary of the input
        stack.extend(node.values())
    for target in sorted(outside):
        issues.warning(where, f"reference {target!r} points outside the input; kept as is")


def _strip_server_fields(resource: dict[str, Any]) -> None:
    resource.pop("id", None)
    meta = resource.get("meta")
    if isinstance(meta, dict):
        meta.pop("versionId", None)
        meta.pop("lastUpdated", None)
        if not meta:
            del resource["meta"]


def _invalid(resource: dict[str, Any], where: str) -> str | None:
    """Why an input resource is not valid FHIR R4, or None. The input is checked as any parser
    checks its input; the output is validated again after references are rewritten."""
    try:
        validate_resource(resource, where)
    except InternalAdapterError as exc:
        return exc.message.replace("is not valid FHIR R4B", "is not valid FHIR R4")
    return None


def _first_identifier(resource: dict[str, Any]) -> dict[str, Any] | None:
    candidates = resource.get("identifier")
    items = candidates if isinstance(candidates, list) else [candidates]
    if isinstance(resource.get("masterIdentifier"), dict):
        items = [resource["masterIdentifier"], *items]
    return next(
        (
            i
            for i in items
            if isinstance(i, dict) and i.get("system") and isinstance(i.get("value"), str)
        ),
        None,
    )


def _keys(resource: dict[str, Any], full_url: str | None) -> list[str]:
    """The strings by which other resources of the input may refer to ``resource``."""
    keys = [full_url] if full_url else []
    ident = resource.get("id")
    if isinstance(ident, str):
        local = f"{resource['resourceType']}/{ident}"
        keys.append(local)
        if full_url and full_url.endswith(f"/{local}"):
            keys.append(full_url)
    return keys


def convert_fhir(data: bytes, source: SourceInfo) -> Conversion:
    """Map a FHIR R4 resource or Bundle (JSON or XML) to a transaction Bundle."""
    loaded = _load(data)
    issues = IssueLog()
    entries: list[tuple[str, str | None, dict[str, Any]]] = []
    if loaded["resourceType"] == "Bundle":
        for index, entry in enumerate(loaded.get("entry") or []):
            where = f"Bundle.entry[{index}]"
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                issues.information(where, "entry without a resource; left out")
                continue
            full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
            entries.append((where, full_url, resource))
    else:
        if not _resource_type_known(loaded["resourceType"]):
            raise UnsupportedInput(
                f"resource type {loaded['resourceType']} cannot be represented in FHIR R4B",
                location="resourceType",
            )
        entries.append((loaded["resourceType"], None, loaded))
    builder = TransactionBuilder(issues)
    urls: dict[str, str] = {}
    origin: dict[int, str] = {}  # id() of each added resource → where it was in the input
    for where, full_url, resource in entries:
        resource_type = resource["resourceType"]
        if resource_type in _NOT_STORED:
            issues.information(where, f"{resource_type} is not stored as patient data; left out")
            continue
        if not _resource_type_known(resource_type):
            issues.error(
                where, f"resource type {resource_type} cannot be represented in FHIR R4B; left out"
            )
            continue
        problem = _invalid(resource, where)
        if problem and resource is loaded:
            raise MalformedInput(problem, location=where)
        if problem:
            issues.error(where, f"{problem}; left out")
            continue
        keys = _keys(resource, full_url)
        _normalize_identifiers(resource, where, issues)
        _strip_server_fields(resource)
        if resource_type == "Patient":
            new_url = builder.add_patient(resource, location=where)
        else:
            new_url = builder.add(resource, identifier=_first_identifier(resource), location=where)
        for key in keys:
            urls[key] = new_url
        origin[id(resource)] = where
    bundle = builder.build()
    for index, entry in enumerate(bundle["entry"]):
        where = origin.get(id(entry["resource"]), f"output entry {index}")
        _rewrite_references(entry["resource"], urls, where, issues)
    return Conversion("fhir", bundle, issues.items)
