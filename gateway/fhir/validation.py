"""Validate incoming resources with the fhir.resources R4B models plus R4 shape and bindings.

R4B models are wire-compatible with R4 for the resource types we accept (STANDARDS.md); what the
models do not check (JSON primitive kinds, required terminology bindings) ``shape`` does.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from gateway.errors import InvalidResource, Issue, NotFound
from gateway.fhir.shape import check_resource
from gateway.fhir.types import RESOURCE_TYPES

_MAX_ISSUES = 20


@cache
def model_class(resource_type: str) -> Any:
    """The R4B model class of an accepted R4 resource type (404 when unknown)."""
    if resource_type not in RESOURCE_TYPES:
        raise NotFound(f"Unknown resource type '{resource_type}'", code="not-supported")
    return get_fhir_model_class(resource_type)


def validate_resource(resource: Any, expected_type: str | None = None) -> dict[str, Any]:
    """Check one resource (parsed JSON); return it unchanged or raise ``InvalidResource``."""
    if not isinstance(resource, dict):
        raise InvalidResource("A resource must be a JSON object")
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise InvalidResource("The resource has no resourceType", expression=["resourceType"])
    if expected_type is not None and resource_type != expected_type:
        raise InvalidResource(
            f"resourceType '{resource_type}' does not match the URL's type '{expected_type}'",
            expression=["resourceType"],
        )
    if resource_type not in RESOURCE_TYPES:
        raise InvalidResource(
            f"Unknown or unsupported resource type '{resource_type}'",
            code="not-supported",
            expression=["resourceType"],
        )
    cls = model_class(resource_type)
    issues: list[Issue] = []
    try:
        cls.model_validate(_small_data(resource))
    except ValidationError as exc:
        issues.extend(_issues_from_pydantic(resource_type, exc))
    except RecursionError:  # the models recurse per level: ~130 levels of nesting exhaust them
        raise InvalidResource(
            f"Invalid {resource_type}: its elements are nested too deeply to be checked"
        ) from None
    except (ValueError, TypeError) as exc:  # a few model validators raise plain errors
        issues.append(
            Issue(f"Invalid {resource_type}: {exc}", "structure", "error", (resource_type,))
        )
    if not issues:
        issues.extend(
            Issue(
                i.message,
                "code-invalid" if "binding" in i.message else i.code,
                "error",
                (i.expression,),
            )
            for i in check_resource(resource)
        )
    if issues:
        first = issues[0].diagnostics
        raise InvalidResource(f"Invalid {resource_type}: {first}", issues=issues[:_MAX_ISSUES])
    return resource


_FHIR_STRING = "[ \r\n\t\\S]+"  # the pattern of FHIR's string type: one character or more
_ESCAPED = str.maketrans({"\r": "\\r", "\n": "\\n", "\t": "\\t"})
_LARGE_DATA = 64 * 1024
_STAND_IN = "AAAA"  # valid base64 (three zero bytes)


def _small_data(node: Any) -> Any:
    """``node`` with large base64 ``data`` values replaced by a stand-in, sharing all else.

    The models would decode every value to check it, a full extra copy of a large document;
    gateway.content decodes strictly when it stores the content, so a bad value is still a 400.
    """
    if isinstance(node, dict):
        copy: dict[str, Any] | None = None
        for key, value in node.items():
            if key == "data" and isinstance(value, str) and len(value) > _LARGE_DATA:
                smaller: Any = _STAND_IN
            elif isinstance(value, dict | list):
                smaller = _small_data(value)
            else:
                continue
            if smaller is not value:
                copy = copy if copy is not None else dict(node)
                copy[key] = smaller
        return copy if copy is not None else node
    if isinstance(node, list):
        items = [_small_data(item) for item in node]
        return items if any(a is not b for a, b in zip(items, node, strict=True)) else node
    return node


def parse_json(body: bytes | bytearray) -> Any:
    """Parse a JSON body or raise a 400 naming the position of the error."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidResource(f"The body is not valid JSON: {exc}", code="structure") from None


def _issues_from_pydantic(resource_type: str, exc: ValidationError) -> list[Issue]:
    issues = []
    for error in exc.errors(include_url=False, include_input=False):
        path = resource_type
        for part in error.get("loc", ()):
            if isinstance(part, int):
                path += f"[{part}]"
            elif part and not str(part).startswith("function-"):
                path += f".{part}"
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        kind = error.get("type", "")
        if kind == "extra_forbidden":
            message = "Unknown element"
        elif kind == "missing":
            message = "Required element is missing"
        elif kind == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") == (
            _FHIR_STRING
        ):
            message = "is empty (a FHIR string has at least one character)"
        # Patterns hold control characters ('[ \r\n\t\S]+'): never raw in a message.
        message = message.translate(_ESCAPED)
        issues.append(Issue(f"{path}: {message}", "structure", "error", (path,)))
    return issues
