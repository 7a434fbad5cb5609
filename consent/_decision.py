"""The policy decision point: one function from a request and the facts to a decision and its basis.

An actor of organisation B may do ``request.action`` on data of patient P held by organisation A,
for ``request.purpose``, when (Wabvpz, GDPR art. 28):

1. B is A (own data), basis ``own-organisation``; or
2. an agreement in force between A and B covers the purpose and category (``agreement_covers``)
   and the patient's consents permit it (``consent_permits``; for a push: the patient has not
   objected); or
3. the reading actor declared an emergency (break-the-glass, purpose ETREAT) for P that still
   holds: permitted with the obligations ``audit-as-emergency`` and ``notify-dpo``. An emergency
   overrides every deny of rule 2, by design; it is used only when rule 2 denies, and the basis
   records what it overrode.

Anything else is denied, with the rule that denied it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from consent._agreements import Agreement, agreement_covers, agreement_gap
from consent._categories import DATA_CATEGORIES
from consent._consent_check import OPT_IN, NetworkPolicy, consent_permits
from consent._emergency import Emergency
from consent._provisions import PatientConsent
from consent._request import AccessRequest

OBLIGATION_AUDIT_AS_EMERGENCY: Final = "audit-as-emergency"
OBLIGATION_NOTIFY_DPO: Final = "notify-dpo"
_EMERGENCY_OBLIGATIONS: Final = frozenset({OBLIGATION_AUDIT_AS_EMERGENCY, OBLIGATION_NOTIFY_DPO})
_NONE: Final[frozenset[str]] = frozenset()

BasisKind = Literal["own-organisation", "agreement-and-consent", "referral", "emergency", "denied"]


@dataclass(frozen=True, slots=True)
class PolicyFacts:
    """What the gateway knows for one decision: the patient's consents, the agreements between
    the two organisations, the emergencies declared for the patient, and the network policy."""

    consents: Sequence[PatientConsent] = ()
    agreements: Sequence[Agreement] = ()
    emergencies: Sequence[Emergency] = ()
    policy: NetworkPolicy = field(default=OPT_IN)


@dataclass(frozen=True, slots=True)
class DecisionBasis:
    """Why a decision was taken, in the terms an auditor checks.

    ``rule`` is ``own-organisation``, ``consent``, ``opt-out-default``, ``no-objection`` or
    ``emergency`` for a permit; for a deny one of ``no-agreement``, ``agreement-not-covering``,
    ``agreement-expired``, ``agreement-not-yet-valid``, ``consent-deny:<id>``, ``consent-expired``,
    ``no-consent`` or ``default-deny``. ``overridden`` is the deny rule an emergency overrode.
    """

    kind: BasisKind
    rule: str
    consent_ids: tuple[str, ...] = ()
    agreement_id: str | None = None
    emergency_reason: str | None = None
    provision: str | None = None
    overridden: str | None = None


@dataclass(frozen=True, slots=True)
class AccessDecision:
    """The answer: ``permit``, its ``basis``, the ``obligations`` the gateway must fulfil."""

    permit: bool
    basis: DecisionBasis
    obligations: frozenset[str]
    request: AccessRequest

    def explain(self) -> str:
        """One sentence in English for a DPO: what was decided, and on which basis."""
        return _explain(self)


def decide(request: AccessRequest, facts: PolicyFacts) -> AccessDecision:
    """Decide ``request`` from ``facts``: permit or deny, with its basis and obligations."""
    if request.actor_org == request.holder_org:
        return AccessDecision(True, _OWN, _NONE, request)
    agreement = agreement_covers(request, facts.agreements)
    if agreement is None:
        rule, about = agreement_gap(request, facts.agreements)
        basis = DecisionBasis("denied", rule, agreement_id=about)
    else:
        verdict = consent_permits(request, facts.consents, facts.policy)
        if verdict.permit:
            kind: BasisKind = "referral" if request.action == "push" else "agreement-and-consent"
            return AccessDecision(
                True,
                DecisionBasis(kind, verdict.rule, verdict.consent_ids, agreement.id),
                _NONE,
                request,
            )
        basis = DecisionBasis(
            "denied", verdict.rule, verdict.consent_ids, agreement.id, provision=verdict.provision
        )
    for emergency in facts.emergencies:
        if emergency.covers(request):
            return AccessDecision(
                True,
                DecisionBasis(
                    "emergency",
                    "emergency",
                    basis.consent_ids,
                    basis.agreement_id,
                    emergency_reason=emergency.reason,
                    provision=basis.provision,
                    overridden=basis.rule,
                ),
                _EMERGENCY_OBLIGATIONS,
                request,
            )
    return AccessDecision(False, basis, _NONE, request)


_OWN: Final = DecisionBasis("own-organisation", "own-organisation")


def _explain(d: AccessDecision) -> str:
    r, b = d.request, d.basis
    data = f"{DATA_CATEGORIES[r.leaf].title} of the patient held by {r.holder_org}"
    doing = (
        f"organisation {r.actor_org} to receive {data}"
        if r.action == "push"
        else f"{r.actor_id} of organisation {r.actor_org} to read {data}"
    )
    what = f"{doing} for purpose {r.purpose}"
    consents = ", ".join(b.consent_ids)
    if b.kind == "own-organisation":
        return f"Permitted for {what}: the data are the organisation's own."
    if b.kind == "emergency":
        return (
            f"Permitted as emergency access (break-the-glass) for {what}, reason: "
            f"'{b.emergency_reason}'; audited as an emergency and reported to the DPO "
            f"(without it: {_deny_reason(b.overridden or '', b, r.actor_org, r.holder_org)})."
        )
    if d.permit:
        if b.rule == "no-objection":
            why = "the patient has not objected"
        elif b.rule == "opt-out-default":
            why = "the patient has not objected and the network policy is opt-out"
        else:
            why = f"the patient's consent {consents} permits it"
        return f"Permitted for {what}: agreement {b.agreement_id} covers it and {why}."
    return f"Denied for {what}: {_deny_reason(b.rule, b, r.actor_org, r.holder_org)}."


def _deny_reason(rule: str, b: DecisionBasis, actor: str, holder: str) -> str:
    consents = ", ".join(b.consent_ids)
    if rule.startswith("consent-deny:"):
        return f"the patient's consent {rule.split(':', 1)[1]} forbids it ({b.provision})"
    return {
        "no-agreement": f"{actor} and {holder} have no agreement",
        "agreement-not-covering": (
            f"no agreement between {actor} and {holder} covers this purpose and data category"
        ),
        "agreement-expired": f"agreement {b.agreement_id} has ended or expired",
        "agreement-not-yet-valid": f"agreement {b.agreement_id} is not yet in force",
        "consent-expired": f"the patient's consent {consents} that permitted it has expired",
        "no-consent": "the patient has recorded no consent and the network policy is opt-in",
        "default-deny": "none of the patient's consents permits it",
    }.get(rule, rule)
