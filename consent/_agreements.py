"""Processor and data-sharing agreements between organisations (GDPR art. 28, Wabvpz).

An agreement binds its parties (two or more URAs; any two of them may exchange under it) to the
purposes and data categories it names. Categories must be explicit: ``treatment`` (Mitz GGC002)
is the umbrella that covers every category; an empty set is refused rather than read as "all".
Purposes subsume their specialisations (an agreement for TREAT covers ETREAT requests).
``valid_from`` and ``valid_to`` are calendar days in Dutch time, both inclusive; an agreement is in
force on a day when its status is ``active`` and the day lies within them. Both kinds, processor
(verwerkersovereenkomst) and data-sharing, satisfy the legal condition alike; the kind is recorded
for the DPO.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Final, Literal

from consent._categories import LEAVES_BELOW, category_code
from consent._errors import InvalidAgreement
from consent._request import AccessRequest
from consent._terminology import PURPOSES, expand_purposes

AgreementKind = Literal["processor", "data-sharing"]
AgreementStatus = Literal["active", "ended"]
AGREEMENT_KINDS: Final = frozenset({"processor", "data-sharing"})
_SHA256: Final = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True, kw_only=True)
class AgreementDocument:
    """The signed agreement itself: its title, where the PDF is, and its SHA-256 (hex)."""

    title: str
    url: str
    sha256: str | None = None

    def __post_init__(self) -> None:
        if not self.title.strip():
            raise InvalidAgreement("Agreement.document.title", "missing")
        if not self.url.strip():
            raise InvalidAgreement("Agreement.document.url", "missing")
        if self.sha256 is not None and not _SHA256.fullmatch(self.sha256):
            raise InvalidAgreement(
                "Agreement.document.sha256", "must be 64 lowercase hexadecimal digits"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Agreement:
    """An agreement between organisations allowing exchange for purposes and data categories."""

    id: str
    kind: AgreementKind
    parties: frozenset[str]
    purposes: frozenset[str]
    categories: frozenset[str]
    valid_from: date
    valid_to: date | None = None
    status: AgreementStatus = "active"
    document: AgreementDocument
    leaves: frozenset[str] = field(init=False, repr=False, compare=False)
    covered_purposes: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.id:
            raise InvalidAgreement("Agreement.id", "missing")
        if self.kind not in AGREEMENT_KINDS:
            raise InvalidAgreement(
                "Agreement.kind", f"{self.kind!r} is not processor or data-sharing"
            )
        if self.status not in ("active", "ended"):
            raise InvalidAgreement("Agreement.status", f"{self.status!r} is not active or ended")
        if len(self.parties) < 2 or not all(self.parties):
            raise InvalidAgreement("Agreement.parties", "an agreement needs at least two URAs")
        if not self.purposes:
            raise InvalidAgreement("Agreement.purposes", "at least one purpose is required")
        unknown = sorted(self.purposes - PURPOSES.keys())
        if unknown:
            raise InvalidAgreement("Agreement.purposes", f"purpose {unknown[0]!r} is not known")
        if not self.categories:
            raise InvalidAgreement(
                "Agreement.categories", "name the categories explicitly ('treatment' for all)"
            )
        try:
            normalised = frozenset(category_code(c) for c in self.categories)
        except KeyError as exc:
            raise InvalidAgreement(
                "Agreement.categories", f"category {exc.args[0]!r} is not known"
            ) from None
        if self.valid_to is not None and self.valid_to < self.valid_from:
            raise InvalidAgreement("Agreement.valid_to", "is before valid_from")
        put = object.__setattr__
        put(self, "categories", normalised)
        put(self, "leaves", frozenset().union(*(LEAVES_BELOW[c] for c in normalised)))
        put(self, "covered_purposes", expand_purposes(self.purposes))

    def in_force(self, today: date) -> bool:
        """Whether the agreement is active and ``today`` lies within its validity."""
        return (
            self.status == "active"
            and self.valid_from <= today
            and (self.valid_to is None or today <= self.valid_to)
        )

    def expires_within(self, days: int, today: date) -> bool:
        """Whether the agreement is in force today and its last day is at most ``days`` ahead."""
        return (
            self.in_force(today)
            and self.valid_to is not None
            and self.valid_to <= today + timedelta(days=days)
        )

    def binds(self, org_a: str, org_b: str) -> bool:
        """Whether both organisations are parties."""
        return org_a in self.parties and org_b in self.parties

    def scope_covers(self, request: AccessRequest) -> bool:
        """Whether purpose and data category of ``request`` are within the agreement (not time)."""
        return request.purpose in self.covered_purposes and request.leaf in self.leaves


def agreement_covers(request: AccessRequest, agreements: Iterable[Agreement]) -> Agreement | None:
    """The first agreement in force that binds actor and holder and covers purpose and category."""
    actor, holder, day = request.actor_org, request.holder_org, request.day
    for agreement in agreements:
        if (
            actor in agreement.parties
            and holder in agreement.parties
            and request.purpose in agreement.covered_purposes
            and request.leaf in agreement.leaves
            and agreement.in_force(day)
        ):
            return agreement
    return None


def agreement_gap(
    request: AccessRequest, agreements: Iterable[Agreement]
) -> tuple[str, str | None]:
    """Why no agreement covers ``request``: the deny rule and the agreement it is about, if any.

    ``no-agreement`` (the two organisations share none), ``agreement-not-covering`` (none covers
    the purpose and category), ``agreement-expired`` (one would, but has ended or expired), or
    ``agreement-not-yet-valid`` (one would, but starts later).
    """
    between = [a for a in agreements if a.binds(request.actor_org, request.holder_org)]
    if not between:
        return "no-agreement", None
    in_scope = [a for a in between if a.scope_covers(request)]
    if not in_scope:
        return "agreement-not-covering", None
    later = [a for a in in_scope if a.status == "active" and request.day < a.valid_from]
    ended = [a for a in in_scope if a not in later]
    if ended:
        return "agreement-expired", ended[0].id
    return "agreement-not-yet-valid", later[0].id
