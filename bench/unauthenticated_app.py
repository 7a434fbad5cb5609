"""The gateway with authentication removed, for ``bench/bench_auth.py`` only.

Every request runs as the local operator of one organisation: no bearer token is verified, no
client-enabled check hits the database, no scope is checked. The difference in read throughput
between this app and the real one is what authentication costs per request.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Request

from gateway.api import app as gateway_app
from gateway.api import fhir_routes
from gateway.context import Actor, operator_for


def create_app() -> FastAPI:
    actor = operator_for(os.environ.get("BENCH_AUTH_ORG", "90000001"))

    async def fixed_actor(_request: Request) -> Actor:
        return actor

    fhir_routes.bearer_actor = fixed_actor  # type: ignore[assignment]
    app: Any = gateway_app.create_app()
    return app
