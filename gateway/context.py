"""Who is asking, for what, in which request: passed to every service-layer call."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from gateway.auth.scopes import Scope, permits


@dataclass(frozen=True)
class Actor:
    """The one actor a request runs as: an organisation's system client or person.

    ``local`` is the operator at the gateway's own console (CLI, migrations, demo seeding): it is
    never reachable over HTTP.
    """

    kind: str  # "system", "user" or "local"
    id: str
    organization: str | None = None  # URA of the actor's organisation
    roles: frozenset[str] = frozenset()
    scopes: tuple[Scope, ...] = ()
    name: str | None = None  # the username or client name, for the audit record

    @property
    def is_local(self) -> bool:
        return self.kind == "local"

    def may(self, resource_type: str, action: str) -> bool:
        """Whether the actor's scopes allow ``action`` (c r u d s) on ``resource_type``."""
        return self.is_local or permits(list(self.scopes), resource_type, action)


LOCAL_OPERATOR = Actor(kind="local", id="zorgbrug-cli")

# The owner of the network's directory (registered Organizations and their Endpoints): every
# member may read it. Not an URA (those are eight digits), so it is never an organisation's own.
NETWORK = "network"
DIRECTORY_OPERATOR = Actor(kind="local", id="zorgbrug-cli", organization=NETWORK)


def operator_for(ura: str) -> Actor:
    """The local operator acting on behalf of one organisation (demo seeding, imports)."""
    return Actor(kind="local", id="zorgbrug-cli", organization=ura)


@dataclass(frozen=True)
class RequestContext:
    """The request context of the service layer."""

    actor: Actor
    base_url: str  # the FHIR base as the client sees it, e.g. http://127.0.0.1:8080/fhir
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    purpose: str = "TREAT"
    strict_handling: bool = False  # Prefer: handling=strict
    # Prefer: return=minimal|representation|OperationOutcome; "" when the client asked nothing
    return_preference: str = "representation"
    correlation_id: str | None = None  # X-Correlation-Id, when the caller sent one
    client_address: str | None = None  # where the request came from (for the audit record)
    # Consulting the shared record (the clinician's viewer): only what consent or an emergency
    # opens counts, not what another organisation addressed to the actor's for filing.
    consulting: bool = False
