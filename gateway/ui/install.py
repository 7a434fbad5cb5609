"""Mount the web UI on the gateway application under /ui/."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from gateway.errors import GatewayError
from gateway.ui import assistant, clinician, consent_pages, dpo, login
from gateway.ui.web import LoginRequired, PageError, error_page, login_redirect

ROUTERS = (login.router, clinician.router, consent_pages.router, assistant.router, dpo.router)


def install(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=Path(__file__).parent / "static"), "ui-static")

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, error: LoginRequired) -> Response:
        return login_redirect(request, error.expired)

    @app.exception_handler(PageError)
    async def page_error(request: Request, error: PageError) -> Response:
        return error_page(request, error.status, error.key, error.detail)


def is_ui(request: Request) -> bool:
    return request.url.path.startswith("/ui/") or request.url.path == "/ui"


def ui_error(request: Request, status: int, diagnostics: str | None = None) -> Response:
    """A refusal or failure of a UI request shown as a page, never as an OperationOutcome."""
    key = {401: "session_expired", 403: "forbidden", 404: "not_found", 410: "not_found"}.get(
        status, "error"
    )
    return error_page(request, status, key, diagnostics)


def ui_gateway_error(request: Request, error: GatewayError) -> Response:
    return ui_error(request, error.status, error.diagnostics)
