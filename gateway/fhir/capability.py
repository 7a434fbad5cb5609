"""The CapabilityStatement: generated from what the server really accepts and indexes."""

from __future__ import annotations

from typing import Any

from gateway import __version__
from gateway.fhir.search_params import registry
from gateway.fhir.types import RESOURCE_TYPES

INTERACTIONS = [
    "read",
    "vread",
    "update",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
]
_DOCS = {
    "_id": "http://hl7.org/fhir/SearchParameter/Resource-id",
    "_lastUpdated": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated",
}


# The audit log is written by the gateway only and read by DPOs (gateway.service.audit_log):
# read and search with BALP's parameters (patient by BSN), and its operations.
AUDIT_PARAMS = (
    ("patient", "token", "The patient's BSN (http://fhir.nl/fhir/NamingSystem/bsn|...)"),
    ("agent", "token", "The user or system client id"),
    ("agent-organization", "token", "The URA of the agent's organisation"),
    ("date", "date", "When the event was recorded (prefixes eq, ge, gt, le, lt)"),
    ("type", "token", "Event type or subtype code"),
    ("subtype", "token", "Event subtype code (read, search-type, ITI-68, ...)"),
    ("outcome", "token", "0 success, 4 refused, 8 or 12 failed"),
    ("action", "token", "C, R, U, D or E"),
)
AUDIT_OPERATIONS = ("report", "anomalies", "verify")
OPERATION_BASE = "http://zorgbrug.nl/fhir/OperationDefinition/AuditEvent-"


def audit_event_capability() -> dict[str, Any]:
    return {
        "type": "AuditEvent",
        "profile": "http://hl7.org/fhir/StructureDefinition/AuditEvent",
        "documentation": "The audit trail (IHE BALP, NEN 7513): for data-protection officers, "
        "about their own organisation and its patients; never written through the API.",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [
            {"name": name, "type": kind, "documentation": text} for name, kind, text in AUDIT_PARAMS
        ],
        "operation": [
            {"name": name, "definition": f"{OPERATION_BASE}{name}"} for name in AUDIT_OPERATIONS
        ],
    }


# The IHE MHD actors the gateway plays: Document Recipient (ITI-65) and Document Responder
# (ITI-66, ITI-67, ITI-68), with the MHD search parameters (gateway.fhir.search_params).
MHD_ACTORS = (
    "https://profiles.ihe.net/ITI/MHD/CapabilityStatement/IHE.MHD.DocumentRecipient",
    "https://profiles.ihe.net/ITI/MHD/CapabilityStatement/IHE.MHD.DocumentResponder",
)


def capability_statement(base_url: str, published: str) -> dict[str, Any]:
    """A truthful statement: every interaction and parameter listed here works."""
    params = registry()
    resources = []
    for res_type in sorted(RESOURCE_TYPES):
        if res_type == "AuditEvent":
            resources.append(audit_event_capability())
            continue
        search = params.for_type(res_type)
        references = sorted(p.code for p in search.values() if p.type == "reference")
        # Stored content is write-once (ResourceService.update_in): a Binary is POSTed, never PUT.
        write_once = res_type == "Binary"
        resources.append(
            {
                "type": res_type,
                "profile": f"http://hl7.org/fhir/StructureDefinition/{res_type}",
                "interaction": [
                    {"code": code} for code in INTERACTIONS if not (write_once and code == "update")
                ],
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": not write_once,
                "conditionalCreate": True,
                "conditionalUpdate": not write_once,
                "conditionalDelete": "single",
                "searchInclude": [f"{res_type}:{code}" for code in references],
                "searchRevInclude": sorted(
                    f"{source}:{p.code}"
                    for source in RESOURCE_TYPES
                    for p in params.for_type(source).values()
                    if p.type == "reference" and res_type in p.targets
                ),
                "searchParam": [
                    {"name": p.code, "definition": p.url or _DOCS.get(p.code, ""), "type": p.type}
                    for p in sorted(search.values(), key=lambda p: p.code)
                ],
            }
        )
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": published,
        "publisher": "Zorgbrug",
        "kind": "instance",
        "instantiates": list(MHD_ACTORS),
        "software": {"name": "Zorgbrug", "version": __version__},
        "implementation": {"description": "Zorgbrug FHIR R4 gateway", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/fhir+xml"],
        "rest": [
            {
                "mode": "server",
                "resource": resources,
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "history-system"},
                ],
                "searchParam": [
                    {
                        "name": "_count",
                        "type": "number",
                        "documentation": "Page size (default 20, at most the configured maximum)",
                    },
                    {"name": "_sort", "type": "special"},
                    {"name": "_summary", "type": "token", "documentation": "count or false"},
                    {"name": "_elements", "type": "special"},
                ],
            }
        ],
    }
