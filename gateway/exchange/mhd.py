"""IHE MHD 4.2 vocabulary: profiles, extensions, list types, and the XDS error codes.

MHD says to report failures with the error codes of ITI TF-3 Table 4.2.4.1-2 but names no FHIR
code system for them; they travel in ``OperationOutcome.issue.details.coding`` with that table's
URL as the system, and the code is repeated in the diagnostics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from gateway.errors import GatewayError, Issue, Unprocessable

MHD = "https://profiles.ihe.net/ITI/MHD"
PROVIDE_BUNDLE_PROFILES = {
    f"{MHD}/StructureDefinition/IHE.MHD.Minimal.ProvideBundle": "minimal",
    f"{MHD}/StructureDefinition/IHE.MHD.Comprehensive.ProvideBundle": "comprehensive",
    f"{MHD}/StructureDefinition/IHE.MHD.UnContained.Comprehensive.ProvideBundle": "comprehensive",
}
LIST_TYPES = f"{MHD}/CodeSystem/MHDlistTypes"
SOURCE_ID = f"{MHD}/StructureDefinition/ihe-sourceId"
INTENDED_RECIPIENT = f"{MHD}/StructureDefinition/ihe-intendedRecipient"
XDS_ERROR_CODES = "https://profiles.ihe.net/ITI/TF/Volume3/ch-4.2.html#4.2.4.1"

# Comprehensive Metadata: DocumentReference elements that must be present (besides Minimal's).
COMPREHENSIVE_ELEMENTS = (
    ("type",),
    ("category",),
    ("subject",),
    ("securityLabel",),
    ("content", "attachment", "language"),
    ("content", "attachment", "creation"),
    ("content", "format"),
    ("context", "facilityType"),
    ("context", "practiceSetting"),
    ("context", "sourcePatientInfo"),
)


class MhdError(Unprocessable):
    """An ITI-65 submission refused with an XDS error code; nothing of it is stored."""

    def __init__(self, xds_code: str, diagnostics: str, *, expression: Iterable[str] = ()) -> None:
        issue = Issue(
            f"{xds_code}: {diagnostics}",
            "business-rule" if xds_code in _BUSINESS_RULES else "invalid",
            "error",
            tuple(expression),
            details={"coding": [{"system": XDS_ERROR_CODES, "code": xds_code}], "text": xds_code},
        )
        super().__init__(issue.diagnostics, issues=[issue])
        self.xds_code = xds_code


_BUSINESS_RULES = {
    "XDSPatientIdDoesNotMatch",
    "XDSUnknownPatientId",
    "UnknownRecipient",
    "UnavailableRecipient",
    "XDSNonIdenticalHash",
    "XDSNonIdenticalSize",
    "XDSDuplicateUniqueIdInRegistry",
}


def with_xds_code(error: GatewayError, xds_code: str) -> GatewayError:
    """The same error (status, issues) with an XDS error code added to each issue."""
    error.issues = [
        dataclasses.replace(
            issue,
            details={"coding": [{"system": XDS_ERROR_CODES, "code": xds_code}], "text": xds_code},
        )
        for issue in error.issues
    ]
    return error


def list_type(resource: Any) -> str | None:
    """``submissionset`` or ``folder`` for an MHD List, else None."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "List":
        return None
    for coding in (resource.get("code") or {}).get("coding") or []:
        if isinstance(coding, dict) and coding.get("system") == LIST_TYPES:
            return str(coding.get("code"))
    return None


def metadata_option(bundle: dict[str, Any]) -> str | None:
    """The MHD option a Provide Document Bundle declares, or None when it declares none."""
    for profile in (bundle.get("meta") or {}).get("profile") or []:
        if profile in PROVIDE_BUNDLE_PROFILES:
            return PROVIDE_BUNDLE_PROFILES[profile]
    return None


def is_provide_bundle(bundle: Any) -> bool:
    """Whether a posted Bundle is an ITI-65 Provide Document Bundle: it declares an MHD
    profile or carries a SubmissionSet. ``DocumentRecipient.provide`` refuses one that is not
    a transaction (as a batch it would skip every MHD check and notify nobody)."""
    if not isinstance(bundle, dict) or bundle.get("type") not in ("transaction", "batch"):
        return False
    if metadata_option(bundle) is not None:
        return True
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return False
    return any(isinstance(e, dict) and list_type(e.get("resource")) for e in entries)
