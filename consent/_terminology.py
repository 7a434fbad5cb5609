"""Code systems and code tables the consent rules are written in.

Purposes of use come from HL7 v3 ActReason (the PurposeOfUse branch). Only the codes below are
enforced, because only for these do we know every specialisation: a rule about a code also covers
the codes it subsumes (a permit or deny for TREAT also applies to ETREAT and BTG), so accepting a
code whose children we do not model could let a deny miss a request.

Consent actions (http://terminology.hl7.org/CodeSystem/consentaction) are mapped onto the two
things the gateway does with a patient's data:

    ``read``  an actor of another organisation retrieves the data (viewer, FHIR API)
    ``push``  the holder sends the data to an addressee, who stores it (MHD ITI-65, referral)

    access  -> read          retrieval
    use     -> read, push    retrieval and use
    collect -> push          gathering retrieved information for storage
    capture -> push          persisting the information
    correct -> (nothing)     retrieval to rectify: the gateway never does this; a provision whose
                             actions map to nothing is rejected rather than kept as a dead rule
"""

from __future__ import annotations

from typing import Final

URA_SYSTEMS: Final = frozenset(
    {"http://fhir.nl/fhir/NamingSystem/ura", "urn:oid:2.16.528.1.1007.3.3"}
)
URA_SYSTEM: Final = "http://fhir.nl/fhir/NamingSystem/ura"
BSN_SYSTEMS: Final = frozenset(
    {"http://fhir.nl/fhir/NamingSystem/bsn", "urn:oid:2.16.840.1.113883.2.4.6.3"}
)
ORGANIZATION_TYPE_SYSTEMS: Final = frozenset(
    {
        "http://nictiz.nl/fhir/NamingSystem/organization-type",
        "urn:oid:2.16.840.1.113883.2.4.15.1060",
    }
)
ACT_REASON_SYSTEMS: Final = frozenset(
    {"http://terminology.hl7.org/CodeSystem/v3-ActReason", "urn:oid:2.16.840.1.113883.5.8"}
)
ACT_REASON_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
ACT_CODE_SYSTEMS: Final = frozenset(
    {"http://terminology.hl7.org/CodeSystem/v3-ActCode", "urn:oid:2.16.840.1.113883.5.4"}
)
PARTICIPATION_TYPE_SYSTEMS: Final = frozenset(
    {
        "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
        "urn:oid:2.16.840.1.113883.5.90",
    }
)
CONSENT_SCOPE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENT_ACTION_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/consentaction"
LOINC_SYSTEM: Final = "http://loinc.org"
RESOURCE_TYPES_SYSTEM: Final = "http://hl7.org/fhir/resource-types"
# Mitz "GTZ gegevenscategorie" (GGC002 treatment data, GGC012 results, GGC013 medication).
MITZ_CATEGORY_SYSTEM: Final = "urn:oid:2.16.840.1.113883.2.4.3.111.5.10.1"

# Zorgbrug's own code systems (documented in consent/__init__.py).
DATA_CATEGORY_SYSTEM: Final = "http://zorgbrug.nl/fhir/CodeSystem/data-category"
CATEGORY_SYSTEMS: Final = frozenset(
    {DATA_CATEGORY_SYSTEM, MITZ_CATEGORY_SYSTEM, RESOURCE_TYPES_SYSTEM}
)
AGREEMENT_ID_SYSTEM: Final = "http://zorgbrug.nl/fhir/NamingSystem/agreement"
AGREEMENT_KIND_SYSTEM: Final = "http://zorgbrug.nl/fhir/CodeSystem/agreement-kind"
AGREEMENT_PARTY_ROLE_SYSTEM: Final = "http://zorgbrug.nl/fhir/CodeSystem/agreement-party-role"
AGREEMENT_ACTION_SYSTEM: Final = "http://zorgbrug.nl/fhir/CodeSystem/agreement-action"
SHA256_EXTENSION: Final = "http://zorgbrug.nl/fhir/StructureDefinition/attachment-sha256"

# Purpose of use -> every code it covers (itself and its specialisations in v3 ActReason).
PURPOSES: Final[dict[str, frozenset[str]]] = {
    "TREAT": frozenset({"TREAT", "ETREAT", "BTG"}),
    "ETREAT": frozenset({"ETREAT", "BTG"}),
    "BTG": frozenset({"BTG"}),
    "HPAYMT": frozenset({"HPAYMT"}),
    "HOPERAT": frozenset({"HOPERAT"}),
    "HRESCH": frozenset({"HRESCH"}),
    "PATRQT": frozenset({"PATRQT"}),
    "PUBHLTH": frozenset({"PUBHLTH"}),
}
EMERGENCY_PURPOSES: Final = PURPOSES["ETREAT"]

ACTIONS: Final = frozenset({"read", "push"})
CONSENT_ACTIONS: Final[dict[str, frozenset[str]]] = {
    "access": frozenset({"read"}),
    "use": frozenset({"read", "push"}),
    "collect": frozenset({"push"}),
    "capture": frozenset({"push"}),
    "correct": frozenset(),
}


def expand_purposes(codes: frozenset[str]) -> frozenset[str]:
    """Every purpose covered by ``codes`` (each code with its specialisations)."""
    covered: set[str] = set()
    for code in codes:
        covered |= PURPOSES[code]
    return frozenset(covered)
