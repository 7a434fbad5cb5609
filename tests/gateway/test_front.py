"""The front that calls FHIR routes directly answers their failures as the gateway's FastAPI
handlers do: an OperationOutcome with the request id, never a stack trace."""

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from harness import serving
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from gateway.api.app import error_answer, with_request_id
from gateway.api.dispatch import MethodDepthRouter
from gateway.api.front import FhirFront
from gateway.errors import Gone


async def fine(request: Request) -> Response:
    return PlainTextResponse(f"fine {request.path_params['res_id']} {request.state.request_id}")


async def gone(_request: Request) -> Response:
    raise Gone("Patient/1 was deleted", headers={"ETag": 'W/"2"'})


async def broken(_request: Request) -> Response:
    raise RuntimeError("secret detail that must not reach the client")


async def broken_midway(_request: Request) -> Response:
    async def parts() -> AsyncIterator[bytes]:
        yield b"first part"
        raise RuntimeError("failed after the response started")

    return StreamingResponse(parts(), media_type="text/plain")


@contextlib.contextmanager
def served(root_path: str = "") -> Iterator[httpx.Client]:
    """The routes below behind the front, in front of a bare Starlette app (which, unlike
    the front, adds no request id: a response with one came through the front)."""
    router = MethodDepthRouter(
        [
            Route("/Fine/{res_id}", fine, methods=["GET"]),
            Route("/Gone/{res_id}", gone, methods=["GET"]),
            Route("/Broken/{res_id}", broken, methods=["GET"]),
            Route("/Midway/{res_id}", broken_midway, methods=["GET"]),
        ]
    )
    app = FhirFront(
        Starlette(routes=[Mount("/fhir", router)]), router, "/fhir", error_answer, with_request_id
    )
    with serving(app, root_path=root_path) as client:
        yield client


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with served() as http:
        yield http


def test_a_route_sees_its_parameters_and_request_id(client):
    answer = client.get("/fhir/Fine/7", headers={"X-Request-Id": "req-1"})
    assert answer.text == "fine 7 req-1"
    assert answer.headers["x-request-id"] == "req-1"


def test_behind_a_proxy_prefix_the_front_still_takes_fhir_requests():
    with served(root_path="/zorgbrug") as http:
        answer = http.get("/fhir/Fine/7", headers={"X-Request-Id": "req-2"})
    assert answer.text == "fine 7 req-2"
    assert answer.headers["x-request-id"] == "req-2"


def test_a_refusal_is_its_operation_outcome(client):
    answer = client.get("/fhir/Gone/1", headers={"X-Correlation-Id": "corr-9"})
    assert answer.status_code == 410
    assert answer.headers["etag"] == 'W/"2"'
    assert answer.headers["x-correlation-id"] == "corr-9"
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["diagnostics"] == "Patient/1 was deleted"


def test_an_unexpected_failure_is_a_500_outcome_that_names_the_request(client, caplog):
    with caplog.at_level(logging.ERROR, logger="zorgbrug"):
        answer = client.get("/fhir/Broken/1", headers={"Accept": "application/fhir+xml"})
    assert answer.status_code == 500
    assert answer.headers["content-type"].startswith("application/fhir+xml")
    request_id = answer.headers["x-request-id"]
    assert f"quote request id {request_id}" in answer.text
    assert "secret detail" not in answer.text and "Traceback" not in answer.text
    logged = [r for r in caplog.records if r.exc_info and request_id in r.getMessage()]
    assert logged and "secret detail" in str(logged[0].exc_info[1])


def test_a_failure_after_the_response_started_breaks_it_off(client):
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/fhir/Midway/1")
    assert client.get("/fhir/Fine/8").status_code == 200  # the server goes on
