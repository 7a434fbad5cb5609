"""Search parameters, generated from the official R4 SearchParameter definitions.

``definitions/search_parameters.json`` is written by ``tools/gen_definitions.py``. Each FHIRPath
expression is compiled once: the simple path forms the R4 definitions use (``A.b.c``, unions,
``as T``, ``.where(resolve() is T)``) become direct dict walks, which are two orders of magnitude
faster than evaluating FHIRPath; anything else is evaluated with fhirpathpy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import orjson

Extractor = Callable[[dict[str, Any]], list[Any]]

# Parameters whose values live in columns of ``resources`` rather than in the index tables.
COLUMN_PARAMS = {"_id", "_lastUpdated"}
INDEXED_TYPES = {"string", "token", "date", "reference", "uri"}


@dataclass(frozen=True)
class SearchParam:
    """One search parameter of one resource type."""

    resource: str
    code: str
    type: str
    expression: str
    targets: tuple[str, ...]
    url: str
    extract: Extractor = field(compare=False, repr=False)


class SearchParamRegistry:
    """All search parameters the server indexes, by resource type and code."""

    def __init__(self, definitions: list[dict[str, Any]]) -> None:
        self._common: dict[str, dict[str, Any]] = {}
        self._specific: dict[str, dict[str, dict[str, Any]]] = {}
        for d in definitions:
            if d["type"] not in INDEXED_TYPES:
                continue
            if d["resource"] in ("Resource", "DomainResource"):
                self._common[d["code"]] = d
            else:
                self._specific.setdefault(d["resource"], {})[d["code"]] = d
        self._by_type: dict[str, dict[str, SearchParam]] = {}

    def for_type(self, resource_type: str) -> dict[str, SearchParam]:
        """Every parameter that applies to ``resource_type`` (its own and the Resource ones)."""
        params = self._by_type.get(resource_type)
        if params is None:
            params = {}
            for code, d in (self._common | self._specific.get(resource_type, {})).items():
                expression = d["expression"]
                if d["resource"] in ("Resource", "DomainResource"):
                    expression = expression.replace(f"{d['resource']}.", f"{resource_type}.")
                params[code] = SearchParam(
                    resource=resource_type,
                    code=code,
                    type=d["type"],
                    expression=expression,
                    targets=tuple(d.get("target") or ()),
                    url=d.get("url", ""),
                    extract=compile_expression(expression, resource_type),
                )
            self._by_type[resource_type] = params
        return params

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        return self.for_type(resource_type).get(code)

    def indexed(self, resource_type: str) -> Iterator[SearchParam]:
        """Parameters whose values go into the index tables at write time."""
        return (p for p in self.for_type(resource_type).values() if p.code not in COLUMN_PARAMS)


_MHD = "https://profiles.ihe.net/ITI/MHD"

# The IHE MHD SearchParameters a Document Responder supports (ITI-66 Find Lists, ITI-67 Find
# Document References), as the MHD implementation guide defines them: they are not in R4.
MHD_SEARCH_PARAMETERS: tuple[dict[str, Any], ...] = (
    {
        "resource": "DocumentReference",
        "code": "creation",
        "type": "date",
        "expression": "DocumentReference.content.attachment.creation",
        "url": f"{_MHD}/SearchParameter/DocumentReference-Creation",
    },
    {
        "resource": "List",
        "code": "designationType",
        "type": "token",
        "expression": f"(extension('{_MHD}/StructureDefinition/ihe-designationType')"
        ".value.ofType(CodeableConcept))",
        "url": f"{_MHD}/SearchParameter/List-DesignationType",
    },
    {
        "resource": "List",
        "code": "sourceId",
        "type": "token",
        "expression": f"(extension('{_MHD}/StructureDefinition/ihe-sourceId')"
        ".value.ofType(Identifier))",
        "url": f"{_MHD}/SearchParameter/List-SourceId",
    },
)


# The gateway's own: a document's content by the resource that governs access to it (FHIR R4
# ``Binary.securityContext``; the gateway keeps such a Binary's consent facts in step with it).
SECURITY_CONTEXT = "security-context"
GATEWAY_SEARCH_PARAMETERS: tuple[dict[str, Any], ...] = (
    {
        "resource": "Binary",
        "code": SECURITY_CONTEXT,
        "type": "reference",
        "expression": "Binary.securityContext",
        "url": "http://zorgbrug.nl/fhir/SearchParameter/Binary-security-context",
    },
)


@cache
def registry() -> SearchParamRegistry:
    """The process-wide registry: the generated R4 definitions, MHD's and the gateway's."""
    path = resources.files("gateway.fhir") / "definitions" / "search_parameters.json"
    return SearchParamRegistry(
        [*orjson.loads(path.read_bytes()), *MHD_SEARCH_PARAMETERS, *GATEWAY_SEARCH_PARAMETERS]
    )


# --- expression compiler -------------------------------------------------------------------

_SIMPLE_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9]*(\.[a-z][A-Za-z0-9]*)*$")
_AS = re.compile(r"^(?P<path>.+?)(?: as |\.as\(|\.ofType\()(?P<type>[A-Za-z]+)\)?$")
_RESOLVE = re.compile(r"^(?P<path>.+)\.where\(resolve\(\) is (?P<type>[A-Za-z]+)\)$")
_EXTENSION = re.compile(r"^extension\('(?P<url>[^']+)'\)\.value\.ofType\((?P<type>[A-Za-z]+)\)$")


def compile_expression(expression: str, resource_type: str) -> Extractor:
    """Compile a search parameter's FHIRPath expression into a function of a resource dict."""
    extractors = [_compile_part(part, resource_type) for part in _split_union(expression)]
    if len(extractors) == 1:
        return extractors[0]

    def union(resource: dict[str, Any]) -> list[Any]:
        values: list[Any] = []
        for extract in extractors:
            values.extend(extract(resource))
        return values

    return union


def _split_union(expression: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in expression:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "|" and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def _strip_parens(text: str) -> str:
    while text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]):
        text = text[1:-1].strip()
    return text


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def _compile_part(part: str, resource_type: str) -> Extractor:
    text = _strip_parens(part)
    if match := _EXTENSION.match(text):
        return _extension_values(match["url"], "value" + match["type"])
    resolve_type = as_type = None
    if match := _RESOLVE.match(text):
        text, resolve_type = _strip_parens(match["path"]), match["type"]
    if match := _AS.match(text):
        text, as_type = _strip_parens(match["path"]), match["type"]
    if not _SIMPLE_PATH.match(text):
        return _fhirpath_extractor(part)
    segments = text.split(".")
    if segments[0] != resource_type:
        return lambda _resource: []
    path = segments[1:]

    def extract(resource: dict[str, Any]) -> list[Any]:
        values: list[Any] = [resource]
        for position, segment in enumerate(path):
            last = position == len(path) - 1
            found: list[Any] = []
            for value in values:
                if isinstance(value, dict):
                    _collect(value, segment, as_type if last else None, found)
            values = found
            if not values:
                return values
        if resolve_type is not None:
            values = [v for v in values if _reference_type(v) == resolve_type]
        return values

    return extract


def _extension_values(url: str, key: str) -> Extractor:
    """``extension('url').value.ofType(T)`` of the resource (MHD's List parameters), walked
    directly as the simple paths are: every document push indexes its SubmissionSet."""

    def extract(resource: dict[str, Any]) -> list[Any]:
        return [
            e[key]
            for e in resource.get("extension") or ()
            if isinstance(e, dict) and e.get("url") == url and e.get(key) is not None
        ]

    return extract


def _collect(node: dict[str, Any], name: str, as_type: str | None, out: list[Any]) -> None:
    if as_type is not None:
        keys = [name + as_type[0].upper() + as_type[1:]]
    elif name in node:
        keys = [name]
    else:  # a choice element such as effective[x]
        keys = [k for k in node if k.startswith(name) and k[len(name) : len(name) + 1].isupper()]
    for key in keys:
        value = node.get(key)
        if isinstance(value, list):
            out.extend(v for v in value if v is not None)
        elif value is not None:
            out.append(value)


def _reference_type(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    reference = value.get("reference")
    if isinstance(reference, str):
        parsed = parse_reference(reference)
        if parsed is not None:
            return parsed[0]
    declared = value.get("type")
    return declared if isinstance(declared, str) else None


def _fhirpath_extractor(expression: str) -> Extractor:
    from fhirpathpy import compile as fhirpath_compile  # only for the rare complex expressions

    compiled = fhirpath_compile(expression, None)

    def extract(resource: dict[str, Any]) -> list[Any]:
        result = compiled(resource, {})
        return list(result) if isinstance(result, list) else [result]

    return extract


_REFERENCE = re.compile(
    r"^(?:(?P<base>https?://\S+?)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(?:/_history/[A-Za-z0-9\-.]{1,64})?$"
)


def parse_reference(reference: str) -> tuple[str, str, str | None] | None:
    """Split ``[base/]Type/id[/_history/v]`` into (type, id, base); None for other forms."""
    match = _REFERENCE.match(reference)
    if match is None:
        return None
    return match["type"], match["id"], match["base"]
