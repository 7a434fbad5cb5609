"""The patient's side of the decision: do the patient's consents permit this access?

- A consent takes part only when it is about this patient, has status ``active`` and the request
  falls within its root period; inactive, expired or not-yet-valid consents neither permit nor deny.
- Deny wins: when any taking-part consent's rule tree decides ``deny``, the answer is deny. A
  patient lifts an objection by revoking (deactivating) the consent that holds it.
- ``read``: permitted when some consent decides ``permit``, or, when no consent decides at all,
  by the network default. Under ``opt-in`` (the Dutch rule) the default is deny. Under ``opt-out``
  it is permit, unless a consent in force was recorded under policyRule OPTIN: that patient chose
  explicit consent, so only what they permitted is shared.
- ``push`` (a referral addressed to the recipient): permitted unless a consent decides ``deny``; no
  explicit permit is needed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from consent._provisions import PatientConsent, Provision, decisive
from consent._request import AccessRequest

DefaultPolicy = Literal["opt-in", "opt-out"]


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """The network's policy when a patient recorded no consent: ``opt-in`` (deny) or ``opt-out``."""

    default: DefaultPolicy = "opt-in"

    def __post_init__(self) -> None:
        if self.default not in ("opt-in", "opt-out"):
            raise ValueError(f"default policy {self.default!r} is not opt-in or opt-out")


OPT_IN: Final = NetworkPolicy("opt-in")


@dataclass(frozen=True, slots=True)
class ConsentVerdict:
    """What the patient's consents say: ``permit``, the ``rule`` that decided, and its consents.

    Rules: ``consent`` (permitted by ``consent_ids``), ``opt-out-default``, ``no-objection`` (push),
    ``consent-deny:<id>`` (``provision`` names the deciding rule), ``consent-expired`` (the consents
    that would permit have expired), ``no-consent`` (none in force, opt-in) and ``default-deny``
    (consents are in force, but none permits this).
    """

    permit: bool
    rule: str
    consent_ids: tuple[str, ...] = ()
    provision: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What ``evaluate`` found: the answer, the permitting consents or the denying one."""

    permit: bool
    consent_ids: tuple[str, ...]
    denied_by: PatientConsent | None
    deciding: Provision | None
    any_in_force: bool


def evaluate(
    consents: Iterable[PatientConsent],
    patient: str,
    holder: str,
    actor: str,
    actor_types: frozenset[str],
    action: str,
    purpose: str,
    leaf: str,
    at: float,
    data: float | None,
    policy: NetworkPolicy,
) -> Outcome:
    """The core evaluation shared by ``consent_permits`` and ``consent_grants``."""
    permits: list[str] = []
    any_in_force = explicit_only = False
    for consent in consents:
        root = consent.root
        if consent.patient != patient or consent.status != "active" or not root.lo <= at < root.hi:
            continue
        any_in_force = True
        if consent.policy_rule == "OPTIN":
            explicit_only = True
        hit = decisive(root, holder, actor, actor_types, action, purpose, leaf, at, data)
        if hit is None:
            continue
        if hit.deny:
            return Outcome(False, (consent.id,), consent, hit, True)
        permits.append(consent.id)
    default_permit = policy.default == "opt-out" and not explicit_only
    if action == "push" or permits or default_permit:
        return Outcome(True, tuple(permits), None, None, any_in_force)
    return Outcome(False, (), None, None, any_in_force)


def consent_permits(
    request: AccessRequest, consents: Iterable[PatientConsent], policy: NetworkPolicy = OPT_IN
) -> ConsentVerdict:
    """Whether the patient's consents permit ``request``, with the rule and consents that decided.

    ``consents`` are the patient's consents (others are ignored); see the module docstring.
    """
    if not isinstance(consents, Sequence):
        consents = tuple(consents)
    o = evaluate(
        consents,
        request.patient,
        request.holder_org,
        request.actor_org,
        request.actor_org_types,
        request.action,
        request.purpose,
        request.leaf,
        request.at_ts,
        request.data_ts,
        policy,
    )
    if o.permit:
        if request.action == "push":
            return ConsentVerdict(True, "no-objection", o.consent_ids)
        return ConsentVerdict(
            True, "consent" if o.consent_ids else "opt-out-default", o.consent_ids
        )
    if o.denied_by is not None:
        path = o.deciding.path if o.deciding else None
        return ConsentVerdict(False, f"consent-deny:{o.denied_by.id}", o.consent_ids, path)
    expired = _expired_permits(request, consents)
    if expired:
        return ConsentVerdict(False, "consent-expired", expired)
    return ConsentVerdict(False, "default-deny" if o.any_in_force else "no-consent")


def _expired_permits(request: AccessRequest, consents: Sequence[PatientConsent]) -> tuple[str, ...]:
    """The active consents that expired before the request but permitted it at their end."""
    found = []
    for consent in consents:
        root = consent.root
        if consent.patient != request.patient or consent.status != "active":
            continue
        if not root.hi <= request.at_ts:
            continue
        last = math.nextafter(root.hi, -math.inf)
        hit = decisive(
            root,
            request.holder_org,
            request.actor_org,
            request.actor_org_types,
            request.action,
            request.purpose,
            request.leaf,
            last,
            request.data_ts,
        )
        if hit is not None and not hit.deny:
            found.append(consent.id)
    return tuple(found)
