"""The codes AuditEvents are written with (IHE BALP, DICOM, HL7 terminology) and our own.

Each event type is a ``Kind``: the short name we store and filter on (``read``, ``login`` …) with
the AuditEvent ``type``, ``subtype`` and ``action`` it is written as.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DCM: Final = "http://dicom.nema.org/resources/ontology/DCM"
EVENT_TYPE: Final = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL: Final = "http://hl7.org/fhir/restful-interaction"
IHE_EVENT: Final = "urn:ihe:event-type-code"
BALP_AUTHZ: Final = "https://profiles.ihe.net/ITI/BALP/CodeSystem/AuthZsubType"
BALP_ENTITY: Final = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
BALP_PROFILE: Final = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/"
OUTCOME: Final = "http://terminology.hl7.org/CodeSystem/audit-event-outcome"
ENTITY_TYPE: Final = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE: Final = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE: Final = "http://terminology.hl7.org/CodeSystem/security-source-type"
PARTICIPATION: Final = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ROLE_CLASS: Final = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
ACT_REASON: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
NETWORK_TYPE: Final = "http://hl7.org/fhir/network-type"
RESOURCE_TYPES: Final = "http://hl7.org/fhir/resource-types"
# Zorgbrug's own: the kinds of event, the roles of people, and the basis of an access.
ZB_EVENT: Final = "http://zorgbrug.nl/fhir/CodeSystem/audit-event"
ZB_ROLE: Final = "http://zorgbrug.nl/fhir/CodeSystem/role"
ZB_ENTITY: Final = "http://zorgbrug.nl/fhir/CodeSystem/audit-entity"
ZB_BASIS: Final = "http://zorgbrug.nl/fhir/CodeSystem/access-basis"
ZB_USER: Final = "http://zorgbrug.nl/fhir/NamingSystem/user"
ZB_CLIENT: Final = "http://zorgbrug.nl/fhir/NamingSystem/client"
ZB_NODE: Final = "http://zorgbrug.nl/fhir/NamingSystem/gateway-node"

# outcome codes (audit-event-outcome)
SUCCESS: Final = "0"
MINOR_FAILURE: Final = "4"
SERIOUS_FAILURE: Final = "8"
MAJOR_FAILURE: Final = "12"


@dataclass(frozen=True, slots=True)
class Code:
    system: str
    code: str
    display: str

    def coding(self) -> dict[str, str]:
        return {"system": self.system, "code": self.code, "display": self.display}


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of audited event: our name, the AuditEvent type/subtype, action, BALP profile."""

    name: str
    type: Code
    subtypes: tuple[Code, ...]
    action: str
    profile: str | None = None


_REST = Code(EVENT_TYPE, "rest", "Restful Operation")


def _rest(code: str, action: str, profile: str | None = None) -> Kind:
    return Kind(code, _REST, (Code(RESTFUL, code, code),), action, profile)


KINDS: Final[dict[str, Kind]] = {
    k.name: k
    for k in (
        _rest("read", "R", "IHE.BasicAudit.PatientRead"),
        _rest("vread", "R", "IHE.BasicAudit.PatientRead"),
        _rest("history-instance", "R"),
        _rest("history-type", "R"),
        _rest("history-system", "R"),
        _rest("search-type", "E", "IHE.BasicAudit.PatientQuery"),
        _rest("search-system", "E", "IHE.BasicAudit.PatientQuery"),
        _rest("create", "C", "IHE.BasicAudit.PatientCreate"),
        _rest("update", "U", "IHE.BasicAudit.PatientUpdate"),
        _rest("delete", "D", "IHE.BasicAudit.PatientDelete"),
        _rest("transaction", "E"),
        _rest("batch", "E"),
        Kind(
            "find-documents",
            Code(DCM, "110112", "Query"),
            (Code(IHE_EVENT, "ITI-67", "Find Document References"),),
            "E",
        ),
        Kind(
            "retrieve-document",
            Code(DCM, "110106", "Export"),
            (Code(IHE_EVENT, "ITI-68", "Retrieve Document"),),
            "R",
        ),
        Kind(
            "provide-documents",
            Code(DCM, "110107", "Import"),
            (Code(IHE_EVENT, "ITI-65", "Provide Document Bundle"),),
            "C",
        ),
        Kind(
            "delivery",
            Code(DCM, "110106", "Export"),
            (Code(ZB_EVENT, "delivery", "Delivery to a partner endpoint"),),
            "R",
        ),
        Kind(
            "import",
            Code(DCM, "110107", "Import"),
            (Code(ZB_EVENT, "import", "Import of an EHR export"),),
            "C",
        ),
        Kind(
            "consent-decision",
            Code(DCM, "110113", "Security Alert"),
            (Code(BALP_AUTHZ, "AuthZ-Consent", "Authorization Decision using Roles and Consent"),),
            "E",
            "IHE.BasicAudit.AuthZconsent",
        ),
        Kind(
            "emergency",
            Code(DCM, "110113", "Security Alert"),
            (Code(DCM, "110127", "Emergency Override Started"),),
            "E",
        ),
        Kind(
            "login",
            Code(DCM, "110114", "User Authentication"),
            (Code(DCM, "110122", "Login"),),
            "E",
        ),
        Kind(
            "token",
            Code(DCM, "110114", "User Authentication"),
            (Code(IHE_EVENT, "ITI-71", "Get Access Token"),),
            "E",
            "IHE.IUA.71",
        ),
        Kind(
            "admin-organization",
            Code(DCM, "110113", "Security Alert"),
            (Code(DCM, "110128", "Network Configuration"),),
            "C",
        ),
        Kind(
            "admin-account",
            Code(DCM, "110113", "Security Alert"),
            (Code(DCM, "110137", "User Security Attributes Changed"),),
            "U",
        ),
        Kind(
            "admin-security",
            Code(DCM, "110113", "Security Alert"),
            (Code(DCM, "110129", "Security Configuration"),),
            "U",
        ),
        Kind(
            "audit-log",
            Code(DCM, "110101", "Audit Log Used"),
            (Code(ZB_EVENT, "audit-log", "Use of the audit log"),),
            "R",
        ),
    )
}

# Kinds that record a change of the gateway's configuration rather than patient data.
ADMIN_KINDS: Final = frozenset({"admin-organization", "admin-account", "admin-security"})
