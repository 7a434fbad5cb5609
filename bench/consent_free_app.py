"""The gateway with consent filtering removed, for ``bench/bench_consent_search.py`` only.

It exists only to measure what consent filtering costs: never serve it. Everything is the real
gateway (authentication, scopes, the disabled-client check, search parsing, paging, bundles)
except ``ResourceService.visibility``, which here returns ``organization_visible(organization,
NETWORK)`` without a ``ConsentScope``: an organisation sees its own resources, the network
directory and what was shared with it, and no SQL arm opens other organisations' data through
consent_grants, agreement_grants or emergencies. The operator's console (a local actor without an
organisation) still sees everything, as in the real gateway.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from gateway.api import app as gateway_app
from gateway.context import NETWORK, RequestContext
from gateway.service.resources import ResourceService
from gateway.store.search_sql import Visibility, everything_visible, organization_visible


def visibility_without_consent(_service: ResourceService, ctx: RequestContext) -> Visibility:
    """ResourceService.visibility minus the consent arm (no ConsentScope)."""
    organization = ctx.actor.organization
    if ctx.actor.is_local and organization is None:  # the operator's console
        return everything_visible
    return organization_visible(organization, NETWORK)


def create_app() -> FastAPI:
    ResourceService.visibility = visibility_without_consent  # type: ignore[method-assign]
    app: Any = gateway_app.create_app()
    return app
