"""parse_consent: what it builds, and every rule it refuses rather than silently ignores."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from consent_builders import (
    ACT_CODE,
    ACT_REASON,
    BSN_SYSTEM,
    CONSENT_ACTION,
    HOSPITAL_A,
    HOSPITAL_B,
    PARTICIPATION,
    PATIENT,
    URA_SYSTEM,
    actor,
    coding,
    concept,
    consent_json,
    provision,
    ura,
)

from consent import (
    InvalidConsent,
    MappingResolver,
    OrganisationSet,
    parse_consent,
)


def test_parse_builds_the_rule_tree():
    rules = provision(
        "permit",
        to=[HOSPITAL_B],
        held_by=[HOSPITAL_A],
        actions=["access"],
        purposes=["TREAT"],
        categories=["results"],
        period=("2025-01-01", "2025-12-31"),
        data_period=("2020-01", None),
        children=[provision("deny", types=["DiagnosticReport"])],
    )
    c = parse_consent(consent_json("c7", rules))
    assert (c.id, c.status, c.patient, c.policy_rule) == ("c7", "active", PATIENT, "OPTIN")
    assert c.organizations == (HOSPITAL_A,)
    root = c.root
    assert root.type == "permit" and root.path == "Consent.provision"
    assert root.holders == {HOSPITAL_A}
    assert root.recipients == OrganisationSet(uras=frozenset({HOSPITAL_B}))
    assert root.actions == {"read"}
    assert root.purposes == {"TREAT", "ETREAT", "BTG"}
    assert root.leaves == {"result-observations", "diagnostic-reports"}
    assert root.period_start == datetime(2024, 12, 31, 23, 0, tzinfo=UTC)  # Amsterdam midnight
    assert root.period_end == datetime(2025, 12, 31, 23, 0, tzinfo=UTC)  # end day included
    assert root.data_start == datetime(2019, 12, 31, 23, 0, tzinfo=UTC)
    assert root.data_end is None
    (child,) = root.children
    assert child.type == "deny" and child.path == "Consent.provision.provision[0]"
    assert child.leaves == {"diagnostic-reports"}


def test_parse_reads_an_organisation_type_from_a_contained_organisation():
    c = parse_consent(consent_json("c1", provision("permit", to_types=["Z3"])))
    assert c.root.recipients == OrganisationSet(types=frozenset({"Z3"}))


def test_parse_prefers_the_ura_of_a_contained_organisation_over_its_type():
    resource = consent_json("c1", provision("permit"))
    resource["contained"] = [
        {
            "resourceType": "Organization",
            "id": "b",
            "identifier": [{"system": URA_SYSTEM, "value": HOSPITAL_B}],
            "type": [concept("http://nictiz.nl/fhir/NamingSystem/organization-type", "Z3")],
        }
    ]
    resource["provision"]["actor"] = [actor("PRCP", {"reference": "#b"})]
    assert parse_consent(resource).root.recipients == OrganisationSet(uras=frozenset({HOSPITAL_B}))


def test_parse_accepts_the_oid_form_of_the_ura_system():
    rules = provision("permit")
    rules["actor"] = [
        actor("IRCP", {"identifier": {"system": "urn:oid:2.16.528.1.1007.3.3", "value": "123"}})
    ]
    assert parse_consent(consent_json("c1", rules)).root.recipients == OrganisationSet(
        uras=frozenset({"123"})
    )


def test_parse_resolves_literal_references_through_the_resolver():
    resource = consent_json("c1", provision("permit"))
    resource["patient"] = {"reference": "Patient/p1"}
    resource["provision"]["actor"] = [actor("PRCP", {"reference": "Organization/b"})]
    resolver = MappingResolver(
        organizations={"Organization/b": HOSPITAL_B}, patients={"Patient/p1": PATIENT}
    )
    c = parse_consent(resource, resolver=resolver)
    assert c.patient == PATIENT
    assert c.root.recipients == OrganisationSet(uras=frozenset({HOSPITAL_B}))


def test_parse_reads_the_patient_from_a_contained_patient():
    resource = consent_json("c1")
    resource["contained"] = [
        {
            "resourceType": "Patient",
            "id": "p",
            "identifier": [{"system": BSN_SYSTEM, "value": "999911144"}],
        }
    ]
    resource["patient"] = {"reference": "#p"}
    assert parse_consent(resource).patient == "999911144"


def test_parse_maps_mitz_codes_in_provision_code():
    rules = provision("permit")
    rules["code"] = [concept("urn:oid:2.16.840.1.113883.2.4.3.111.5.10.1", "GGC012")]
    assert parse_consent(consent_json("c1", rules)).root.leaves == {
        "result-observations",
        "diagnostic-reports",
    }


def test_parse_intersects_class_and_code():
    rules = provision("permit", categories=["medication"])
    rules["code"] = [concept("http://hl7.org/fhir/resource-types", "MedicationRequest")]
    assert parse_consent(consent_json("c1", rules)).root.leaves == {"medication-requests"}


def test_parse_accepts_inactive_consents_that_are_enforceable():
    assert parse_consent(consent_json("c1", status="inactive")).status == "inactive"


def test_parse_keeps_an_unresolvable_recording_organisation_as_written():
    resource = consent_json("c1")
    resource["organization"] = [{"reference": "Organization/unknown"}]
    assert parse_consent(resource).organizations == ("Organization/unknown",)


def _edit(path: str, value: Any, rules: dict[str, Any] | None = None) -> dict[str, Any]:
    """A valid Consent with ``value`` set at a dotted ``path`` (None deletes it)."""
    resource = consent_json("c1", rules or provision("permit", children=[provision("deny")]))
    *parents, last = path.split(".")
    node: Any = resource
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is None:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = copy.deepcopy(value)
    return resource


ROLE_X = [actor("X", ura(HOSPITAL_B))]
REFUSED = [
    # (test id, resource, element, reason fragment)
    (
        "not-a-consent",
        _edit("resourceType", "Contract"),
        "Consent.resourceType",
        "expected Consent",
    ),
    ("no-id", _edit("id", None), "Consent.id", "missing"),
    ("bad-status", _edit("status", "withdrawn"), "Consent.status", "not a Consent status"),
    (
        "treatment-scope",
        _edit("scope", concept("http://terminology.hl7.org/CodeSystem/consentscope", "treatment")),
        "Consent.scope",
        "is not patient-privacy",
    ),
    (
        "restricting-category",
        _edit("category", [concept(ACT_CODE, "EMRGONLY")]),
        "Consent.category[0]",
        "EMRGONLY is not a privacy-consent category",
    ),
    ("no-patient", _edit("patient", None), "Consent.patient", "missing"),
    (
        "patient-not-bsn",
        _edit("patient", {"identifier": {"system": "urn:oid:1.2.3", "value": "x"}}),
        "Consent.patient.identifier",
        "only a BSN",
    ),
    (
        "unresolved-patient",
        _edit("patient", {"reference": "Patient/p1"}),
        "Consent.patient.reference",
        "'Patient/p1' is not a known patient",
    ),
    (
        "policy-document",
        _edit("policy", [{"uri": "https://example.org/policy.pdf"}]),
        "Consent.policy[0]",
        "is not enforced",
    ),
    ("no-policy-rule", _edit("policyRule", None), "Consent.policyRule", "missing"),
    (
        "unknown-policy-rule",
        _edit("policyRule", concept(ACT_CODE, "OPTINR")),
        "Consent.policyRule",
        "OPTINR is not known",
    ),
    ("no-provision", _edit("provision", None), "Consent.provision", "missing"),
    (
        "root-without-type",
        _edit("provision.type", None),
        "Consent.provision.type",
        "the root rule must state permit or deny",
    ),
    (
        "nested-without-type",
        _edit("provision.provision.0.type", None),
        "Consent.provision.provision[0].type",
        "None is not permit or deny",
    ),
    (
        "unknown-role",
        _edit("provision.provision.0.actor", ROLE_X),
        "Consent.provision.provision[0].actor[0].role",
        "role 'X' is not enforced",
    ),
    (
        "role-from-other-system",
        _edit(
            "provision.actor", [{"role": concept("urn:x", "PRCP"), "reference": ura(HOSPITAL_B)}]
        ),
        "Consent.provision.actor[0].role",
        "is not enforced",
    ),
    (
        "practitioner-actor",
        _edit("provision.actor", [actor("PRCP", {"reference": "Practitioner/f204"})]),
        "Consent.provision.actor[0].reference",
        "names a Practitioner",
    ),
    (
        "unresolved-organisation",
        _edit("provision.actor", [actor("PRCP", {"reference": "Organization/f001"})]),
        "Consent.provision.actor[0].reference",
        "has no known URA",
    ),
    (
        "holder-by-type",
        _edit(
            "provision.actor",
            [actor("CST", {"reference": "#orgtype-Z3"})],
            provision("permit", to_types=["Z3"]),
        ),
        "Consent.provision.actor[0].reference",
        "must be named by URA",
    ),
    (
        "security-label",
        _edit(
            "provision.securityLabel",
            [coding("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R")],
        ),
        "Consent.provision.securityLabel",
        "security labels are not enforced",
    ),
    (
        "data-reference",
        _edit(
            "provision.provision.0.data",
            [{"meaning": "instance", "reference": {"reference": "Observation/1"}}],
        ),
        "Consent.provision.provision[0].data",
        "specific resources",
    ),
    (
        "purpose-system",
        _edit("provision.purpose", [coding("urn:x", "TREAT")]),
        "Consent.provision.purpose[0]",
        "purpose system 'urn:x' is not known",
    ),
    (
        "purpose-code",
        _edit("provision.purpose", [coding(ACT_REASON, "CLINTRCH")]),
        "Consent.provision.purpose[0]",
        "purpose 'CLINTRCH' is not enforced",
    ),
    (
        "action-code",
        _edit("provision.action", [concept(CONSENT_ACTION, "disclose")]),
        "Consent.provision.action[0]",
        "is not enforced",
    ),
    (
        "action-only-correct",
        _edit("provision.action", [concept(CONSENT_ACTION, "correct")]),
        "Consent.provision.action",
        "none of these actions",
    ),
    (
        "content-code",
        _edit("provision.code", [concept("http://loinc.org", "34133-9")]),
        "Consent.provision.code[0]",
        "content codes are not enforced",
    ),
    (
        "class-system",
        _edit("provision.class", [coding("urn:ietf:bcp:13", "application/hl7-cda+xml")]),
        "Consent.provision.class[0]",
        "class system 'urn:ietf:bcp:13' is not enforced",
    ),
    (
        "class-type-without-category",
        _edit("provision.class", [coding("http://hl7.org/fhir/resource-types", "CarePlan")]),
        "Consent.provision.class[0]",
        "falls under 'other'",
    ),
    (
        "unknown-category",
        _edit("provision.class", [coding("http://zorgbrug.nl/fhir/CodeSystem/data-category", "x")]),
        "Consent.provision.class[0]",
        "is not a known data category",
    ),
    (
        "class-and-code-disjoint",
        _edit(
            "provision.code",
            [concept("urn:oid:2.16.840.1.113883.2.4.3.111.5.10.1", "GGC013")],
            provision("permit", categories=["results"]),
        ),
        "Consent.provision.code",
        "selects no data at all",
    ),
    (
        "period-reversed",
        _edit("provision.period", {"start": "2025-02-01", "end": "2025-01-01"}),
        "Consent.provision.period",
        "is not before end",
    ),
    (
        "time-without-zone",
        _edit("provision.dataPeriod", {"start": "2025-02-01T10:00:00"}),
        "Consent.provision.dataPeriod",
        "has a time but no time zone",
    ),
    (
        "modifier-extension",
        _edit("provision.provision.0.modifierExtension", [{"url": "urn:x", "valueBoolean": True}]),
        "Consent.provision.provision[0].modifierExtension",
        "not understood",
    ),
    (
        "implicit-rules",
        _edit("implicitRules", "https://example.org/rules"),
        "Consent.implicitRules",
        "cannot be enforced",
    ),
]


@pytest.mark.parametrize(
    "resource, element, reason", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_parse_refuses_what_it_cannot_enforce(resource, element, reason):
    with pytest.raises(InvalidConsent) as caught:
        parse_consent(resource)
    error = caught.value
    assert error.element == element
    assert reason in error.reason
    assert str(error) == f"{element}: {error.reason}"
    assert "\n" not in str(error)


def test_parse_never_reads_role_or_reference_from_an_actor_it_does_not_know():
    rules = provision("permit")
    rules["actor"] = [{"role": concept(PARTICIPATION, "PRCP")}]
    with pytest.raises(InvalidConsent, match=r"actor\[0\]\.reference: missing"):
        parse_consent(consent_json("c1", rules))
