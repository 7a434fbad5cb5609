"""Shape HTTP responses: FHIR format, headers, OperationOutcome for every error."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from gateway.errors import GatewayError, Issue, NotAcceptable, operation_outcome
from gateway.fhir.dates import http_date
from gateway.fhir.formats import JSON, XML, is_fhir_media_type, json_to_xml, response_format
from gateway.service.resources import ResourceResult

log = logging.getLogger("zorgbrug.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9\-_.:]{1,128}$")


def wanted_format(request: Request) -> str:
    # Most requests have no query: parsing an empty one cost 2% of a read's CPU.
    asked = request.query_params.get("_format") if request.scope["query_string"] else None
    return response_format(request.headers.get("accept"), asked)


def fhir_response(
    request: Request,
    content: bytes | None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """Send stored FHIR JSON bytes, converted to XML when the client asked for it."""
    fmt = wanted_format(request)
    body = b"" if content is None else (content if fmt == JSON else json_to_xml(content))
    return Response(body, status_code=status, headers=headers, media_type=f"{fmt}; charset=utf-8")


def resource_response(
    request: Request,
    result: ResourceResult,
    *,
    base: str,
    location: bool = False,
    return_preference: str = "representation",
) -> Response:
    headers = {
        "ETag": result.etag,
        "Last-Modified": http_date(result.last_updated_us),
    }
    if location:
        headers["Location"] = result.location(base)
    if return_preference == "minimal" or result.content is None:
        return Response(status_code=result.status, headers=headers)
    if return_preference == "OperationOutcome":
        outcome = operation_outcome(
            [
                Issue(
                    f"{result.res_type}/{result.res_id} stored as version {result.version}",
                    "informational",
                    "information",
                )
            ]
        )
        return fhir_response(request, orjson.dumps(outcome), result.status, headers)
    return fhir_response(request, result.content, result.status, headers)


def error_response(request: Request, error: GatewayError) -> Response:
    """An OperationOutcome; XML if the client wants XML and that is possible, else JSON."""
    try:
        fmt = wanted_format(request)
    except NotAcceptable:
        fmt = JSON
    outcome = orjson.dumps(error.outcome())
    body = outcome if fmt == JSON else json_to_xml(outcome)
    return Response(
        body,
        status_code=error.status,
        headers=error.headers,
        media_type=f"{fmt if fmt in (JSON, XML) else JSON}; charset=utf-8",
    )


def request_id_of(headers: Any) -> str:
    """The caller's X-Request-Id when well-formed, else a fresh one."""
    given = headers.get("x-request-id")
    return given if given and _REQUEST_ID.match(given) else str(uuid.uuid4())


def wants_resource(request: Request) -> bool:
    """Whether a Binary read asks for the FHIR resource rather than the raw document (ITI-68):
    ``_format`` or a FHIR media type in Accept."""
    if request.query_params.get("_format"):
        return True
    accept = request.headers.get("accept") or ""
    return any(is_fhir_media_type(part) for part in accept.split(","))


def accepts(accept: str | None, content_type: str) -> bool:
    """Whether an Accept header admits ``content_type`` (exactly, by ``type/*`` or ``*/*``)."""
    if not accept:
        return True
    wanted = content_type.split(";", 1)[0].strip().lower()
    kind = wanted.split("/", 1)[0]
    for item in accept.split(","):
        media, *params = [p.strip() for p in item.split(";")]
        if any(p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params):
            continue
        if media.lower() in (wanted, f"{kind}/*", "*/*"):
            return True
    return False
