"""The outermost ASGI app: a FHIR request whose route is known goes straight to it.

Through FastAPI a read passed eleven layers of middleware, routers and exception wrappers
before its handler ran, and its response passed them again: 28% of the event loop's time in a
read by id, beside 55% in the handler (py-spy, SQLite, wrk with 32 connections). Here a request
under /fhir/ is matched against its method's and depth's routes (``MethodDepthRouter``) and
its handler called with the request, with the two things those layers did for it: the
request id, and an error turned into its OperationOutcome by the same handlers. Everything
else (no matching route, the UI, OAuth, health) goes through FastAPI as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route, get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.dispatch import MethodDepthRouter

ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


class FhirFront:
    """``app`` behind a short path for the routes of ``fhir``, mounted at ``prefix``."""

    def __init__(
        self,
        app: ASGIApp,
        fhir: MethodDepthRouter,
        prefix: str,
        on_error: ErrorHandler,
        with_request_id: Callable[[Scope, Send], Send],
    ) -> None:
        self.app = app
        self.fhir = fhir
        self.prefix = prefix
        self._under = prefix + "/"
        self.on_error = on_error
        self.with_request_id = with_request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not get_route_path(scope).startswith(self._under):
            await self.app(scope, receive, send)
            return
        root_path = scope.get("root_path", "")
        route_scope = {
            **scope,
            "app_root_path": scope.get("app_root_path", root_path),
            "root_path": root_path + self.prefix,
        }
        route = self._route(route_scope)
        if route is None:  # no such route, a wrong method, a trailing slash: as before
            await self.app(scope, receive, send)
            return
        route_scope["app"] = self.app
        send = self.with_request_id(route_scope, send)
        request = Request(route_scope, receive, send)
        started = False

        async def sent(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            response = await route.endpoint(request)
            await response(route_scope, receive, sent)
        except Exception as error:
            if started:  # the response is on its way: nothing else can be said
                raise
            response = await self.on_error(request, error)
            await response(route_scope, receive, send)

    def _route(self, scope: dict[str, Any]) -> Route | None:
        for route in self.fhir.group(scope):
            match, child = route.matches(scope)
            if match is Match.FULL:
                scope.update(child)
                return route
        return None
