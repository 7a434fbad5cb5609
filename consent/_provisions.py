"""The compiled rule tree of a patient's consent and how one request is matched against it.

``parse_consent`` turns a FHIR Consent into a ``PatientConsent`` whose provisions hold only plain
frozensets and float timestamps, so evaluating a request costs a handful of set lookups.

How a request meets a provision (FHIR R4 semantics, every element present must match; a list
matches when any of its entries does):

- ``period``: the request time lies in the provision's period.
- ``actor``: per role. CST actors name the data holder; PRCP/IRCP actors name the recipient,
  by URA or by organisation type. With both roles present, both must match.
- ``action``, ``purpose``: the request's action and purpose are covered (purposes subsume their
  specialisations, see ``_terminology``).
- ``class`` and ``code``: the request's leaf category is selected (both, when both are present).
- ``dataPeriod``: the date of the data lies in it. Undated data (a resource without a clinical
  date) is covered by a ``deny`` provision with a dataPeriod but never by a ``permit`` one: when we
  cannot tell whether data falls in the period, the uncertainty resolves towards deny.

Nested provisions are exceptions: a child is considered only for requests its parent matches, and
the deepest matching provision decides; among matching siblings a deny wins over a permit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

ProvisionType = Literal["permit", "deny"]
PolicyRule = Literal["OPTIN", "OPTOUT"]
ConsentStatus = Literal["draft", "proposed", "active", "rejected", "inactive", "entered-in-error"]

_NEVER_BEFORE = -math.inf
_NEVER_AFTER = math.inf


def _ts(instant: datetime | None, unbounded: float) -> float:
    return unbounded if instant is None else instant.timestamp()


@dataclass(frozen=True, slots=True)
class OrganisationSet:
    """Organisations named by a consent actor: by URA, or by organisation type (e.g. ``Z3``)."""

    uras: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()

    def contains(self, ura: str, types: frozenset[str]) -> bool:
        """Whether the organisation with this URA and these types is in the set."""
        return ura in self.uras or not self.types.isdisjoint(types)


@dataclass(frozen=True, slots=True, kw_only=True)
class Provision:
    """One rule of a consent, with its nested exceptions; None on an element means "any"."""

    path: str
    type: ProvisionType
    period_start: datetime | None = None
    period_end: datetime | None = None
    holders: frozenset[str] | None = None
    recipients: OrganisationSet | None = None
    actions: frozenset[str] | None = None
    purposes: frozenset[str] | None = None
    leaves: frozenset[str] | None = None
    data_start: datetime | None = None
    data_end: datetime | None = None
    children: tuple[Provision, ...] = ()
    # Compiled forms for the hot path.
    deny: bool = field(init=False, repr=False, compare=False)
    lo: float = field(init=False, repr=False, compare=False)
    hi: float = field(init=False, repr=False, compare=False)
    dated: bool = field(init=False, repr=False, compare=False)
    data_lo: float = field(init=False, repr=False, compare=False)
    data_hi: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "deny", self.type == "deny")
        put(self, "lo", _ts(self.period_start, _NEVER_BEFORE))
        put(self, "hi", _ts(self.period_end, _NEVER_AFTER))
        put(self, "dated", self.data_start is not None or self.data_end is not None)
        put(self, "data_lo", _ts(self.data_start, _NEVER_BEFORE))
        put(self, "data_hi", _ts(self.data_end, _NEVER_AFTER))

    def walk(self) -> tuple[Provision, ...]:
        """This provision and all nested ones, depth first."""
        found: list[Provision] = [self]
        for child in self.children:
            found.extend(child.walk())
        return tuple(found)


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientConsent:
    """A parsed FHIR Consent (scope patient-privacy): who recorded it, for whom, and its rules."""

    id: str
    status: ConsentStatus
    patient: str
    policy_rule: PolicyRule
    root: Provision
    recorded_at: str | None = None
    organizations: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        """Whether the consent has status active (only active consents permit or deny)."""
        return self.status == "active"

    def in_force(self, at: datetime) -> bool:
        """Whether the consent is active and ``at`` lies within its period (the root period)."""
        return self.status == "active" and self.root.lo <= at.timestamp() < self.root.hi


def matches(
    p: Provision,
    holder: str,
    actor: str,
    actor_types: frozenset[str],
    action: str,
    purpose: str,
    leaf: str,
    at: float,
    data: float | None,
) -> bool:
    """Whether provision ``p`` itself (not its children) applies to the request."""
    if not p.lo <= at < p.hi:
        return False
    if p.holders is not None and holder not in p.holders:
        return False
    recipients = p.recipients
    if (
        recipients is not None
        and actor not in recipients.uras
        and recipients.types.isdisjoint(actor_types)
    ):
        return False
    if p.actions is not None and action not in p.actions:
        return False
    if p.purposes is not None and purpose not in p.purposes:
        return False
    if p.leaves is not None and leaf not in p.leaves:
        return False
    if p.dated:
        if data is None:
            return p.deny  # undated data: only a deny covers it (see the module docstring)
        return p.data_lo <= data < p.data_hi
    return True


def decisive(
    p: Provision,
    holder: str,
    actor: str,
    actor_types: frozenset[str],
    action: str,
    purpose: str,
    leaf: str,
    at: float,
    data: float | None,
) -> Provision | None:
    """The provision of the tree under ``p`` that decides the request, or None if none applies."""
    if not matches(p, holder, actor, actor_types, action, purpose, leaf, at, data):
        return None
    permit: Provision | None = None
    for child in p.children:
        hit = decisive(child, holder, actor, actor_types, action, purpose, leaf, at, data)
        if hit is not None:
            if hit.deny:
                return hit
            if permit is None:
                permit = hit
    return p if permit is None else permit
