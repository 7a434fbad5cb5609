"""The gateway with consent filtering removed, for ``bench/bench_consent_search.py`` only.

It exists only to measure what consent filtering costs: never serve it. Everything is the real
gateway (authentication, scopes, the disabled-client check, search parsing, paging, bundles)
except ``ResourceService.visibility`` and ``ResourceService.bound_visibility`` (the form search
statements take), which here leave out the ``ConsentScope``: an organisation sees its own
resources, the network directory and what was shared with it, and no SQL arm opens other
organisations' data through consent_grants, agreement_grants or emergencies. The operator's
console (a local actor without an organisation) still sees everything, as in the real gateway.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from gateway.api import app as gateway_app
from gateway.context import NETWORK, RequestContext
from gateway.service.resources import ResourceService
from gateway.store.search_sql import (
    Visibility,
    bound_visibility,
    everything_visible,
    organization_visible,
)


def visibility_without_consent(_service: ResourceService, ctx: RequestContext) -> Visibility:
    """ResourceService.visibility minus the consent arm (no ConsentScope)."""
    organization = ctx.actor.organization
    if ctx.actor.is_local and organization is None:  # the operator's console
        return everything_visible
    return organization_visible(organization, NETWORK)


def bound_visibility_without_consent(
    _service: ResourceService, ctx: RequestContext
) -> tuple[Visibility, dict[str, Any]]:
    """ResourceService.bound_visibility minus the consent arm."""
    organization = ctx.actor.organization
    if ctx.actor.is_local and organization is None:
        return everything_visible, {}
    return bound_visibility(organization, NETWORK, None, addressed=True)


def create_app() -> FastAPI:
    ResourceService.visibility = visibility_without_consent  # type: ignore[method-assign]
    ResourceService.bound_visibility = bound_visibility_without_consent  # type: ignore[method-assign]
    app: Any = gateway_app.create_app()
    return app
