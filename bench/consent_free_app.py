"""The gateway with consent filtering removed, for ``bench/bench_consent_search.py`` only.

It exists only to measure what consent filtering costs: never serve it. Everything is the real
gateway (authentication, scopes, the disabled-client check, search parsing, paging, bundles)
except ``ResourceService._visibility_scope`` (the consent scope that ``visibility`` and
``bound_visibility`` judge with), which here is none: an organisation sees its own resources,
the network directory and what was shared with it, and no SQL arm opens other organisations'
data through consent_grants, agreement_grants or emergencies. The operator's console (a local
actor without an organisation) still sees everything, as in the real gateway.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from gateway.api import app as gateway_app
from gateway.context import RequestContext
from gateway.service.resources import ResourceService
from gateway.store.search_sql import ConsentScope


def no_consent_scope(_service: ResourceService, _ctx: RequestContext) -> ConsentScope | None:
    """ResourceService._visibility_scope without consent."""
    return None


def create_app() -> FastAPI:
    ResourceService._visibility_scope = no_consent_scope  # type: ignore[method-assign]
    app: Any = gateway_app.create_app()
    return app
