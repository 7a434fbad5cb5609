"""The ASGI application: wiring of settings, store, services and routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Scope, Send

from gateway.api.auth_routes import router as auth_router
from gateway.api.dispatch import MethodDepthRouter
from gateway.api.fhir_routes import routes as fhir_routes
from gateway.api.fhir_routes import transaction_or_batch
from gateway.api.front import FhirFront
from gateway.api.heap import settle_after_startup
from gateway.api.negotiation import error_response, request_id_of
from gateway.auth.app_launch import AppLaunch
from gateway.auth.backend_services import BackendServices
from gateway.auth.tokens import AccessTokens
from gateway.errors import (
    BadRequest,
    GatewayError,
    MethodNotAllowed,
    NotFound,
)
from gateway.exchange.delivery import DeliveryWorker
from gateway.exchange.iti65 import DocumentRecipient
from gateway.fhir.capability import capability_statement
from gateway.service.bundles import BundleProcessor
from gateway.service.resources import ResourceService
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.ui.install import install as install_ui
from gateway.ui.install import is_ui, ui_error, ui_gateway_error

log = logging.getLogger("zorgbrug")


_ECHOED_HEADERS = frozenset({b"x-request-id", b"x-correlation-id"})


def with_request_id(scope: Scope, send: Send) -> Send:
    """Accept or create the request's X-Request-Id (into ``scope["state"]``); ``send`` that
    echoes it (and X-Correlation-Id) on the response."""
    # ASGI servers hand header names lowercased; only these two are wanted here.
    headers = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope["headers"]
        if name in _ECHOED_HEADERS
    }
    request_id = request_id_of(headers)
    scope.setdefault("state", {})["request_id"] = request_id
    echoed = [(b"x-request-id", request_id.encode())]
    correlation = headers.get("x-correlation-id")
    if correlation and len(correlation) <= 128 and correlation.isprintable():
        echoed.append((b"x-correlation-id", correlation.encode("latin-1")))
        scope["state"]["correlation_id"] = correlation

    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *echoed]
        await send(message)

    return send_with_id


class RequestIdMiddleware:
    """``with_request_id`` for every http request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, with_request_id(scope, send))


def create_app(settings: Settings | None = None) -> FhirFront:
    """The gateway application; the store is opened and migrated at startup."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url(), threads=settings.db_threads)
        await db.migrate()
        service = ResourceService(db, settings)
        await service.start()
        tokens = AccessTokens(db, issuer=settings.token_issuer())
        await tokens.load()
        app.state.tokens = tokens
        app.state.backend_services = BackendServices(db, tokens)
        app.state.app_launch = AppLaunch(db, tokens)
        app.state.db = db
        app.state.service = service
        app.state.bundles = BundleProcessor(service)
        app.state.documents = DocumentRecipient(service, app.state.bundles)
        stop = asyncio.Event()
        worker = (
            asyncio.create_task(DeliveryWorker(service).run(stop))
            if settings.delivery_worker
            else None
        )
        settle_after_startup()
        yield
        stop.set()
        if worker is not None:
            await worker
        try:  # pin the chain's tail, so that cutting it off after a restart is detected
            await service.audit.checkpoint()
        except Exception as error:  # the store may be gone already; the next start signs then
            log.warning("no audit checkpoint at shutdown: %s", error.__class__.__name__)
        await db.dispose()

    app = FastAPI(
        title="Zorgbrug",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # FastAPI would trace every request (URLs, with BSNs in their queries) and export
        # exception messages to any OpenTelemetry set up in the process; the audit trail is
        # the record of requests. Off, this also spares a provider lookup per request.
        telemetry={
            "tracing": False,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "auto_configure": False,
        },
    )
    app.state.settings = settings
    app.state.capability = _capability_cache()
    app.add_route("/fhir", transaction_or_batch, methods=["POST"])  # the base, without a slash
    fhir = MethodDepthRouter(fhir_routes)
    app.mount("/fhir", fhir)  # first: the FHIR API is the hot path
    app.include_router(auth_router)
    install_ui(app)
    app.add_middleware(RequestIdMiddleware)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        try:
            await request.app.state.db.ping()
        except Exception:  # any failure to reach the database means not ready
            log.exception("readiness check failed")
            return JSONResponse({"status": "database unreachable"}, status_code=503)
        return JSONResponse({"status": "ready"})

    app.add_exception_handler(GatewayError, error_answer)
    app.add_exception_handler(StarletteHTTPException, error_answer)
    app.add_exception_handler(RequestValidationError, error_answer)
    app.add_exception_handler(Exception, error_answer)
    return FhirFront(app, fhir, "/fhir", error_answer, with_request_id)


async def error_answer(request: Request, error: Exception) -> Response:
    """The answer to a request that failed with ``error``: an OperationOutcome (a page for
    the web UI); FastAPI's exception handlers and ``FhirFront`` both answer with it."""
    if isinstance(error, GatewayError):
        if error.status >= 500:
            log.error("request %s failed: %s", request.state.request_id, error.diagnostics)
        if is_ui(request):
            return ui_gateway_error(request, error)
        return error_response(request, error)
    if isinstance(error, StarletteHTTPException):
        if is_ui(request):
            return ui_error(request, error.status_code, str(error.detail))
        if error.status_code == 405:
            return error_response(
                request,
                MethodNotAllowed(
                    f"{request.method} is not supported on {request.url.path}",
                    headers=dict(error.headers or {}),  # Allow: what is
                ),
            )
        if error.status_code == 404:
            return error_response(request, NotFound(f"No such endpoint: {request.url.path}"))
        failure = BadRequest if 400 <= error.status_code < 500 else GatewayError
        return error_response(request, failure(str(error.detail)))
    if isinstance(error, RequestValidationError):
        if is_ui(request):
            return ui_error(request, 400)
        return error_response(request, BadRequest(f"Malformed request: {error.errors()[:3]}"))
    request_id = getattr(request.state, "request_id", "?")
    log.error("unexpected error in request %s", request_id, exc_info=error)
    unexpected = GatewayError(f"Internal error; quote request id {request_id} to the operator")
    if is_ui(request):
        return ui_gateway_error(request, unexpected)
    return error_response(request, unexpected)


def _capability_cache() -> Callable[[str], bytes]:
    published = date.today().isoformat()
    cache: dict[str, bytes] = {}

    def get(base: str) -> bytes:
        if base not in cache:
            cache[base] = orjson.dumps(capability_statement(base, published))
        return cache[base]

    return get
