"""Administrative changes made at the gateway's console (``zorgbrug`` commands, demo seeding).

Each change is written in one transaction with its audit record, like any write over the API:
no record, no change. A change the operator got wrong is recorded as refused.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import TypeVar

from sqlalchemy.engine import Connection

from gateway.audit.scope import Interaction
from gateway.context import LOCAL_OPERATOR, Actor, RequestContext
from gateway.errors import Unprocessable
from gateway.service.resources import ResourceService

T = TypeVar("T")


@dataclass(frozen=True)
class ConsoleChange:
    """Who changed what at the console: an ``admin-*`` audit kind and the command typed."""

    kind: str  # admin-organization, admin-account or admin-security (audit.codes.ADMIN_KINDS)
    command: str
    operator: str  # the operating-system user at the console
    action: str  # the AuditEvent.action: C for what the change adds, U for what it alters

    @classmethod
    def of(cls, kind: str, words: Sequence[str], action: str) -> ConsoleChange:
        return cls(kind, " ".join(words)[:1000], _operator(), action)

    def context(self, actor: Actor = LOCAL_OPERATOR) -> RequestContext:
        # Running the network is healthcare operations (v3-ActReason HOPERAT), not treatment.
        return RequestContext(
            actor=replace(actor, name=self.operator),
            base_url="urn:zorgbrug:cli",
            purpose="HOPERAT",
        )

    @property
    def interaction(self) -> Interaction:
        return Interaction(self.kind, details=(("command", self.command),), action=self.action)

    async def write(
        self,
        service: ResourceService,
        work: Callable[[Connection], T],
        actor: Actor = LOCAL_OPERATOR,
    ) -> T:
        """Run ``work`` in a write transaction together with the change's audit record; a
        ValueError (the operator's mistake) rolls it back and is recorded as a refusal."""

        def run(conn: Connection) -> T:
            try:
                return work(conn)
            except ValueError as error:
                raise Unprocessable(str(error)) from None

        return await service.in_write(self.context(actor), run, self.interaction)

    def failure_recorded(self, service: ResourceService) -> AbstractAsyncContextManager[None]:
        """For the steps a change takes before its ``write`` (a key rotation re-wraps in many
        transactions): if one fails, the change is recorded as failed before the error goes on."""
        return service.refusals_audited(service.audit_scope(self.context(), self.interaction))


def _operator() -> str:
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):  # no such user in the password database (some containers)
        return "operator"
