"""Agreements as rows for SQL filtering: who may receive whose data, for what, when.

``agreement_covers`` answers for one request; the gateway filters searches in SQL before paging,
so it needs the same answer as rows. ``agreement_grants`` lists, per agreement in force at some
time, every ordered pair of its parties with each category and purpose it covers and the instants
it is in force. Contract (proved by a property test): ``agreement_covers(request)`` is not None
exactly when some row ``matches`` the request.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import permutations

from consent._agreements import Agreement
from consent._fhirtime import day_start
from consent._request import AccessRequest


@dataclass(frozen=True, slots=True)
class AgreementGrant:
    """``grantee_org`` may receive ``holder_org``'s data of a category under ``category`` for
    ``purpose``, for requests at instants in ``[valid_from, valid_to)`` (``valid_to`` None:
    open-ended), under agreement ``agreement_id``."""

    holder_org: str
    grantee_org: str
    category: str
    purpose: str
    valid_from: datetime
    valid_to: datetime | None
    agreement_id: str

    def matches(self, request: AccessRequest) -> bool:
        """The reference the gateway's SQL follows."""
        return (
            request.holder_org == self.holder_org
            and request.actor_org == self.grantee_org
            and self.category in request.categories
            and request.purpose == self.purpose
            and self.valid_from <= request.at
            and (self.valid_to is None or request.at < self.valid_to)
        )


def agreement_grants(
    agreements: Iterable[Agreement], purposes: Iterable[str] | None = None
) -> list[AgreementGrant]:
    """The rows of every active agreement; ``purposes`` limits them to the purposes the gateway
    asks for (default: every purpose an agreement covers)."""
    wanted = None if purposes is None else frozenset(purposes)
    rows: list[AgreementGrant] = []
    for agreement in agreements:
        if agreement.status != "active":
            continue
        start = day_start(agreement.valid_from)
        end = None if agreement.valid_to is None else day_start(agreement.valid_to + timedelta(1))
        covered = (
            agreement.covered_purposes if wanted is None else agreement.covered_purposes & wanted
        )
        for holder, grantee in permutations(sorted(agreement.parties), 2):
            for category in sorted(agreement.categories):
                for purpose in sorted(covered):
                    rows.append(
                        AgreementGrant(holder, grantee, category, purpose, start, end, agreement.id)
                    )
    return rows
