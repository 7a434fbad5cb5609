"""Builders for the consent tests: FHIR Consent JSON, agreements and requests in few words."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from consent import (
    AccessRequest,
    Agreement,
    AgreementDocument,
    PatientConsent,
    categories_of,
    parse_consent,
)

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
CONSENT_EXAMPLES = SHARED_DATA / "fhir-r4-spec-examples" / "Consent"

URA_SYSTEM = "http://fhir.nl/fhir/NamingSystem/ura"
BSN_SYSTEM = "http://fhir.nl/fhir/NamingSystem/bsn"
ORG_TYPE_SYSTEM = "http://nictiz.nl/fhir/NamingSystem/organization-type"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONSENT_ACTION = "http://terminology.hl7.org/CodeSystem/consentaction"
CATEGORY_SYSTEM = "http://zorgbrug.nl/fhir/CodeSystem/data-category"
MITZ_SYSTEM = "urn:oid:2.16.840.1.113883.2.4.3.111.5.10.1"
RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"

# Holder A (a hospital), requester B (a hospital), third party C (a GP practice).
HOSPITAL_A = "00000001"
HOSPITAL_B = "00000002"
PRACTICE_C = "00000003"
PATIENT = "999911120"
OTHER_PATIENT = "999911132"
T0 = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)
TYPES = {
    HOSPITAL_A: frozenset({"Z3"}),
    HOSPITAL_B: frozenset({"Z3"}),
    PRACTICE_C: frozenset({"Z4"}),
}

OBSERVATION_LAB = {
    "resourceType": "Observation",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "laboratory",
                }
            ]
        }
    ],
}


def coding(system: str, code: str) -> dict[str, str]:
    return {"system": system, "code": code}


def concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [coding(system, code)]}


def actor(role: str, reference: Mapping[str, Any]) -> dict[str, Any]:
    return {"role": concept(PARTICIPATION, role), "reference": dict(reference)}


def ura(value: str) -> dict[str, Any]:
    return {"type": "Organization", "identifier": {"system": URA_SYSTEM, "value": value}}


def provision(
    kind: str | None = "permit",
    *,
    to: Iterable[str] = (),
    to_types: Iterable[str] = (),
    held_by: Iterable[str] = (),
    actions: Iterable[str] = (),
    purposes: Iterable[str] = (),
    categories: Iterable[str] = (),
    mitz: Iterable[str] = (),
    types: Iterable[str] = (),
    period: tuple[str | None, str | None] | None = None,
    data_period: tuple[str | None, str | None] | None = None,
    children: Iterable[Mapping[str, Any]] = (),
    **extra: Any,
) -> dict[str, Any]:
    """A Consent.provision: ``to`` recipients by URA, ``to_types`` by organisation type,
    ``held_by`` the holders (CST); ``categories`` ours, ``mitz`` GGC codes, ``types`` resource types."""
    p: dict[str, Any] = {}
    if kind is not None:
        p["type"] = kind
    actors = [actor("CST", ura(u)) for u in held_by]
    actors += [actor("PRCP", ura(u)) for u in to]
    actors += [actor("PRCP", {"reference": f"#orgtype-{t}"}) for t in to_types]
    if actors:
        p["actor"] = actors
    if actions:
        p["action"] = [concept(CONSENT_ACTION, a) for a in actions]
    if purposes:
        p["purpose"] = [coding(ACT_REASON, code) for code in purposes]
    classes = [coding(CATEGORY_SYSTEM, c) for c in categories]
    classes += [coding(MITZ_SYSTEM, c) for c in mitz]
    classes += [coding(RESOURCE_TYPES, t) for t in types]
    if classes:
        p["class"] = classes
    for name, value in (("period", period), ("dataPeriod", data_period)):
        if value is not None:
            p[name] = {k: v for k, v in zip(("start", "end"), value, strict=True) if v is not None}
    if children:
        p["provision"] = [dict(c) for c in children]
    p.update(extra)
    return p


def _org_types_used(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and ref.startswith("#orgtype-"):
            found.add(ref.removeprefix("#orgtype-"))
        for value in node.values():
            found |= _org_types_used(value)
    elif isinstance(node, list):
        for item in node:
            found |= _org_types_used(item)
    return found


def consent_json(
    consent_id: str = "c1",
    rules: Mapping[str, Any] | None = None,
    *,
    status: str = "active",
    patient: str = PATIENT,
    policy_rule: str = "OPTIN",
    **extra: Any,
) -> dict[str, Any]:
    """A FHIR R4 Consent (patient-privacy) with ``rules`` as its root provision."""
    root = dict(rules) if rules is not None else provision("permit")
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": consent_id,
        "status": status,
        "scope": concept("http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy"),
        "category": [concept("http://loinc.org", "59284-0")],
        "patient": {"identifier": {"system": BSN_SYSTEM, "value": patient}},
        "dateTime": "2025-01-15",
        "organization": [ura(HOSPITAL_A)],
        "policyRule": concept(ACT_CODE, policy_rule),
        "provision": root,
    }
    contained = [
        {
            "resourceType": "Organization",
            "id": f"orgtype-{t}",
            "type": [concept(ORG_TYPE_SYSTEM, t)],
        }
        for t in sorted(_org_types_used(root))
    ]
    if contained:
        resource["contained"] = contained
    resource.update(extra)
    return resource


def consent(
    consent_id: str = "c1", rules: Mapping[str, Any] | None = None, **kw: Any
) -> PatientConsent:
    """A parsed consent (see ``consent_json``)."""
    return parse_consent(consent_json(consent_id, rules, **kw))


def agreement(
    agreement_id: str = "a1",
    *,
    parties: Iterable[str] = (HOSPITAL_A, HOSPITAL_B),
    purposes: Iterable[str] = ("TREAT",),
    categories: Iterable[str] = ("treatment",),
    valid_from: date = date(2024, 1, 1),
    valid_to: date | None = None,
    status: str = "active",
    kind: str = "processor",
) -> Agreement:
    return Agreement(
        id=agreement_id,
        kind=kind,  # type: ignore[arg-type]
        parties=frozenset(parties),
        purposes=frozenset(purposes),
        categories=frozenset(categories),
        valid_from=valid_from,
        valid_to=valid_to,
        status=status,  # type: ignore[arg-type]
        document=AgreementDocument(
            title=f"Verwerkersovereenkomst {agreement_id}",
            url=f"https://docs.example.org/agreements/{agreement_id}.pdf",
            sha256="0" * 63 + "1",
        ),
    )


def request(
    resource_type: str = "Condition",
    *,
    actor_org: str = HOSPITAL_B,
    holder_org: str = HOSPITAL_A,
    actor_types: Iterable[str] | None = None,
    actor_id: str = "practitioner-1",
    purpose: str = "TREAT",
    action: str = "read",
    at: datetime = T0,
    data_date: date | datetime | None = None,
    resource: Mapping[str, Any] | None = None,
    patient: str = PATIENT,
) -> AccessRequest:
    return AccessRequest(
        actor_org=actor_org,
        actor_org_types=frozenset(actor_types)
        if actor_types is not None
        else TYPES.get(actor_org, frozenset()),
        actor_id=actor_id,
        actor_role="medisch-specialist",
        holder_org=holder_org,
        patient=patient,
        purpose=purpose,
        action=action,  # type: ignore[arg-type]
        resource_type=resource_type,
        categories=categories_of(resource_type, resource),
        at=at,
        data_date=data_date,
    )
