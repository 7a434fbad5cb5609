"""The 12 official FHIR R4 Consent examples: each accepted, or refused with a clear reason.

Their literal references (``Organization/f001``, ``Patient/f001`` …) are resolved as a gateway
would, so that each example is judged on its rules rather than on a missing identifier.
"""

from __future__ import annotations

import json

import pytest
from consent_builders import CONSENT_EXAMPLES, HOSPITAL_A, HOSPITAL_B, T0, agreement, request

from consent import InvalidConsent, MappingResolver, PolicyFacts, decide, parse_consent

RESOLVER = MappingResolver(
    organizations={"Organization/f001": HOSPITAL_A},
    patients={
        "Patient/f001": "999911120",
        "Patient/example": "999911120",
        "Patient/72": "999911120",
        "Patient/xcda": "999911120",
    },
)
ROOT_TYPE = "missing; the root rule must state permit or deny (it is not inferred from policyRule)"

# file -> None when accepted, else (element, reason) of the refusal.
EXPECTED: dict[str, tuple[str, str] | None] = {
    # Category EMRGONLY ("emergency only") is itself a restriction; the example's tree also
    # contradicts its narrative (a deny exception where the text describes a permit).
    "Consent-consent-example-Emergency.json": (
        "Consent.category[0]",
        "category http://terminology.hl7.org/CodeSystem/v3-ActCode|EMRGONLY is not a "
        "privacy-consent category this gateway enforces",
    ),
    # No provision.type: "withhold" is only implied by policyRule OPTOUT.
    "Consent-consent-example-Out.json": ("Consent.provision.type", ROOT_TYPE),
    # No provision.type: "authorize" is only implied by policyRule OPTIN.
    "Consent-consent-example-basic.json": ("Consent.provision.type", ROOT_TYPE),
    # Category INFAO ("access only") restricts; the recipient is a Patient, not an organisation.
    "Consent-consent-example-grantor.json": (
        "Consent.category[0]",
        "category http://terminology.hl7.org/CodeSystem/v3-ActCode|INFAO is not a "
        "privacy-consent category this gateway enforces",
    ),
    # No provision.type, and OPTIN although the narrative withholds: exactly the ambiguity.
    "Consent-consent-example-notAuthor.json": ("Consent.provision.type", ROOT_TYPE),
    # An explicit deny of access and correction by organisation f001: enforceable.
    "Consent-consent-example-notOrg.json": None,
    # The deny targets one nurse (a Practitioner): consent is enforced per organisation.
    "Consent-consent-example-notThem.json": (
        "Consent.provision.actor[0].reference",
        "'Practitioner/f204' names a Practitioner; consent is enforced per organisation",
    ),
    # Withholds one specific record (Task/example3) by data reference.
    "Consent-consent-example-notThis.json": (
        "Consent.provision.data",
        "rules on specific resources (data references) are not enforced",
    ),
    # No provision.type, OPTIN although the narrative withholds that time frame.
    "Consent-consent-example-notTime.json": ("Consent.provision.type", ROOT_TYPE),
    # Rules on confidentiality labels (N, PSY, SPI, SEX).
    "Consent-consent-example-pkb.json": (
        "Consent.provision.securityLabel",
        "rules on security labels are not enforced",
    ),
    # Category npp (privacy notice), Practitioner actors, role AUT, CDA mime-type class, LOINC codes.
    "Consent-consent-example-signature.json": (
        "Consent.category[0]",
        "category http://terminology.hl7.org/CodeSystem/consentcategorycodes|npp is not a "
        "privacy-consent category this gateway enforces",
    ),
    # No provision.type at the root (its nested MedicationRequest permit would be enforceable).
    "Consent-consent-example-smartonfhir.json": ("Consent.provision.type", ROOT_TYPE),
}


def test_the_table_lists_every_official_example():
    assert sorted(p.name for p in CONSENT_EXAMPLES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_official_consent_example(name):
    resource = json.loads((CONSENT_EXAMPLES / name).read_text())
    expected = EXPECTED[name]
    if expected is None:
        assert parse_consent(resource, resolver=RESOLVER).status == "active"
        return
    with pytest.raises(InvalidConsent) as caught:
        parse_consent(resource, resolver=RESOLVER)
    assert (caught.value.element, caught.value.reason) == expected


def test_official_examples_with_literal_references_need_a_resolver():
    resource = json.loads((CONSENT_EXAMPLES / "Consent-consent-example-notOrg.json").read_text())
    with pytest.raises(InvalidConsent, match=r"^Consent\.patient\.reference: 'Patient/f001'"):
        parse_consent(resource)


def test_not_org_example_denies_reads_by_that_organisation_only():
    resource = json.loads((CONSENT_EXAMPLES / "Consent-consent-example-notOrg.json").read_text())
    not_org = parse_consent(resource, resolver=RESOLVER)
    facts = PolicyFacts(
        consents=[not_org], agreements=[agreement(parties=[HOSPITAL_A, HOSPITAL_B, "00000009"])]
    )
    # f001 (resolved to HOSPITAL_A) may not read data held by another organisation.
    d = decide(request(actor_org=HOSPITAL_A, holder_org=HOSPITAL_B, at=T0), facts)
    assert d.basis.rule == "consent-deny:consent-example-notOrg"
    # Another organisation is not denied by it (and, opt-in, not permitted either).
    d = decide(request(actor_org="00000009", holder_org=HOSPITAL_B), facts)
    assert d.basis.rule == "default-deny"
