"""Zorgbrug's policy decision point: consents, agreements and the decision with its basis.

A pure library: no HTTP, no SQL, no ``gateway`` imports. The gateway hands in what it knows
(``PolicyFacts``) and gets back an ``AccessDecision`` that says permit or deny and why.

The law (Wabvpz, GDPR art. 28), as ``decide`` applies it: an actor of organisation B may read
data of patient P held by organisation A for purpose U when B is A; or when an agreement in force
between A and B covers U and the data category and P's consents permit it (for a push addressed
to B: P has not objected) or the actor declared an emergency (break-the-glass) for P: the
emergency stands in for the consent, not for the agreement (ARCHITECTURE.md, rule 1). Deny is
the default. The pieces:

- data categories modelled on Mitz (``categories_of``, ``DATA_CATEGORIES``; see ``_categories``);
- ``parse_consent``: FHIR R4 Consent -> ``PatientConsent``, refusing what it cannot enforce;
- ``Agreement`` with ``agreement_to_contract`` / ``agreement_from_contract`` (FHIR R4 Contract);
- ``Emergency`` (break-the-glass, at most ``EMERGENCY_MAX_DURATION``);
- ``agreement_covers`` and ``consent_permits``: the two legal conditions, callable separately;
- ``decide``: the decision with its ``DecisionBasis`` and obligations;
- ``consent_grants`` and ``agreement_grants``: the two legal conditions as rows the gateway can
  filter on in SQL (``leaf_of`` and ``LINEAGE`` place a resource in the category tree).

Zorgbrug's own code systems: ``http://zorgbrug.nl/fhir/CodeSystem/data-category`` (the category
codes of ``DATA_CATEGORIES``), ``.../agreement-kind``, ``.../agreement-party-role`` and
``.../agreement-action``, the naming system ``http://zorgbrug.nl/fhir/NamingSystem/agreement`` and
the extension ``http://zorgbrug.nl/fhir/StructureDefinition/attachment-sha256``.
"""

from consent._agreement_grants import AgreementGrant, agreement_grants
from consent._agreements import (
    AGREEMENT_KINDS,
    Agreement,
    AgreementDocument,
    AgreementKind,
    AgreementStatus,
    agreement_covers,
)
from consent._categories import DATA_CATEGORIES, LINEAGE, DataCategory, categories_of, leaf_of
from consent._consent_check import ConsentVerdict, DefaultPolicy, NetworkPolicy, consent_permits
from consent._decision import (
    OBLIGATION_AUDIT_AS_EMERGENCY,
    OBLIGATION_NOTIFY_DPO,
    AccessDecision,
    BasisKind,
    DecisionBasis,
    PolicyFacts,
    decide,
    read_granted,
)
from consent._emergency import EMERGENCY_MAX_DURATION, Emergency, emergency_may_cover
from consent._errors import (
    ConsentError,
    InvalidAgreement,
    InvalidConsent,
    InvalidEmergency,
    InvalidRequest,
)
from consent._explanation import category_title
from consent._grants import ConsentGrant, consent_grants
from consent._provisions import OrganisationSet, PatientConsent, Provision
from consent._r4_consent import MappingResolver, ReferenceResolver, parse_consent
from consent._r4_contract import agreement_from_contract, agreement_to_contract
from consent._request import AccessRequest, Action

__all__ = [
    "AGREEMENT_KINDS",
    "DATA_CATEGORIES",
    "EMERGENCY_MAX_DURATION",
    "LINEAGE",
    "OBLIGATION_AUDIT_AS_EMERGENCY",
    "OBLIGATION_NOTIFY_DPO",
    "AccessDecision",
    "AccessRequest",
    "Action",
    "Agreement",
    "AgreementDocument",
    "AgreementGrant",
    "AgreementKind",
    "AgreementStatus",
    "BasisKind",
    "ConsentError",
    "ConsentGrant",
    "ConsentVerdict",
    "DataCategory",
    "DecisionBasis",
    "DefaultPolicy",
    "Emergency",
    "InvalidAgreement",
    "InvalidConsent",
    "InvalidEmergency",
    "InvalidRequest",
    "MappingResolver",
    "NetworkPolicy",
    "OrganisationSet",
    "PatientConsent",
    "PolicyFacts",
    "Provision",
    "ReferenceResolver",
    "agreement_covers",
    "agreement_from_contract",
    "agreement_grants",
    "agreement_to_contract",
    "categories_of",
    "category_title",
    "consent_grants",
    "consent_permits",
    "decide",
    "emergency_may_cover",
    "leaf_of",
    "parse_consent",
    "read_granted",
]
