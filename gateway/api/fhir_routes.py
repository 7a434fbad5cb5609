"""FHIR REST routes under /fhir: parse the request, call the service, shape the response."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from gateway.api.auth_routes import bearer_actor, smart_configuration
from gateway.api.byte_ranges import content_etag, matches_none, requested_span
from gateway.api.negotiation import (
    accepts,
    fhir_response,
    resource_response,
    wanted_format,
    wants_resource,
)
from gateway.content import PreparedBlob
from gateway.context import RequestContext
from gateway.errors import BadRequest, NotAcceptable, PayloadTooLarge, UnsupportedMediaType
from gateway.exchange.mhd import is_provide_bundle
from gateway.fhir.dates import instant
from gateway.fhir.dutch_identifiers import BSN, normalized_system
from gateway.fhir.formats import is_fhir_media_type, parse_body, request_format
from gateway.service.audit_log import audit_query

# Starlette routes, mounted at /fhir: FastAPI's matching and parameter handling cost ~65 us
# per request with this many routes (a read's whole in-process cost was ~390 us).
routes: list[BaseRoute] = [
    Route("/.well-known/smart-configuration", smart_configuration, methods=["GET"])
]
Handler = Callable[..., Awaitable[Response]]


def route(path: str, *methods: str) -> Callable[[Handler], Handler]:
    """Register ``handler(request, **path parameters)`` for ``path`` under /fhir."""

    def register(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            return await handler(request, **request.path_params)

        registered = Route(path, endpoint, methods=list(methods), name=handler.__name__)
        # Starlette answers HEAD for every GET; here it would read, verify and audit a whole
        # document to send none of it, so HEAD stays 405 as it is not a FHIR interaction.
        if registered.methods:
            registered.methods.discard("HEAD")
        routes.append(registered)
        return handler

    return register


def fhir_base(request: Request) -> str:
    configured = request.app.state.settings.base_url
    if configured:
        return configured.rstrip("/") + "/fhir"
    # Starlette builds the base URL anew for every request (5% of a read's CPU, py-spy).
    scope = request.scope
    root = scope.get("app_root_path", scope.get("root_path", ""))  # as Starlette takes it
    key = (scope.get("scheme"), request.headers.get("host"), scope.get("server"), root)
    base = _bases.get(key)
    if base is None:
        if len(_bases) >= 256:  # Host is the client's to choose: keep few
            _bases.clear()
        base = _bases[key] = str(request.base_url).rstrip("/") + "/fhir"
    return base


_bases: dict[tuple[Any, ...], str] = {}


def _prefer(request: Request) -> dict[str, str]:
    prefer: dict[str, str] = {}
    for item in request.headers.get("prefer", "").split(","):
        key, _, value = item.strip().partition("=")
        if key:
            prefer[key.strip().lower()] = value.strip().strip('"')
    return prefer


_WRITES = frozenset({"POST", "PUT", "PATCH"})


async def context(request: Request) -> RequestContext:
    """The request context of an authenticated request (401 without a valid token)."""
    prefer = _prefer(request)
    actor = await bearer_actor(request)
    if request.method in _WRITES and prefer.get("return") != "minimal":
        # Negotiated before the write: a 406 after it would invite the client to write again.
        wanted_format(request)
    return RequestContext(
        actor=actor,
        base_url=fhir_base(request),
        request_id=request.state.request_id,
        strict_handling=prefer.get("handling") == "strict",
        return_preference=prefer.get("return", ""),  # "": none asked for
        correlation_id=getattr(request.state, "correlation_id", None),
        client_address=request.client.host if request.client else None,
    )


def _body_limit(request: Request) -> int:
    """The size limit of a body about to be read, refused at once when its declared length
    passes it (413) or it comes compressed (415: read as it is, it would be garbage)."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", ""):
        raise UnsupportedMediaType(
            f"Content-Encoding '{encoding[:40]}' is not supported; send the body uncompressed"
        )
    limit: int = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The body is {declared} bytes; the limit is {limit}")
    return limit


async def read_body(request: Request) -> bytearray:
    """The body, refused with 413 as soon as it passes the configured limit; gathered in one
    buffer (a list of chunks joined at the end held a large body twice)."""
    limit = _body_limit(request)
    body = bytearray()
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise PayloadTooLarge(f"The body exceeds the limit of {limit} bytes")
        body += chunk
    return body


async def resource_body(request: Request) -> Any:
    body = await read_body(request)
    return parse_body(body, request_format(request.headers.get("content-type")))


def _params(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


@route("/metadata", "GET")
async def metadata(request: Request) -> Response:
    return fhir_response(request, request.app.state.capability(fhir_base(request)))


# -- the audit log (before /{res_type}/{res_id}, which would take "$report" for an id) --------

_REPORT_MEDIA = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


async def _audit_params(request: Request) -> list[tuple[str, str]]:
    """Query parameters, plus a form body on POST (so that a BSN need not be in the URL)."""
    params = _params(request)
    if request.method == "POST":
        body = (await read_body(request)).decode("utf-8", "replace")
        params += parse_qsl(body, keep_blank_values=True)
    return params


@route("/AuditEvent/$report", "GET", "POST")
async def audit_report(request: Request) -> Response:
    """The NEN 7513 access report: ``patient``, ``from``, ``to``, ``org``, ``user``,
    ``denials``, ``emergencies``, ``type``; ``format`` csv, json or fhir (default json)."""
    ctx = await context(request)
    params = await _audit_params(request)
    fmt = next((v for k, v in params if k == "format"), "json")
    query = audit_query([(k, v) for k, v in params if k not in ("format", "_format")])
    report = await request.app.state.service.audit_log.report(ctx, query, fmt)
    if fmt == "fhir":
        return fhir_response(request, report.body)
    headers = {"Content-Disposition": f'attachment; filename="audit-report.{fmt}"'}
    return Response(report.body, media_type=_REPORT_MEDIA[fmt], headers=headers)


@route("/AuditEvent/$anomalies", "GET")
async def audit_anomalies(request: Request) -> Response:
    """Anomaly flags over the events the parameters select (as for ``$report``)."""
    ctx = await context(request)
    query = audit_query([(k, v) for k, v in _params(request) if k != "_format"])
    flags = await request.app.state.service.audit_log.anomalies(ctx, query)
    answer = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "flag",
                "part": [
                    {"name": "kind", "valueCode": flag.kind},
                    {"name": "agent", "valueString": flag.agent},
                    *(
                        [{"name": "organization", "valueString": flag.organization}]
                        if flag.organization
                        else []
                    ),
                    {"name": "count", "valueInteger": flag.count},
                    {"name": "first", "valueInstant": instant(flag.first_us)},
                    {"name": "last", "valueInstant": instant(flag.last_us)},
                ],
            }
            for flag in flags
        ],
    }
    return fhir_response(request, orjson.dumps(answer))


@route("/AuditEvent/$verify", "GET")
async def audit_verify(request: Request) -> Response:
    """Whether the hash chain and its signed checkpoints are intact."""
    result = await request.app.state.service.audit_log.verify(await context(request))
    parameters: list[dict[str, Any]] = [
        {"name": "intact", "valueBoolean": result.intact},
        {"name": "checked", "valueInteger": result.checked},
        {"name": "checkpoints", "valueInteger": result.checkpoints},
    ]
    if result.first_bad is not None:
        parameters.append({"name": "firstBad", "valueInteger": result.first_bad})
    if result.problem:
        parameters.append({"name": "problem", "valueString": result.problem})
    answer = {"resourceType": "Parameters", "parameter": parameters}
    return fhir_response(request, orjson.dumps(answer))


@route("/", "POST")
async def transaction_or_batch(request: Request) -> Response:
    ctx = await context(request)
    bundle = await resource_body(request)
    if is_provide_bundle(bundle):  # IHE MHD ITI-65 Provide Document Bundle
        result = await request.app.state.documents.provide(ctx, bundle)
    else:
        result = await request.app.state.bundles.process(ctx, bundle)
    return fhir_response(request, result)


@route("/_history", "GET")
async def system_history(request: Request) -> Response:
    body = await request.app.state.service.history(
        await context(request), None, None, _params(request)
    )
    return fhir_response(request, body)


@route("/{res_type}", "GET")
async def search(request: Request, res_type: str) -> Response:
    body = await request.app.state.service.search(
        await context(request), res_type, _params(request)
    )
    return fhir_response(request, body)


@route("/{res_type}/_search", "POST")
async def search_post(request: Request, res_type: str) -> Response:
    media = request.headers.get("content-type", "").split(";")[0].strip()
    if media != "application/x-www-form-urlencoded":
        raise BadRequest(
            "POST _search takes application/x-www-form-urlencoded parameters", code="not-supported"
        )
    form = parse_qsl((await read_body(request)).decode("utf-8", "replace"), keep_blank_values=True)
    body = await request.app.state.service.search(
        await context(request), res_type, _params(request) + form
    )
    return fhir_response(request, body)


@route("/Patient/$break-the-glass", "POST")
async def break_the_glass(request: Request) -> Response:
    """A clinician declares an emergency for one patient: Parameters ``patient`` (the BSN as
    valueIdentifier) and ``reason`` (valueString); answers the window it holds."""
    ctx = await context(request)
    parameters = _parameters(await resource_body(request))
    identifier = parameters.get("patient", {}).get("valueIdentifier") or {}
    if normalized_system(str(identifier.get("system"))) != BSN or not identifier.get("value"):
        raise BadRequest(
            "Parameter 'patient' must be the patient's BSN as a valueIdentifier",
            expression=["Parameters.parameter"],
        )
    reason = str(parameters.get("reason", {}).get("valueString") or "")
    start, end = await request.app.state.service.declare_emergency(
        ctx, str(identifier["value"]), reason
    )
    answer = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueIdentifier": {"system": BSN, "value": identifier["value"]}},
            {"name": "start", "valueInstant": start},
            {"name": "end", "valueInstant": end},
        ],
    }
    return fhir_response(request, orjson.dumps(answer), status=201)


@route("/Patient/{res_id}/$access", "GET")
async def access(request: Request, res_id: str) -> Response:
    """For a DPO: which organisations may see which data of the patient, and why."""
    ctx = await context(request)
    lines = await request.app.state.service.access_overview(ctx, res_id)
    answer = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "access",
                "part": [
                    {"name": "holder", "valueString": line.holder},
                    {"name": "recipient", "valueString": line.grantee},
                    {"name": "category", "valueCode": line.category},
                    {"name": "permitted", "valueBoolean": line.decision.permit},
                    {"name": "rule", "valueString": line.decision.basis.rule},
                    *(
                        {"name": "consent", "valueReference": {"reference": f"Consent/{c}"}}
                        for c in line.decision.basis.consent_ids
                    ),
                    *(
                        [{"name": "agreement", "valueString": line.decision.basis.agreement_id}]
                        if line.decision.basis.agreement_id
                        else []
                    ),
                    {"name": "explanation", "valueString": line.decision.explain()},
                ],
            }
            for line in lines
        ],
    }
    return fhir_response(request, orjson.dumps(answer))


def _parameters(body: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("The operation takes a Parameters resource", expression=["resourceType"])
    return {str(p.get("name")): p for p in body.get("parameter") or [] if isinstance(p, dict)}


@route("/Binary", "POST")
async def create_binary(request: Request) -> Response:
    """A Binary from a FHIR body, or from raw content of any other type, streamed in and
    encrypted chunk by chunk (never held whole in memory)."""
    content_type = request.headers.get("content-type")
    if not content_type or is_fhir_media_type(content_type):
        return await create(request, "Binary")
    ctx = await context(request)
    limit = _body_limit(request)
    content = PreparedBlob(ctx.actor.organization)
    async for chunk in request.stream():
        content.write(chunk)
        if content.size > limit:
            raise PayloadTooLarge(f"The body exceeds the limit of {limit} bytes")
    result = await request.app.state.service.create_binary(
        ctx,
        content_type.split(";")[0].strip(),
        content,
        security_context=request.headers.get("x-security-context"),
    )
    return resource_response(request, result, base=ctx.base_url, location=True)


@route("/{res_type}", "POST")
async def create(request: Request, res_type: str) -> Response:
    ctx = await context(request)
    resource = await resource_body(request)
    result = await request.app.state.service.create(
        ctx, res_type, resource, if_none_exist=request.headers.get("if-none-exist")
    )
    return resource_response(
        request, result, base=ctx.base_url, location=True, return_preference=ctx.return_preference
    )


@route("/{res_type}", "PUT")
async def update_conditional(request: Request, res_type: str) -> Response:
    ctx = await context(request)
    if not request.url.query:
        raise BadRequest("PUT on a type needs search parameters (a conditional update)")
    resource = await resource_body(request)
    result = await request.app.state.service.update_conditional(
        ctx, res_type, request.url.query, resource, if_match=request.headers.get("if-match")
    )
    return resource_response(
        request,
        result,
        base=ctx.base_url,
        location=result.status == 201,
        return_preference=ctx.return_preference,
    )


@route("/{res_type}/_history", "GET")
async def type_history(request: Request, res_type: str) -> Response:
    body = await request.app.state.service.history(
        await context(request), res_type, None, _params(request)
    )
    return fhir_response(request, body)


@route("/Binary/{res_id}", "GET")
async def read_binary(request: Request, res_id: str) -> Response:
    """ITI-68 Retrieve Document: the raw content in its own media type (406 when Accept rules
    it out), or the Binary resource when a FHIR format is asked for."""
    if wants_resource(request):
        return await read(request, "Binary", res_id)
    ctx = await context(request)
    service = request.app.state.service
    found = await service.retrieve(ctx, res_id)
    if not accepts(request.headers.get("accept"), found.content_type):
        raise NotAcceptable(
            f"Binary/{res_id} is available as {found.content_type} (or as FHIR JSON/XML) only"
        )
    headers = {"X-Content-Type-Options": "nosniff"}
    span = None
    if found.info is not None:  # content to compare and to serve in parts
        etag = content_etag(found.info.sha256)
        headers |= {"ETag": etag, "Accept-Ranges": "bytes"}
        if matches_none(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        span = requested_span(
            request.headers.get("range"), request.headers.get("if-range"), etag, found.size
        )
    status, (first, last) = (200, (0, found.size - 1)) if span is None else (206, span)
    headers["Content-Length"] = str(last - first + 1)
    if span is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{found.size}"
    if found.body is not None:
        body = found.body if span is None else found.body[first : last + 1]
        return Response(body, status, headers=headers, media_type=found.content_type)
    assert found.info is not None
    return StreamingResponse(
        service.stream(found.info, span), status, headers=headers, media_type=found.content_type
    )


@route("/{res_type}/{res_id}", "GET")
async def read(request: Request, res_type: str, res_id: str) -> Response:
    ctx = await context(request)
    result = await request.app.state.service.read(ctx, res_type, res_id)
    return resource_response(request, result, base=ctx.base_url)


@route("/{res_type}/{res_id}", "PUT")
async def update(request: Request, res_type: str, res_id: str) -> Response:
    ctx = await context(request)
    resource = await resource_body(request)
    result = await request.app.state.service.update(
        ctx, res_type, res_id, resource, if_match=request.headers.get("if-match")
    )
    return resource_response(
        request,
        result,
        base=ctx.base_url,
        location=result.status == 201,
        return_preference=ctx.return_preference,
    )


@route("/{res_type}", "DELETE")
async def delete_conditional(request: Request, res_type: str) -> Response:
    condition = request.url.query
    if not condition:
        raise BadRequest("DELETE on a type needs search parameters (a conditional delete)")
    result = await request.app.state.service.delete_conditional(
        await context(request), res_type, condition
    )
    return Response(status_code=204, headers={"ETag": result.etag} if result else None)


@route("/{res_type}/{res_id}", "DELETE")
async def delete(request: Request, res_type: str, res_id: str) -> Response:
    ctx = await context(request)
    result = await request.app.state.service.delete(ctx, res_type, res_id)
    return Response(status_code=204, headers={"ETag": result.etag})


@route("/{res_type}/{res_id}/_history", "GET")
async def instance_history(request: Request, res_type: str, res_id: str) -> Response:
    body = await request.app.state.service.history(
        await context(request), res_type, res_id, _params(request)
    )
    return fhir_response(request, body)


@route("/{res_type}/{res_id}/_history/{version_id}", "GET")
async def vread(request: Request, res_type: str, res_id: str, version_id: str) -> Response:
    ctx = await context(request)
    result = await request.app.state.service.vread(ctx, res_type, res_id, version_id)
    return resource_response(request, result, base=ctx.base_url)
