"""The FHIR API's router by method and depth, and the front that calls its routes directly,
answer every request as Starlette's router does."""

import contextlib
import itertools
from collections.abc import Iterator

import httpx
import pytest
from harness import serving
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, Router

from gateway.api.app import error_answer, with_request_id
from gateway.api.dispatch import MethodDepthRouter
from gateway.api.fhir_routes import routes as fhir_routes
from gateway.api.front import FhirFront

PATHS = [
    "",
    "/",
    "/metadata",
    "/metadata/",
    "/Patient",
    "/Patient/",
    "/Patient/_search",
    "/Patient/_history",
    "/Patient/123",
    "/Patient/123/",
    "/Patient/123/_history",
    "/Patient/123/_history/2",
    "/Patient/123/_history/2/3",
    "/Patient/$break-the-glass",
    "/Patient/123/$access",
    "/Binary",
    "/Binary/abc",
    "/AuditEvent/$verify",
    "/AuditEvent/$report",
    "/_history",
    "/.well-known/smart-configuration",
    "/a/b/c/d/e",
]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]


def _echoing(routes: list[Route]) -> list[Route]:
    """The FHIR API's paths and methods, each answering with its own name and parameters."""

    def endpoint_for(name: str):
        async def endpoint(request: Request) -> PlainTextResponse:
            return PlainTextResponse(f"{name} {sorted(request.path_params.items())}")

        return endpoint

    return [Route(r.path, endpoint_for(r.name), methods=sorted(r.methods or ())) for r in routes]


@contextlib.contextmanager
def _served(router, front: bool = False) -> Iterator[httpx.Client]:
    app = Starlette(routes=[Mount("/fhir", router)])
    if front:
        app = FhirFront(app, router, "/fhir", error_answer, with_request_id)
    with serving(app) as client:
        yield client


@pytest.fixture(scope="module")
def clients() -> Iterator[tuple[httpx.Client, httpx.Client, httpx.Client]]:
    echoing = _echoing(fhir_routes)
    for route in echoing:  # as the gateway registers them: HEAD is not a FHIR interaction
        route.methods.discard("HEAD")
    by_depth = MethodDepthRouter(echoing)
    with (
        _served(Router(echoing)) as starlette,
        _served(by_depth) as routed,
        _served(by_depth, front=True) as fronted,
    ):
        yield starlette, routed, fronted


@pytest.mark.parametrize(("method", "path"), list(itertools.product(METHODS, PATHS)))
def test_every_request_is_routed_as_starlette_routes_it(clients, method, path):
    starlette, *ours = clients
    expected = starlette.request(method, "/fhir" + path)
    for client in ours:
        answered = client.request(method, "/fhir" + path)
        assert (answered.status_code, answered.text) == (expected.status_code, expected.text)
        assert answered.headers.get("allow") == expected.headers.get("allow")
        assert _where(answered) == _where(expected)


def _where(response: httpx.Response) -> str | None:
    """Where a redirect points, on its own server."""
    location = response.headers.get("location")
    return None if location is None else httpx.URL(location).raw_path.decode()


def test_the_read_of_a_resource_reaches_its_route(clients):
    _, *ours = clients
    for client in ours:
        answer = client.get("/fhir/Observation/abc")
        assert answer.status_code == 200
        assert answer.text == "read [('res_id', 'abc'), ('res_type', 'Observation')]"


def test_a_route_with_a_path_parameter_is_refused():
    async def endpoint(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("")

    with pytest.raises(ValueError, match="cannot be routed"):
        MethodDepthRouter([Route("/files/{rest:path}", endpoint)])
