"""The policy decision point: one function from a request and the facts to a decision and its basis.

An actor of organisation B may do ``request.action`` on data of patient P held by organisation A,
for ``request.purpose``, when (Wabvpz, GDPR art. 28):

1. B is A (own data), basis ``own-organisation``; or
2. an agreement in force between A and B covers the purpose and category (``agreement_covers``)
   and the patient's consents permit it (``consent_permits``; for a push: the patient has not
   objected); or
3. such an agreement covers it and the reading actor declared an emergency (break-the-glass,
   purpose ETREAT) for P that still holds: permitted with the obligations
   ``audit-as-emergency`` and ``notify-dpo``. An emergency overrides every consent deny of
   rule 2, by design, not a missing agreement (ARCHITECTURE.md); it is used only when rule 2
   denies, and the basis records what it overrode.

Anything else is denied, with the rule that denied it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from consent._agreements import Agreement, agreement_covers, agreement_gap
from consent._consent_check import OPT_IN, NetworkPolicy, consent_permits
from consent._emergency import Emergency
from consent._explanation import Language, explain
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

    @property
    def judges_data_dates(self) -> bool:
        """Whether the date of the data can change a decision on these facts: only a provision
        with a data period looks at it. When not, requests that differ only in ``data_date``
        are decided alike (a caller may decide one for all)."""
        return any(p.dated for c in self.consents for p in c.root.walk())


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

    def explain(self, language: Language = "en") -> str:
        """One sentence for a DPO, in English or Dutch: what was decided, and on which basis."""
        return explain(self, language)


def decide(request: AccessRequest, facts: PolicyFacts) -> AccessDecision:
    """Decide ``request`` from ``facts``: permit or deny, with its basis and obligations."""
    if request.actor_org == request.holder_org:
        return AccessDecision(True, _OWN, _NONE, request)
    agreement = agreement_covers(request, facts.agreements)
    if agreement is None:  # the organisations' agreement is needed in an emergency too
        rule, about = agreement_gap(request, facts.agreements)
        basis = DecisionBasis("denied", rule, agreement_id=about)
        return AccessDecision(False, basis, _NONE, request)
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
    for emergency in facts.emergencies:  # in place of the patient's consent, not the agreement
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


def read_granted(
    request: AccessRequest, consent_ids: Sequence[str], agreement_id: str
) -> AccessDecision:
    """The decision ``decide`` takes on a read of another organisation's data that a consent
    grant (``consent_grants``) and one agreement in force cover, from those alone: a caller
    that found the grant and the agreement where its SQL judged the read need not decide it
    again. ``consent_ids`` are the matching grant's (they name the consents that permit),
    ``agreement_id`` the one agreement covering the request; with more than one, ``decide``
    names the first of its facts, which the caller must then ask."""
    if request.action != "read" or request.actor_org == request.holder_org:
        raise ValueError("read_granted is for reads of another organisation's data")
    rule = "consent" if consent_ids else "opt-out-default"
    basis = DecisionBasis("agreement-and-consent", rule, tuple(consent_ids), agreement_id)
    return AccessDecision(True, basis, _NONE, request)


_OWN: Final = DecisionBasis("own-organisation", "own-organisation")
