"""One audited event: its facts, and the FHIR R4 AuditEvent they are written as (IHE BALP).

``AuditFacts`` holds what NEN 7513 asks of a record: which event, when, which patient, who (user
or system, organisation, role) and on whose behalf, which data (references and query parameters,
never the data itself), the outcome, the purpose and the basis of the access (consent, agreement,
referral, emergency), and the request's X-Request-Id / X-Correlation-Id. ``to_resource`` writes
them as an AuditEvent; the columns the audit log is searched on are taken from the same facts.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from gateway.audit import codes
from gateway.audit.codes import KINDS, Code
from gateway.fhir.dates import instant
from gateway.fhir.dutch_identifiers import BSN, URA
from gateway.store.keys import new_key


@dataclass(frozen=True, slots=True)
class Agent:
    """Who acted: a system client, a person, or the operator at the gateway's console."""

    kind: str  # "system", "user" or "local"
    id: str
    organization: str | None = None  # the URA the agent acts on behalf of
    role: str | None = None  # clinician, assistant, dpo, admin; "system" or "operator"
    name: str | None = None
    address: str | None = None  # the network address the request came from


@dataclass(frozen=True, slots=True)
class Basis:
    """Why an access was allowed or refused, as an auditor reads it."""

    kind: str  # own-organisation, agreement-and-consent, referral, shared, emergency,
    # directory, operator, denied
    rule: str
    consent_ids: tuple[str, ...] = ()
    agreement_id: str | None = None
    emergency_reason: str | None = None
    explanation: str | None = None

    @property
    def emergency(self) -> bool:
        return self.kind == "emergency"


@dataclass(frozen=True, slots=True)
class AuditFacts:
    kind: str  # a key of codes.KINDS
    agent: Agent
    request_id: str
    outcome: str = codes.SUCCESS
    outcome_desc: str | None = None
    action: str | None = None  # overrides the kind's action (e.g. a delete in a transaction)
    purpose: str = "TREAT"
    patient_key: str | None = None  # the BSN
    patient_ref: str | None = None  # "Patient/<id>" when known
    custodian: str | None = None  # URA of the organisation whose data was touched
    data: tuple[str, ...] = ()  # references of the resources touched ("Type/id/_history/v")
    query: str | None = None  # "GET Type?params" of a search, never its results
    basis: Basis | None = None
    correlation_id: str | None = None
    details: tuple[tuple[str, str], ...] = ()  # further (name, value) facts, e.g. a recipient
    recorded_us: int = 0
    event_id: str = field(default_factory=new_key)

    @property
    def emergency(self) -> bool:
        return self.basis is not None and self.basis.emergency

    @property
    def event_action(self) -> str:
        return self.action or KINDS[self.kind].action

    def to_resource(self, node: str, base_url: str) -> dict[str, Any]:
        """The AuditEvent (R4) for these facts, recorded by gateway ``node`` at ``base_url``."""
        kind = KINDS[self.kind]
        event: dict[str, Any] = {"resourceType": "AuditEvent", "id": self.event_id}
        if kind.profile:
            event["meta"] = {"profile": [codes.BALP_PROFILE + kind.profile]}
        event["type"] = kind.type.coding()
        event["subtype"] = [s.coding() for s in kind.subtypes]
        event["action"] = self.event_action
        event["recorded"] = instant(self.recorded_us)
        event["outcome"] = self.outcome
        if self.outcome_desc:
            event["outcomeDesc"] = self.outcome_desc[:1000]
        purposes = [self.purpose] + (["BTG"] if self.emergency else [])
        event["purposeOfEvent"] = [
            {"coding": [{"system": codes.ACT_REASON, "code": p}]} for p in purposes
        ]
        event["agent"] = self._agents(node, base_url)
        event["source"] = {
            "site": node,
            "observer": {"identifier": {"system": codes.ZB_NODE, "value": node}},
            "type": [{"system": codes.SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        }
        entities = self._entities()
        if entities:
            event["entity"] = entities
        return event

    def _agents(self, node: str, base_url: str) -> list[dict[str, Any]]:
        a = self.agent
        requestor: dict[str, Any] = {
            "type": {"coding": [_agent_type(self.kind, a)]},
            "who": {
                "identifier": {
                    "system": codes.ZB_CLIENT if a.kind == "system" else codes.ZB_USER,
                    "value": a.id,
                },
                **({"display": a.name} if a.name else {}),
            },
            "requestor": True,
        }
        if a.role:
            requestor["role"] = [{"coding": [{"system": codes.ZB_ROLE, "code": a.role}]}]
        if a.name:
            requestor["name"] = a.name
        if self.basis is not None:
            requestor["policy"] = _policies(self.basis)
        requestor["purposeOfUse"] = [
            {"coding": [{"system": codes.ACT_REASON, "code": self.purpose}]}
        ]
        if a.address:
            requestor["network"] = {"address": a.address, "type": "2"}
        agents = [requestor]
        if a.organization:
            agents.append(
                {
                    "type": {
                        "coding": [Code(codes.ROLE_CLASS, "PROV", "healthcare provider").coding()]
                    },
                    "who": {"identifier": {"system": URA, "value": a.organization}},
                    "requestor": False,
                }
            )
        agents.append(
            {
                "type": {"coding": [Code(codes.DCM, "110152", "Destination Role ID").coding()]},
                "who": {"identifier": {"system": codes.ZB_NODE, "value": node}},
                "requestor": False,
                "network": {"address": base_url, "type": "5"},
            }
        )
        return agents

    def _entities(self) -> list[dict[str, Any]]:
        entities: list[dict[str, Any]] = []
        if self.patient_key or self.patient_ref:
            what: dict[str, Any] = {}
            if self.patient_ref:
                what["reference"] = self.patient_ref
            if self.patient_key:
                what["identifier"] = {"system": BSN, "value": self.patient_key}
            entities.append(
                {
                    "what": what,
                    "type": _c(codes.ENTITY_TYPE, "1", "Person"),
                    "role": _c(codes.OBJECT_ROLE, "1", "Patient"),
                }
            )
        for reference in self.data:
            entities.append(
                {
                    "what": {"reference": reference},
                    "type": _c(codes.ENTITY_TYPE, "2", "System Object"),
                    "role": _c(codes.OBJECT_ROLE, "4", "Domain Resource"),
                }
            )
        if self.custodian:
            entities.append(
                {
                    "what": {"identifier": {"system": URA, "value": self.custodian}},
                    "type": _c(codes.ENTITY_TYPE, "3", "Organization"),
                    "role": _c(codes.OBJECT_ROLE, "17", "Data Repository"),
                    "description": "the organisation whose data was accessed",
                }
            )
        if self.query:
            entities.append(
                {
                    "type": _c(codes.ENTITY_TYPE, "2", "System Object"),
                    "role": _c(codes.OBJECT_ROLE, "24", "Query"),
                    "description": self.query,
                    "query": base64.b64encode(self.query.encode()).decode(),
                }
            )
        if self.basis is not None:
            entities.extend(_basis_entities(self.basis))
        request: dict[str, Any] = {
            "what": {"identifier": {"value": self.request_id}},
            "type": _c(codes.BALP_ENTITY, "XrequestId", "X-Request-Id"),
        }
        if self.correlation_id:
            request["detail"] = [{"type": "X-Correlation-Id", "valueString": self.correlation_id}]
        entities.append(request)
        if self.details:
            entities.append(
                {
                    "type": _c(codes.ZB_ENTITY, "details", "Further facts of the event"),
                    "detail": [
                        {"type": name, "valueString": value} for name, value in self.details
                    ],
                }
            )
        return entities


def _agent_type(kind: str, agent: Agent) -> dict[str, str]:
    if agent.kind == "system":
        return Code(codes.DCM, "110150", "Application").coding()
    if kind in ("create", "update", "delete", "provide-documents", "import"):
        return Code(codes.ROLE_CLASS, "AGNT", "agent").coding()
    return Code(codes.PARTICIPATION, "IRCP", "information recipient").coding()


def _policies(basis: Basis) -> list[str]:
    policies = [f"{codes.ZB_BASIS}#{basis.kind}"]
    policies += [f"Consent/{c}" for c in basis.consent_ids]
    if basis.agreement_id:
        policies.append(f"urn:zorgbrug:agreement:{basis.agreement_id}")
    return policies


def _basis_entities(basis: Basis) -> list[dict[str, Any]]:
    details = [
        {"type": "kind", "valueString": basis.kind},
        {"type": "rule", "valueString": basis.rule},
    ]
    if basis.agreement_id:
        details.append({"type": "agreement", "valueString": basis.agreement_id})
    if basis.emergency_reason:
        details.append({"type": "emergency-reason", "valueString": basis.emergency_reason})
    entities: list[dict[str, Any]] = [
        {
            "type": _c(codes.ZB_ENTITY, "access-basis", "Basis of the access decision"),
            **({"description": basis.explanation[:1000]} if basis.explanation else {}),
            "detail": details,
        }
    ]
    entities += [
        {
            "what": {"reference": f"Consent/{consent_id}"},
            "type": _c(codes.RESOURCE_TYPES, "Consent", "Consent"),
        }
        for consent_id in basis.consent_ids
    ]
    return entities


def _c(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}
